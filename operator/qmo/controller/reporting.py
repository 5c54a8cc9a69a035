"""What a reconcile reports, as changes `execute` carries out like any other: the reports'
verdicts, the model's status, and its Events. Pure; unit-tested with the reconcile.

Status is written when it changed, with one exception that saves qmo a status write per
rollout: a change that is only progress (a build finished, replicas coming up: the Building
condition, phases, counts, child names and messages) within `PROGRESS_DELAY` seconds of qmo's
previous status write waits for the rest of that time (the reconcile is requeued for it), so
a step that is soon superseded is never written on its own. When qmo last wrote the status
comes from the object's managedFields, so a restarted operator paces the same. A decision
(Ready, Degraded, the gate, a rollback, a new generation, a new variant) and any reconcile
that posts an Event write the status at once, so an Event never repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qmo.api.qualityreport import ReportState
from qmo.api.quantizedmodel import QuantizedModelStatus
from qmo.planner.events import Event
from qmo.planner.types import Plan
from qmo.quality.reports import JudgedReport, report_state, report_status
from qmo.vocabulary import ConditionType
from qmo.wire import Obj

# Seconds after qmo's previous status write that a progress-only change waits: long enough
# for a fast rollout (or a queue of them) to reach Ready first, short enough that a slow one
# (a real model loading for minutes) shows Deploying soon.
PROGRESS_DELAY = 30.0


@dataclass(frozen=True)
class ApplyReportStatus:
    """Write a QualityReport's judgement; `verdict_changed`: count it in the verdict metric."""

    report: JudgedReport
    status: Obj
    verdict_changed: bool


@dataclass(frozen=True)
class ApplyStatus:
    """Server-side apply of the model's status subresource."""

    status: Obj


@dataclass(frozen=True)
class PostEvent:
    event: Event


Report = ApplyReportStatus | ApplyStatus | PostEvent


def report_changes(reports: list[JudgedReport], plan: Plan | None) -> list[ApplyReportStatus]:
    """Each report's verdict and whether it counts (Current), where it changed; with no plan
    (its model is gone) each report is Orphaned."""
    changes = []
    for report in reports:
        current_state = report_state(report, plan) if plan else ReportState.ORPHANED
        status = report_status(report, current_state).to_wire()
        status.pop("conditions", None)  # never written by qmo; not part of the comparison
        current = {k: v for k, v in (report.raw_status or {}).items() if k != "conditions"}
        if current == status:
            continue
        changed = (report.raw_status or {}).get("verdict") != status.get("verdict")
        changes.append(
            ApplyReportStatus(report, status, changed and current_state != ReportState.ORPHANED)
        )
    return changes


# Fields of a variant's status that only say how far its rollout got.
_PROGRESS_FIELDS = {
    "phase", "reason", "message", "build", "readyReplicas", "revision", "deployment", "service",
}  # fmt: skip


def _decisions_in(status: Obj) -> Obj:
    """The status without what is only progress (see the module's docstring)."""
    conditions = [
        {"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason")}
        for c in status.get("conditions") or []
        if c.get("type") != ConditionType.BUILDING
    ]
    variants = [
        {
            **_without(variant, _PROGRESS_FIELDS),
            # Replicas the scaler moves, and the route's weights that follow them.
            **(
                {"autoscaling": _without(variant["autoscaling"], _SCALER_PROGRESS)}
                if variant.get("autoscaling")
                else {}
            ),
        }
        for variant in status.get("variants") or []
    ]
    summary = _without(status.get("summary") or {}, {"replicas"})
    return {**status, "conditions": conditions, "variants": variants, "summary": summary}


_SCALER_PROGRESS = {"replicas", "routeWeight", "tokensPerSecond", "message"}


def _without(fields: Obj, progress: set[str]) -> Obj:
    return {k: v for k, v in fields.items() if k not in progress}


def status_change(
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus,
    *,
    written_at: datetime | None,
    now: datetime,
    events: list[Event],
) -> tuple[ApplyStatus | None, float | None]:
    """The status write this reconcile needs, or the seconds to wait for it (progress only,
    too soon after the previous write: see the module's docstring)."""
    wire = status.to_wire()
    if previous is None:
        return ApplyStatus(wire), None
    before = previous.to_wire()
    if before == wire:
        return None, None
    if events or written_at is None or _decisions_in(before) != _decisions_in(wire):
        return ApplyStatus(wire), None
    wait = PROGRESS_DELAY - (now - written_at).total_seconds()
    return (None, wait) if wait > 0 else (ApplyStatus(wire), None)
