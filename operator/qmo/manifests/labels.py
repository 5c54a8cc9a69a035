"""Labels and owner references on everything qmo creates.

The label keys and values are part of qmo's vocabulary (`qmo.vocabulary`); this module
builds the label sets from them, so each set is spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qmo import __version__
from qmo.api.base import API_VERSION
from qmo.vocabulary import (
    CACHE_KEY,
    COMPONENT,
    GPU_CLASS,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL,
    NAME_LABEL,
    PRECISION,
    REVISION_ANNOTATION,
    TRACK,
    VARIANT,
    VERSION_LABEL,
    Component,
    Track,
)

__all__ = [
    "CACHE_KEY",
    "CANDIDATE",
    "COMPONENT",
    "GPU_CLASS",
    "MANAGED_BY",
    "MODEL",
    "PRECISION",
    "REFERENCE",
    "REVISION_ANNOTATION",
    "STABLE",
    "TRACK",
    "VARIANT",
    "Owner",
    "common",
    "managed",
    "variant_selector",
]
# Plain strings, as they go into label values.
STABLE, CANDIDATE, REFERENCE = Track.STABLE.value, Track.CANDIDATE.value, Track.REFERENCE.value


@dataclass(frozen=True)
class Owner:
    """The QuantizedModel that owns an object."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "QuantizedModel",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def shared_reference(self) -> dict[str, Any]:
        """For objects several models share (builds): owned, but by no single controller."""
        return {**self.reference(), "controller": False}


def managed(component: Component, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels every object qmo creates carries (the informers select on managed-by)."""
    return {
        NAME_LABEL: "qmo",
        COMPONENT: component.value,
        MANAGED_BY_LABEL: MANAGED_BY,
        **(extra or {}),
    }


def common(model: str, component: Component) -> dict[str, str]:
    # No app.kubernetes.io/instance: Argo CD's label tracking reads it, and an Application
    # named like the model would then claim (and prune) what the operator created.
    return managed(component, {VERSION_LABEL: __version__, MODEL: model})


def variant_selector(model: str, variant: str, track: str = STABLE) -> dict[str, str]:
    """Pod selector of a variant's Deployment and Service on one track (never changes)."""
    return {MODEL: model, VARIANT: variant, COMPONENT: Component.SERVER.value, TRACK: track}
