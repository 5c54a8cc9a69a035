"""The build Job of a variant and the record of a finished artifact.

Both are named by cache key and shared by every QuantizedModel that needs the same artifact;
their owner references are added per model (see qmo.kube.add_owner), so the last model to go
takes them with it and no model deletes what another still uses.
"""

from __future__ import annotations

import json
from typing import Any

from qmo.api.buildcontract import (
    BUILD_SPEC_ENV,
    TERMINATION_MESSAGE_PATH,
    BuildResult,
    ExitCode,
)
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.manifests import labels, names
from qmo.manifests.pod import (
    STORE_VOLUME,
    container_security_context,
    placement,
    pod_security_context,
    resources,
    scratch_volumes,
)
from qmo.manifests.store import (
    StoreAccess,
    StoreSetup,
    claim_volume,
    scratch_store_access,
    source_fields,
)
from qmo.planner.cachekey import short_key
from qmo.planner.sizing import SOURCE_MOUNT_PATH, TOKEN_ENV, source_claim
from qmo.planner.store import BucketStore, claim_store
from qmo.planner.types import PlannedVariant
from qmo.vocabulary import Component

BUILD_CONTAINER = "builder"
# Finished Jobs go after a day; the artifact record keeps the result.
BUILD_TTL_SECONDS = 86400
RECORD_KEY = "artifact.json"


def build_labels(variant: PlannedVariant) -> dict[str, str]:
    assert variant.cache_key is not None
    return labels.managed(
        Component.BUILD,
        {
            labels.VARIANT: variant.name,
            labels.PRECISION: variant.precision.value,
            # Where its GPUs are held: the class it is built on (placement), for the bounds.
            labels.GPU_CLASS: (variant.target.build_class or variant.gpu_class).name,
            labels.CACHE_KEY: short_key(variant.cache_key),
        },
    )


def _source_access(
    spec: QuantizedModelSpec, setup: StoreSetup
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, mounts): a pvc:// source is mounted read-only at /model; an s3:// one
    is fetched from the server `setup.source` names; a hub is reached with the token."""
    env, volumes, mounts = source_fields(setup.source) if setup.source else ([], [], [])
    claim = source_claim(spec)
    if claim is not None:
        volumes.append(
            {
                "name": "model-source",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            }
        )
        mounts.append({"name": "model-source", "mountPath": SOURCE_MOUNT_PATH, "readOnly": True})
    return env, volumes, mounts


def _env(spec: QuantizedModelSpec, variant: PlannedVariant) -> list[dict[str, Any]]:
    assert variant.build is not None
    env: list[dict[str, Any]] = [
        {"name": BUILD_SPEC_ENV, "value": json.dumps(variant.build.to_wire(), sort_keys=True)},
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": "/store/.cache/huggingface"},
    ]
    secret = spec.model.credentials_secret_ref
    if secret is not None:
        # By reference: the operator never reads the Secret, and its value never lands here.
        env.append(
            {
                "name": TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    return env


def _store_access(
    spec: QuantizedModelSpec, variant: PlannedVariant, setup: StoreSetup
) -> StoreAccess:
    """The claim, or for a bucket its environment and a scratch /store holding the calibration
    data; a copy from the claim (qmo.planner.migration) mounts the claim read-only instead."""
    assert variant.build is not None
    if isinstance(setup.store, BucketStore) and variant.build.copy_from is not None:
        volume, mount = claim_volume(claim_store(spec), read_only=True)
        access = scratch_store_access(setup.store, [], setup.image, read_only=False)
        keep = [v for v in access.volumes if v["name"] != STORE_VOLUME]
        rest = [m for m in access.mounts if m["name"] != STORE_VOLUME]
        return StoreAccess([volume, *keep], [mount, *rest], access.env, [], access.service_account)
    dataset = spec.quantization.calibration.dataset
    paths = [dataset.removeprefix("store://").lstrip("/")] if dataset.startswith("store://") else []
    return scratch_store_access(setup.store, paths, setup.image, read_only=False)


def build_job(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    *,
    namespace: str,
    image: str,
    store: StoreSetup | None = None,
) -> dict[str, Any]:
    """The Job that produces a variant's artifact, pinned to the variant's GPU class.

    `image` is the builder image as `planner.images` resolved it (and the cache key hashed);
    `store` where the artifact goes (unset: the model's claim). A copy from the claim to a
    bucket needs no GPU and runs anywhere.
    """
    assert variant.build is not None
    assert variant.build_gpus is not None
    build = spec.engine.build
    setup = store or StoreSetup(claim_store(spec))
    access = _store_access(spec, variant, setup)
    copying = variant.build.copy_from is not None
    source_env, source_volumes, source_mounts = _source_access(spec, setup)
    own_disk = build.scratch
    scratch, scratch_mounts = scratch_volumes(
        "16Gi", (own_disk.size, own_disk.storage_class_name) if own_disk else None
    )
    pod_labels = build_labels(variant)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.build_job(variant.name, variant.build.cache_key),
            "namespace": namespace,
            "labels": pod_labels,
            "annotations": {labels.REVISION_ANNOTATION: variant.build.cache_key},
        },
        "spec": {
            "backoffLimit": build.backoff_limit,
            "activeDeadlineSeconds": build.active_deadline_seconds,
            "ttlSecondsAfterFinished": BUILD_TTL_SECONDS,
            # A wrong spec or a wrong GPU fails the same way every time: do not retry those.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": BUILD_CONTAINER,
                            "operator": "In",
                            "values": [ExitCode.INVALID_SPEC, ExitCode.GPU_MISMATCH],
                        },
                    }
                ]
            },
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    **(
                        {}
                        if copying
                        else placement(spec, variant.target.build_class or variant.gpu_class)
                    ),
                    **access.pod_fields(),
                    "containers": [
                        {
                            "name": BUILD_CONTAINER,
                            "image": image,
                            "command": ["qmo-builder", "build"],
                            "env": [*_env(spec, variant), *access.env, *source_env],
                            "resources": _build_resources(spec, variant.build_gpus, copying),
                            "securityContext": container_security_context(),
                            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [*access.mounts, *source_mounts, *scratch_mounts],
                        }
                    ],
                    "volumes": [*access.volumes, *source_volumes, *scratch],
                },
            },
        },
    }


def _build_resources(spec: QuantizedModelSpec, gpus: int, copying: bool) -> dict[str, Any]:
    build = spec.engine.build
    if copying:  # checksums and an upload: a CPU, and memory for the parts in flight
        return {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    return resources(build.resources.requests, build.resources.limits, gpus)


def artifact_record(
    namespace: str, variant_name: str, result: BuildResult, precision: str, gpu_class: str
) -> dict[str, Any]:
    """A ConfigMap that remembers a finished artifact after its Job is gone."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.artifact_record(result.cache_key),
            "namespace": namespace,
            "labels": labels.managed(
                Component.ARTIFACT,
                {
                    labels.CACHE_KEY: short_key(result.cache_key),
                    labels.PRECISION: precision,
                    labels.GPU_CLASS: gpu_class,
                    labels.VARIANT: variant_name,
                },
            ),
        },
        "data": {RECORD_KEY: json.dumps(result.to_wire(), sort_keys=True)},
    }
