"""Turns pydantic JSON Schema into a Kubernetes structural schema.

Called by `qmo.api.crd` only. The rewrites follow what kube-rs does for the same job:
inline `$defs` (no `$ref` is allowed), drop `title`/`$schema`/`additionalProperties: false`
(unknown fields are pruned by the API server instead), turn `anyOf [X, null]` into
`X + nullable`, give defaulted objects their whole default value, and add
each model's cross-field `Rule`s as CEL `x-kubernetes-validations`.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from qmo.api.base import ApiModel, StatusModel

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "$schema", "discriminator"}


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of `model`, ready for a CRD version."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    rules_by_title = {cls.__name__: cls for cls in _api_models(model)}
    schema: Schema = _rewrite(
        raw, definitions, rules_by_title, in_status=issubclass(model, StatusModel)
    )
    return schema


def _api_models(root: type[BaseModel]) -> set[type[ApiModel]]:
    """Every ApiModel reachable from `root` through its fields."""
    seen: set[type[ApiModel]] = set()
    stack: list[Any] = [root]
    while stack:
        annotation = stack.pop()
        if isinstance(annotation, type) and issubclass(annotation, ApiModel):
            if annotation in seen:
                continue
            seen.add(annotation)
            stack.extend(f.annotation for f in annotation.model_fields.values())
        stack.extend(getattr(annotation, "__args__", ()))
    return seen


def _rewrite(
    node: Any, definitions: Schema, models: dict[str, type[ApiModel]], *, in_status: bool
) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, definitions, models, in_status=in_status) for item in node]
    if not isinstance(node, dict):
        return node
    node = _collapse_nullable(dict(node))
    if "$ref" in node:
        name = node.pop("$ref").split("/")[-1]
        target = copy.deepcopy(definitions[name])
        # A field's own description beats the class docstring.
        node = {**target, **node}
    model = models.get(node.get("title", ""))
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    _to_openapi_v3_0(node)
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    status_here = in_status or (model is not None and issubclass(model, StatusModel))
    out: Schema = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: _rewrite(prop, definitions, models, in_status=status_here)
                for name, prop in value.items()
            }
        elif key in ("items", "additionalProperties", "anyOf", "allOf", "oneOf"):
            out[key] = _rewrite(value, definitions, models, in_status=status_here)
        else:
            out[key] = value
    if status_here:
        out.pop("default", None)
    if model is not None:
        _add_model_extras(out, model, in_status=status_here)
    return out


def _collapse_nullable(node: Schema) -> Schema:
    """`anyOf: [X, {type: null}]` -> X with `nullable: true` (structural schemas forbid it)."""
    variants = node.get("anyOf")
    if not variants:
        return node
    non_null = [v for v in variants if v.get("type") != "null"]
    if len(non_null) != 1 or len(non_null) == len(variants):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", ...) is None:
        rest.pop("default")
    return {**non_null[0], **rest, "nullable": True}


def _to_openapi_v3_0(node: Schema) -> None:
    """JSON Schema 2020 spellings that OpenAPI v3.0 (the CRD dialect) writes differently."""
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(exclusive), int | float) and not isinstance(node[exclusive], bool):
            node[bound] = node.pop(exclusive)
            node[exclusive] = True


def _add_model_extras(out: Schema, model: type[ApiModel], *, in_status: bool) -> None:
    if model.rules:
        out["x-kubernetes-validations"] = [rule.as_schema() for rule in model.rules]
    if in_status:
        return
    properties = out.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = properties.get(alias)
        if prop is None or field.default_factory is None:
            continue
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, ApiModel):
            # The whole defaulted object: the API server checks a default against the CEL rules
            # as it is, without filling in nested defaults first.
            prop["default"] = value.to_wire()
        elif isinstance(value, list) and value:
            prop["default"] = [getattr(v, "value", v) for v in value]
        elif isinstance(value, dict) and value:
            prop["default"] = value
