"""QualityReports as the planner sees them: judged, newest first, and Current or not. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from qmo.api.qualityreport import QualityReport, QualityReportStatus, ReportState, Verdict
from qmo.api.quantizedmodel import QualitySpec
from qmo.planner.types import Plan, ReportObservation
from qmo.quality.verdict import Judgement, judge
from qmo.wire import Obj


@dataclass(frozen=True)
class JudgedReport:
    name: str
    namespace: str
    created: str
    generation: int | None
    report: QualityReport
    judgement: Judgement
    raw_status: Obj | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.report.spec.variant, self.report.spec.cache_key)

    def observation(self) -> ReportObservation:
        return ReportObservation(
            name=self.name,
            variant=self.report.spec.variant,
            cache_key=self.report.spec.cache_key,
            verdict=self.judgement.verdict,
            message=self.judgement.message,
            worst_benchmark=self.judgement.worst_benchmark,
            worst_delta_percent=self.judgement.worst_delta_percent,
            speedup=self.judgement.speedup,
            tokens_per_second=self.tokens_per_second,
            inconclusive_acts_as=self.judgement.inconclusive_acts_as,
            more_samples=self.judgement.more_samples,
        )

    @property
    def tokens_per_second(self) -> float | None:
        """The candidate's output tokens/s at the highest concurrency measured (a finite,
        plausible number, or None)."""
        speed = self.report.spec.speed
        if speed is None or not speed.candidate:
            return None
        busiest = max(speed.candidate, key=lambda s: s.concurrency)
        value = busiest.output_tokens_per_second
        return value if math.isfinite(value) and 0 < value < 1e9 else None


def judge_all(objects: Iterable[Obj], quality: QualitySpec) -> list[JudgedReport]:
    """Every parseable report, judged, oldest first (so the newest wins when collected)."""
    judged = []
    for obj in objects:
        try:
            report = QualityReport.from_wire(
                {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in obj}
            )
        except ValidationError:
            continue
        meta = obj["metadata"]
        judged.append(
            JudgedReport(
                meta["name"],
                meta.get("namespace", ""),
                str(meta.get("creationTimestamp") or ""),
                meta.get("generation"),
                report,
                judge(report.spec, quality),
                obj.get("status"),
            )
        )
    return sorted(judged, key=lambda r: (r.created, r.name))


def decisive_reports(judged: list[JudgedReport]) -> dict[tuple[str, str], ReportObservation]:
    """The newest valid report per (variant, cache key): what the gate acts on.

    An Invalid report decides nothing: the gate keeps waiting for a valid one.
    """
    latest: dict[tuple[str, str], ReportObservation] = {}
    for report in judged:
        if report.judgement.verdict != Verdict.INVALID:
            latest[report.key] = report.observation()
    return latest


def passing_revisions(judged: list[JudgedReport]) -> dict[str, str]:
    """Per variant, the newest revision whose newest report passed."""
    decisive = decisive_reports(judged)
    newest: dict[str, str] = {}
    for report in judged:
        observation = decisive.get(report.key)
        if observation is not None and observation.passed:
            newest[report.report.spec.variant] = report.report.spec.cache_key
    return newest


def report_state(report: JudgedReport, plan: Plan) -> ReportState:
    """Current if the plan decides on this (variant, revision); Orphaned if no such variant."""
    variant, key = report.key
    current = {(v.name, v.cache_key) for v in plan.variants}
    current |= {pair for v in plan.variants for pair in v.superseded}
    if (variant, key) in current:
        return ReportState.CURRENT
    names = {v.name for v in plan.variants} | {n for v in plan.variants for n, _ in v.superseded}
    return ReportState.STALE if variant in names else ReportState.ORPHANED


def report_status(report: JudgedReport, state: ReportState) -> QualityReportStatus:
    j = report.judgement
    return QualityReportStatus(
        observed_generation=report.generation,
        verdict=j.verdict,
        state=state,
        reason=j.reason if state == ReportState.CURRENT else state.value,
        message=j.message
        if state == ReportState.CURRENT
        else f"{j.message} (ignored: the report is {state.value.lower()})",
        deltas=list(j.deltas),
        worst_benchmark=j.worst_benchmark,
        worst_delta_percent=j.worst_delta_percent,
        speedup=j.speedup,
    )
