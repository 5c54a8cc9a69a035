"""What a reconcile reports, as changes `execute` carries out like any other: the reports'
verdicts, the model's status, and its Events. Pure; unit-tested with the reconcile.

Status is written when it changed, with one exception that halves qmo's status writes on a
rollout: a change that is only progress (a build finished, replicas coming up: the Building
condition, phases, counts and messages) while this reconcile itself wrote children is held
back, and the reconcile comes again shortly (`PROGRESS_DELAY`) or as soon as those children
change. A decision (Ready, Degraded, the gate, a rollback, a new generation, a new variant)
and any reconcile that posts an Event write status at once, so an Event never repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.api.qualityreport import ReportState
from qmo.api.quantizedmodel import QuantizedModelStatus
from qmo.planner.events import Event
from qmo.planner.types import Plan
from qmo.quality.reports import JudgedReport, report_state, report_status
from qmo.vocabulary import ConditionType
from qmo.wire import Obj

# Seconds a progress-only status waits for the rollout it reports on to move further.
PROGRESS_DELAY = 5.0


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
        {k: v for k, v in variant.items() if k not in _PROGRESS_FIELDS}
        for variant in status.get("variants") or []
    ]
    return {**status, "conditions": conditions, "variants": variants}


def status_change(
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus,
    *,
    children_written: bool,
    events: list[Event],
) -> tuple[ApplyStatus | None, bool]:
    """The status write this reconcile needs, and whether one was held back (reconcile again
    in `PROGRESS_DELAY` seconds)."""
    wire = status.to_wire()
    if previous is None:
        return ApplyStatus(wire), False
    before = previous.to_wire()
    if before == wire:
        return None, False
    if children_written and not events and _decisions_in(before) == _decisions_in(wire):
        return None, True
    return ApplyStatus(wire), False
