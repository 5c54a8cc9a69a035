"""The Events that explain a model's decisions, derived from what changed since the previous
status, so a level-based reconcile that runs again and again does not repeat them. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import QuantizedModelStatus, VariantStatus
from qmo.planner.cachekey import short_key
from qmo.planner.types import Plan, PlannedVariant
from qmo.vocabulary import Action, BuildState, ConditionType, EventType, Phase, Reason


@dataclass(frozen=True)
class Decision:
    """An Event about the QuantizedModel: a decision a user could ask "why?" about."""

    type: Literal[EventType.NORMAL, EventType.WARNING]
    reason: str
    message: str
    variant: str | None = None


def decisions(
    plan: Plan, previous: QuantizedModelStatus | None, *, spec_changed: bool
) -> list[Decision]:
    """Events for what changed since the previous status."""
    old = {v.name: v for v in previous.variants} if previous else {}
    events: list[Decision] = []
    if spec_changed:
        events += [Decision(EventType.WARNING, note.reason, note.message) for note in plan.notes]
    for variant in plan.variants:
        before = old.get(variant.name)
        if variant.reference:
            if before is None:
                events.append(
                    Decision(
                        EventType.NORMAL,
                        Reason.REFERENCE_STARTED,
                        f"{variant.name}: a temporary BF16 baseline runs for evaluations on "
                        f"{variant.gpu_class.name}; it is removed when they are done",
                        variant.name,
                    )
                )
            continue
        events += _variant_decisions(variant, before)
    gate_before = (
        next((c for c in previous.conditions if c.type == ConditionType.QUALITY_GATE), None)
        if previous
        else None
    )
    for name, message in plan.failed_evaluations:
        if gate_before is None or message not in gate_before.message:
            events.append(
                Decision(EventType.WARNING, Reason.EVALUATION_FAILED, f"{name}: {message}", name)
            )
    if plan.main_precision is not None and (
        previous is None or previous.summary.serving != plan.main_precision.value
    ):
        events.append(
            Decision(
                EventType.NORMAL,
                Reason.MAIN_SERVICE_SELECTED,
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
        events.append(
            Decision(EventType.NORMAL, Reason.VARIANT_PLANNED, describe_choice(variant), name)
        )
        if before is None and variant.fell_back_from is not None:
            events.append(
                Decision(
                    EventType.WARNING,
                    Reason.FELL_BACK,
                    f"{variant.fell_back_because}; on its first rollout there is no good "
                    f"revision, so it falls back to {variant.precision.value} ({name})",
                    name,
                )
            )
        seen = variant.observed_build
        if seen is not None and seen.state == BuildState.SUCCEEDED:
            events.append(
                Decision(
                    EventType.NORMAL,
                    Reason.BUILD_REUSED,
                    f"{name}: artifact {short_key(seen.cache_key)} is already built; "
                    "it is reused, not rebuilt",
                    name,
                )
            )
    if before is None or (before.phase, before.reason) != (variant.phase, variant.reason):
        # Blocked is a warning in any phase: a missing claim leaves the variant Pending.
        warning = (
            variant.phase in WARNING_PHASES
            or variant.action == Action.BLOCKED
            or variant.reason == Reason.CHILD_REJECTED
        )
        events.append(
            Decision(
                EventType.WARNING if warning else EventType.NORMAL,
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
                EventType.NORMAL,
                Reason.QUALITY_PASSED,
                f"{name}: revision {short_key(report.cache_key)} passed ({report.message})",
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
        parts.append(f"cache key {short_key(variant.cache_key)}")
    return ", ".join(parts)
