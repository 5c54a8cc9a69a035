"""What a reconcile may read of the cluster, as an interface: `ClusterReader`.

The operator's watch-fed `ClusterCache` implements it; so does `StaticReader`, built from
plain object lists, which unit tests and `qmo plan --cluster` (one list per kind, then
nothing) use. Pure: lookups only, no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any, Protocol

from qmo.controller.projections import project, record_cache_key
from qmo.gpu import GPU_RESOURCE, GpuInventory, inventory_from_nodes
from qmo.manifests import labels
from qmo.resources import (
    CLAIMS,
    CONFIG_MAPS,
    DEPLOYMENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    HTTP_ROUTES,
    JOBS,
    NODES,
    PODS,
    QUALITY_REPORTS,
    QUANTIZED_MODELS,
    SCALED_OBJECTS,
    SERVICES,
)
from qmo.vocabulary import Component
from qmo.wire import Obj

JOB_NAME_LABEL = "job-name"  # set by the Job controller on every pod of a Job


def namespace_of(obj: Obj) -> str:
    return str(obj["metadata"].get("namespace") or "")


def _labels(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("labels") or {}
    return found


# --- index functions, shared by the cache's informers and StaticReader --------------------


def by_model_label(obj: Obj) -> list[Hashable]:
    model = _labels(obj).get(labels.MODEL)
    return [(namespace_of(obj), model)] if model else []


def waits_for_room(pod: Obj | None) -> str | None:
    """The scheduler's message while a pod is Pending and Unschedulable, else None."""
    if pod is None or (pod.get("status") or {}).get("phase") != "Pending":
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return str(condition.get("message") or "unschedulable")
    return None


def by_gpu_class(obj: Obj) -> list[Hashable]:
    """Serving Deployments and build Jobs by the GPU class they hold GPUs of (every
    namespace: GPUs are the cluster's)."""
    gpu_class = _labels(obj).get(labels.GPU_CLASS)
    return [gpu_class] if gpu_class else []


def gpus_per_pod(obj: Obj) -> int:
    """GPUs one pod of a Deployment or Job asks for (its containers' nvidia.com/gpu limits)."""
    containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    total = 0
    for container in containers:
        value = ((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE, 0)
        try:
            total += int(value)
        except (TypeError, ValueError):
            continue
    return total


def gpus_held(deployments: Iterable[Obj], jobs: Iterable[Obj]) -> int:
    """GPUs that Deployments (all their replicas) and unfinished Jobs hold."""
    held = sum(
        gpus_per_pod(d) * int((d.get("spec") or {}).get("replicas", 1) or 0) for d in deployments
    )
    for job in jobs:
        conditions = (job.get("status") or {}).get("conditions") or []
        if not any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in conditions
        ):
            held += gpus_per_pod(job)
    return held


def by_serving_deployment(obj: Obj) -> list[Hashable]:
    """Serving pods by (namespace, model, variant, track): the Deployment they belong to."""
    found = _labels(obj)
    if found.get(labels.COMPONENT) != Component.SERVER or labels.VARIANT not in found:
        return []
    track = found.get(labels.TRACK, labels.STABLE)
    return [(namespace_of(obj), found.get(labels.MODEL), found[labels.VARIANT], track)]


def by_build_key(obj: Obj) -> list[Hashable]:
    """Build Jobs by the full cache key they build."""
    if _labels(obj).get(labels.COMPONENT) != Component.BUILD:
        return []
    key = (obj["metadata"].get("annotations") or {}).get(labels.REVISION_ANNOTATION)
    return [(namespace_of(obj), key)] if key else []


def by_record_key(obj: Obj) -> list[Hashable]:
    """Artifact records by the full cache key in their record."""
    if _labels(obj).get(labels.COMPONENT) != Component.ARTIFACT:
        return []
    key = record_cache_key(obj)
    return [(namespace_of(obj), key)] if key else []


def by_job_name(obj: Obj) -> list[Hashable]:
    job = _labels(obj).get(JOB_NAME_LABEL)
    return [(namespace_of(obj), job)] if job else []


def by_report_model(obj: Obj) -> list[Hashable]:
    model = ((obj.get("spec") or {}).get("modelRef") or {}).get("name")
    return [(namespace_of(obj), model)] if model else []


def by_namespace(obj: Obj) -> list[Hashable]:
    return [namespace_of(obj)]


def gateways_of(route: Obj) -> list[tuple[str, str]]:
    """The Gateways an HTTPRoute attaches to: (namespace, name); the route's own namespace
    where a parentRef names none."""
    refs = (route.get("spec") or {}).get("parentRefs") or []
    return sorted({(ref.get("namespace") or namespace_of(route), ref["name"]) for ref in refs})


def by_gateway(obj: Obj) -> list[Hashable]:
    return list(gateways_of(obj))


