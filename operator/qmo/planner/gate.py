"""The quality gate as a list of named rules. Each looks at one planned variant and its newest
judged report and may decide: keep it, roll it back to its last good revision, fall back down
the precision ladder, withdraw it, or hold it as a candidate outside the Services. The first
rule that decides wins; the planner acts on the decision (see `plan.apply_gate`).

Pure, and stateless by design: every decision follows from the spec, the judged reports and
the last good revision (see `revisions`), so a restarted operator decides the same, and a
rolled-back revision is not promoted again until the spec changes or a passing report for it
arrives. Depends only on the planner's types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import GateTiming, OnRegression, Precision, QuantizedModelSpec
from qmo.planner import revisions
from qmo.planner.capabilities import fallback_precision
from qmo.planner.types import Observed, PlannedVariant, ReportObservation
from qmo.vocabulary import Action, Phase


@dataclass(frozen=True)
class Keep:
    """Leave the variant as planned (with its report, if any)."""

    report: ReportObservation | None = None


@dataclass(frozen=True)
class RollBack:
    """Serve `revision`, the last good one, instead of the regressed revision."""

    report: ReportObservation
    revision: str


@dataclass(frozen=True)
class FallBack:
    """Plan `precision` instead: one rung up the ladder, toward quality."""

    report: ReportObservation
    precision: Precision


@dataclass(frozen=True)
class Withdraw:
    """Stop serving: it regressed with nothing good to return to."""

    report: ReportObservation


@dataclass(frozen=True)
class HoldCandidate:
    """Run the new revision outside the Services until a report passes; `keeps` serves."""

    report: ReportObservation | None
    keeps: str | None


GateDecision = Keep | RollBack | FallBack | Withdraw | HoldCandidate


@dataclass(frozen=True)
class Case:
    """What the rules look at."""

    spec: QuantizedModelSpec
    variant: PlannedVariant
    report: ReportObservation | None
    good: str | None  # the revision a rollback would return to

    @property
    def regressed(self) -> bool:
        return self.report is not None and self.report.verdict == Verdict.REGRESSED


Rule = Callable[[Case], GateDecision | None]


def not_gated(case: Case) -> GateDecision | None:
    """The gate is off, the variant is the BF16 baseline, or it cannot run at all."""
    variant = case.variant
    ungated = case.spec.quality.gate == GateTiming.OFF or variant.precision == Precision.BF16
    if ungated or variant.cache_key is None or variant.phase == Phase.UNSUPPORTED:
        return Keep()
    return None


def regression_ignored(case: Case) -> GateDecision | None:
    if case.regressed and case.spec.quality.on_regression == OnRegression.IGNORE:
        return Keep(case.report)
    return None


def roll_back_to_last_good(case: Case) -> GateDecision | None:
    if case.regressed and case.good is not None:
        assert case.report is not None
        return RollBack(case.report, case.good)
    return None


def fall_back_down_the_ladder(case: Case) -> GateDecision | None:
    """On a first rollout (nothing good to return to) with onRegression: fallback."""
    if not case.regressed or case.spec.quality.on_regression != OnRegression.FALLBACK:
        return None
    variant = case.variant
    lower = fallback_precision(variant.precision, variant.gpu_class, case.spec.engine.backend)
    if lower is None:
        return None
    assert case.report is not None
    return FallBack(case.report, lower)


def withdraw(case: Case) -> GateDecision | None:
    if case.regressed:
        assert case.report is not None
        return Withdraw(case.report)
    return None


def hold_as_candidate(case: Case) -> GateDecision | None:
    """before-traffic: a revision serves only once a report about it passed."""
    passed = case.report is not None and case.report.verdict == Verdict.PASS
    if (
        case.spec.quality.gate == GateTiming.BEFORE_TRAFFIC
        and not passed
        and case.variant.action == Action.DEPLOY
    ):
        return HoldCandidate(case.report, case.good)
    return None


RULES: tuple[Rule, ...] = (
    not_gated,
    regression_ignored,
    roll_back_to_last_good,
    fall_back_down_the_ladder,
    withdraw,
    hold_as_candidate,
)


def decide(spec: QuantizedModelSpec, variant: PlannedVariant, observed: Observed) -> GateDecision:
    """The first rule's decision; a variant no rule stops is kept, with its report."""
    key = variant.cache_key
    report = observed.reports.get((variant.name, key)) if key is not None else None
    case = Case(spec, variant, report, revisions.rollback_target(variant, observed))
    for rule in RULES:
        decision = rule(case)
        if decision is not None:
            return decision
    return Keep(report)
