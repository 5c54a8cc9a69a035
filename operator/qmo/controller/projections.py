"""What the operator keeps of each watched object: the fields a reconcile reads, nothing else.

Pure. The informers store these projections instead of whole objects: memory stays small at
thousands of children (no managedFields, no last-applied annotations, no pod specs), and an
event that changes only fields qmo never reads (a heartbeat, a Deployment's
availableReplicas) compares equal to what is stored and wakes no reconcile.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

from qmo.gpu import GPU_RESOURCE
from qmo.manifests import labels
from qmo.manifests.build import BUILD_CONTAINER, RECORD_KEY
from qmo.manifests.evaluation import EVAL_CONTAINER
from qmo.manifests.store import FETCH_CONTAINER
from qmo.manifests.store_gc import GC_CONTAINER
from qmo.resources import (
    CLAIMS,
    CONFIG_MAPS,
    DEPLOYMENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    HTTP_ROUTES,
    JOBS,
    NETWORK_POLICIES,
    NODES,
    PODS,
    QUALITY_REPORTS,
    QUANTIZED_MODELS,
    SCALED_OBJECTS,
    SERVICES,
    Resource,
)
from qmo.vocabulary import FIELD_MANAGER, Component
from qmo.wire import Obj

Projection = Callable[[Obj], Obj]

# Annotations worth keeping: qmo's own (revision, applied hash, retry requests).
ANNOTATION_PREFIX = "qmo.dev/"
NODE_LABEL_PREFIX = "nvidia.com/"
# Set by the informer on a projection whose spec someone else changed since qmo applied it
# (its generation moved past the one qmo's apply returned); never on a real object.
DRIFTED = "qmo.drifted"
# On a projected QuantizedModel: when qmo last wrote its status (from managedFields).
STATUS_WRITTEN = "qmo.statusWrittenAt"
_META_KEYS = (
    DRIFTED,
    "name",
    "namespace",
    "uid",
    "generation",
    "ownerReferences",
    "creationTimestamp",
    "deletionTimestamp",
)


def _interned(mapping: dict[str, Any]) -> dict[str, str]:
    # Thousands of children repeat the same label keys and values: store each string once.
    return {sys.intern(str(k)): sys.intern(str(v)) for k, v in mapping.items()}


def metadata(obj: Obj, *, keep_labels: Callable[[str], bool] | None = None) -> Obj:
    meta = obj.get("metadata") or {}
    kept: Obj = {k: meta[k] for k in _META_KEYS if k in meta}
    found_labels = meta.get("labels") or {}
    if keep_labels is not None:
        found_labels = {k: v for k, v in found_labels.items() if keep_labels(k)}
    if found_labels:
        kept["labels"] = _interned(found_labels)
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(ANNOTATION_PREFIX)
    }
    if annotations:
        kept["annotations"] = annotations
    return kept


def resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _base(resource: Resource, obj: Obj, **meta_options: Any) -> Obj:
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata(obj, **meta_options),
    }


def _conditions(obj: Obj) -> list[Obj]:
    return [
        {k: c[k] for k in ("type", "status", "reason", "message") if k in c}
        for c in (obj.get("status") or {}).get("conditions") or []
    ]


def _with_spec_and_status(resource: Resource, obj: Obj) -> Obj:
    return {
        **_base(resource, obj),
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }


def project_model(obj: Obj) -> Obj:
    projected = _with_spec_and_status(QUANTIZED_MODELS, obj)
    written = status_written_at(obj)
    if written:
        projected["metadata"][STATUS_WRITTEN] = written
    return projected


def status_written_at(obj: Obj) -> str | None:
    """When qmo's field manager last wrote the object's status, as the API server recorded it
    in managedFields (so a restarted operator knows it too)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("subresource") == "status":
            return str(entry.get("time") or "") or None
    return None


def project_report(obj: Obj) -> Obj:
    return _with_spec_and_status(QUALITY_REPORTS, obj)


