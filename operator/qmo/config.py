"""Operator-wide settings, from `qmo run` flags and environment (the Helm chart sets both)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from qmo import __version__

DEFAULT_BUILDER_IMAGE = f"ghcr.io/qmo-dev/qmo-builder:{__version__}"
DEFAULT_EVALUATOR_IMAGE = f"ghcr.io/qmo-dev/qmo-evaluator:{__version__}"


@dataclass(frozen=True)
class OperatorConfig:
    """What every reconcile needs to know beyond the QuantizedModel itself."""

    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    builder_image: str = DEFAULT_BUILDER_IMAGE
    evaluator_image: str = DEFAULT_EVALUATOR_IMAGE
    # A safety net only: every change reaches the operator through a watch.
    resync_seconds: float = 600.0
    # Reconciles in parallel (one per model at a time). They spend most of their time waiting
    # for the API server, so a few threads fit a 2-core operator pod.
    workers: int = 4
    image_pull_secrets: tuple[str, ...] = field(default_factory=tuple)
    # Images a QuantizedModel may name as engine.builderImage or quality.evaluatorImage: they
    # run with the model's token Secret and write the shared engine store. Empty: only the
    # operator's own builder and evaluator images. An entry ending in '*' is a prefix.
    allowed_images: tuple[str, ...] = field(default_factory=tuple)
    # The ClusterRole eval Jobs' ServiceAccounts are bound to (the Helm chart sets the env).
    evaluator_cluster_role: str = field(
        default_factory=lambda: os.environ.get("QMO_EVALUATOR_CLUSTER_ROLE", "qmo-evaluator")
    )

    def image_allowed(self, image: str) -> bool:
        allowed = self.allowed_images or (self.builder_image, self.evaluator_image)
        return any(
            image.startswith(entry[:-1]) if entry.endswith("*") else image == entry
            for entry in allowed
        )
