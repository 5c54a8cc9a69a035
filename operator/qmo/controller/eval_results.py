"""Finished eval Jobs: the report each one's pod left in its termination message, or why it left
none. Pure; `gather` calls it for a model's eval Jobs, `changes` creates the reports the plan
still `awaited`.

An eval pod holds no rights (manifests.evaluation): qmo-eval hands its scores over as the
evaluator container's termination message (qmo.api.evalcontract) and the operator writes the
QualityReport. The revision judged (model, variant, cache key, baseline) comes from the
operator's own Job, never from the message, so what runs in the pod can at worst misreport its
own revision's scores. A Job that failed, or that completed without a message qmo can read, is
an evaluation failure with the reason (the QualityGate condition and one Warning Event), never
an exception; `qmo.dev/retry` runs it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qmo.api.evalcontract import MessageError, parse_message
from qmo.api.qualityreport import QualityReportSpec
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.controller.view import ClusterReader
from qmo.manifests import labels
from qmo.manifests.evaluation import (
    ATTEMPT_ANNOTATION,
    BASELINE_ANNOTATION,
    EVAL_CONTAINER,
    OUTCOMES_ANNOTATION,
)
from qmo.planner.evaluations import awaits_report, samples_asked
from qmo.planner.types import Plan, attempt_of
from qmo.wire import Obj

# What of a failed evaluator's last words (its log tail) goes into a condition and an Event.
LAST_WORDS = 300


@dataclass(frozen=True)
class EvalReport:
    """The report a completed eval Job's scores make, for the revision the Job was for."""

    job: str
    variant: str
    cache_key: str
    spec: QualityReportSpec
    attempt: str = ""  # '' for the first evaluation, else the re-evaluation's (Evaluation.attempt)


@dataclass(frozen=True)
class EvalOutcomes:
    reports: tuple[EvalReport, ...] = ()
    # Why a finished Job left no report, by (variant, cache key).
    failed: dict[tuple[str, str], str] = field(default_factory=dict)


def observe_eval_jobs(
    reader: ClusterReader, namespace: str, model: str, jobs: list[Obj]
) -> EvalOutcomes:
    """What the model's finished eval Jobs left: reports to create, and failures."""
    reports, failed = [], {}
    for job in jobs:
        meta = job["metadata"]
        variant = (meta.get("labels") or {}).get(labels.VARIANT)
        key = (meta.get("annotations") or {}).get(labels.REVISION_ANNOTATION)
        if not variant or not key:
            continue
        outcome = observe_eval_job(job, reader.job_pods(namespace, meta["name"]), model)
        if isinstance(outcome, EvalReport):
            reports.append(outcome)
        elif outcome is not None:
            failed[(variant, key)] = outcome
    return EvalOutcomes(tuple(reports), failed)


def observe_eval_job(job: Obj, pods: list[Obj], model: str) -> EvalReport | str | None:
    """The report of a completed eval Job, why a finished one has none, or None while it runs.

    A finished Job is read once none of its pods still runs as the cache has them: the pods'
    watch may lag the Job's, and their final status (the message) follows.
    """
    meta = job["metadata"]
    name = meta["name"]
    if any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods):
        return None
    failed = _condition(job, "Failed")
    if failed is not None:
        message = f"eval Job {name} failed: {failed.get('reason')}: {failed.get('message')}"
        said = _last_words(pods)
        return f"{message}; the evaluator said: {said}" if said else message
    if _condition(job, "Complete") is None:
        return None
    finished = [t for t in _terminated(pods) if t.get("exitCode") == 0]
    if not finished:
        return f"eval Job {name} completed, but no pod of it that holds the scores is left"
    try:
        spec = parse_message(str(finished[0].get("message") or "")).report_spec(
            model=model,
            variant=meta["labels"][labels.VARIANT],
            cache_key=meta["annotations"][labels.REVISION_ANNOTATION],
            baseline_variant=meta["annotations"].get(BASELINE_ANNOTATION),
            outcomes_dir=meta["annotations"].get(OUTCOMES_ANNOTATION),
        )
    except MessageError as err:
        return f"eval Job {name} completed without scores qmo can read: {err}"
    attempt = str((meta.get("annotations") or {}).get(ATTEMPT_ANNOTATION) or "")
    return EvalReport(name, spec.variant, spec.cache_key, spec, attempt)


def awaited(
    spec: QuantizedModelSpec, plan: Plan, reports: tuple[EvalReport, ...]
) -> list[EvalReport]:
    """The reports whose revision the plan still awaits one for, from the Job of the attempt
    it awaits (a finished first evaluation does not answer the ask for more samples)."""
    awaiting = {
        (v.name, v.cache_key, attempt_of(samples_asked(v)))
        for v in plan.variants
        if awaits_report(spec, v)
    }
    return [r for r in reports if (r.variant, r.cache_key, r.attempt) in awaiting]


def _condition(job: Obj, type_: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def _terminated(pods: list[Obj]) -> list[Obj]:
    """The evaluator containers' terminated states, newest first."""
    found = [
        terminated
        for pod in pods
        # On a bucket store the evaluator runs as an init container (qmo.manifests.evaluation)
        for status in [
            *((pod.get("status") or {}).get("containerStatuses") or []),
            *((pod.get("status") or {}).get("initContainerStatuses") or []),
        ]
        if status.get("name") == EVAL_CONTAINER
        and (terminated := (status.get("state") or {}).get("terminated"))
    ]
    return sorted(found, key=lambda t: str(t.get("finishedAt") or ""), reverse=True)


def _last_words(pods: list[Obj]) -> str | None:
    """The last line a failed evaluator left (Kubernetes puts its log tail in the message)."""
    for terminated in _terminated(pods):
        if terminated.get("exitCode") == 0:
            continue
        lines = [
            " ".join(line.split()) for line in str(terminated.get("message") or "").splitlines()
        ]
        lines = [line for line in lines if line]
        if lines:
            last = lines[-1]
            return last if len(last) <= LAST_WORDS else last[: LAST_WORDS - 3] + "..."
    return None