def project_job(obj: Obj) -> Obj:
    """Jobs: their conditions, whether pods run, and (for qmo_build_duration_seconds) when
    they started and finished."""
    status = obj.get("status") or {}
    finished = {
        c.get("type"): c.get("lastTransitionTime")
        for c in status.get("conditions") or []
        if c.get("status") == "True" and c.get("lastTransitionTime")
    }
    conditions = [
        {**c, "lastTransitionTime": finished[c["type"]]} if c.get("type") in finished else c
        for c in _conditions(obj)
    ]
    kept: Obj = {"conditions": conditions}
    if status.get("active"):
        kept["active"] = status["active"]
    if status.get("startTime"):
        kept["startTime"] = status["startTime"]
    gpus = _gpu_limits(obj)
    return {**_base(JOBS, obj), **({"spec": {"template": gpus}} if gpus else {}), "status": kept}


def project_pod(obj: Obj) -> Obj:
    """Build and eval pods: their phase, why they wait, and what the builder or the evaluator
    said when it ended (its termination message and exit code). Serving pods: a fetch step
    that failed and has not fetched since, with what it said (`gather.fetch_failure`)."""
    status = obj.get("status") or {}
    scheduled = [c for c in _conditions(obj) if c.get("type") == "PodScheduled"]
    containers = []
    for container in status.get("containerStatuses") or []:
        name = container.get("name")
        if name not in (BUILD_CONTAINER, EVAL_CONTAINER, GC_CONTAINER):
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        kept = {k: terminated[k] for k in ("message", "finishedAt", "exitCode") if k in terminated}
        containers.append({"name": name, "state": {"terminated": kept} if terminated else {}})
    fetches = []
    for container in status.get("initContainerStatuses") or []:
        if container.get("name") == EVAL_CONTAINER:  # the evaluator on a bucket store
            terminated = (container.get("state") or {}).get("terminated") or {}
            kept = {
                k: terminated[k] for k in ("message", "finishedAt", "exitCode") if k in terminated
            }
            fetches.append(
                {"name": EVAL_CONTAINER, "state": {"terminated": kept} if terminated else {}}
            )
            continue
        if container.get("name") != FETCH_CONTAINER:
            continue
        last = (container.get("lastState") or {}).get("terminated") or {}
        if not last or fetched_since(container):
            continue
        kept_last = {k: last[k] for k in ("message", "exitCode") if k in last}
        fetches.append({"name": FETCH_CONTAINER, "lastState": {"terminated": kept_last}})
    return {
        **_base(PODS, obj),
        "status": {
            "phase": status.get("phase"),
            "conditions": scheduled,
            "containerStatuses": containers,
            # A serving pod's fetch step (what it said when it last failed), or the
            # evaluator where it runs as an init container.
            **({"initContainerStatuses": fetches} if fetches else {}),
        },
    }


def fetched_since(status: Obj) -> bool:
    """Whether a serving pod's fetch step holds its artifact now, whatever failed before: a
    sidecar started (its startup probe saw the manifest) or ready, or an init container that
    completed. Only a step that is not is kept, with what it said when it last failed."""
    if status.get("ready"):
        return True
    state = status.get("state") or {}
    if state.get("running") is not None:
        return bool(status.get("started"))
    return (state.get("terminated") or {}).get("exitCode") == 0


