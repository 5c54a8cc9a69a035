"""From a plan to the QuantizedModel status: variants, conditions, summary.

Pure: the plan and the previous status go in, the new status comes out. The Events that go
with it are `decisions`' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qmo import conditions
from qmo.api.base import ConditionStatus
from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import (
    GateTiming,
    GpuClassStatus,
    Precision,
    QuantizedModelSpec,
    QuantizedModelStatus,
    StatusSummary,
    VariantBuild,
    VariantQuality,
    VariantStatus,
)
from qmo.gpu import GpuInventory
from qmo.planner import revisions
from qmo.planner.revisions import variant_serves
from qmo.planner.routing import RoutedCondition
from qmo.planner.types import Plan, PlannedVariant
from qmo.vocabulary import (
    RETRY_ANNOTATION,
    Action,
    BuildState,
    ConditionType,
    Phase,
    QualityState,
    Reason,
)

# Notes that are worth a warning but do not make the model Degraded.
ADVISORY_NOTES = {Reason.UNPINNED_REVISION}
# The API server refused a write for the variant (its reason replaces the planned one).
CHILD_REJECTED = Reason.CHILD_REJECTED


@dataclass(frozen=True)
class Names:
    """Names of a variant's children, from qmo.manifests.names (kept out of the plan)."""

    deployment: str
    service: str
    build_job: str | None


def quality_of(variant: PlannedVariant, gated: bool) -> VariantQuality:
    if not gated:
        return VariantQuality(verdict=QualityState.NOT_GATED)
    if variant.reference:
        return VariantQuality(verdict=QualityState.REFERENCE)
    if variant.precision == Precision.BF16:
        return VariantQuality(verdict=QualityState.BASELINE)
    report = variant.report
    if report is None:
        return VariantQuality(verdict=QualityState.PENDING)
    return VariantQuality(
        verdict=report.verdict.value,
        worst_benchmark=report.worst_benchmark,
        worst_delta_percent=report.worst_delta_percent,
        report=report.name,
        speedup=report.speedup,
    )


def variant_status(
    variant: PlannedVariant,
    names: Names,
    previous: VariantStatus | None,
    gated: bool,
    replicas: int = 1,
) -> VariantStatus:
    seen = variant.observed_build
    build = VariantBuild(
        job=seen.job if seen else (names.build_job if variant.action == Action.BUILD else None),
        state=_build_state(variant, previous),
        reason=seen.reason if seen else None,
        message=seen.message if seen else None,
        artifact_path=seen.artifact_path if seen and seen.state == BuildState.SUCCEEDED else None,
    )
    deployment = variant.deployment
    revision = deployment.revision if deployment else None
    quality = quality_of(variant, gated)
    last_good = revisions.last_good_after(
        variant, previous, quality.verdict, gated=gated, replicas=replicas
    )
    deployed = variant.action == Action.DEPLOY and variant.serve_key is not None
    return VariantStatus(
        name=variant.name,
        gpu_class=variant.gpu_class.name,
        compute_capability=str(variant.gpu_class.compute_capability),
        precision=variant.precision.value,
        requested_precision=variant.requested_precision.value,
        kv_cache_dtype=variant.kv_cache_dtype,
        tensor_parallel=variant.tensor_parallel,
        memory_estimate_gib=variant.memory_per_gpu_gib,
        cache_key=variant.cache_key,
        phase=variant.phase.value,
        reason=Reason.REFERENCE if variant.reference else variant.reason,
        message=(
            f"temporary BF16 baseline for evaluations; {variant.message}"
            if variant.reference
            else variant.message
        ),
        build=build,
        deployment=names.deployment if deployed else None,
        service=names.service if deployed else None,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        revision=revision,
        last_good_revision=last_good,
        quality=quality,
    )


def _build_state(variant: PlannedVariant, previous: VariantStatus | None) -> str:
    """Succeeded when this model saw the build through; Reused when it found it finished."""
    if variant.phase == Phase.UNSUPPORTED:
        return BuildState.BLOCKED
    seen = variant.observed_build
    if seen is None:
        return BuildState.PENDING
    if seen.state != BuildState.SUCCEEDED:
        return seen.state.value
    same_revision = previous is not None and previous.cache_key == variant.cache_key
    if same_revision and previous is not None and previous.build.state != BuildState.REUSED:
        return BuildState.SUCCEEDED
    return BuildState.REUSED


