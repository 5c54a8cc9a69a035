"""Shared building blocks of the qmo API models.

Every CRD field is declared once, here in pydantic; `qmo.api.crd` turns these models into the
CRD YAML. Cross-field rules are declared once as `Rule`s: the CRD generator emits each as a CEL
`x-kubernetes-validations` entry, and the pydantic model runs the same predicate, so a user gets
the same message from `kubectl apply` and from `qmo plan -f`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

GROUP = "qmo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


Wire = TypeVar("Wire", bound="ApiModel")


class RuleViolation(ValueError):
    """A cross-field rule of the API failed; the message is the one the API server gives."""


@dataclass(frozen=True)
class Rule:
    """One cross-field validation rule, written once for both the API server and pydantic.

    `cel` is evaluated by the API server with `self` bound to the object the rule sits on;
    `check` is the same predicate over the parsed pydantic model.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rule["fieldPath"] = self.field_path
        return rule


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected.

    Subclasses list their cross-field `rules`; they are checked after field validation.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        self._check_list_maps()
        for rule in self.rules:
            if not rule.check(self):
                raise RuleViolation(rule.message)
        return self

    def _check_list_maps(self) -> None:
        """A list the CRD marks x-kubernetes-list-type: map may not repeat a key (the API
        server refuses it as "Duplicate value")."""
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if not isinstance(extra, dict) or extra.get("x-kubernetes-list-type") != "map":
                continue
            declared = extra.get("x-kubernetes-list-map-keys")
            keys = [str(k) for k in declared] if isinstance(declared, list) else []
            seen = set()
            for item in getattr(self, name) or []:
                key = tuple(getattr(item, to_snake(k), None) for k in keys)
                if key in seen:
                    raise RuleViolation(f"{info.alias or name}: duplicate value {list(key)}")
                seen.add(key)

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def from_wire(cls: type[Wire], data: Any) -> Wire:
        """Parse an object as the API server reads it: JSON types exactly, no coercion.

        pydantic's default (lax) mode would take "512" for an integer, which the API server
        refuses; strict JSON mode takes what JSON says and enums by value, like the server.
        """
        return cls.model_validate_json(json.dumps(data, default=str), strict=True)


def one_line(err: ValidationError) -> str:
    """What is wrong, as `field.path: message` per error joined by '; ' (for the CLI's one
    line; pydantic's own text spans several, with its input values and links)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'the object'}: "
        f"{e['msg'].removeprefix('Value error, ')}"
        for e in err.errors()
    )


class StatusModel(ApiModel):
    """Base of status models: tolerant of fields a newer operator version wrote."""

    model_config = ConfigDict(extra="ignore")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A condition as in the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(description="Condition type in CamelCase, e.g. Ready, Building, QualityGate.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why the condition has this status.")
    message: str = Field(default="", description="A sentence for humans with the details.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this condition was computed from."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed (not the reason or message)."
    )


# --- the shapes Kubernetes itself requires of names, label keys and values, quantities ---
# The CRD carries them (patterns and CEL), so the API server refuses a value at `kubectl
# apply` that it would otherwise refuse later, on the child qmo makes from it.

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label key or resource name: an optional DNS-subdomain prefix and '/', then a name.
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
IMAGE = r"^[^\s]+$"
# Kubernetes' resource.Quantity: a number, then a binary or decimal suffix or an exponent.
QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"

ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
ConfigKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=CONFIG_KEY)]
Image = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=IMAGE)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
QualifiedName = Annotated[str, StringConstraints(max_length=317, pattern=QUALIFIED_NAME)]
Quantity = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=QUANTITY)]


STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def cel_string(text: str) -> str:
    """`text` as a CEL string literal (for regular expressions in rules)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3),
                                        ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}  # fmt: skip


def quantity_value(text: str) -> Decimal:
    """The number a Kubernetes quantity stands for ('1Gi' -> 1073741824, '500m' -> 0.5)."""
    match = re.fullmatch(
        r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[A-Za-z]*)", text
    )
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIXES[suffix]


def must_equal_limit(name: str) -> bool:
    """Extended resources and huge pages cannot be overcommitted: request == limit."""
    return "/" in name or name.startswith("hugepages-")


def is_qualified_name(text: str) -> bool:
    return re.fullmatch(QUALIFIED_NAME, text) is not None


