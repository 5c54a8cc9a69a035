"""The floor under an operator's time: its final objects created with no operator running.

After an operator's phase has converged, `benchmarks/scale.py --floors` takes what it left in
its namespace (the custom resources and their children), strips what the API server and the
controllers filled in, and creates the same objects in a fresh namespace with plain
`kubectl create`, no operator running, until every Job has completed and every Deployment is
available. The time and control-plane CPU that takes is what that set of objects costs the
cluster however clever the operator is; the operator's own cost is what its phase took on top.
What the benchmark gave the operator as input is not replayed; claims get PersistentVolumes bound
in advance, as in the operator's phase. Pure: snapshot in, objects to create out.
"""

from __future__ import annotations

import copy
import zlib
from typing import Any

Obj = dict[str, Any]

# Kinds each operator leaves per custom resource, in the order they are created again.
QMO_KINDS = ("quantizedmodels.qmo.dev", "jobs", "configmaps", "deployments", "services")
NIM_KINDS = (
    "nimservices.apps.nvidia.com", "serviceaccounts", "roles", "rolebindings", "deployments",
    "services", "configmaps",
)  # fmt: skip
# The NIM Operator's full pipeline: a NIMCache (its PVC and caching Job) and a NIMService on it.
NIM_PIPELINE_KINDS = (
    "nimcaches.apps.nvidia.com", "nimservices.apps.nvidia.com", "serviceaccounts", "roles",
    "rolebindings", "persistentvolumeclaims", "jobs", "deployments", "services", "configmaps",
)  # fmt: skip
# What the benchmark gave an operator as input rather than what the operator made; not replayed
# and not counted as the operator's objects.
PROVIDED = "benchmarks.qmo.dev/provided"
# Kinds an operator may make once per namespace, with no owner, for all its resources to use:
# created before the rest, so no Job waits for the ServiceAccount its pods run as.
_NAMESPACE_WIDE = ("ServiceAccount", "Role", "RoleBinding")
# Objects every namespace has, not made by an operator.
_BUILT_IN = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
# Labels and annotations the API server or a controller writes, never the operator.
_SERVER_LABELS = (
    "controller-uid", "job-name", "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
)  # fmt: skip
_SERVER_ANNOTATIONS = (
    "deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration",
    "pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)  # fmt: skip


def replayable(obj: Obj, namespace: str) -> Obj | None:
    """`obj` as its operator wrote it, to be created in `namespace`; None for what no operator
    made. Owner references go: their owners' UIDs do not exist in the new namespace, and the
    garbage collector would delete the orphans while they are measured."""
    if built_in(obj) or provided(obj):
        return None
    kind, meta = obj["kind"], obj["metadata"]
    out: Obj = {
        "apiVersion": obj["apiVersion"],
        "kind": kind,
        "metadata": {
            "name": meta["name"],
            "namespace": namespace,
            **({"labels": meta["labels"]} if meta.get("labels") else {}),
            **(
                {"annotations": a}
                if (a := _without(meta.get("annotations"), _SERVER_ANNOTATIONS))
                else {}
            ),
        },
    }
    for key, value in obj.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            out[key] = copy.deepcopy(value)
    spec = out.get("spec")
    if kind == "Service" and spec is not None:
        for allocated in ("clusterIP", "clusterIPs"):
            spec.pop(allocated, None)
    if kind == "PersistentVolumeClaim" and spec is not None:
        spec.pop("volumeName", None)  # the PersistentVolume controller binds it again
    if kind == "Job" and spec is not None:
        spec.pop("selector", None)  # the Job controller makes it from its own UID
        template_meta = spec.get("template", {}).get("metadata", {})
        if "labels" in template_meta:
            template_meta["labels"] = _without(template_meta["labels"], _SERVER_LABELS)
    return out


def built_in(obj: Obj) -> bool:
    """One of the objects every namespace has (its CA bundle, its default ServiceAccount)."""
    return (obj["kind"], obj["metadata"]["name"]) in _BUILT_IN


def provided(obj: Obj) -> bool:
    """Made by the benchmark as an operator's input (see PROVIDED), not by the operator."""
    return (obj["metadata"].get("labels") or {}).get(PROVIDED) == "true"


def namespace_wide(obj: Obj) -> bool:
    """An identity or role an operator made once for the namespace: no owner, shared by all."""
    return obj["kind"] in _NAMESPACE_WIDE and not obj["metadata"].get("ownerReferences")


def static_volumes(claims: list[Obj], label: str) -> list[Obj]:
    """A PersistentVolume bound in advance to each claim, with its size, access modes and
    class, standing in for a provisioner: kube-controller-manager binds each claim to its
    volume as soon as the claim exists. `label` marks them for deletion afterwards."""
    volumes = []
    for claim in claims:
        meta, spec = claim["metadata"], claim["spec"]
        volumes.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": f"{meta['namespace']}-{meta['name']}",
                    "labels": {PROVIDED: "true", "benchmarks.qmo.dev/for": label},
                },
                "spec": {
                    "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                    "accessModes": list(spec["accessModes"]),
                    "storageClassName": spec.get("storageClassName") or "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": f"/tmp/qmo-scale-volumes/{meta['name']}"},
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"]},
                },
            }
        )
    return volumes


def _without(mapping: dict[str, str] | None, keys: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in (mapping or {}).items() if k not in keys}


def replay(items: list[Obj], namespace: str, shard_count: int) -> list[list[Obj]]:
    """Every object worth creating again, but those of `replay_first`, in `shard_count` lists
    to create side by side. A custom resource and its children share a list (kept in the
    snapshot's order of kinds), so a Deployment never comes before the ServiceAccount it runs
    as."""
    shards: list[list[Obj]] = [[] for _ in range(shard_count)]
    for item in items:
        out = replayable(item, namespace)
        if out is not None and not namespace_wide(item):
            shards[zlib.crc32(_owner(item).encode()) % shard_count].append(out)
    return [shard for shard in shards if shard]


def replay_first(items: list[Obj], namespace: str) -> list[Obj]:
    """The namespace-wide objects (see `namespace_wide`), to create before `replay`'s lists."""
    first = []
    for item in items:
        out = replayable(item, namespace)
        if out is not None and namespace_wide(item):
            first.append(out)
    return first


def _owner(obj: Obj) -> str:
    """The custom resource an object belongs to: its first owner's name, or its own."""
    owners = obj["metadata"].get("ownerReferences") or []
    return str(owners[0]["name"]) if owners else str(obj["metadata"]["name"])
