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
from qmo.api.quantizedmodel import (
    GateTiming,
    GpuClassStatus,
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


@dataclass(frozen=True)
class Decision:
    """An Event about the QuantizedModel: a decision a user could ask "why?" about."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Names:
    """Names of a variant's children, from qmo.manifests.names (kept out of the plan)."""

    deployment: str
    service: str
    build_job: str | None


def variant_status(
    variant: PlannedVariant, names: Names, previous: VariantStatus | None, gated: bool
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
    serving = variant.phase == Phase.SERVING
    revision = deployment.revision if deployment else None
    last_good = previous.last_good_revision if previous else None
    if serving and not gated:
        last_good = revision
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
        reason=variant.reason,
        message=variant.message,
        build=build,
        deployment=names.deployment if variant.action == Action.DEPLOY else None,
        service=names.service if variant.action == Action.DEPLOY else None,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        revision=revision,
        last_good_revision=last_good,
        quality=VariantQuality(verdict="NotGated" if not gated else "Pending"),
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
                if v.action != Action.BLOCKED
            ),
            quality="NotGated" if not gated else "Pending",
            serving=plan.main_precision.value if plan.main_precision else "all",
        ),
    )


def _conditions(
    spec: QuantizedModelSpec, plan: Plan
) -> list[tuple[str, ConditionStatus, str, str]]:
    variants = plan.variants
    runnable = [v for v in variants if v.action != Action.BLOCKED]
    blocked = [v for v in variants if v.action == Action.BLOCKED]
    building = [v for v in variants if v.phase == Phase.BUILDING]
    not_serving = [v for v in runnable if v.phase != Phase.SERVING]
    problems = [n for n in plan.notes if n.reason not in ADVISORY_NOTES]
    T, F = ConditionStatus.TRUE, ConditionStatus.FALSE

    if not runnable:
        if problems:
            ready = (F, problems[0].reason, problems[0].message)
        elif blocked:
            ready = (F, blocked[0].reason, f"{blocked[0].name}: {blocked[0].message}")
        else:
            ready = (F, "NoServableVariant", "no variant can run on the selected GPU classes")
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

    if spec.quality.gate == GateTiming.OFF:
        gate = (T, "GateDisabled", "quality.gate is off: variants serve without a report")
    else:
        gate = (ConditionStatus.UNKNOWN, "AwaitingReports", "no quality report judged yet")

    return [
        (conditions.READY, *ready),
        (conditions.BUILDING, *building_c),
        (conditions.QUALITY_GATE, *gate),
        (conditions.DEGRADED, *degraded),
    ]


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
        if before is None or before.cache_key != variant.cache_key:
            events.append(Decision("Normal", "VariantPlanned", describe_choice(variant)))
            seen = variant.observed_build
            if seen is not None and seen.state == BuildState.SUCCEEDED:
                events.append(
                    Decision(
                        "Normal",
                        "BuildReused",
                        f"{variant.name}: artifact {seen.cache_key[:16]} is already built; "
                        "it is reused, not rebuilt",
                    )
                )
        if before is None or (before.phase, before.reason) != (variant.phase, variant.reason):
            warning = variant.phase in (Phase.UNSUPPORTED, Phase.BUILD_FAILED)
            events.append(
                Decision(
                    "Warning" if warning else "Normal",
                    variant.reason,
                    f"{variant.name}: {variant.message}",
                )
            )
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
