"""Gather: what a reconcile needs of the cluster, turned into the planner's `Observed`.

Pure: it reads through a `ClusterReader` (the watch-fed cache in the operator, plain lists in
tests and `qmo plan --cluster`) and makes no request. The translation from API objects to
observations (`observe_*`) is unit-tested table-style.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from qmo.api.buildcontract import ARTIFACTS_DIR, BuildResult
from qmo.api.quantizedmodel import QualitySpec
from qmo.controller.eval_results import EvalReport, observe_eval_jobs
from qmo.controller.ownership import NamesInNamespace
from qmo.controller.view import ClusterReader, by_model_label, namespace_of, waits_for_room
from qmo.manifests import labels
from qmo.manifests.build import BUILD_CONTAINER, RECORD_KEY
from qmo.manifests.store import FETCH_CONTAINER
from qmo.planner import revisions
from qmo.planner.types import BuildObservation, BuildState, DeploymentObservation, Observed
from qmo.quality.reports import JudgedReport, decisive_reports, judge_all, passing_revisions
from qmo.resources import (
    DEPLOYMENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    HTTP_ROUTES,
    JOBS,
    SCALED_OBJECTS,
    SERVICES,
)
from qmo.vocabulary import AUTOSCALED, REPLICAS_ANNOTATION, Component, Reason
from qmo.wire import Obj


class BuildsInCluster:
    """The planner's view of builds by cache key, looked up on demand.

    Cache keys are shared across models, so a namespace may hold thousands of build Jobs and
    records; a reconcile looks at the few keys its plan names, never at all of them.
    """

    def __init__(self, reader: ClusterReader, namespace: str) -> None:
        self._reader = reader
        self._namespace = namespace
        self._seen: dict[str, BuildObservation | None] = {}

    def get(self, cache_key: str, /) -> BuildObservation | None:
        if cache_key not in self._seen:
            self._seen[cache_key] = self._observe(cache_key)
        return self._seen[cache_key]

    def job(self, cache_key: str) -> Obj | None:
        return self._reader.build_job(self._namespace, cache_key)

    def record(self, cache_key: str) -> Obj | None:
        return self._reader.artifact_record(self._namespace, cache_key)

    def _observe(self, cache_key: str) -> BuildObservation | None:
        job = self.job(cache_key)
        seen = None
        if job is not None:
            pods = self._reader.job_pods(self._namespace, job["metadata"]["name"])
            seen = observe_job(job, pods)
        record = self.record(cache_key)
        recorded = observe_record(record) if record is not None else None
        if recorded is not None:
            # A record outlives its Job and is the final word on a finished artifact.
            return (
                recorded
                if job is None
                else dataclasses.replace(recorded, job=job["metadata"]["name"])
            )
        return seen


@dataclass(frozen=True)
class Gathered:
    observed: Observed
    builds: BuildsInCluster
    deployments: list[Obj]
    services: list[Obj]
    reports: list[JudgedReport]
    eval_jobs: list[Obj]
    # Every model's objects by name, and whether another model holds one (see `ownership`).
    names: NamesInNamespace
    route: Obj | None = None  # the model's HTTPRoute, where HTTPRoutes are watched
    # Reports the scores of completed eval Jobs make, for qmo to create (see `eval_results`).
    eval_reports: tuple[EvalReport, ...] = ()
    # Other models' HTTPRoutes on the Gateways spec.routing names (planner.routing).
    rival_routes: tuple[Obj, ...] = ()
    # The model's HorizontalPodAutoscalers and ScaledObjects.
    scalers: tuple[Obj, ...] = ()


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
            reason=Reason.BUILD_SUCCEEDED,
            message="the build finished",
            artifact_path=(result.artifact_path if result else None) or default_path,
        )
    failed = _job_condition(job, "Failed")
    if failed is not None:
        if result is not None and result.state == BuildState.FAILED:
            reason = result.reason or Reason.BUILD_FAILED
            message = result.message or "the builder reported a failure"
        else:
            reason = Reason.BUILD_FAILED
            message = f"build Job {name} failed: {failed.get('reason')}: {failed.get('message')}"
        return BuildObservation(key, BuildState.FAILED, job=name, reason=reason, message=message)
    active = (job.get("status") or {}).get("active") or 0
    state = BuildState.RUNNING if active else BuildState.PENDING
    waiting = unschedulable_message(pods)
    if waiting is not None:
        return BuildObservation(
            key, BuildState.PENDING, job=name, reason=Reason.UNSCHEDULABLE, message=waiting
        )
    return BuildObservation(key, state, job=name)


def waiting_for_room(pods: list[Obj]) -> str | None:
    """The scheduler's message for a serving pod that cannot be placed (Pending,
    Unschedulable: no node with a free GPU of its class, or its taints and selectors)."""
    return next((w[:500] for w in map(waits_for_room, pods) if w is not None), None)


def unschedulable_message(pods: list[Obj]) -> str | None:
    """The scheduler's message when every pod of a Job is waiting for room (GPUs)."""
    messages = [waits_for_room(pod) for pod in pods]
    if not messages or None in messages:
        return None
    return messages[0]


