"""Quality verdicts: how much worse a candidate scored than its baseline, and whether that is
a regression. Pure; `reports.judge_all` calls `judge` and the reconciler writes the result
into the QualityReport's status.

delta = (baseline - candidate) / baseline x 100 for higher-is-better benchmarks, and
(candidate - baseline) / baseline x 100 for lower-is-better ones (perplexity, latency), so a
positive delta is always a loss. A delta above the threshold is a regression; exactly at the
threshold passes.

`judge` is a list of named rules, as the planner's gate is: first the reasons a report cannot
be judged (each an Invalid judgement with its reason), then a quality regression, then a
candidate too slow; the first rule that decides wins, and a report no rule stops passes.

Every number a judgement carries goes into a status the API server must accept, so it is
finite and bounded: a delta beyond MAX_DELTA_PERCENT or a speed-up beyond MAX_SPEEDUP makes
the report Invalid (any float of the spec is a valid JSON number; their quotient need not be).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from qmo.api.qualityreport import (
    BenchmarkDelta,
    BenchmarkResult,
    QualityReportSpec,
    SpeedReport,
    Verdict,
)
from qmo.api.quantizedmodel import BenchmarkSpec, QualitySpec
from qmo.vocabulary import Reason

# Scores arrive as decimals (0.985); without a tolerance 1.5000000000000002 would regress.
TOLERANCE = 1e-9
# A candidate 10,000 times off its baseline was not scored on the same benchmark.
MAX_DELTA_PERCENT = 1e6
# No precision makes serving a thousand times faster: one of the two measurements is wrong.
MAX_SPEEDUP = 1000.0


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


def speedup(speed: SpeedReport | None) -> float | None:
    """Candidate output tokens/s over the baseline's at the highest concurrency both were
    measured at; None without a baseline measurement to compare with. Unbounded (1e300
    over 1e-10 is infinite): `implausible_speedup` judges it before anything reports it."""
    if speed is None:
        return None
    baseline = {s.concurrency: s for s in speed.baseline}
    shared = [s for s in speed.candidate if s.concurrency in baseline]
    if not shared:
        return None
    candidate = max(shared, key=lambda s: s.concurrency)
    reference = baseline[candidate.concurrency].output_tokens_per_second
    if reference <= 0:
        return None
    return round(candidate.output_tokens_per_second / reference, 4)


@dataclass(frozen=True)
class Scores:
    """One result of the report, read against the benchmark the model declared for it: the
    model's direction and threshold win over the report's."""

    benchmark: str
    baseline: float
    candidate: float
    higher_is_better: bool
    threshold: float

    @classmethod
    def of(
        cls, result: BenchmarkResult, declared: BenchmarkSpec | None, quality: QualitySpec
    ) -> Scores:
        threshold = (
            declared.max_regression_percent
            if declared is not None and declared.max_regression_percent is not None
            else quality.max_regression_percent
        )
        higher_is_better = (
            declared.higher_is_better if declared is not None else result.higher_is_better
        )
        return cls(
            result.benchmark,
            result.baseline_score,
            result.candidate_score,
            higher_is_better,
            threshold,
        )

    @property
    def delta(self) -> float:
        """Only for finite scores over a positive baseline (the result rules check both)."""
        return regression_percent(self.baseline, self.candidate, self.higher_is_better)


@dataclass(frozen=True)
class Case:
    """What the rules look at."""

    report: QualityReportSpec
    quality: QualitySpec
    results: tuple[Scores, ...]  # in the report's order

    @classmethod
    def of(cls, report: QualityReportSpec, quality: QualitySpec) -> Case:
        declared = {b.name: b for b in quality.benchmarks}
        results = tuple(Scores.of(r, declared.get(r.benchmark), quality) for r in report.results)
        return cls(report, quality, results)

    @cached_property
    def deltas(self) -> tuple[BenchmarkDelta, ...]:
        """Only once every result can be judged."""
        return tuple(
            BenchmarkDelta(
                benchmark=s.benchmark,
                delta_percent=round(s.delta, 4),
                threshold_percent=s.threshold,
                regressed=s.delta > s.threshold + TOLERANCE,
            )
            for s in self.results
        )

    @cached_property
    def measured_speedup(self) -> float | None:
        return speedup(self.report.speed)

    @property
    def worst(self) -> BenchmarkDelta:
        return max(self.deltas, key=lambda d: d.delta_percent or 0.0)

    @property
    def summary(self) -> str:
        worst = self.worst
        return (
            f"worst: {worst.benchmark} {worst.delta_percent:+.2f}% "
            f"(threshold {worst.threshold_percent}%)"
        )

    @property
    def speed_note(self) -> str:
        measured, minimum = self.measured_speedup, self.quality.min_speedup
        note = f"; speed-up {measured:.2f}x" if measured is not None else ""
        if minimum is not None:
            note += f" (minimum {minimum}x)"
        return note

    def judged(self, verdict: Verdict, reason: str, message: str) -> Judgement:
        worst = self.worst
        return Judgement(
            verdict,
            reason,
            message,
            self.deltas,
            worst.benchmark,
            worst.delta_percent,
            self.measured_speedup,
        )


Rule = Callable[[Case], Judgement | None]
ResultRule = Callable[[Scores], Judgement | None]


def _invalid(reason: str, message: str) -> Judgement:
    return Judgement(Verdict.INVALID, reason, message)


# --- a report that cannot be judged ----------------------------------------------------------


def missing_benchmarks(case: Case) -> Judgement | None:
    """A benchmark the model declared has no result."""
    reported = {r.benchmark for r in case.report.results}
    missing = sorted({b.name for b in case.quality.benchmarks} - reported)
    if missing:
        return _invalid(
            Reason.MISSING_BENCHMARKS, f"the report has no result for {', '.join(missing)}"
        )
    return None


def non_finite_score(scores: Scores) -> Judgement | None:
    if math.isfinite(scores.baseline) and math.isfinite(scores.candidate):
        return None
    return _invalid(Reason.NON_FINITE_SCORE, f"{scores.benchmark}: scores must be finite numbers")


def non_positive_baseline(scores: Scores) -> Judgement | None:
    if scores.baseline > 0:
        return None
    return _invalid(
        Reason.NON_POSITIVE_BASELINE,
        f"{scores.benchmark}: baseline score {scores.baseline} cannot anchor a "
        "percentage (it must be above 0)",
    )


def non_finite_delta(scores: Scores) -> Judgement | None:
    """Finite scores can still be too far apart for a float (5e-324 against 1e300)."""
    if math.isfinite(scores.delta):
        return None
    return _invalid(
        Reason.NON_FINITE_DELTA,
        f"{scores.benchmark}: baseline {scores.baseline} and candidate "
        f"{scores.candidate} are too far apart for a percentage",
    )


def delta_out_of_range(scores: Scores) -> Judgement | None:
    """A finite delta can still be absurd (1e-10 against 1: -1e12%)."""
    if abs(scores.delta) <= MAX_DELTA_PERCENT:
        return None
    return _invalid(
        Reason.DELTA_OUT_OF_RANGE,
        f"{scores.benchmark}: baseline {scores.baseline} and candidate {scores.candidate} "
        f"differ by more than {MAX_DELTA_PERCENT:,.0f}%: they cannot be scores of one benchmark",
    )


RESULT_RULES: tuple[ResultRule, ...] = (
    non_finite_score,
    non_positive_baseline,
    non_finite_delta,
    delta_out_of_range,
)


def a_result_cannot_be_judged(case: Case) -> Judgement | None:
    """The result rules, result by result in the report's order, so the message names the
    first result that cannot be judged."""
    for scores in case.results:
        for rule in RESULT_RULES:
            judgement = rule(scores)
            if judgement is not None:
                return judgement
    return None


def implausible_speedup(case: Case) -> Judgement | None:
    """The measured speed-up is not a number status can carry or believe (a candidate at
    1e300 tokens/s over a baseline at 1e-10 is infinite)."""
    measured = case.measured_speedup
    if measured is None or (math.isfinite(measured) and measured <= MAX_SPEEDUP):
        return None
    return _invalid(
        Reason.SPEEDUP_OUT_OF_RANGE,
        f"the candidate's output tokens/s over its BF16 reference's is {measured:.4g}, not a "
        f"finite speed-up of at most {MAX_SPEEDUP:.0f}x: one of the measurements is wrong",
    )


def missing_speed(case: Case) -> Judgement | None:
    """The model asks for a minimum speed-up, and the report has none to compare with."""
    minimum = case.quality.min_speedup
    if minimum is not None and case.measured_speedup is None:
        return _invalid(
            Reason.MISSING_SPEED,
            f"quality.minSpeedup is {minimum}, but the report has no speed of the candidate "
            "and of its BF16 reference at a common concurrency",
        )
    return None


# --- the verdict -----------------------------------------------------------------------------


def regressed(case: Case) -> Judgement | None:
    """A benchmark lost more than its threshold; named before speed."""
    lost = [d for d in case.deltas if d.regressed]
    if not lost:
        return None
    names = ", ".join(f"{d.benchmark} {d.delta_percent:+.2f}%" for d in lost)
    return case.judged(
        Verdict.REGRESSED,
        Reason.REGRESSED,
        f"regressed on {names}; {case.summary}{case.speed_note}",
    )


def too_slow(case: Case) -> Judgement | None:
    """The speed-up is below the model's minimum."""
    measured, minimum = case.measured_speedup, case.quality.min_speedup
    if minimum is not None and measured is not None and measured < minimum - TOLERANCE:
        return case.judged(
            Verdict.REGRESSED,
            Reason.SPEEDUP_BELOW_MINIMUM,
            f"too slow: speed-up {measured:.2f}x is below the minimum {minimum}x; {case.summary}",
        )
    return None


RULES: tuple[Rule, ...] = (
    missing_benchmarks,
    a_result_cannot_be_judged,
    implausible_speedup,
    missing_speed,
    regressed,
    too_slow,
)


def judge(report: QualityReportSpec, quality: QualitySpec) -> Judgement:
    """The verdict on one report, against the model's thresholds and declared benchmarks: the
    first rule's judgement; a report no rule stops passes."""
    case = Case.of(report, quality)
    for rule in RULES:
        judgement = rule(case)
        if judgement is not None:
            return judgement
    return case.judged(
        Verdict.PASS,
        Reason.WITHIN_THRESHOLD,
        f"every benchmark within its threshold; {case.summary}{case.speed_note}",
    )
