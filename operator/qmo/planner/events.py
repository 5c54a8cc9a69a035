"""The Events that explain a model's decisions, derived from what changed since the previous
status, so a level-based reconcile that runs again and again does not repeat them. Pure.

One Event per decision a person would want to read, not one per step: a new variant is
explained once (its precision, size and cache key, and what happens next); builds running
and replicas coming up are progress, which status shows; reaching Serving, a refusal, a
failure and every act of the quality gate are Events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmo.api.quantizedmodel import QuantizedModelStatus, VariantStatus
from qmo.conditions import get_condition
from qmo.planner.cachekey import short_key
from qmo.planner.decision import AwaitBuild, Decision, RollOut, was_rolling_out
from qmo.planner.rollout import can_surge
from qmo.planner.types import Plan, PlannedVariant
from qmo.vocabulary import (
    RETRY_ANNOTATION,
    Action,
    BuildState,
    ConditionType,
    EventType,
    Reason,
    Refusal,
)


@dataclass(frozen=True)
class Event:
    """An Event about the QuantizedModel: a decision a user could ask "why?" about."""

    type: Literal[EventType.NORMAL, EventType.WARNING]
    reason: str
    message: str
    variant: str | None = None


# Events that mean a regression was acted on, and the metric label of each.
ROLLBACK_REASONS: dict[str, str] = {
    Reason.ROLLED_BACK: "rollback",
    Reason.FELL_BACK: "fallback",
    Reason.WITHDRAWN: "withdraw",
}


@dataclass(frozen=True)
class Context:
    """What else a reconcile learned that Events may tell: the API server's refusal of the
    model's own objects, the Routed condition it computed, a retry it acted on."""

    spec_changed: bool
    replicas: int = 1  # spec.serving.wanted_replicas
    model_refusal: Refusal | None = None
    retry: str | None = None
    restarted: int = 0  # failed Jobs the retry deleted


def model_events(
    plan: Plan,
    previous: QuantizedModelStatus | None,
    status: QuantizedModelStatus | None,
    context: Context,
) -> list[Event]:
    """Every Event this reconcile posts: what changed since `previous` in `status`."""
    events = decisions(plan, previous, spec_changed=context.spec_changed)
    events += _surge_notes(plan, previous, context.replicas)
    # A refusal of the model's own objects is also a note, told above when the spec changed.
    events += [e for e in _model_refusal(context.model_refusal, previous) if e not in events]
    if status is not None:
        events += _routing(status, previous)
        events += _capacity(status, previous)
    if context.retry is not None:
        events.append(
            Event(
                EventType.NORMAL,
                Reason.RETRY_REQUESTED,
                f"{RETRY_ANNOTATION}={context.retry}: {context.restarted} failed build or eval "
                "Job(s) are started again",
            )
        )
    return events


def decisions(
    plan: Plan, previous: QuantizedModelStatus | None, *, spec_changed: bool
) -> list[Event]:
    """Events for what changed in the plan since the previous status."""
    old = {v.name: v for v in previous.variants} if previous else {}
    events: list[Event] = []
    if spec_changed:
        events += [Event(EventType.WARNING, note.reason, note.message) for note in plan.notes]
    for variant in plan.variants:
        before = old.get(variant.name)
        if variant.reference:
            if before is None:
                events.append(
                    Event(
                        EventType.NORMAL,
                        Reason.REFERENCE_STARTED,
                        f"{variant.name}: a temporary BF16 baseline runs for evaluations on "
                        f"{variant.gpu_class.name}; it is removed when they are done",
                        variant.name,
                    )
                )
            continue
        events += _variant_events(variant, before)
    events += _failed_evaluations(plan, previous)
    events += _main_service(plan, previous)
    return events


def _failed_evaluations(plan: Plan, previous: QuantizedModelStatus | None) -> list[Event]:
    """One Warning per failed eval Job: the variant's status keeps why it failed (its message
    names the Job) in quality.evaluationFailed, so a reconcile that finds it there posted it."""
    told = {v.name: v.quality.evaluation_failed for v in previous.variants} if previous else {}
    return [
        Event(EventType.WARNING, Reason.EVALUATION_FAILED, f"{name}: {message}", name)
        for name, message in plan.failed_evaluations
        if told.get(name) != message
    ]


def _main_service(plan: Plan, previous: QuantizedModelStatus | None) -> list[Event]:
    """Which precision the main Service serves, when that was a choice: it changed, or several
    precisions could serve (a model of one precision has nothing to choose)."""
    chosen = plan.main_precision
    if chosen is None:
        return []
    before = previous.summary.serving if previous else None
    runnable = {v.precision for v in plan.variants if v.decision.runnable and not v.reference}
    if before == chosen.value or (not before and len(runnable) < 2):
        return []
    return [
        Event(
            EventType.NORMAL,
            Reason.MAIN_SERVICE_SELECTED,
            f"the main Service serves {chosen.value} "
            f"({', '.join(plan.main_variants) or 'no variant ready yet'})",
        )
    ]


def _progress_only(decision: Decision) -> bool:
    """A build running or replicas coming up: status shows it; no Event."""
    return isinstance(decision, RollOut) or (
        isinstance(decision, AwaitBuild) and decision.reason == Reason.BUILD_RUNNING
    )