def observe_record(record: Obj) -> BuildObservation | None:
    try:
        result = BuildResult.model_validate(json.loads(record.get("data", {})[RECORD_KEY]))
    except (KeyError, ValueError, ValidationError):
        return None
    return BuildObservation(
        result.cache_key,
        BuildState.SUCCEEDED,
        reason=Reason.ARTIFACT_RECORDED,
        message="the artifact is built and recorded",
        artifact_path=result.artifact_path,
        recorded=True,
    )


def fetch_failure(pods: list[Obj]) -> str | None:
    """What a serving pod's fetch step said when it last failed and has not fetched since:
    its termination message, {"reason": ..., "message": ...} (qmo-store fetch). The pods are
    projections: `project_pod` keeps a fetch step only while it has failed and not fetched
    since (`projections.fetched_since`), so every one kept here is failing."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
            last = (status.get("lastState") or {}).get("terminated") or {}
            if status.get("name") != FETCH_CONTAINER or not last:
                continue
            try:
                said = json.loads(last.get("message") or "")
            except ValueError:
                said = None
            if isinstance(said, dict) and said.get("reason"):
                return f"{said['reason']}: {str(said.get('message', ''))[:400]}"
            return f"exit code {last.get('exitCode')}: {str(last.get('message', ''))[-400:]}"
    return None


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
        autoscaled=(meta.get("annotations") or {}).get(REPLICAS_ANNOTATION) == AUTOSCALED,
    )


def gather(
    reader: ClusterReader,
    namespace: str,
    model: str,
    quality: QualitySpec | None = None,
    last_good: dict[str, str] | None = None,
    served: dict[str, tuple[str, str]] | None = None,
    gateways: Iterable[tuple[str, str]] = (),
    *,
    autoscaled: bool = False,
    keda_installed: bool = False,
    prometheus: str | None = None,
) -> Gathered:
    """Everything the plan for `namespace/model` depends on, from the reader's memory.

    `last_good` comes from the model's status; a variant missing there falls back to its
    newest passing report. `served`: the variants the status lists with a last good
    revision (`revisions.served_before`). `gateways`: those spec.routing names, (namespace,
    name), whose other routes are gathered. `autoscaled`: the model's variants are, so the
    GPUs every class has left and the model's scalers are looked up (`keda_installed`: the
    cluster serves ScaledObjects; `prometheus`: the address KEDA would query).
    """
    builds = BuildsInCluster(reader, namespace)
    deployments = reader.children(DEPLOYMENTS.kind, namespace, model)
    services = reader.children(SERVICES.kind, namespace, model)
    observed_deployments: dict[str, DeploymentObservation] = {}
    candidates: dict[str, DeploymentObservation] = {}
    for deployment in deployments:
        seen_deployment = observe_deployment(deployment)
        if seen_deployment is not None:
            variant_labels = deployment["metadata"]["labels"]
            track = variant_labels.get(labels.TRACK, labels.STABLE)
            if seen_deployment.ready_replicas < seen_deployment.replicas:
                pods = reader.serving_pods(namespace, model, variant_labels[labels.VARIANT], track)
                seen_deployment = dataclasses.replace(
                    seen_deployment,
                    unschedulable=waiting_for_room(pods),
                    fetch_failure=fetch_failure(pods),
                )
            target = candidates if track == labels.CANDIDATE else observed_deployments
            target[variant_labels[labels.VARIANT]] = seen_deployment
    judged = judge_all(reader.reports(namespace, model), quality or QualitySpec())
    good = revisions.known_good(last_good or {}, passing_revisions(judged))
    eval_jobs = [
        j
        for j in reader.children(JOBS.kind, namespace, model)
        if (j["metadata"].get("labels") or {}).get(labels.COMPONENT) == Component.EVALUATION
    ]
    evaluated = observe_eval_jobs(reader, namespace, model, eval_jobs)
    route = next(iter(reader.children(HTTP_ROUTES.kind, namespace, model)), None)
    rivals = {
        (namespace_of(r), r["metadata"]["name"]): r
        for gateway in gateways
        for r in reader.routes_on(gateway)
        if by_model_label(r) != [(namespace, model)]
    }
    inventory = reader.inventory()
    gpus_held: dict[str, int] = {}
    scalers: list[Obj] = []
    if autoscaled:
        gpus_held = {c.name: reader.gpus_held(c.name) for c in inventory.classes}
    for kind in (HORIZONTAL_POD_AUTOSCALERS.kind, SCALED_OBJECTS.kind):
        scalers += reader.children(kind, namespace, model)
    return Gathered(
        Observed(
            inventory,
            builds,
            observed_deployments,
            reader.claims(namespace),
            reports=decisive_reports(judged),
            last_good=good,
            served=served or {},
            candidates=candidates,
            failed_evaluations=evaluated.failed,
            gpus_held=gpus_held,
            keda_installed=keda_installed,
            prometheus=prometheus,
        ),
        builds,
        deployments,
        services,
        judged,
        eval_jobs,
        NamesInNamespace(reader, namespace),
        route,
        evaluated.reports,
        tuple(rivals.values()),
        tuple(scalers),
    )
