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
    VariantAutoscaling,
    VariantBuild,
    VariantQuality,
    VariantStatus,
)
from qmo.gpu import GpuInventory
from qmo.planner import revisions
from qmo.planner.model_conditions import model_conditions
from qmo.planner.routing import RoutedCondition
from qmo.planner.types import Plan, PlannedVariant
from qmo.vocabulary import (
    Action,
    BuildState,
    ConditionType,
    QualityState,
    Reason,
)


@dataclass(frozen=True)
class Names:
    """Names of a variant's children, from qmo.manifests.names (kept out of the plan)."""

    deployment: str | None  # None where another model holds the name (controller.ownership)
    service: str | None
    build_job: str | None


def quality_of(
    variant: PlannedVariant, gated: bool, failed_evaluation: str | None = None
) -> VariantQuality:
    """`failed_evaluation`: why the eval Job of the variant's revision left no report."""
    if not gated:
        return VariantQuality(verdict=QualityState.NOT_GATED)
    if variant.reference:
        return VariantQuality(verdict=QualityState.REFERENCE)
    if variant.precision == Precision.BF16:
        return VariantQuality(verdict=QualityState.BASELINE)
    report = variant.report
    if report is None:
        return VariantQuality(verdict=QualityState.PENDING, evaluation_failed=failed_evaluation)
    return VariantQuality(
        verdict=report.verdict.value,
        counted_as=report.inconclusive_acts_as.value
        if report.verdict == Verdict.INCONCLUSIVE and report.inconclusive_acts_as
        else None,
        worst_benchmark=report.worst_benchmark,
        worst_delta_percent=report.worst_delta_percent,
        report=report.name,
        speedup=report.speedup,
        evaluation_failed=failed_evaluation,
    )


def variant_status(
    variant: PlannedVariant,
    names: Names,
    previous: VariantStatus | None,
    gated: bool,
    replicas: int = 1,
    failed_evaluation: str | None = None,
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
    quality = quality_of(variant, gated, failed_evaluation)
    good = quality.verdict in revisions.GOOD_QUALITY or quality.counted_as == Verdict.PASS
    last_good = revisions.last_good_after(variant, previous, good, gated=gated, replicas=replicas)
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
        autoscaling=_autoscaling(variant),
    )


def _replicas(variant: VariantStatus) -> str:
    """h100-fp8=2, or for an autoscaled variant h100-fp8=3(1-6)."""
    scaling = variant.autoscaling
    span = f"({scaling.min_replicas}-{scaling.max_replicas})" if scaling else ""
    return f"{variant.name}={variant.ready_replicas}{span}"


def _autoscaling(variant: PlannedVariant) -> VariantAutoscaling | None:
    scaling = variant.scaling
    if scaling is None:
        return None
    message = scaling.why
    if scaling.at_bound:
        message += f"; at its bound ({Reason.CAPACITY_EXHAUSTED})"
    return VariantAutoscaling(
        engine=scaling.engine.value,
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        requested_max_replicas=scaling.requested_max,
        replicas=scaling.running,
        at_bound=scaling.at_bound,
        message=message,
        route_weight=scaling.route_weight,
        tokens_per_second=scaling.tokens_per_second,
        capacity=(
            None
            if scaling.route_weight is None
            else ("measured" if scaling.measured else "estimated")
        ),
    )


def _build_state(variant: PlannedVariant, previous: VariantStatus | None) -> str:
    """Succeeded when this model saw the build through; Reused when it found it finished."""
    if not variant.decision.supported:
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
    main_service: str | None,
    now: datetime,
    retried: str | None = None,
    routed: RoutedCondition | None = None,
) -> QuantizedModelStatus:
    """The whole status subresource for this plan; `retried` is the retry request acted on
    (None: keep the previous one); `routed` the Routed condition (None: no spec.routing, and
    no Routed condition)."""
    old = {v.name: v for v in previous.variants} if previous else {}
    gated = spec.quality.gate != GateTiming.OFF
    failed = dict(plan.failed_evaluations)
    variants = [
        variant_status(
            v,
            names[v.name],
            old.get(v.name),
            gated,
            replicas=spec.serving.wanted_replicas,
            failed_evaluation=failed.get(v.name),
        )
        for v in plan.variants
    ]
    conds = list(previous.conditions) if previous else []
    for type_, status, reason, message in model_conditions(spec, plan):
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
            replicas=",".join(_replicas(v) for v in variants if v.deployment),
        ),
        retried=retried if retried is not None else (previous.retried if previous else None),
    )


def _quality_summary(spec: QuantizedModelSpec, variants: list[VariantStatus]) -> str:
    if spec.quality.gate == GateTiming.OFF:
        return QualityState.NOT_GATED
    verdicts = {v.quality.verdict for v in variants}
    for worst in (Verdict.REGRESSED, Verdict.INVALID, Verdict.INCONCLUSIVE, QualityState.PENDING):
        if worst in verdicts:
            return worst
    return Verdict.PASS if Verdict.PASS in verdicts else QualityState.BASELINE


def invalid_spec_status(
    previous: QuantizedModelStatus | None, message: str, *, generation: int | None, now: datetime
) -> QuantizedModelStatus:
    """A spec the CRD accepted but qmo cannot use: Degraded and not Ready, everything else
    (the variants that run) left as the previous status has it."""
    status = previous or QuantizedModelStatus()
    conds = conditions.set_condition(
        status.conditions, ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.INVALID_SPEC,
        message, generation=generation, now=now,
    )  # fmt: skip
    conds = conditions.set_condition(
        conds, ConditionType.READY, ConditionStatus.FALSE, Reason.INVALID_SPEC,
        "the spec is invalid; running variants are left as they are",
        generation=generation, now=now,
    )  # fmt: skip
    return status.model_copy(update={"conditions": conds, "observed_generation": generation})