def _variant_events(variant: PlannedVariant, before: VariantStatus | None) -> list[Event]:
    events: list[Event] = []
    name = variant.name
    decision = variant.decision
    warning = decision.warning or variant.rejected is not None
    planned = before is None or before.cache_key != variant.cache_key
    changed = before is None or (before.phase, before.reason) != (decision.phase, variant.reason)
    if variant.rejected is not None:  # told once, whatever phase the decision moves through
        changed = before is None or (before.reason, before.message) != (
            variant.reason,
            variant.message,
        )
    if planned:
        # What happens next joins the explanation, unless it is worth a Warning of its own.
        told = changed and not warning
        choice = describe_choice(variant) + (f"; {variant.message}" if told else "")
        events.append(Event(EventType.NORMAL, Reason.VARIANT_PLANNED, choice, name))
        changed = changed and not told
        seen = variant.observed_build
        if seen is not None and seen.state == BuildState.SUCCEEDED:
            events.append(
                Event(
                    EventType.NORMAL,
                    Reason.BUILD_REUSED,
                    f"{name}: artifact {short_key(seen.cache_key)} is already built; "
                    "it is reused, not rebuilt",
                    name,
                )
            )
    # A fallback may land on the BF16 variant that ran as a temporary reference.
    first = before is None or before.reason == Reason.REFERENCE
    if first and variant.fell_back is not None:
        because = f"{variant.fell_back.message} to {variant.precision.value} ({name})"
        events.append(Event(EventType.WARNING, Reason.FELL_BACK, because, name))
    if changed and (warning or not _progress_only(decision)):
        kind = EventType.WARNING if warning else EventType.NORMAL
        events.append(Event(kind, variant.reason, f"{name}: {variant.message}", name))
    report = variant.report
    if (
        report is not None
        and report.passed
        and (before is None or before.quality.report != report.name)
    ):
        events.append(
            Event(
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
    reason = variant.target.auto_reason
    chosen = f"{variant.precision.value} ({reason})" if reason else variant.precision.value
    parts = [f"{variant.name}: {chosen} on {gpu.product}", f"KV cache {variant.kv_cache_dtype}"]
    if variant.tensor_parallel is not None:
        fit = (
            f" (~{variant.memory_per_gpu_gib} GiB per GPU)"
            if variant.memory_per_gpu_gib is not None
            else " (no model.size: memory not estimated)"
        )
        parts.append(f"tensorParallel {variant.tensor_parallel}{fit}")
    if variant.target.build_class is not None:
        parts.append(
            f"built on {variant.target.build_class.name} (no GPU free on {gpu.name}; a "
            "PyTorch-backend checkpoint runs anywhere)"
        )
    if variant.cache_key:
        parts.append(f"cache key {short_key(variant.cache_key)}")
    return ", ".join(parts)


def _routing(status: QuantizedModelStatus, previous: QuantizedModelStatus | None) -> list[Event]:
    """A Warning when routing stops working (or cannot start), once per reason. None for a
    route without ready replicas behind it: every rollout of a new model passes through that,
    and the variants' own conditions say why."""
    routed = get_condition(status.conditions, ConditionType.ROUTED)
    if routed is None or routed.status != "False" or routed.reason == Reason.NO_READY_BACKEND:
        return []
    before = get_condition(previous.conditions, ConditionType.ROUTED) if previous else None
    if before is not None and before.reason == routed.reason and before.status == routed.status:
        return []
    return [Event(EventType.WARNING, routed.reason, routed.message)]


def _capacity(status: QuantizedModelStatus, previous: QuantizedModelStatus | None) -> list[Event]:
    """A Warning when an autoscaled variant reaches the bound of its GPU class (once, until it
    leaves it): more load would need GPUs the class does not have."""
    was = {
        v.name: v.autoscaling.at_bound
        for v in (previous.variants if previous else [])
        if v.autoscaling is not None
    }
    return [
        Event(
            EventType.WARNING,
            Reason.CAPACITY_EXHAUSTED,
            f"{v.name}: {v.autoscaling.message}",
            v.name,
        )
        for v in status.variants
        if v.autoscaling is not None and v.autoscaling.at_bound and not was.get(v.name)
    ]


def _model_refusal(refusal: Refusal | None, previous: QuantizedModelStatus | None) -> list[Event]:
    """A Warning for a refusal of the model's own objects, once per distinct message."""
    if refusal is None:
        return []
    degraded = get_condition(previous.conditions, ConditionType.DEGRADED) if previous else None
    if degraded is not None and refusal.message in degraded.message:
        return []
    return [Event(EventType.WARNING, refusal.reason, refusal.message)]


def _surge_notes(plan: Plan, previous: QuantizedModelStatus | None, replicas: int) -> list[Event]:
    """Say, once per rollout, when a variant must roll without a surge pod (no spare GPU)."""
    before = {v.name: v for v in previous.variants} if previous else {}
    notes = []
    for variant in plan.variants:
        if variant.action != Action.DEPLOY:
            continue
        prev = before.get(variant.name)
        starts_rollout = (
            prev is None
            or prev.deployment is None
            or (prev.revision != variant.cache_key and not was_rolling_out(prev.phase))
        )
        if starts_rollout and not can_surge(variant.target, replicas):
            notes.append(
                Event(
                    EventType.NORMAL,
                    Reason.ROLLING_WITHOUT_SURGE,
                    f"{variant.name}: {variant.gpu_class.name} has no spare GPUs for a surge "
                    "pod, so updates replace one pod at a time (maxSurge 0)",
                )
            )
    return notes