def _gpu_limits(obj: Obj) -> Obj:
    """Of a pod template, only each container's nvidia.com/gpu limit (what the GPUs a class
    has left are counted from: view.gpus_held)."""
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = []
    for container in template.get("containers") or []:
        gpus = ((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
        if gpus is not None:
            containers.append({"resources": {"limits": {GPU_RESOURCE: gpus}}})
    return {"spec": {"containers": containers}} if containers else {}


def spec_digest(obj: Obj) -> str:
    """A Deployment's spec without its replica count: what a scaler's change leaves as it was.

    The informer compares it only when a generation moved past qmo's apply, to tell a scale
    (the HPA's, through the scale subresource) from an edit of the pod template."""
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if k != "replicas"}
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def project_deployment(obj: Obj) -> Obj:
    status = obj.get("status") or {}
    gpus = _gpu_limits(obj)
    return {
        **_base(DEPLOYMENTS, obj),
        "spec": {
            "replicas": (obj.get("spec") or {}).get("replicas", 1),
            **({"template": gpus} if gpus else {}),
        },
        "status": {
            k: status[k]
            for k in ("observedGeneration", "readyReplicas", "updatedReplicas")
            if k in status
        },
    }


def project_config_map(obj: Obj) -> Obj:
    """Artifact records keep their one small JSON document; other ConfigMaps only metadata."""
    projected = _base(CONFIG_MAPS, obj)
    component = projected["metadata"].get("labels", {}).get(labels.COMPONENT)
    record = (obj.get("data") or {}).get(RECORD_KEY)
    if component == Component.ARTIFACT and record is not None:
        projected["data"] = {RECORD_KEY: record}
    return projected


def record_cache_key(record: Obj) -> str | None:
    """The full cache key an artifact record stands for (its label holds a short one)."""
    try:
        key = json.loads((record.get("data") or {})[RECORD_KEY]).get("cacheKey")
    except (KeyError, ValueError, AttributeError):
        return None
    return str(key) if key else None


def project_node(obj: Obj) -> Obj:
    """What GPU planning reads of a Node: GPU labels, schedulability, readiness, GPUs."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = [
        {"type": "Ready", "status": c.get("status")}
        for c in status.get("conditions") or []
        if c.get("type") == "Ready"
    ]
    allocatable = status.get("allocatable") or {}
    projected = _base(NODES, obj, keep_labels=lambda key: key.startswith(NODE_LABEL_PREFIX))
    projected["spec"] = {"unschedulable": True} if spec.get("unschedulable") else {}
    projected["status"] = {
        "conditions": ready,
        "allocatable": {GPU_RESOURCE: allocatable[GPU_RESOURCE]}
        if GPU_RESOURCE in allocatable
        else {},
    }
    return projected


def project_route(obj: Obj) -> Obj:
    """HTTPRoutes: what each parent Gateway said of the route, and what it claims (for the
    Routed condition)."""
    parents = []
    for parent in (obj.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        parents.append(
            {
                "parentRef": {k: ref[k] for k in ("name", "namespace", "sectionName") if k in ref},
                "conditions": [
                    {k: c[k] for k in ("type", "status", "reason", "message") if k in c}
                    for c in parent.get("conditions") or []
                ],
            }
        )
    spec = obj.get("spec") or {}
    # What another model's route is compared with (planner.routing.names_taken): the
    # Gateways, hostnames and header matches it claims.
    claims = {
        "parentRefs": [
            {k: ref[k] for k in ("name", "namespace", "sectionName") if k in ref}
            for ref in spec.get("parentRefs") or []
        ],
        "hostnames": list(spec.get("hostnames") or []),
        "rules": [
            {"matches": [{"headers": m.get("headers") or []} for m in rule.get("matches") or []]}
            for rule in spec.get("rules") or []
        ],
    }
    return {**_base(HTTP_ROUTES, obj), "spec": claims, "status": {"parents": parents}}


def project_metadata_only(resource: Resource) -> Projection:
    return lambda obj: _base(resource, obj)


PROJECTIONS: dict[str, Projection] = {
    QUANTIZED_MODELS.kind: project_model,
    QUALITY_REPORTS.kind: project_report,
    JOBS.kind: project_job,
    PODS.kind: project_pod,
    DEPLOYMENTS.kind: project_deployment,
    CONFIG_MAPS.kind: project_config_map,
    NODES.kind: project_node,
    SERVICES.kind: project_metadata_only(SERVICES),
    CLAIMS.kind: project_metadata_only(CLAIMS),
    HTTP_ROUTES.kind: project_route,
    HORIZONTAL_POD_AUTOSCALERS.kind: project_metadata_only(HORIZONTAL_POD_AUTOSCALERS),
    SCALED_OBJECTS.kind: project_metadata_only(SCALED_OBJECTS),
    NETWORK_POLICIES.kind: project_metadata_only(NETWORK_POLICIES),
}


def project(obj: Obj) -> Obj:
    """The stored form of any watched object (its kind picks the projection)."""
    return PROJECTIONS[obj["kind"]](obj)