def is_resource_name(name: str) -> bool:
    """What a pod's resources may name: cpu, memory, ephemeral-storage, hugepages-<size>, or
    a domain-prefixed extended resource (example.com/device)."""
    return (
        name in STANDARD_RESOURCES
        or name.startswith("hugepages-")
        or ("/" in name and is_qualified_name(name))
    )


RESOURCE_NAMES_MESSAGE = (
    "resources may name cpu, memory, ephemeral-storage, hugepages-<size> or a "
    "domain-prefixed resource such as example.com/device"
)


def non_negative_cel(field: str) -> str:
    """CEL: every quantity of the map `field` is zero or more (as a pod's must be)."""
    return (
        f"!has(self.{field}) || self.{field}.all(k, "
        f"quantity(self.{field}[k]).compareTo(quantity('0')) >= 0)"
    )


def resource_names_cel(field: str) -> str:
    standard = ", ".join(f"'{n}'" for n in STANDARD_RESOURCES)
    return (
        f"!has(self.{field}) || self.{field}.all(k, k in [{standard}] || "
        f"k.startsWith('hugepages-') || (k.contains('/') && "
        f"k.matches({cel_string(QUALIFIED_NAME)})))"
    )


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: ObjectName = Field(description="Name of the object.")


class SecretKeyReference(ApiModel):
    """A key of a Secret in the same namespace. qmo passes it to Jobs by reference only."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: ConfigKey = Field(
        default="HF_TOKEN", description="Key within the Secret whose value is the token."
    )


class ConfigMapKeyReference(ApiModel):
    """A key of a ConfigMap in the same namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap.")
    key: ConfigKey = Field(default="ca.crt", description="Key within the ConfigMap.")


class Toleration(ApiModel):
    """A pod toleration (core/v1 Toleration), copied onto build and serving pods."""

    key: QualifiedName | None = Field(
        default=None, description="Taint key the toleration applies to."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default)."
    )
    value: LabelValue | None = Field(default=None, description="Taint value to match with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


class ResourceRequirements(ApiModel):
    """CPU and memory requests and limits (GPUs are set by qmo from the tensor-parallel size)."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        description="Minimum resources, e.g. {cpu: '8', memory: 64Gi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Maximum resources, e.g. {memory: 96Gi}."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=resource_names_cel("requests"),
            message=RESOURCE_NAMES_MESSAGE,
            check=lambda r: all(is_resource_name(k) for k in r.requests),
            field_path=".requests",
        ),
        Rule(
            cel=resource_names_cel("limits"),
            message=RESOURCE_NAMES_MESSAGE,
            check=lambda r: all(is_resource_name(k) for k in r.limits),
            field_path=".limits",
        ),
        Rule(
            cel=non_negative_cel("requests"),
            message="a resource request may not be negative (such as -1Gi)",
            check=lambda r: all(quantity_value(v) >= 0 for v in r.requests.values()),
            field_path=".requests",
        ),
        Rule(
            cel=non_negative_cel("limits"),
            message="a resource limit may not be negative (such as -1Gi)",
            check=lambda r: all(quantity_value(v) >= 0 for v in r.limits.values()),
            field_path=".limits",
        ),
        Rule(
            cel="!has(self.requests) || !has(self.limits) || self.requests.all(k, "
            "!(k in self.limits) || ((k.contains('/') || k.startsWith('hugepages-')) ? "
            "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) == 0 : "
            "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0))",
            message="a request may not exceed its limit, and extended resources and huge pages "
            "must request exactly their limit",
            check=lambda r: all(
                (quantity_value(v) == quantity_value(r.limits[k]))
                if must_equal_limit(k)
                else quantity_value(v) <= quantity_value(r.limits[k])
                for k, v in r.requests.items()
                if k in r.limits
            ),
        ),
        Rule(
            cel="!([has(self.requests) ? self.requests : {}, has(self.limits) ? self.limits : {}]"
            ".exists(m, m.exists(k, k.startsWith('hugepages-')))) || "
            "(has(self.requests) && ('cpu' in self.requests || 'memory' in self.requests)) || "
            "(has(self.limits) && ('cpu' in self.limits || 'memory' in self.limits))",
            message="huge pages need a cpu or memory request or limit beside them",
            check=lambda r: (
                not any(k.startswith("hugepages-") for k in [*r.requests, *r.limits])
                or bool({"cpu", "memory"} & {*r.requests, *r.limits})
            ),
        ),
    )
