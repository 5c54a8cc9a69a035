"""From a plan to the QuantizedModel status and to the Events that explain its decisions.

Pure: the previous status goes in, the new status and the Events to post come out. Events are
derived from what changed, so a level-based reconcile every minute does not repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

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
from qmo.planner.plan import Action, BuildState, Phase, Plan, PlannedVariant

# Notes that are worth a warning but do not make the model Degraded.
ADVISORY_NOTES = {"UnpinnedRevision"}
# The API server refused a write for the variant (its reason replaces the planned one).
CHILD_REJECTED = "ChildRejected"


@dataclass(frozen=True)
class Decision:
    """An Event about the QuantizedModel: a decision a user could ask "why?" about."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    variant: str | None = None


@dataclass(frozen=True)
class Names:
    """Names of a variant's children, from qmo.manifests.names (kept out of the plan)."""

    deployment: str
    service: str
    build_job: str | None


def variant_serves(variant: PlannedVariant, replicas: int) -> bool:
    """Its stable Deployment runs the revision it should, with every replica ready."""
    deployment = variant.deployment
    return (
        variant.serve_key is not None
        and deployment is not None
        and deployment.revision == variant.serve_key
        and deployment.ready_replicas >= replicas
        and deployment.updated_replicas >= replicas
    )


def quality_of(variant: PlannedVariant, gated: bool) -> VariantQuality:
    if not gated:
        return VariantQuality(verdict="NotGated")
    if variant.reference:
        return VariantQuality(verdict="Reference")
    if variant.precision == Precision.BF16:
        return VariantQuality(verdict="Baseline")
    report = variant.report
    if report is None:
        return VariantQuality(verdict="Pending")
    return VariantQuality(
        verdict=report.verdict.value,
        worst_benchmark=report.worst_benchmark,
        worst_delta_percent=report.worst_delta_percent,
        report=report.name,
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
    last_good = previous.last_good_revision if previous else None
    at_current = variant.serve_key == variant.cache_key and variant_serves(variant, replicas)
    if at_current and (not gated or quality.verdict in ("Pass", "Baseline", "Reference")):
        last_good = revision
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
        reason="Reference" if variant.reference else variant.reason,
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
        return "Blocked"
    seen = variant.observed_build
    if seen is None:
        return "Pending"
    if seen.state != BuildState.SUCCEEDED:
        return seen.state.value
    same_revision = previous is not None and previous.cache_key == variant.cache_key
    if same_revision and previous is not None and previous.build.state != "Reused":
        return "Succeeded"
    return "Reused"


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
) -> QuantizedModelStatus:
    """The whole status subresource for this plan."""
    old = {v.name: v for v in previous.variants} if previous else {}
    gated = spec.quality.gate != GateTiming.OFF
    variants = [variant_status(v, names[v.name], old.get(v.name), gated) for v in plan.variants]
    conds = list(previous.conditions) if previous else []
    for type_, status, reason, message in _conditions(spec, plan):
        conds = conditions.set_condition(
            conds, type_, status, reason, message, generation=generation, now=now
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
                nodes=len(c.nodes),
                gpus=c.total_gpus,
            )
            for c in inventory.classes
        ],
        unknown_gpus=sorted({f"{u.node}: {u.product}" for u in inventory.unknown}),
        service=main_service,
        summary=StatusSummary(
            precisions=",".join(
                f"{v.gpu_class.name}={v.precision.value}"
                for v in plan.variants
                if v.action not in (Action.BLOCKED, Action.WITHDRAW) and not v.reference
            ),
            quality=_quality_summary(spec, variants),
            serving=plan.main_precision.value if plan.main_precision else "all",
        ),
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
            ready = (F, "NoServableVariant", "no variant can run on the selected GPU classes")
    elif rejected := [n for n in problems if n.reason == CHILD_REJECTED]:
        ready = (F, CHILD_REJECTED, rejected[0].message)
    elif not_serving:
        ready = (F, "VariantsNotReady", "; ".join(f"{v.name}: {v.message}" for v in not_serving))
    else:
        ready = (T, "AllVariantsServing", f"{len(runnable)} variant(s) serving")

    if building:
        names = ", ".join(v.name for v in building)
        building_c = (T, "BuildsRunning", f"building {names}")
    else:
        building_c = (F, "NoBuildsRunning", "no build is running")

    if blocked or problems:
        first_reason = blocked[0].reason if blocked else problems[0].reason
        details = [f"{v.name}: {v.message}" for v in blocked] + [n.message for n in problems]
        degraded = (T, first_reason, "; ".join(details))
    else:
        degraded = (F, "AsExpected", "every requested variant can run")

    return [
        (conditions.READY, *ready),
        (conditions.BUILDING, *building_c),
        (conditions.QUALITY_GATE, *_gate_condition(spec, served)),
        (conditions.DEGRADED, *degraded),
        (conditions.ROLLED_BACK, *_rolled_back_condition(served)),
    ]


def _gate_condition(
    spec: QuantizedModelSpec, variants: list[PlannedVariant]
) -> tuple[ConditionStatus, str, str]:
    if spec.quality.gate == GateTiming.OFF:
        return ConditionStatus.TRUE, "GateDisabled", "quality.gate is off: variants serve ungated"
    gated = [v for v in variants if v.precision != Precision.BF16 and v.action != Action.BLOCKED]
    regressed = [
        v
        for v in variants
        if v.phase in (Phase.ROLLED_BACK, Phase.REGRESSED) or v.fell_back_from is not None
    ]
    if regressed:
        return (
            ConditionStatus.FALSE,
            "Regressed",
            "; ".join(_regression_story(v) for v in regressed),
        )
    waiting = [v for v in gated if v.report is None or v.report.verdict != Verdict.PASS]
    if waiting:
        names = ", ".join(v.name for v in waiting)
        return ConditionStatus.UNKNOWN, "AwaitingReports", f"awaiting a passing report: {names}"
    return ConditionStatus.TRUE, "AllPassed", "every quantized variant passed its quality gate"


