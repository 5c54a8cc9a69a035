"""The Job that collects the garbage of a claim store, and the keep list it reads.

PURE. A claim lives in one namespace and only a pod there can mount it, so the operator's GC
(qmo.controller.store_gc) writes, per claim in use, a ConfigMap with the cache keys the cluster
still needs and a Job that runs `qmo-store gc` on the claim with it. The Job ends with the
pass's summary as its termination message, which the operator turns into metrics. Named by
claim and pass, so one pass makes one Job however often the operator asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qmo.api.buildcontract import STORE_MOUNT_PATH, TERMINATION_MESSAGE_PATH
from qmo.config import StoreGc
from qmo.dnsnames import bounded, dns_label
from qmo.manifests import labels
from qmo.manifests.pod import container_security_context, pod_security_context
from qmo.manifests.store import claim_volume
from qmo.planner.store import ClaimStore
from qmo.vocabulary import Component

GC_CONTAINER = "store-gc"
KEEP_KEY = "keys"
KEEP_MOUNT = "/keep"
STORE_LABEL = "qmo.dev/store"  # on GC Jobs: which claim they collected


def store_name(namespace: str, claim: str) -> str:
    """How metrics name a claim store (a bucket is named by its s3:// URI)."""
    return f"pvc:{namespace}/{claim}"


def keep_config_map_name(claim: str) -> str:
    return bounded("qmo-store-keep", dns_label(claim))


def gc_job_name(claim: str, pass_id: str) -> str:
    return bounded("qmo-store-gc", dns_label(claim), pass_id)


def keep_config_map(namespace: str, claim: str, keys: Iterable[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": keep_config_map_name(claim),
            "namespace": namespace,
            "labels": labels.managed(Component.STORE_GC),
        },
        "data": {KEEP_KEY: "".join(f"{key}\n" for key in sorted(keys))},
    }


def gc_job(
    namespace: str, store: ClaimStore, *, image: str, settings: StoreGc, pass_id: str
) -> dict[str, Any]:
    volume, mount = claim_volume(store, read_only=False)
    args = [
        "gc",
        "--root",
        STORE_MOUNT_PATH,
        "--keep-file",
        f"{KEEP_MOUNT}/{KEEP_KEY}",
        "--retention-hours",
        str(settings.retention_hours),
        "--termination-log",
        TERMINATION_MESSAGE_PATH,
        *(["--delete"] if settings.delete else []),
    ]
    job_labels = labels.managed(Component.STORE_GC)
    keep_list = keep_config_map_name(store.claim_name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": gc_job_name(store.claim_name, pass_id),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {STORE_LABEL: store_name(namespace, store.claim_name)},
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
                    "containers": [
                        {
                            "name": GC_CONTAINER,
                            "image": image,
                            "command": ["qmo-store"],
                            "args": args,
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": container_security_context(),
                            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [
                                mount,
                                {"name": "keep", "mountPath": KEEP_MOUNT, "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        volume,
                        {
                            "name": "keep",
                            "configMap": {"name": keep_list},
                        },
                    ],
                },
            },
        },
    }
