"""What the controller observes for its metrics: build Jobs finishing (seen on the watch),
time from a new generation to Ready, why a reconcile failed, and the per-variant series of
one reconcile. The functions are pure; `ReadyTimer` holds the little state time-to-Ready needs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from qmo import metrics
from qmo.api.quantizedmodel import QuantizedModelStatus
from qmo.kube import TRANSIENT_ERRORS, ApiException
from qmo.quality.reports import JudgedReport
from qmo.vocabulary import COMPONENT, GPU_CLASS, PRECISION, Component
from qmo.wire import Obj


@dataclass(frozen=True)
class FinishedBuild:
    precision: str
    gpu_class: str
    outcome: str  # succeeded or failed
    seconds: float | None  # None when the Job has no start time


def _finished(job: Obj | None) -> tuple[str, str | None] | None:
    """("succeeded" | "failed", when) once a Job has finished; None while it has not."""
    if job is None:
        return None
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "succeeded", condition.get("lastTransitionTime")
        if condition.get("type") == "Failed":
            return "failed", condition.get("lastTransitionTime")
    return None


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def finished_build(old: Obj | None, new: Obj | None) -> FinishedBuild | None:
    """A build Job that finished between `old` and `new`, as the watch showed it.

    Only a transition counts: a Job already finished when first listed (after a restart) was
    counted by the process that watched it finish, or by none, but never twice.
    """
    if old is None or new is None or _finished(old) is not None:
        return None
    labels = new["metadata"].get("labels") or {}
    if labels.get(COMPONENT) != Component.BUILD:
        return None
    done = _finished(new)
    if done is None:
        return None
    outcome, ended = done
    started = _timestamp((new.get("status") or {}).get("startTime"))
    finished_at = _timestamp(ended)
    seconds = (finished_at - started).total_seconds() if started and finished_at else None
    return FinishedBuild(
        precision=labels.get(PRECISION, "unknown"),
        gpu_class=labels.get(GPU_CLASS, "unknown"),
        outcome=outcome,
        seconds=seconds,
    )


def error_reason(err: BaseException) -> str:
    """A bounded label for why a reconcile failed (qmo_reconcile_errors_total{reason})."""
    reason = getattr(err, "reason_label", None)
    if isinstance(reason, str):
        return reason
    if isinstance(err, ApiException):
        status = err.status or 0
        named = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid",
                 429: "Throttled"}  # fmt: skip
        if status in named:
            return named[status]
        return "ApiServerError" if status >= 500 else "ApiError"
    if isinstance(err, TRANSIENT_ERRORS):
        return "ApiUnavailable"
    return "Unexpected"


def variant_info(status: QuantizedModelStatus) -> list[tuple[str, ...]]:
    """(variant, precision, kv_cache_dtype, gpu_class, revision, phase) of each variant."""
    return [
        (
            v.name,
            v.precision,
            v.kv_cache_dtype or "",
            v.gpu_class,
            (v.revision or "")[:12],
            v.phase,
        )
        for v in status.variants
    ]


def autoscaling(status: QuantizedModelStatus) -> dict[str, metrics.Scaling]:
    """Per autoscaled variant: its scaler's maximum, replicas, whether it is at its bound, and
    its default-route weight (None where the route is not weighted)."""
    return {
        v.name: (a.max_replicas, a.replicas, a.at_bound, a.route_weight)
        for v in status.variants
        if (a := v.autoscaling) is not None
    }


def regressions(
    status: QuantizedModelStatus, reports: list[JudgedReport]
) -> dict[str, dict[str, float]]:
    """Per variant, the regression (percent) of each benchmark in the report that judged its
    current revision; variants without one are left out."""
    by_name = {r.name: r for r in reports}
    found: dict[str, dict[str, float]] = {}
    for variant in status.variants:
        report = by_name.get(variant.quality.report or "")
        if report is None:
            continue
        deltas = {
            d.benchmark: d.delta_percent
            for d in report.judgement.deltas
            if d.delta_percent is not None
        }
        if deltas:
            found[variant.name] = deltas
    return found


class ReadyTimer:
    """Seconds from a model's new generation to Ready for it, observed once per generation.

    Generation 1 starts at the model's creationTimestamp; a later one when this process first
    sees it. A generation that was already new when the process started is not timed (when it
    began is unknown), so a restart never reports a made-up duration.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (namespace, name) -> (uid, generation, start or None, already observed)
        self._seen: dict[tuple[str, str], tuple[str, int, datetime | None, bool]] = {}

    def observe(self, meta: Obj, was_ready: bool, ready: bool, now: datetime) -> float | None:
        """The duration to report now, or None. `was_ready`: the status before this reconcile
        said Ready for the current generation; `ready`: the status written now says so."""
        key = (meta["namespace"], meta["name"])
        uid, generation = meta.get("uid", ""), int(meta.get("generation") or 0)
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or seen[0] != uid:
                start = _timestamp(meta.get("creationTimestamp")) if generation == 1 else None
                seen = (uid, generation, start, was_ready)  # Ready before we looked: not timed
            elif seen[1] != generation:
                seen = (uid, generation, now, False)
            uid, generation, start, done = seen
            duration = None
            if ready and not done:
                done = True
                if start is not None:
                    duration = max(0.0, (now - start).total_seconds())
            self._seen[key] = (uid, generation, start, done)
            return duration

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._seen.pop((namespace, name), None)


READY_TIMER = ReadyTimer()  # one per process, like the metrics it feeds
