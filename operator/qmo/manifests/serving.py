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
    store_volume,
)
from qmo.planner.rollout import can_surge
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


def serve_args(spec: QuantizedModelSpec, variant: PlannedVariant, key: str) -> list[str]:
    """trtllm-serve arguments: the artifact `key` on the store, on all interfaces."""
    artifact = f"{ARTIFACTS_DIR}/{key}"
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
    spec: QuantizedModelSpec, variant: PlannedVariant, key: str, *, metrics: bool
) -> dict[str, Any]:
    """The server container's command and args; with `metrics` (an autoscaled variant) the
    options that make trtllm-serve export its load are written first."""
    args = serve_args(spec, variant, key)
    if not metrics:
        return {"command": ["trtllm-serve"], "args": args}
    script = f"printf '{METRICS_OPTIONS}' > {OPTIONS_FILE} && exec trtllm-serve \"$@\""
    return {
        "command": ["/bin/sh", "-c", script, "trtllm-serve"],
        "args": [*args, "--extra_llm_api_options", OPTIONS_FILE],
    }


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
) -> dict[str, Any]:
    """The Deployment that serves artifact `key` of a variant on one track.

    The stable track serves traffic; a candidate (before-traffic gate) or the BF16 reference
    runs one replica for evaluation only.
    """
    store, store_mount = store_volume(spec, read_only=True)
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
                    "containers": [
                        {
                            "name": SERVER_CONTAINER,
                            "image": spec.engine.image,
                            **serve_command(spec, variant, key, metrics=autoscaled),
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
                            "volumeMounts": [store_mount, *scratch_mounts],
                        }
                    ],
                    "volumes": [store, *scratch],
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
