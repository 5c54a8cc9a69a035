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
TRACK = "qmo.dev/track"  # stable (serves), candidate (awaits its gate), reference (BF16 baseline)
STABLE, CANDIDATE, REFERENCE = "stable", "candidate", "reference"
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
    # No app.kubernetes.io/instance: Argo CD's label tracking reads it, and an Application
    # named like the model would then claim (and prune) what the operator created.
    return {
        "app.kubernetes.io/name": "qmo",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": __version__,
        MODEL: model,
    }


def variant_selector(model: str, variant: str, track: str = STABLE) -> dict[str, str]:
    """Pod selector of a variant's Deployment and Service on one track (never changes)."""
    return {MODEL: model, VARIANT: variant, COMPONENT: "server", TRACK: track}
