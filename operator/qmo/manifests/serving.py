"""Deployments and Services that serve variants with trtllm-serve, and the engine-store PVC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qmo.api.buildcontract import ARTIFACTS_DIR, CHECKPOINT_SUBDIR, ENGINE_SUBDIR
from qmo.api.quantizedmodel import EngineBackend, Precision, QuantizedModelSpec
from qmo.manifests import labels, names
from qmo.manifests.labels import Owner
from qmo.manifests.pod import (
    container_security_context,
    placement,
    pod_security_context,
    resources,
    scratch_volumes,
)
from qmo.manifests.store import StoreSetup, locked, serving_store_access
from qmo.planner.rollout import can_surge
from qmo.planner.store import ClaimStore, claim_store
from qmo.planner.types import PlannedVariant
from qmo.vocabulary import AUTOSCALED, REPLICAS_ANNOTATION, Component

SERVER_CONTAINER = "server"
HEALTH_PATH = "/health"
PROBE_PERIOD_SECONDS = 10


@dataclass(frozen=True)
class RolloutStrategy:
    """How a variant's Deployment replaces pods without deadlocking on GPUs."""

    strategy: dict[str, Any]
    surge: bool  # False: no spare GPU for a surge pod, so one old pod goes first


def rollout_strategy(variant: PlannedVariant, replicas: int) -> RolloutStrategy:
    """Surge one pod when the class has GPUs for it; otherwise replace in place.

    Without spare GPUs a surge pod would stay Pending forever and the rollout would hang.
    """
    if can_surge(variant.target, replicas):
        return RolloutStrategy(
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, True
        )
    return RolloutStrategy(
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}, False
    )


def serve_args(
    spec: QuantizedModelSpec, variant: PlannedVariant, key: str, artifact: str | None = None
) -> list[str]:
    """trtllm-serve arguments: the artifact `key` (on the claim, or at `artifact` in the node
    cache), on all interfaces."""
    artifact = artifact or f"{ARTIFACTS_DIR}/{key}"
    checkpoint = f"{artifact}/{CHECKPOINT_SUBDIR}"
    args = [
        f"{artifact}/{ENGINE_SUBDIR}"
        if spec.engine.backend == EngineBackend.TENSORRT
        else checkpoint,
        "--host",
        "0.0.0.0",  # trtllm-serve listens on localhost by default
        "--port",
        str(spec.serving.port),
        "--tp_size",
        str(variant.tensor_parallel or 1),
        "--max_batch_size",
        str(spec.engine.max_batch_size),
        "--max_seq_len",
        str(spec.engine.max_seq_len),
    ]
    if spec.engine.backend == EngineBackend.TENSORRT:
        args += ["--backend", "tensorrt", "--tokenizer", checkpoint]
    return args


# trtllm-serve exports Prometheus metrics (/prometheus/metrics) only with return_perf_metrics,
# and iteration stats (queue and KV cache) only with enable_iter_perf_stats; both are LLM API
# options, read from a YAML file.
METRICS_OPTIONS = "return_perf_metrics: true\nenable_iter_perf_stats: true\n"
OPTIONS_FILE = "/tmp/qmo-llm-api-options.yaml"


def serve_command(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    key: str,
    *,
    metrics: bool,
    cached: str | None = None,
) -> dict[str, Any]:
    """The server container's command and args; with `metrics` (an autoscaled variant) the
    options that make trtllm-serve export its load are written first. `cached`: the
    artifact's directory in the node cache, which the server holds locked while it runs."""
    args = serve_args(spec, variant, key, cached)
    command = ["trtllm-serve"]
    if metrics:
        script = f"printf '{METRICS_OPTIONS}' > {OPTIONS_FILE} && exec trtllm-serve \"$@\""
        command = ["/bin/sh", "-c", script, "trtllm-serve"]
        args = [*args, "--extra_llm_api_options", OPTIONS_FILE]
    if cached is not None:
        command = locked(cached, command)
    return {"command": command, "args": args}