def _regression_story(variant: PlannedVariant) -> str:
    if variant.fell_back_from is not None:
        return f"{variant.fell_back_because}; fell back to {variant.name}"
    return f"{variant.name}: {variant.message}"


def _rolled_back_condition(variants: list[PlannedVariant]) -> tuple[ConditionStatus, str, str]:
    for phase, reason in ((Phase.ROLLED_BACK, "RolledBack"), (Phase.REGRESSED, "Withdrawn")):
        hit = [v for v in variants if v.phase == phase]
        if hit:
            return ConditionStatus.TRUE, reason, "; ".join(f"{v.name}: {v.message}" for v in hit)
    fell = [v for v in variants if v.fell_back_from is not None]
    if fell:
        return ConditionStatus.TRUE, "FellBack", "; ".join(_regression_story(v) for v in fell)
    return ConditionStatus.FALSE, "NoRegression", "no variant was rolled back"


def _quality_summary(spec: QuantizedModelSpec, variants: list[VariantStatus]) -> str:
    if spec.quality.gate == GateTiming.OFF:
        return "NotGated"
    verdicts = {v.quality.verdict for v in variants}
    for worst in ("Regressed", "Invalid", "Pending"):
        if worst in verdicts:
            return worst
    return "Pass" if "Pass" in verdicts else "Baseline"


def decisions(
    plan: Plan, previous: QuantizedModelStatus | None, *, spec_changed: bool
) -> list[Decision]:
    """Events for what changed since the previous status."""
    old = {v.name: v for v in previous.variants} if previous else {}
    events: list[Decision] = []
    if spec_changed:
        events += [Decision("Warning", note.reason, note.message) for note in plan.notes]
    for variant in plan.variants:
        before = old.get(variant.name)
        if variant.reference:
            if before is None:
                events.append(
                    Decision(
                        "Normal",
                        "ReferenceStarted",
                        f"{variant.name}: a temporary BF16 baseline runs for evaluations on "
                        f"{variant.gpu_class.name}; it is removed when they are done",
                        variant.name,
                    )
                )
            continue
        events += _variant_decisions(variant, before)
    if plan.main_precision is not None and (
        previous is None or previous.summary.serving != plan.main_precision.value
    ):
        events.append(
            Decision(
                "Normal",
                "MainServiceSelected",
                f"the main Service serves {plan.main_precision.value} "
                f"({', '.join(plan.main_variants) or 'no variant ready yet'})",
            )
        )
    return events


WARNING_PHASES = (Phase.UNSUPPORTED, Phase.BUILD_FAILED, Phase.ROLLED_BACK, Phase.REGRESSED)


def _variant_decisions(variant: PlannedVariant, before: VariantStatus | None) -> list[Decision]:
    events: list[Decision] = []
    name = variant.name
    if before is None or before.cache_key != variant.cache_key:
        events.append(Decision("Normal", "VariantPlanned", describe_choice(variant), name))
        if before is None and variant.fell_back_from is not None:
            events.append(
                Decision(
                    "Warning",
                    "FellBack",
                    f"{variant.fell_back_because}; on its first rollout there is no good "
                    f"revision, so it falls back to {variant.precision.value} ({name})",
                    name,
                )
            )
        seen = variant.observed_build
        if seen is not None and seen.state == BuildState.SUCCEEDED:
            events.append(
                Decision(
                    "Normal",
                    "BuildReused",
                    f"{name}: artifact {seen.cache_key[:16]} is already built; "
                    "it is reused, not rebuilt",
                    name,
                )
            )
    if before is None or (before.phase, before.reason) != (variant.phase, variant.reason):
        # Blocked is a warning in any phase: a missing claim leaves the variant Pending.
        warning = (
            variant.phase in WARNING_PHASES
            or variant.action == Action.BLOCKED
            or variant.reason == CHILD_REJECTED
        )
        events.append(
            Decision(
                "Warning" if warning else "Normal",
                variant.reason,
                f"{name}: {variant.message}",
                name,
            )
        )
    report = variant.report
    if (
        report is not None
        and report.verdict == Verdict.PASS
        and (before is None or before.quality.report != report.name)
    ):
        events.append(
            Decision(
                "Normal",
                "QualityPassed",
                f"{name}: revision {report.cache_key[:16]} passed ({report.message})",
                name,
            )
        )
    return events


def describe_choice(variant: PlannedVariant) -> str:
    """Why a variant looks as it does: precision and its reason, KV, TP and memory, cache key."""
    gpu = variant.gpu_class
    chosen = (
        f"{variant.precision.value} (auto on compute capability {gpu.compute_capability})"
        if variant.requested_precision.value == "auto"
        else variant.precision.value
    )
    parts = [f"{variant.name}: {chosen} on {gpu.product}", f"KV cache {variant.kv_cache_dtype}"]
    if variant.tensor_parallel is not None:
        fit = (
            f" (~{variant.memory_per_gpu_gib} GiB per GPU)"
            if variant.memory_per_gpu_gib is not None
            else " (no model.size: memory not estimated)"
        )
        parts.append(f"tensorParallel {variant.tensor_parallel}{fit}")
    if variant.cache_key:
        parts.append(f"cache key {variant.cache_key[:16]}")
    return ", ".join(parts)
