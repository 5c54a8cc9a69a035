"""Which variants await a quality report, the temporary BF16 baselines they are judged
against, and the eval Jobs that can run now. Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import GateTiming, Precision, QuantizedModelSpec
from qmo.gpu import GpuClass
from qmo.planner.cachekey import cache_key
from qmo.planner.gate import has_baseline
from qmo.planner.types import Evaluation, Observed, PlannedVariant
from qmo.vocabulary import Action

PlanReference = Callable[[GpuClass], PlannedVariant]
# What a verdict is judged from, not what an evaluation measures: editing these re-judges the
# reports there are; editing anything else in spec.quality evaluates again.
JUDGEMENT_ONLY = {
    "maxRegressionPercent",
    "onRegression",
    "gate",
    "minSpeedup",
    "confidence",
    "inconclusive",
}


def quality_key(spec: QuantizedModelSpec) -> str:
    """8 hex digits of what an evaluation measures (benchmarks, speed probe, image)."""
    quality = spec.quality
    measured = {k: v for k, v in quality.to_wire().items() if k not in JUDGEMENT_ONLY}
    measured["speedMeasured"] = quality.speed is not None or quality.min_speedup is not None
    return cache_key(measured)[:8]


def awaits_report(spec: QuantizedModelSpec, variant: PlannedVariant) -> bool:
    """Built, deployed somewhere, gated with benchmarks, and not yet judged."""
    return (
        spec.quality.gate != GateTiming.OFF
        and has_baseline(spec)
        and bool(spec.quality.benchmarks)
        and not variant.reference
        and variant.precision != Precision.BF16
        and variant.action == Action.DEPLOY
        # No report yet, one that cannot be judged (the spec asks for a benchmark or a speed
        # it lacks), or an Inconclusive one that asks for more samples: evaluate again.
        and (
            variant.report is None
            or variant.report.verdict == Verdict.INVALID
            or variant.report.awaits_more_samples
        )
        and not variant.decision.regressed
    )


def samples_asked(variant: PlannedVariant) -> tuple[tuple[str, int], ...]:
    """What the variant's awaited evaluation scores over the spec: the items an Inconclusive
    report asks for, or nothing (a first evaluation)."""
    report = variant.report
    return report.more_samples if report is not None and report.awaits_more_samples else ()


def references(
    spec: QuantizedModelSpec,
    classes: list[GpuClass],
    variants: list[PlannedVariant],
    plan_reference: PlanReference,
) -> list[PlannedVariant]:
    """Temporary BF16 baselines for classes whose quantized variants await a report."""
    found = []
    for gpu in classes:
        on_class = [v for v in variants if v.gpu_class.name == gpu.name]
        has_bf16 = any(
            v.precision == Precision.BF16 and v.action != Action.BLOCKED for v in on_class
        )
        if has_bf16 or not any(awaits_report(spec, v) for v in on_class):
            continue
        reference = plan_reference(gpu)
        if reference.action != Action.BLOCKED:
            found.append(reference)
    return found


def evaluations(
    spec: QuantizedModelSpec, variants: list[PlannedVariant], observed: Observed
) -> tuple[Evaluation, ...]:
    """Eval Jobs whose candidate and baseline both serve now."""
    found = []
    for variant in variants:
        if not awaits_report(spec, variant) or variant.cache_key is None:
            continue
        baseline = next(
            (
                v
                for v in variants
                if v.gpu_class.name == variant.gpu_class.name
                and v.precision == Precision.BF16
                and v.decision.serving
            ),
            None,
        )
        running = (
            observed.candidates.get(variant.name)
            if variant.candidate
            else observed.deployments.get(variant.name)
        )
        ready = (
            running is not None
            and running.revision == variant.cache_key
            and running.ready_replicas >= 1
        )
        if baseline is not None and ready:
            found.append(
                Evaluation(
                    variant.name,
                    variant.cache_key,
                    variant.candidate,
                    baseline.name,
                    quality_key(spec),
                    samples_asked(variant),
                )
            )
    return tuple(found)


def failed(
    spec: QuantizedModelSpec, variants: list[PlannedVariant], observed: Observed
) -> tuple[tuple[str, str], ...]:
    """(variant, message) of revisions still awaiting a report whose eval Job failed."""
    found = []
    for variant in variants:
        key = variant.cache_key
        if key is None or not awaits_report(spec, variant):
            continue
        message = observed.failed_evaluations.get((variant.name, key))
        if message is not None:
            found.append((variant.name, message))
    return tuple(found)
