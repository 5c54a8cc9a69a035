"""The Job that collects the garbage of a store the operator cannot reach itself, and the
keep list it reads.

PURE. A claim lives in one namespace and only a pod there can mount it; a model's own bucket
(other than the chart's default, which the operator collects itself) is reached with keys or
an identity of the model's namespace. So the operator's GC (qmo.controller.store_gc) writes,
per such store, a ConfigMap with the cache keys the cluster still needs and a Job in that
namespace that runs `qmo-store gc` on the store with it. The Job ends with the pass's summary
as its termination message, which the operator turns into metrics. Named by store and pass,
so one pass makes one Job however often the operator asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from qmo.api.buildcontract import STORE_MOUNT_PATH, TERMINATION_MESSAGE_PATH
from qmo.config import StoreGc
from qmo.dnsnames import bounded, dns_label
from qmo.manifests import labels
from qmo.manifests.pod import pod_security_context
from qmo.manifests.store import ca_fields, claim_volume, store_container
from qmo.planner.store import BucketStore, ClaimStore
from qmo.vocabulary import Component

GC_CONTAINER = "store-gc"
KEEP_KEY = "keys"
KEEP_MOUNT = "/keep"
STORE_LABEL = "qmo.dev/store"  # on GC Jobs: which store they collected
GC_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


def store_name(namespace: str, store: ClaimStore | BucketStore) -> str:
    """How metrics name a store: pvc:<namespace>/<claim>, or a bucket's s3:// URI."""
    if isinstance(store, BucketStore):
        return store.identity
    return f"pvc:{namespace}/{store.claim_name}"


def _name_part(store: ClaimStore | BucketStore) -> str:
    """A DNS label for the store in object names: the claim, or a digest of the bucket's URI."""
    if isinstance(store, BucketStore):
        return "b-" + hashlib.sha256(store.identity.encode()).hexdigest()[:10]
    return dns_label(store.claim_name)


def keep_config_map_name(store: ClaimStore | BucketStore) -> str:
    return bounded("qmo-store-keep", _name_part(store))


def gc_job_name(store: ClaimStore | BucketStore, pass_id: str) -> str:
    return bounded("qmo-store-gc", _name_part(store), pass_id)


def keep_config_map(
    namespace: str, store: ClaimStore | BucketStore, keys: Iterable[str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": keep_config_map_name(store),
            "namespace": namespace,
            "labels": labels.managed(Component.STORE_GC),
        },
        "data": {KEEP_KEY: "".join(f"{key}\n" for key in sorted(keys))},
    }


def _reach(
    store: ClaimStore | BucketStore,
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(args, volumes, mounts, pod fields) that reach the store: the claim mounted, or the
    bucket's CA bundle and ServiceAccount (its environment is `store_container`'s)."""
    if isinstance(store, ClaimStore):
        volume, mount = claim_volume(store, read_only=False)
        return ["--root", STORE_MOUNT_PATH], [volume], [mount], {}
    volumes, _ = ca_fields(store)
    account = {"serviceAccountName": store.service_account} if store.service_account else {}
    return [], volumes, [], account


def gc_job(
    namespace: str,
    store: ClaimStore | BucketStore,
    *,
    image: str,
    settings: StoreGc,
    pass_id: str,
) -> dict[str, Any]:
    where, volumes, mounts, account = _reach(store)
    args = [
        "gc",
        *where,
        "--keep-file",
        f"{KEEP_MOUNT}/{KEEP_KEY}",
        "--retention-hours",
        str(settings.retention_hours),
        "--termination-log",
        TERMINATION_MESSAGE_PATH,
        *(["--delete"] if settings.delete else []),
    ]
    job_labels = labels.managed(Component.STORE_GC)
    keep_list = keep_config_map_name(store)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": gc_job_name(store, pass_id),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {STORE_LABEL: store_name(namespace, store)},
        },
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    **account,
                    "containers": [
                        store_container(
                            GC_CONTAINER,
                            image,
                            args,
                            store,
                            [*mounts, {"name": "keep", "mountPath": KEEP_MOUNT, "readOnly": True}],
                            GC_RESOURCES,
                        )
                    ],
                    "volumes": [
                        *volumes,
                        {
                            "name": "keep",
                            "configMap": {"name": keep_list},
                        },
                    ],
                },
            },
        },
    }
