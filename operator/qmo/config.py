"""Operator-wide settings, from `qmo run` flags and environment (the Helm chart sets both)."""

from __future__ import annotations

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
    # Where eval pods run (they need no GPU): a nodeSelector, e.g. a CPU pool's label.
    eval_node_selector: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Images a QuantizedModel may name as engine.image, engine.builderImage or
    # quality.evaluatorImage: they run with the model's token Secret, write or read the shared
    # engine store and serve its clients. Empty: only the operator's own builder and evaluator
    # images and the `defaults` the caller names (the API's TensorRT-LLM release). An entry
    # ending in '*' is a prefix.
    allowed_images: tuple[str, ...] = field(default_factory=tuple)
    # The Prometheus KEDA's ScaledObjects query for serving load (a model may name its own).
    prometheus_address: str | None = None

    def image_allowed(self, image: str, defaults: tuple[str, ...] = ()) -> bool:
        allowed = self.allowed_images or (self.builder_image, self.evaluator_image, *defaults)
        return any(
            image.startswith(entry[:-1]) if entry.endswith("*") else image == entry
            for entry in allowed
        )