def _probes(spec: QuantizedModelSpec) -> dict[str, Any]:
    """Startup tolerates slow model loads; after that, readiness and liveness are quick."""
    http = {"path": HEALTH_PATH, "port": "http"}
    return {
        "startupProbe": {
            "httpGet": http,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            # Rounded up: a pod gets at least startupTimeoutSeconds before it is restarted.
            "failureThreshold": -(-spec.serving.startup_timeout_seconds // PROBE_PERIOD_SECONDS),
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": http,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": http,
            "periodSeconds": 20,
            "failureThreshold": 3,
            "timeoutSeconds": 10,
        },
    }


def variant_labels(
    model: str, variant: PlannedVariant, track: str = labels.STABLE
) -> dict[str, str]:
    return {
        **labels.common(model, Component.SERVER),
        **labels.variant_selector(model, variant.name, track),
        labels.PRECISION: variant.precision.value,
        labels.GPU_CLASS: variant.gpu_class.name,
    }


def build_deployment(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    owner: Owner,
    *,
    key: str,
    track: str = labels.STABLE,
    replicas: int | None = None,
    store: StoreSetup | None = None,
) -> dict[str, Any]:
    """The Deployment that serves artifact `key` of a variant on one track (`store`: where
    the artifact is; unset, the model's claim).

    The stable track serves traffic; a candidate (before-traffic gate) or the BF16 reference
    runs one replica for evaluation only.
    """
    setup = store or StoreSetup(claim_store(spec))
    access, artifact = serving_store_access(setup.store, key, setup.cache, setup.image)
    cached = None if isinstance(setup.store, ClaimStore) else artifact
    scratch, scratch_mounts = scratch_volumes("8Gi")
    pod_labels = variant_labels(owner.name, variant, track)
    # An autoscaled Deployment carries no count: the scaler owns spec.replicas, and an apply
    # that named it would reset what the scaler set.
    autoscaled = spec.serving.autoscaling is not None and track == labels.STABLE
    if replicas is None:
        replicas = spec.serving.wanted_replicas if track == labels.STABLE else 1
    strategy = rollout_strategy(variant, replicas)
    name = (
        names.variant_deployment(owner.name, variant.name)
        if track != labels.CANDIDATE
        else names.candidate_deployment(owner.name, variant.name)
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": pod_labels,
            "annotations": {
                labels.REVISION_ANNOTATION: key,
                **({REPLICAS_ANNOTATION: AUTOSCALED} if autoscaled else {}),
            },
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            **({} if autoscaled else {"replicas": replicas}),
            "selector": {"matchLabels": labels.variant_selector(owner.name, variant.name, track)},
            "strategy": strategy.strategy,
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    # The pod template changes only when the artifact does.
                    "annotations": {labels.REVISION_ANNOTATION: key},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    **placement(spec, variant.gpu_class),
                    **access.pod_fields(),
                    "containers": [
                        {
                            "name": SERVER_CONTAINER,
                            "image": spec.engine.image,
                            **serve_command(spec, variant, key, metrics=autoscaled, cached=cached),
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "ports": [
                                {
                                    "name": "http",
                                    "containerPort": spec.serving.port,
                                    "protocol": "TCP",
                                }
                            ],
                            **_probes(spec),
                            "resources": resources(
                                spec.serving.resources.requests,
                                spec.serving.resources.limits,
                                variant.tensor_parallel or 1,
                            ),
                            "securityContext": container_security_context(),
                            "volumeMounts": [*access.mounts, *scratch_mounts],
                        }
                    ],
                    "volumes": [*access.volumes, *scratch],
                },
            },
        },
    }


def _service(
    name: str,
    owner: Owner,
    selector: dict[str, str],
    service_labels: dict[str, str],
    port: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": service_labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_variant_service(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    owner: Owner,
    track: str = labels.STABLE,
) -> dict[str, Any]:
    """One Service per variant, so clients can pick a precision (model@int4-style routing).

    A candidate gets a Service of its own, which only the eval Job calls.
    """
    name = (
        names.candidate_service(owner.name, variant.name)
        if track == labels.CANDIDATE
        else names.variant_service(owner.name, variant.name)
    )
    return _service(
        name,
        owner,
        labels.variant_selector(owner.name, variant.name, track),
        variant_labels(owner.name, variant, track),
        spec.serving.port,
    )


def build_main_service(
    spec: QuantizedModelSpec, precision: Precision | None, owner: Owner
) -> dict[str, Any]:
    """The model's Service: every variant under auto, else the chosen precision's variants."""
    selector = {
        labels.MODEL: owner.name,
        labels.COMPONENT: Component.SERVER.value,
        labels.TRACK: labels.STABLE,
    }
    if precision is not None:
        selector[labels.PRECISION] = precision.value
    return _service(
        names.main_service(owner.name),
        owner,
        selector,
        labels.common(owner.name, Component.ENDPOINT),
        spec.serving.port,
    )


def build_store_claim(spec: QuantizedModelSpec, namespace: str) -> dict[str, Any]:
    """The engine store, when `engine.store.create` asks for it. Never owned: it outlives models."""
    store = spec.engine.store
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": store.claim_name,
            "namespace": namespace,
            "labels": labels.managed(Component.ENGINE_STORE),
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": store.size}},
        },
    }
    if store.storage_class_name:
        claim["spec"]["storageClassName"] = store.storage_class_name
    return claim