class ClusterReader(Protocol):
    """Lookups a reconcile makes; every one answers from memory."""

    def model(self, namespace: str, name: str) -> Obj | None: ...

    def inventory(self) -> GpuInventory: ...

    def build_job(self, namespace: str, cache_key: str) -> Obj | None: ...

    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:
        """The pods of a build or eval Job (the only pods watched)."""
        ...

    def artifact_record(self, namespace: str, cache_key: str) -> Obj | None: ...

    def children(self, kind: str, namespace: str, model: str) -> list[Obj]:
        """Objects of `kind` labelled as belonging to `model` (Deployments, Services,...)."""
        ...

    def reports(self, namespace: str, model: str) -> list[Obj]: ...

    def claims(self, namespace: str) -> frozenset[str]: ...

    def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def serving_pods(self, namespace: str, model: str, variant: str, track: str) -> list[Obj]:
        """The pods of a variant's Deployment on one track."""
        ...

    def gpus_held(self, gpu_class: str) -> int:
        """GPUs of `gpu_class` that qmo's serving Deployments and unfinished build Jobs hold,
        in every watched namespace."""
        ...

    def routes_on(self, gateway: tuple[str, str]) -> list[Obj]:
        """qmo's HTTPRoutes attached to the Gateway (namespace, name), in every watched
        namespace."""
        ...


class StaticReader:
    """A ClusterReader over fixed object lists (projected on the way in, like the cache)."""

    def __init__(self, objects: Iterable[Obj]) -> None:
        self._by_name: dict[tuple[str, str, str], Obj] = {}
        self._index: dict[tuple[str, Hashable], list[Obj]] = defaultdict(list)
        nodes = []
        for raw in objects:
            obj = project(raw)
            kind = obj["kind"]
            self._by_name[(kind, namespace_of(obj), obj["metadata"]["name"])] = obj
            for index, function in _INDEXES.get(kind, {}).items():
                for key in function(obj):
                    self._index[(f"{kind}/{index}", key)].append(obj)
            if kind == NODES.kind:
                nodes.append(obj)
        self._inventory = inventory_from_nodes(nodes)

    def _first(self, index: str, key: Hashable) -> Obj | None:
        found = self._index.get((index, key))
        return found[0] if found else None

    def model(self, namespace: str, name: str) -> Obj | None:
        return self._by_name.get((QUANTIZED_MODELS.kind, namespace, name))

    def inventory(self) -> GpuInventory:
        return self._inventory

    def build_job(self, namespace: str, cache_key: str) -> Obj | None:
        return self._first(f"{JOBS.kind}/build", (namespace, cache_key))

    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:
        return list(self._index.get((f"{PODS.kind}/job", (namespace, job_name)), []))

    def artifact_record(self, namespace: str, cache_key: str) -> Obj | None:
        return self._first(f"{CONFIG_MAPS.kind}/record", (namespace, cache_key))

    def children(self, kind: str, namespace: str, model: str) -> list[Obj]:
        return list(self._index.get((f"{kind}/model", (namespace, model)), []))

    def reports(self, namespace: str, model: str) -> list[Obj]:
        return list(self._index.get((f"{QUALITY_REPORTS.kind}/model", (namespace, model)), []))

    def claims(self, namespace: str) -> frozenset[str]:
        found = self._index.get((f"{CLAIMS.kind}/namespace", namespace), [])
        return frozenset(c["metadata"]["name"] for c in found)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._by_name.get((kind, namespace, name))

    def routes_on(self, gateway: tuple[str, str]) -> list[Obj]:
        return list(self._index.get((f"{HTTP_ROUTES.kind}/gateway", gateway), []))

    def serving_pods(self, namespace: str, model: str, variant: str, track: str) -> list[Obj]:
        return list(
            self._index.get((f"{PODS.kind}/serving", (namespace, model, variant, track)), [])
        )

    def gpus_held(self, gpu_class: str) -> int:
        return gpus_held(
            self._index.get((f"{DEPLOYMENTS.kind}/gpu-class", gpu_class), []),
            self._index.get((f"{JOBS.kind}/gpu-class", gpu_class), []),
        )


# Which indexes each kind keeps (the cache configures its informers from the same table).
_INDEXES: dict[str, dict[str, Any]] = {
    JOBS.kind: {"build": by_build_key, "model": by_model_label, "gpu-class": by_gpu_class},
    PODS.kind: {"job": by_job_name, "serving": by_serving_deployment},
    CONFIG_MAPS.kind: {"record": by_record_key, "model": by_model_label},
    DEPLOYMENTS.kind: {"model": by_model_label, "gpu-class": by_gpu_class},
    HORIZONTAL_POD_AUTOSCALERS.kind: {"model": by_model_label},
    SCALED_OBJECTS.kind: {"model": by_model_label},
    SERVICES.kind: {"model": by_model_label},
    HTTP_ROUTES.kind: {"model": by_model_label, "gateway": by_gateway},
    QUALITY_REPORTS.kind: {"model": by_report_model},
    CLAIMS.kind: {"namespace": by_namespace},
    QUANTIZED_MODELS.kind: {"namespace": by_namespace},
}


def indexes_of(kind: str) -> dict[str, Any]:
    return dict(_INDEXES.get(kind, {}))
