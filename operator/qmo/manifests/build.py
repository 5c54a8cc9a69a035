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
    container_security_context,
    placement,
    pod_security_context,
    resources,
    scratch_volumes,
    store_volume,
)
from qmo.planner.cachekey import short_key
from qmo.planner.sizing import SOURCE_MOUNT_PATH, TOKEN_ENV, source_claim
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


def _source_volume(spec: QuantizedModelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A pvc:// source is mounted read-only at /model; other sources are fetched."""
    claim = source_claim(spec)
    if claim is None:
        return [], []
    return (
        [{"name": "model-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
        [{"name": "model-source", "mountPath": SOURCE_MOUNT_PATH, "readOnly": True}],
    )


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


def build_job(
    spec: QuantizedModelSpec, variant: PlannedVariant, *, namespace: str, image: str
) -> dict[str, Any]:
    """The Job that produces a variant's artifact, pinned to the variant's GPU class.

    `image` is the builder image as `planner.images` resolved it (and the cache key hashed).
    """
    assert variant.build is not None
    assert variant.build_gpus is not None
    build = spec.engine.build
    store, store_mount = store_volume(spec, read_only=False)
    source_volumes, source_mounts = _source_volume(spec)
    scratch, scratch_mounts = scratch_volumes("16Gi")
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
                    **placement(spec, variant.target.build_class or variant.gpu_class),
                    "containers": [
                        {
                            "name": BUILD_CONTAINER,
                            "image": image,
                            "command": ["qmo-builder", "build"],
                            "env": _env(spec, variant),
                            "resources": resources(
                                build.resources.requests,
                                build.resources.limits,
                                variant.build_gpus,
                            ),
                            "securityContext": container_security_context(),
                            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [store_mount, *source_mounts, *scratch_mounts],
                        }
                    ],
                    "volumes": [store, *source_volumes, *scratch],
                },
            },
        },
    }


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
