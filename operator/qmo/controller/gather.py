"""Gather: read once what a reconcile needs and turn it into the planner's `Observed`.

The translation from API objects to observations (`observe_*`) is pure and unit-tested; only
`gather` does I/O, through `Kube`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from qmo.api.base import API_VERSION
from qmo.api.buildcontract import ARTIFACTS_DIR, BuildResult
from qmo.api.buildcontract import BuildState as ResultState
from qmo.api.quantizedmodel import QualitySpec
from qmo.gpu import inventory_from_nodes
from qmo.kube import Kube
from qmo.manifests import labels
from qmo.manifests.build import BUILD_CONTAINER, RECORD_KEY
from qmo.planner.plan import BuildObservation, BuildState, DeploymentObservation, Observed
from qmo.quality.reports import JudgedReport, decisive_reports, judge_all, passing_revisions

Obj = dict[str, Any]


@dataclass(frozen=True)
class Gathered:
    observed: Observed
    jobs: dict[str, Obj]  # by full cache key
    records: dict[str, Obj]  # by full cache key
    deployments: list[Obj]
    services: list[Obj]
    reports: list[JudgedReport]
    eval_jobs: list[Obj]


def termination_result(pods: list[Obj]) -> BuildResult | None:
    """The builder's BuildResult from the newest terminated build container, if any."""
    newest: tuple[str, BuildResult] | None = None
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != BUILD_CONTAINER:
                continue
            terminated = (status.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            if not message:
                continue
            try:
                result = BuildResult.model_validate(json.loads(message))
            except (ValueError, ValidationError):
                continue
            finished = str(terminated.get("finishedAt") or "")
            if newest is None or finished > newest[0]:
                newest = (finished, result)
    return newest[1] if newest else None


def _job_condition(job: Obj, type_: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def observe_job(job: Obj, pods: list[Obj]) -> BuildObservation:
    """Where a build Job stands, with the builder's own words when it left any."""
    key = job["metadata"].get("annotations", {}).get(labels.REVISION_ANNOTATION, "")
    name = job["metadata"]["name"]
    result = termination_result(pods)
    default_path = f"{ARTIFACTS_DIR}/{key}"
    if _job_condition(job, "Complete") is not None:
        return BuildObservation(
            key,
            BuildState.SUCCEEDED,
            job=name,
            reason="BuildSucceeded",
            message="the build finished",
            artifact_path=(result.artifact_path if result else None) or default_path,
        )
    failed = _job_condition(job, "Failed")
    if failed is not None:
        if result is not None and result.state == ResultState.FAILED:
            reason = result.reason or "BuildFailed"
            message = result.message or "the builder reported a failure"
        else:
            reason = "BuildFailed"
            message = f"build Job {name} failed: {failed.get('reason')}: {failed.get('message')}"
        return BuildObservation(key, BuildState.FAILED, job=name, reason=reason, message=message)
    active = (job.get("status") or {}).get("active") or 0
    state = BuildState.RUNNING if active else BuildState.PENDING
    waiting = unschedulable_message(pods)
    if waiting is not None:
        return BuildObservation(
            key, BuildState.PENDING, job=name, reason="Unschedulable", message=waiting
        )
    return BuildObservation(key, state, job=name)


def unschedulable_message(pods: list[Obj]) -> str | None:
    """The scheduler's message when every pod of a Job is waiting for room (GPUs)."""
    messages = []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Pending":
            return None
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("reason") == "Unschedulable"
            ):
                messages.append(str(condition.get("message") or "unschedulable"))
    return messages[0] if messages and len(messages) == len(pods) else None


def observe_record(record: Obj) -> BuildObservation | None:
    try:
        result = BuildResult.model_validate(json.loads(record.get("data", {})[RECORD_KEY]))
    except (KeyError, ValueError, ValidationError):
        return None
    return BuildObservation(
        result.cache_key,
        BuildState.SUCCEEDED,
        reason="ArtifactRecorded",
        message="the artifact is built and recorded",
        artifact_path=result.artifact_path,
        recorded=True,
    )


def observe_deployment(deployment: Obj) -> DeploymentObservation | None:
    meta = deployment["metadata"]
    variant = (meta.get("labels") or {}).get(labels.VARIANT)
    if variant is None:
        return None
    status = deployment.get("status") or {}
    current = (status.get("observedGeneration") or 0) >= (meta.get("generation") or 0)
    return DeploymentObservation(
        name=meta["name"],
        replicas=(deployment.get("spec") or {}).get("replicas", 1),
        ready_replicas=status.get("readyReplicas") or 0 if current else 0,
        updated_replicas=status.get("updatedReplicas") or 0 if current else 0,
        revision=(meta.get("annotations") or {}).get(labels.REVISION_ANNOTATION),
    )


def list_reports(kube: Kube, namespace: str, model: str) -> list[Obj]:
    """The QualityReports in `namespace` about `model`."""
    return [
        r
        for r in kube.list_objects(API_VERSION, "QualityReport", namespace)
        if (r.get("spec") or {}).get("modelRef", {}).get("name") == model
    ]


def gather(
    kube: Kube,
    namespace: str,
    model: str,
    quality: QualitySpec | None = None,
    last_good: dict[str, str] | None = None,
) -> Gathered:
    """One read of everything the plan for `namespace/model` depends on.

    `last_good` comes from the model's status; a variant missing there falls back to its
    newest passing report.
    """
    inventory = inventory_from_nodes(kube.list_nodes())
    jobs = kube.list_managed("batch/v1", "Job", namespace, "app.kubernetes.io/component=build")
    records = kube.list_managed(
        "v1", "ConfigMap", namespace, "app.kubernetes.io/component=artifact"
    )
    deployments = kube.list_managed("apps/v1", "Deployment", namespace, f"{labels.MODEL}={model}")
    services = kube.list_managed("v1", "Service", namespace, f"{labels.MODEL}={model}")
    claims = frozenset(
        c["metadata"]["name"] for c in kube.list_objects("v1", "PersistentVolumeClaim", namespace)
    )

    builds: dict[str, BuildObservation] = {}
    jobs_by_key: dict[str, Obj] = {}
    # One list of build pods for the namespace, not one per Job: reconciles stay cheap as
    # builds accumulate.
    pods_by_job: dict[str, list[Obj]] = {}
    for pod in kube.list_managed("v1", "Pod", namespace, "app.kubernetes.io/component=build"):
        job_name = (pod["metadata"].get("labels") or {}).get("job-name", "")
        pods_by_job.setdefault(job_name, []).append(pod)
    for job in jobs:
        seen = observe_job(job, pods_by_job.get(job["metadata"]["name"], []))
        if seen.cache_key:
            builds[seen.cache_key] = seen
            jobs_by_key[seen.cache_key] = job
    records_by_key: dict[str, Obj] = {}
    for record in records:
        recorded = observe_record(record)
        if recorded is not None:
            # A record outlives its Job and is the final word on a finished artifact.
            its_job = jobs_by_key.get(recorded.cache_key)
            builds[recorded.cache_key] = (
                recorded
                if its_job is None
                else dataclasses.replace(recorded, job=its_job["metadata"]["name"])
            )
            records_by_key[recorded.cache_key] = record
    observed_deployments: dict[str, DeploymentObservation] = {}
    candidates: dict[str, DeploymentObservation] = {}
    for deployment in deployments:
        seen_deployment = observe_deployment(deployment)
        if seen_deployment is not None:
            variant_labels = deployment["metadata"]["labels"]
            track = variant_labels.get(labels.TRACK, labels.STABLE)
            target = candidates if track == labels.CANDIDATE else observed_deployments
            target[variant_labels[labels.VARIANT]] = seen_deployment
    judged = judge_all(list_reports(kube, namespace, model), quality or QualitySpec())
    good = {**passing_revisions(judged), **(last_good or {})}
    eval_jobs = kube.list_managed(
        "batch/v1",
        "Job",
        namespace,
        f"app.kubernetes.io/component=evaluation,{labels.MODEL}={model}",
    )
    return Gathered(
        Observed(
            inventory,
            builds,
            observed_deployments,
            claims,
            reports=decisive_reports(judged),
            last_good=good,
            candidates=candidates,
        ),
        jobs_by_key,
        records_by_key,
        deployments,
        services,
        judged,
        eval_jobs,
    )
