"""Quality verdicts: how much worse a candidate scored than its baseline, and whether that is
a regression. Pure; `reports.judge_all` calls `judge` and the reconciler writes the result
into the QualityReport's status.

delta = (baseline - candidate) / baseline x 100 for higher-is-better benchmarks, and
(candidate - baseline) / baseline x 100 for lower-is-better ones (perplexity, latency), so a
positive delta is always a loss.

A result with paired statistics (`paired`: the standard error from per-item outcomes) is judged
on its interval at the model's confidence (qmo.quality.paired): over the threshold when all of
the interval is, within it when none of it is, inconclusive otherwise. A result without them
(an external pipeline's) is judged on its point estimate, as before intervals: a delta above
the threshold is a regression, exactly at the threshold passes; status names its method
`point-estimate`.

An Inconclusive report *acts as* what `quality.inconclusive` says: Pass, Regressed, or nothing
yet while more samples are asked for (`Judgement.acts_as`, `more_samples`); the gate reads the
action, never the spec's setting.

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
    PairedResult,
    QualityReportSpec,
    SpeedReport,
    Verdict,
)
from qmo.api.quantizedmodel import BenchmarkSpec, InconclusiveAction, QualitySpec
from qmo.quality import paired
from qmo.vocabulary import Reason

# Scores arrive as decimals (0.985); without a tolerance 1.5000000000000002 would regress.
TOLERANCE = 1e-9
# A candidate 10,000 times off its baseline was not scored on the same benchmark.
MAX_DELTA_PERCENT = 1e6
# No precision makes serving a thousand times faster: one of the two measurements is wrong.
MAX_SPEEDUP = 1000.0
POINT_ESTIMATE = "point-estimate"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    message: str
    deltas: tuple[BenchmarkDelta, ...] = ()
    worst_benchmark: str | None = None
    worst_delta_percent: float | None = None
    speedup: float | None = None
    # An Inconclusive verdict's action: Pass or Regressed, or None while `more_samples` asks
    # for a re-evaluation ((benchmark, items) each). Other verdicts act as themselves.
    inconclusive_acts_as: Verdict | None = None
    more_samples: tuple[tuple[str, int], ...] = ()

    @property
    def acts_as(self) -> Verdict | None:
        """What the gate does with the report: Pass, Regressed, Invalid, or None (awaits the
        re-evaluation on more samples)."""
        if self.verdict == Verdict.INCONCLUSIVE:
            return self.inconclusive_acts_as
        return self.verdict


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
    paired: PairedResult | None = None

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
            result.paired,
        )

    @property
    def delta(self) -> float:
        """Only for finite scores over a positive baseline (the result rules check both)."""
        return regression_percent(self.baseline, self.candidate, self.higher_is_better)

    def assessed(self, confidence: float) -> BenchmarkDelta:
        """The delta against the threshold: on its interval where the result is paired, on
        the point estimate where not."""
        delta, line = self.delta, self.threshold + TOLERANCE
        if self.paired is None:
            return BenchmarkDelta(
                benchmark=self.benchmark,
                delta_percent=round(delta, 4),
                threshold_percent=self.threshold,
                regressed=delta > line,
                method=POINT_ESTIMATE,
            )
        error = self.paired.standard_error_percent
        low, high = paired.interval(delta, error, confidence)
        over, straddles = low > line, low <= line < high
        return BenchmarkDelta(
            benchmark=self.benchmark,
            delta_percent=round(delta, 4),
            threshold_percent=self.threshold,
            regressed=over,
            inconclusive=straddles,
            method=self.paired.method.value,
            interval_low_percent=round(low, 4),
            interval_high_percent=round(high, 4),
            confidence=confidence,
            items=self.paired.items,
            samples_to_resolve=paired.samples_to_resolve(
                self.paired.items, delta, error, self.threshold, confidence
            )
            if straddles
            else None,
        )


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
        return tuple(s.assessed(self.quality.confidence) for s in self.results)

    @property
    def without_interval(self) -> str:
        """A note naming the results judged on their point estimate alone."""
        bare = [d.benchmark for d in self.deltas if d.method == POINT_ESTIMATE]
        if not bare:
            return ""
        return f"; judged without an interval (no per-item outcomes): {', '.join(bare)}"

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

    def judged(
        self,
        verdict: Verdict,
        reason: str,
        message: str,
        acts_as: Verdict | None = None,
        more_samples: tuple[tuple[str, int], ...] = (),
    ) -> Judgement:
        worst = self.worst
        return Judgement(
            verdict,
            reason,
            message + self.without_interval,
            self.deltas,
            worst.benchmark,
            worst.delta_percent,
            self.measured_speedup,
            acts_as,
            more_samples,
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
    names = ", ".join(f"{d.benchmark} {d.delta_percent:+.2f}%{_interval(d)}" for d in lost)
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


def _interval(delta: BenchmarkDelta) -> str:
    if delta.interval_low_percent is None or delta.interval_high_percent is None:
        return ""
    return (
        f" [{delta.interval_low_percent:+.2f}%, {delta.interval_high_percent:+.2f}%"
        f" at {delta.confidence:.0%}]"
    )


def more_samples(case: Case) -> tuple[tuple[str, int], ...]:
    """Per inconclusive benchmark whose dataset has more, the items to ask next: twice those
    scored, or as many as would likely resolve it, at most inconclusive.maxSamples; empty when
    no benchmark can grow."""
    cap = case.quality.inconclusive.max_samples
    asked = []
    for scores, delta in zip(case.results, case.deltas, strict=True):
        if not delta.inconclusive or scores.paired is None or scores.paired.exhausted:
            continue
        items = scores.paired.items
        wanted = min(cap, max(2 * items, delta.samples_to_resolve or 0))
        if wanted > items:
            asked.append((scores.benchmark, wanted))
    return tuple(asked)


def inconclusive(case: Case) -> Judgement | None:
    """An interval straddles its threshold (and nothing regressed): the spec's action."""
    unsure = [d for d in case.deltas if d.inconclusive]
    if not unsure:
        return None
    names = ", ".join(
        f"{d.benchmark} {d.delta_percent:+.2f}%{_interval(d)}"
        + (f", about {d.samples_to_resolve} items would resolve it" if d.samples_to_resolve else "")
        for d in unsure
    )
    told = f"inconclusive on {names}; {case.summary}{case.speed_note}"
    action = case.quality.inconclusive.action
    if action == InconclusiveAction.PASS:
        return case.judged(
            Verdict.INCONCLUSIVE, Reason.INCONCLUSIVE, f"{told}; counted as passed", Verdict.PASS
        )
    asked = more_samples(case) if action == InconclusiveAction.MORE_SAMPLES else ()
    if asked:
        more = ", ".join(f"{benchmark} on {items} items" for benchmark, items in asked)
        return case.judged(
            Verdict.INCONCLUSIVE,
            Reason.INCONCLUSIVE,
            f"{told}; evaluating again: {more}",
            None,
            asked,
        )
    why = (
        "counted as regressed"
        if action == InconclusiveAction.REGRESS
        else f"no more samples to ask (maxSamples {case.quality.inconclusive.max_samples}, or "
        "the dataset has no more): counted as regressed"
    )
    return case.judged(
        Verdict.INCONCLUSIVE, Reason.INCONCLUSIVE, f"{told}; {why}", Verdict.REGRESSED
    )


RULES: tuple[Rule, ...] = (
    missing_benchmarks,
    a_result_cannot_be_judged,
    implausible_speedup,
    missing_speed,
    regressed,
    too_slow,
    inconclusive,
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
