"""Labels and owner references on everything qmo creates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qmo import __version__
from qmo.api.base import API_VERSION

MANAGED_BY = "qmo"
MODEL = "qmo.dev/model"
VARIANT = "qmo.dev/variant"
PRECISION = "qmo.dev/precision"
GPU_CLASS = "qmo.dev/gpu-class"
CACHE_KEY = "qmo.dev/cache-key"
COMPONENT = "app.kubernetes.io/component"
REVISION_ANNOTATION = "qmo.dev/revision"  # full cache key a Deployment serves


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


def common(model: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "qmo",
        "app.kubernetes.io/instance": model,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": __version__,
        MODEL: model,
    }


def variant_selector(model: str, variant: str) -> dict[str, str]:
    """Stable pod selector of a variant's Deployment and Service (never changes for a variant)."""
    return {MODEL: model, VARIANT: variant, COMPONENT: "server"}
