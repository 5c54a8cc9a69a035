"""The quality gate as a list of named rules. Each looks at one planned variant and its newest
judged report and may decide: keep its rollout decision, roll it back to its last good
revision, fall back down the precision ladder, withdraw it, or hold it as a candidate outside
the Services (the decisions of `decision`). The first rule that decides wins; the planner
plans a fallback anew, lower down (see `plan.plan_variant`).

Pure, and stateless by design: every decision follows from the spec, the judged reports and
the last good revision (see `revisions`), so a restarted operator decides the same, and a
rolled-back revision is not promoted again until the spec changes or a passing report for it
arrives. Depends only on the planner's types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qmo.api.quantizedmodel import (
    GateTiming,
    ModelFormat,
    OnRegression,
    Precision,
    QuantizedModelSpec,
)
from qmo.planner import revisions
from qmo.planner.capabilities import fallback_precision
from qmo.planner.decision import HoldAsCandidate, KeptDespiteReport, RolledBack, Withdrawn
from qmo.planner.types import Observed, PlannedVariant, ReportObservation, VariantTarget
from qmo.vocabulary import Action


@dataclass(frozen=True)
class Keep:
    """Leave the variant's rollout decision as it is."""


@dataclass(frozen=True)
class FallBack:
    """Plan `precision` instead: one rung up the ladder, toward quality."""

    report: ReportObservation
    precision: Precision


GateDecision = Keep | FallBack | RolledBack | KeptDespiteReport | Withdrawn | HoldAsCandidate


@dataclass(frozen=True)
class Case:
    """What the rules look at."""

    spec: QuantizedModelSpec
    variant: PlannedVariant
    report: ReportObservation | None
    good: str | None  # the revision a rollback would return to
    current_was_good: bool  # the revision under judgement is the variant's last good one

    @property
    def regressed(self) -> bool:
        return self.report is not None and self.report.regressed


Rule = Callable[[Case], GateDecision | None]


def cannot_run(case: Case) -> GateDecision | None:
    """A variant that cannot run (waiting for its engine store) keeps what it has."""
    if not case.variant.decision.supported:
        return Keep()
    return None


def regression_ignored(case: Case) -> GateDecision | None:
    if case.regressed and case.spec.quality.on_regression == OnRegression.IGNORE:
        return Keep()
    return None


def keep_what_was_good(case: Case) -> GateDecision | None:
    """What served as good keeps serving when judged again (a tighter threshold, a new
    report): withdrawing it would take down the revision there is to return to."""
    if case.regressed and case.current_was_good:
        assert case.report is not None
        assert case.variant.cache_key is not None
        return KeptDespiteReport(case.variant.cache_key, case.report)
    return None


def roll_back_to_last_good(case: Case) -> GateDecision | None:
    if case.regressed and case.good is not None:
        assert case.report is not None
        assert case.variant.cache_key is not None
        return RolledBack(case.variant.cache_key, case.good, case.report)
    return None


def falls_back(case: Case) -> bool:
    """onRegression: fallback; and nvfp4 that `auto` chose on Blackwell, which it chose only
    because a loss would fall back to fp8 (capabilities.auto_precision)."""
    variant = case.variant
    auto_nvfp4 = (
        variant.requested_precision == Precision.AUTO and variant.precision == Precision.NVFP4
    )
    return case.spec.quality.on_regression == OnRegression.FALLBACK or auto_nvfp4


def fall_back_down_the_ladder(case: Case) -> GateDecision | None:
    """On a first rollout (nothing good to return to) when the variant falls back."""
    if not case.regressed or not falls_back(case):
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
        assert case.variant.cache_key is not None
        return Withdrawn(case.variant.cache_key, case.report)
    return None


def hold_as_candidate(case: Case) -> GateDecision | None:
    """before-traffic: a revision serves only once a report about it passed."""
    passed = case.report is not None and case.report.passed
    if (
        case.spec.quality.gate == GateTiming.BEFORE_TRAFFIC
        and not passed
        and not case.current_was_good  # it serves already: it is evaluated again in place
        and case.variant.action == Action.DEPLOY
    ):
        assert case.variant.cache_key is not None
        return HoldAsCandidate(case.variant.cache_key, case.good)
    return None


RULES: tuple[Rule, ...] = (
    cannot_run,
    regression_ignored,
    keep_what_was_good,
    roll_back_to_last_good,
    fall_back_down_the_ladder,
    withdraw,
    hold_as_candidate,
)


def decide(spec: QuantizedModelSpec, variant: PlannedVariant, observed: Observed) -> GateDecision:
    """The first rule's decision; a variant no rule stops is kept, with its report. Asked only
    of variants the gate judges (`gated`) that have a revision to judge."""
    key = variant.cache_key
    assert key is not None
    report = observed.reports.get((variant.name, key))
    good_now = observed.last_good.get(variant.name) == key
    case = Case(spec, variant, report, revisions.rollback_target(variant, observed), good_now)
    for rule in RULES:
        decision = rule(case)
        if decision is not None:
            return decision
    return Keep()


def has_baseline(spec: QuantizedModelSpec) -> bool:
    """A BF16 reference can be built: from the source, unless it is already quantized, then
    from `model.reference`."""
    return (
        spec.model.format != ModelFormat.MODELOPT_PREQUANTIZED or spec.model.reference is not None
    )


def gated(spec: QuantizedModelSpec, target: VariantTarget) -> bool:
    """Whether the gate judges this variant at all: on, with something to compare against,
    and not the BF16 baseline."""
    return (
        spec.quality.gate != GateTiming.OFF
        and has_baseline(spec)
        and target.precision != Precision.BF16
    )
