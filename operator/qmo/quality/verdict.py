"""Quality verdicts: how much worse a candidate scored than its baseline, and whether that is
a regression. Pure; the reconciler writes the result into the QualityReport's status.

delta = (baseline - candidate) / baseline x 100 for higher-is-better benchmarks, and
(candidate - baseline) / baseline x 100 for lower-is-better ones (perplexity, latency), so a
positive delta is always a loss. A delta above the threshold is a regression; exactly at the
threshold passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qmo.api.qualityreport import BenchmarkDelta, QualityReportSpec, SpeedReport, Verdict
from qmo.api.quantizedmodel import QualitySpec
from qmo.vocabulary import Reason

# Scores arrive as decimals (0.985); without a tolerance 1.5000000000000002 would regress.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    message: str
    deltas: tuple[BenchmarkDelta, ...] = ()
    worst_benchmark: str | None = None
    worst_delta_percent: float | None = None
    speedup: float | None = None


def regression_percent(baseline: float, candidate: float, higher_is_better: bool) -> float:
    loss = baseline - candidate if higher_is_better else candidate - baseline
    return loss / baseline * 100


def _invalid(reason: str, message: str) -> Judgement:
    return Judgement(Verdict.INVALID, reason, message)


def speedup(speed: SpeedReport | None) -> float | None:
    """Candidate output tokens/s over the baseline's at the highest concurrency both were
    measured at; None without a baseline measurement to compare with."""
    if speed is None:
        return None
    baseline = {s.concurrency: s for s in speed.baseline}
    shared = [s for s in speed.candidate if s.concurrency in baseline]
    if not shared:
        return None
    candidate = max(shared, key=lambda s: s.concurrency)
    reference = baseline[candidate.concurrency].output_tokens_per_second
    if reference <= 0 or not math.isfinite(candidate.output_tokens_per_second):
        return None
    return round(candidate.output_tokens_per_second / reference, 4)


def judge(report: QualityReportSpec, quality: QualitySpec) -> Judgement:
    """The verdict on one report, against the model's thresholds and declared benchmarks."""
    declared = {b.name: b for b in quality.benchmarks}
    reported = {r.benchmark for r in report.results}
    missing = sorted(set(declared) - reported)
    if missing:
        return _invalid(
            Reason.MISSING_BENCHMARKS, f"the report has no result for {', '.join(missing)}"
        )
    deltas: list[BenchmarkDelta] = []
    for result in report.results:
        scores = (result.baseline_score, result.candidate_score)
        if not all(math.isfinite(s) for s in scores):
            return _invalid(
                Reason.NON_FINITE_SCORE, f"{result.benchmark}: scores must be finite numbers"
            )
        if result.baseline_score <= 0:
            return _invalid(
                Reason.NON_POSITIVE_BASELINE,
                f"{result.benchmark}: baseline score {result.baseline_score} cannot anchor a "
                "percentage (it must be above 0)",
            )
        spec = declared.get(result.benchmark)
        higher_is_better = spec.higher_is_better if spec is not None else result.higher_is_better
        threshold = (
            spec.max_regression_percent
            if spec is not None and spec.max_regression_percent is not None
            else quality.max_regression_percent
        )
        delta = regression_percent(result.baseline_score, result.candidate_score, higher_is_better)
        if not math.isfinite(delta):
            # Finite scores can still be too far apart for a float (5e-324 against 1e300).
            return _invalid(
                Reason.NON_FINITE_DELTA,
                f"{result.benchmark}: baseline {result.baseline_score} and candidate "
                f"{result.candidate_score} are too far apart for a percentage",
            )
        deltas.append(
            BenchmarkDelta(
                benchmark=result.benchmark,
                delta_percent=round(delta, 4),
                threshold_percent=threshold,
                regressed=delta > threshold + TOLERANCE,
            )
        )
    worst = max(deltas, key=lambda d: d.delta_percent or 0.0)
    regressed = [d for d in deltas if d.regressed]
    summary = (
        f"worst: {worst.benchmark} {worst.delta_percent:+.2f}% "
        f"(threshold {worst.threshold_percent}%)"
    )
    measured = speedup(report.speed)
    minimum = quality.min_speedup
    if minimum is not None and measured is None:
        return _invalid(
            Reason.MISSING_SPEED,
            f"quality.minSpeedup is {minimum}, but the report has no speed of the candidate "
            "and of its BF16 reference at a common concurrency",
        )
    too_slow = minimum is not None and measured is not None and measured < minimum - TOLERANCE
    speed_note = f"; speed-up {measured:.2f}x" if measured is not None else ""
    if minimum is not None:
        speed_note += f" (minimum {minimum}x)"
    if regressed:
        names = ", ".join(f"{d.benchmark} {d.delta_percent:+.2f}%" for d in regressed)
        verdict, reason = Verdict.REGRESSED, Reason.REGRESSED
        message = f"regressed on {names}; {summary}{speed_note}"
    elif too_slow:
        verdict, reason = Verdict.REGRESSED, Reason.SPEEDUP_BELOW_MINIMUM
        message = f"too slow: speed-up {measured:.2f}x is below the minimum {minimum}x; {summary}"
    else:
        verdict, reason = Verdict.PASS, Reason.WITHIN_THRESHOLD
        message = f"every benchmark within its threshold; {summary}{speed_note}"
    return Judgement(
        verdict, reason, message, tuple(deltas), worst.benchmark, worst.delta_percent, measured
    )