def build_status(
    spec: QuantizedModelSpec,
    plan: Plan,
    inventory: GpuInventory,
    names: dict[str, Names],
    previous: QuantizedModelStatus | None,
    *,
    generation: int | None,
    main_service: str,
    now: datetime,
    retried: str | None = None,
    routed: RoutedCondition | None = None,
) -> QuantizedModelStatus:
    """The whole status subresource for this plan; `retried` is the retry request acted on
    (None: keep the previous one); `routed` the Routed condition (None: no spec.routing, and
    no Routed condition)."""
    old = {v.name: v for v in previous.variants} if previous else {}
    gated = spec.quality.gate != GateTiming.OFF
    variants = [variant_status(v, names[v.name], old.get(v.name), gated) for v in plan.variants]
    conds = list(previous.conditions) if previous else []
    for type_, status, reason, message in _conditions(spec, plan):
        conds = conditions.set_condition(
            conds, type_, status, reason, message, generation=generation, now=now
        )
    if routed is None:
        conds = [c for c in conds if c.type != ConditionType.ROUTED]
    else:
        conds = conditions.set_condition(
            conds,
            ConditionType.ROUTED,
            routed.status,
            routed.reason,
            routed.message,
            generation=generation,
            now=now,
        )
    return QuantizedModelStatus(
        observed_generation=generation,
        conditions=conds,
        variants=variants,
        gpu_classes=[
            GpuClassStatus(
                name=c.name,
                product=c.product,
                compute_capability=str(c.compute_capability),
                memory_mib=c.memory_mib,
            )
            for c in inventory.classes
        ],
        unknown_gpus=sorted({u.product for u in inventory.unknown}),
        service=main_service,
        summary=StatusSummary(
            precisions=",".join(
                f"{v.gpu_class.name}={v.precision.value}"
                for v in plan.variants
                if v.action not in (Action.BLOCKED, Action.WITHDRAW) and not v.reference
            ),
            quality=_quality_summary(spec, variants),
            serving=plan.main_precision.value if plan.main_precision else "all",
            speedup=",".join(
                f"{v.name}={v.quality.speedup:.2f}x"
                for v in variants
                if v.quality.speedup is not None
            ),
        ),
        retried=retried if retried is not None else (previous.retried if previous else None),
    )


def _conditions(
    spec: QuantizedModelSpec, plan: Plan
) -> list[tuple[str, ConditionStatus, str, str]]:
    served = [v for v in plan.variants if not v.reference]
    runnable = [v for v in served if v.action not in (Action.BLOCKED, Action.WITHDRAW)]
    blocked = [
        v
        for v in served
        if v.action in (Action.BLOCKED, Action.WITHDRAW) or v.reason == CHILD_REJECTED
    ]
    building = [v for v in plan.variants if v.phase == Phase.BUILDING]
    replicas = spec.serving.replicas
    not_serving = [
        v for v in runnable if not variant_serves(v, replicas) or v.reason == CHILD_REJECTED
    ]
    problems = [n for n in plan.notes if n.reason not in ADVISORY_NOTES]
    T, F = ConditionStatus.TRUE, ConditionStatus.FALSE

    if not runnable:
        if problems:
            ready = (F, problems[0].reason, problems[0].message)
        elif blocked:
            ready = (F, blocked[0].reason, f"{blocked[0].name}: {blocked[0].message}")
        else:
            ready = (
                F,
                Reason.NO_SERVABLE_VARIANT,
                "no variant can run on the selected GPU classes",
            )
    elif rejected := [n for n in problems if n.reason == CHILD_REJECTED]:
        ready = (F, CHILD_REJECTED, rejected[0].message)
    elif not_serving:
        ready = (
            F,
            Reason.VARIANTS_NOT_READY,
            "; ".join(f"{v.name}: {v.message}" for v in not_serving),
        )
    else:
        ready = (T, Reason.ALL_VARIANTS_SERVING, f"{len(runnable)} variant(s) serving")

    if building:
        names = ", ".join(v.name for v in building)
        building_c = (T, Reason.BUILDS_RUNNING, f"building {names}")
    else:
        building_c = (F, Reason.NO_BUILDS_RUNNING, "no build is running")

    if blocked or problems:
        first_reason = blocked[0].reason if blocked else problems[0].reason
        details = [f"{v.name}: {v.message}" for v in blocked] + [n.message for n in problems]
        degraded = (T, first_reason, "; ".join(details))
    else:
        degraded = (F, Reason.AS_EXPECTED, "every requested variant can run")

    return [
        (ConditionType.READY, *ready),
        (ConditionType.BUILDING, *building_c),
        (ConditionType.QUALITY_GATE, *_gate_condition(spec, served, plan.failed_evaluations)),
        (ConditionType.DEGRADED, *degraded),
        (ConditionType.ROLLED_BACK, *_rolled_back_condition(served)),
    ]


