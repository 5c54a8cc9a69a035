"""Pieces every qmo pod shares: security context, volumes, placement on the GPU class."""

from __future__ import annotations

from typing import Any

from qmo.api.base import must_equal_limit
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.gpu import GPU_RESOURCE, GpuClass

RUN_AS_USER = 1000
STORE_VOLUME = "engine-store"


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def placement(spec: QuantizedModelSpec, gpu: GpuClass) -> dict[str, Any]:
    """nodeSelector on the stable product label (plus the user's), node affinity for a class
    of several product labels, and the user's tolerations."""
    placed: dict[str, Any] = {"nodeSelector": {**spec.serving.node_selector, **gpu.node_selector}}
    if gpu.node_affinity is not None:
        placed["affinity"] = gpu.node_affinity
    if spec.serving.tolerations:
        placed["tolerations"] = [t.to_wire() for t in spec.serving.tolerations]
    return placed


def resources(requests: dict[str, str], limits: dict[str, str], gpus: int) -> dict[str, Any]:
    """CPU/memory as the user set them; GPUs set by qmo. Resources that cannot be
    overcommitted (GPUs, other extended resources, huge pages) get a limit equal to their
    request when the user gave none: Kubernetes requires one."""
    implied = {k: v for k, v in requests.items() if must_equal_limit(k) and k not in limits}
    return {
        "requests": {**requests, GPU_RESOURCE: str(gpus)},
        "limits": {**implied, **limits, GPU_RESOURCE: str(gpus)},
    }


def scratch_volumes(
    shm_size: str, tmp_volume: tuple[str, str | None] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): /tmp and a large /dev/shm, since the root filesystem is read-only.

    `tmp_volume` (size, StorageClass): /tmp on a volume of the pod's own (a generic ephemeral
    volume, made and deleted with the pod) rather than on the node's disk."""
    tmp: dict[str, Any] = {"name": "tmp", "emptyDir": {}}
    if tmp_volume is not None:
        size, storage_class = tmp_volume
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
        if storage_class:
            claim["storageClassName"] = storage_class
        tmp = {"name": "tmp", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}
    volumes = [
        tmp,
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
    ]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return volumes, mounts


def with_pull_secrets(obj: dict[str, Any], secrets: tuple[str, ...]) -> dict[str, Any]:
    """`obj` (a Job or a Deployment) with its pods pulling images with `secrets`, the
    operator's --image-pull-secret names (Secrets in the model's namespace): a cluster that
    mirrors NVIDIA's registry needs them on every pod qmo creates. Unchanged without any."""
    if not secrets:
        return obj
    pod = obj["spec"]["template"]["spec"]
    pod["imagePullSecrets"] = [{"name": name} for name in secrets]
    return obj
