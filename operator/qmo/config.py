"""Operator-wide settings, from `qmo run` flags and environment (the Helm chart sets both)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qmo import __version__

DEFAULT_BUILDER_IMAGE = f"ghcr.io/qmo-dev/qmo-builder:{__version__}"
DEFAULT_EVALUATOR_IMAGE = f"ghcr.io/qmo-dev/qmo-evaluator:{__version__}"


@dataclass(frozen=True)
class S3Defaults:
    """The chart's engineStore.s3: what a model's engine.store.s3 leaves unset."""

    bucket: str | None = None
    prefix: str = "qmo"
    endpoint: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    ca_bundle_configmap: str | None = None  # a ConfigMap (key ca.crt) in each model namespace
    credentials_secret: str | None = None  # a Secret in each model namespace
    service_account: str | None = None  # for workload identity


@dataclass(frozen=True)
class NodeCache:
    """Where serving pods keep artifacts fetched from an object store (qmo.store.cache).

    node: a hostPath directory shared by every qmo pod on the node, so a second pod or a
    restart starts from it; pod: each pod's own emptyDir (namespaces that forbid hostPath)."""

    mode: str = "node"
    host_path: str = "/var/lib/qmo/cache"
    size: str = "500Gi"  # the cache's limit: LRU eviction (node) or the emptyDir's sizeLimit (pod)


@dataclass(frozen=True)
class StoreGc:
    """The object store's garbage collection (qmo.controller.store_gc)."""

    interval_seconds: float = 21600.0  # 0: off
    retention_hours: float = 168.0
    delete: bool = False  # False: a dry run that only reports


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
    # The engine store of models that do not name one (engine.store.type unset).
    store_type: str = "pvc"
    s3: S3Defaults = field(default_factory=S3Defaults)
    node_cache: NodeCache = field(default_factory=NodeCache)
    # Runs the serving pods' fetch step and the store Jobs (qmo-store); needs qmo and obstore.
    store_image: str = DEFAULT_EVALUATOR_IMAGE
    store_gc: StoreGc = field(default_factory=StoreGc)

    def image_allowed(self, image: str, defaults: tuple[str, ...] = ()) -> bool:
        allowed = self.allowed_images or (self.builder_image, self.evaluator_image, *defaults)
        return any(
            image.startswith(entry[:-1]) if entry.endswith("*") else image == entry
            for entry in allowed
        )
