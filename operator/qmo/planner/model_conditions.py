"""The QuantizedModel's conditions, each read from the plan by a function of its own; Ready
is a chain of named rules, the first that finds the model not ready decides. Pure; `status`
calls `model_conditions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qmo.api.base import ConditionStatus
from qmo.api.quantizedmodel import GateTiming, Precision, QuantizedModelSpec
from qmo.planner.gate import has_baseline
from qmo.planner.revisions import variant_serves
from qmo.planner.types import Plan, PlannedVariant
from qmo.vocabulary import RETRY_ANNOTATION, Action, ConditionType, Reason, Refusal

# Notes that are worth a warning but do not make the model Degraded.
ADVISORY_NOTES = {Reason.UNPINNED_REVISION}

Condition = tuple[ConditionStatus, str, str]
T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class Facts:
    """What the model's conditions are read from: the plan, sorted once."""

    spec: QuantizedModelSpec
    plan: Plan

    @property
    def served(self) -> list[PlannedVariant]:
        return [v for v in self.plan.variants if not v.reference]

    @property
    def runnable(self) -> list[PlannedVariant]:
        return [v for v in self.served if v.decision.runnable]

    @property
    def blocked(self) -> list[PlannedVariant]:
        return [v for v in self.served if not v.decision.runnable or v.rejected is not None]

    @property
    def problems(self) -> list[Refusal]:
        return [n for n in self.plan.notes if n.reason not in ADVISORY_NOTES]

    @property
    def not_serving(self) -> list[PlannedVariant]:
        replicas = self.spec.serving.wanted_replicas
        return [
            v for v in self.runnable if not variant_serves(v, replicas) or v.rejected is not None
        ]


ReadyRule = Callable[[Facts], Condition | None]


def nothing_can_run(f: Facts) -> Condition | None:
    if f.runnable:
        return None
    if f.problems:
        return F, f.problems[0].reason, f.problems[0].message
    if f.blocked:
        return F, f.blocked[0].reason, f"{f.blocked[0].name}: {f.blocked[0].message}"
    return F, Reason.NO_SERVABLE_VARIANT, "no variant can run on the selected GPU classes"


def model_object_rejected(f: Facts) -> Condition | None:
    """An object of the model's own (its main Service...) was refused, or its name is taken."""
    rejected = [n for n in f.problems if n.reason in (Reason.CHILD_REJECTED, Reason.NAME_TAKEN)]
    return (F, rejected[0].reason, rejected[0].message) if rejected else None


def variants_not_ready(f: Facts) -> Condition | None:
    waiting = f.not_serving
    if not waiting:
        return None
    return F, Reason.VARIANTS_NOT_READY, "; ".join(f"{v.name}: {v.message}" for v in waiting)


READY_RULES: tuple[ReadyRule, ...] = (nothing_can_run, model_object_rejected, variants_not_ready)


def ready_condition(f: Facts) -> Condition:
    """The first rule that says not ready; else every runnable variant serves."""
    for rule in READY_RULES:
        found = rule(f)
        if found is not None:
            return found
    return T, Reason.ALL_VARIANTS_SERVING, f"{len(f.runnable)} variant(s) serving"


def building_condition(f: Facts) -> Condition:
    building = [v.name for v in f.plan.variants if v.decision.building]
    if building:
        return T, Reason.BUILDS_RUNNING, f"building {', '.join(building)}"
    return F, Reason.NO_BUILDS_RUNNING, "no build is running"


def degraded_condition(f: Facts) -> Condition:
    blocked, problems = f.blocked, f.problems
    if not blocked and not problems:
        return F, Reason.AS_EXPECTED, "every requested variant can run"
    first_reason = blocked[0].reason if blocked else problems[0].reason
    details = [f"{v.name}: {v.message}" for v in blocked] + [n.message for n in problems]
    return T, first_reason, "; ".join(details)


def gate_condition(f: Facts) -> Condition:
    """A regression outranks a failed evaluation, which outranks reports awaited; what ranks
    below is still told after it (a fallback variant waits for a report of its own)."""
    spec, variants = f.spec, f.served
    if spec.quality.gate == GateTiming.OFF:
        return T, Reason.GATE_DISABLED, "quality.gate is off: variants serve ungated"
    if not has_baseline(spec):
        return (
            T,
            Reason.NO_BASELINE,
            "the source is already quantized and model.reference names no full-precision model "
            "to build a BF16 reference from: there is nothing to compare against, so variants "
            "serve ungated",
        )
    regressed = [v for v in variants if v.decision.regressed or v.fell_back is not None]
    waiting = "; ".join(_still_waiting(f))
    if regressed:
        told = "; ".join(_regression_story(v) for v in regressed)
        return F, Reason.REGRESSED, f"{told}; {waiting}" if waiting else told
    if f.plan.failed_evaluations:
        return U, Reason.EVALUATION_FAILED, waiting
    if waiting:
        return U, Reason.AWAITING_REPORTS, waiting
    return T, Reason.ALL_PASSED, "every quantized variant passed its quality gate"


def _still_waiting(f: Facts) -> list[str]:
    """What the gate still waits for: failed evaluations (and how to run them again), then
    the other gated variants that have no passing report and did not regress."""
    failed = dict(f.plan.failed_evaluations)
    told = []
    if failed:
        told.append(
            "; ".join(f"{name}: {message}" for name, message in failed.items())
            + f" (annotate the model with {RETRY_ANNOTATION}=<new value> to run it again)"
        )
    gated = [v for v in f.served if v.precision != Precision.BF16 and v.action != Action.BLOCKED]
    waiting = [
        v.name
        for v in gated
        if v.name not in failed
        and not v.decision.regressed
        and (v.report is None or not v.report.passed)
    ]
    if waiting:
        told.append(f"awaiting a passing report: {', '.join(waiting)}")
    return told


def _regression_story(variant: PlannedVariant) -> str:
    if variant.fell_back is not None:
        return f"{variant.fell_back.because}; fell back to {variant.name}"
    return f"{variant.name}: {variant.message}"


def rolled_back_condition(f: Facts) -> Condition:
    regressed = [v for v in f.served if v.decision.regressed]
    # A rollback says more than a withdrawal: it names what serves instead.
    for reason in (Reason.ROLLED_BACK, Reason.WITHDRAWN):
        hit = [v for v in regressed if v.decision.reason == reason]
        if hit:
            return T, reason, "; ".join(f"{v.name}: {v.message}" for v in hit)
    fell = [v for v in f.served if v.fell_back is not None]
    if fell:
        return T, Reason.FELL_BACK, "; ".join(_regression_story(v) for v in fell)
    return F, Reason.NO_REGRESSION, "no variant was rolled back"


CONDITIONS: tuple[tuple[ConditionType, Callable[[Facts], Condition]], ...] = (
    (ConditionType.READY, ready_condition),
    (ConditionType.BUILDING, building_condition),
    (ConditionType.QUALITY_GATE, gate_condition),
    (ConditionType.DEGRADED, degraded_condition),
    (ConditionType.ROLLED_BACK, rolled_back_condition),
)


def model_conditions(
    spec: QuantizedModelSpec, plan: Plan
) -> list[tuple[str, ConditionStatus, str, str]]:
    """Every condition but Routed, in the order status lists them."""
    facts = Facts(spec, plan)
    return [(type_, *condition(facts)) for type_, condition in CONDITIONS]