def _gate_condition(
    spec: QuantizedModelSpec,
    variants: list[PlannedVariant],
    failed_evaluations: tuple[tuple[str, str], ...] = (),
) -> tuple[ConditionStatus, str, str]:
    if spec.quality.gate == GateTiming.OFF:
        return (
            ConditionStatus.TRUE,
            Reason.GATE_DISABLED,
            "quality.gate is off: variants serve ungated",
        )
    gated = [v for v in variants if v.precision != Precision.BF16 and v.action != Action.BLOCKED]
    regressed = [
        v
        for v in variants
        if v.phase in (Phase.ROLLED_BACK, Phase.REGRESSED) or v.fell_back_from is not None
    ]
    if regressed:
        return (
            ConditionStatus.FALSE,
            Reason.REGRESSED,
            "; ".join(_regression_story(v) for v in regressed),
        )
    if failed_evaluations:
        return (
            ConditionStatus.UNKNOWN,
            Reason.EVALUATION_FAILED,
            "; ".join(f"{name}: {message}" for name, message in failed_evaluations)
            + f" (annotate the model with {RETRY_ANNOTATION}=<new value> to run it again)",
        )
    waiting = [v for v in gated if v.report is None or v.report.verdict != Verdict.PASS]
    if waiting:
        names = ", ".join(v.name for v in waiting)
        return (
            ConditionStatus.UNKNOWN,
            Reason.AWAITING_REPORTS,
            f"awaiting a passing report: {names}",
        )
    return (
        ConditionStatus.TRUE,
        Reason.ALL_PASSED,
        "every quantized variant passed its quality gate",
    )


def _regression_story(variant: PlannedVariant) -> str:
    if variant.fell_back_from is not None:
        return f"{variant.fell_back_because}; fell back to {variant.name}"
    return f"{variant.name}: {variant.message}"


def _rolled_back_condition(variants: list[PlannedVariant]) -> tuple[ConditionStatus, str, str]:
    for phase, reason in (
        (Phase.ROLLED_BACK, Reason.ROLLED_BACK),
        (Phase.REGRESSED, Reason.WITHDRAWN),
    ):
        hit = [v for v in variants if v.phase == phase]
        if hit:
            return ConditionStatus.TRUE, reason, "; ".join(f"{v.name}: {v.message}" for v in hit)
    fell = [v for v in variants if v.fell_back_from is not None]
    if fell:
        return ConditionStatus.TRUE, Reason.FELL_BACK, "; ".join(_regression_story(v) for v in fell)
    return ConditionStatus.FALSE, Reason.NO_REGRESSION, "no variant was rolled back"


def _quality_summary(spec: QuantizedModelSpec, variants: list[VariantStatus]) -> str:
    if spec.quality.gate == GateTiming.OFF:
        return QualityState.NOT_GATED
    verdicts = {v.quality.verdict for v in variants}
    for worst in (Verdict.REGRESSED, Verdict.INVALID, QualityState.PENDING):
        if worst in verdicts:
            return worst
    return Verdict.PASS if Verdict.PASS in verdicts else QualityState.BASELINE
