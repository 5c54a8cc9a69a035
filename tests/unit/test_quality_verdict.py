"""Quality verdicts: regression percentages, thresholds and invalid reports."""

from __future__ import annotations

from typing import Any

import pytest

from qmo.api.qualityreport import QualityReportSpec, Verdict
from qmo.api.quantizedmodel import QualitySpec
from qmo.quality.verdict import judge, regression_percent


def a_report(
    *results: tuple[str, float, float] | tuple[str, float, float, bool],
) -> QualityReportSpec:
    rows: list[dict[str, Any]] = []
    for result in results:
        row: dict[str, Any] = {
            "benchmark": result[0],
            "baselineScore": result[1],
            "candidateScore": result[2],
        }
        if len(result) == 4:
            row["higherIsBetter"] = result[3]
        rows.append(row)
    return QualityReportSpec.model_validate(
        {"modelRef": {"name": "m"}, "variant": "h100-fp8", "cacheKey": "k" * 16, "results": rows}
    )


def quality(**fields: Any) -> QualitySpec:
    return QualitySpec.model_validate(fields)


@pytest.mark.parametrize(
    ("baseline", "candidate", "higher", "expected"),
    [
        pytest.param(80.0, 78.8, True, 1.5, id="a 1.2-point drop on 80 is 1.5%"),
        pytest.param(0.80, 0.82, True, -2.5, id="an improvement is negative"),
        pytest.param(10.0, 10.5, False, 5.0, id="perplexity up 5% is a 5% loss"),
        pytest.param(10.0, 9.0, False, -10.0, id="perplexity down is a gain"),
    ],
)
def test_regression_percent_is_a_loss_relative_to_the_baseline(
    baseline: float, candidate: float, higher: bool, expected: float
) -> None:
    assert regression_percent(baseline, candidate, higher) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("candidate", "verdict"),
    [
        pytest.param(78.8, Verdict.PASS, id="exactly 1.5% passes"),
        pytest.param(78.79, Verdict.REGRESSED, id="1.5125% regresses"),
        pytest.param(78.32, Verdict.REGRESSED, id="2.1% regresses"),
        pytest.param(81.0, Verdict.PASS, id="better than baseline passes"),
    ],
)
def test_the_default_threshold_is_1_5_percent_and_its_edge_passes(
    candidate: float, verdict: Verdict
) -> None:
    assert judge(a_report(("mmlu", 80.0, candidate)), quality()).verdict == verdict


def test_the_worst_benchmark_and_its_delta_are_reported() -> None:
    judged = judge(a_report(("mmlu", 80.0, 79.5), ("gsm8k", 50.0, 48.95)), quality())
    assert judged.verdict == Verdict.REGRESSED
    assert judged.worst_benchmark == "gsm8k"
    assert judged.worst_delta_percent == pytest.approx(2.1)
    assert "gsm8k +2.10%" in judged.message
    assert [d.regressed for d in judged.deltas] == [False, True]


def test_a_lower_is_better_benchmark_declared_by_the_model_wins_over_the_report() -> None:
    spec = quality(benchmarks=[{"name": "ppl", "metric": "perplexity", "higherIsBetter": False}])
    judged = judge(a_report(("ppl", 10.0, 10.3)), spec)  # the report claims higher-is-better
    assert judged.verdict == Verdict.REGRESSED
    assert judged.worst_delta_percent == pytest.approx(3.0)


def test_a_per_benchmark_threshold_overrides_the_model_threshold() -> None:
    spec = quality(benchmarks=[{"name": "mmlu", "maxRegressionPercent": 3.0}])
    assert judge(a_report(("mmlu", 80.0, 78.4)), spec).verdict == Verdict.PASS  # 2.0%
    assert judge(a_report(("mmlu", 80.0, 78.4)), quality()).verdict == Verdict.REGRESSED


@pytest.mark.parametrize(
    ("results", "spec", "reason"),
    [
        pytest.param([("mmlu", 0.0, 0.5)], quality(), "NonPositiveBaseline", id="zero baseline"),
        pytest.param(
            [("mmlu", -1.0, 0.5)], quality(), "NonPositiveBaseline", id="negative baseline"
        ),
        pytest.param(
            [("mmlu", 80.0, 79.0)],
            quality(benchmarks=[{"name": "mmlu"}, {"name": "gsm8k"}]),
            "MissingBenchmarks",
            id="a declared benchmark is missing",
        ),
        pytest.param([("mmlu", float("nan"), 79.0)], quality(), "NonFiniteScore", id="nan score"),
    ],
)
def test_reports_that_cannot_be_judged_are_invalid_with_a_reason(
    results: list[tuple[str, float, float]], spec: QualitySpec, reason: str
) -> None:
    judged = judge(a_report(*results), spec)
    assert judged.verdict == Verdict.INVALID
    assert judged.reason == reason
    assert judged.message


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        pytest.param(
            [("mmlu", 5e-324, 0.5), ("gsm8k", float("nan"), 0.5)],
            "NonFiniteDelta",
            id="a delta too large before a nan score",
        ),
        pytest.param(
            [("mmlu", 0.0, 0.5), ("gsm8k", float("nan"), 0.5)],
            "NonPositiveBaseline",
            id="a zero baseline before a nan score",
        ),
        pytest.param(
            [("mmlu", float("inf"), 0.5), ("gsm8k", 0.0, 0.5)],
            "NonFiniteScore",
            id="an infinite score before a zero baseline",
        ),
    ],
)
def test_the_first_result_that_cannot_be_judged_is_named_in_the_reports_order(
    results: list[tuple[str, float, float]], reason: str
) -> None:
    judged = judge(a_report(*results), quality())
    assert (judged.verdict, judged.reason) == (Verdict.INVALID, reason)
    assert judged.message.startswith("mmlu: ")


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [(5e-324, 0.5), (1e-300, 1.7e308), (0.5, -1.7e308)],
    ids=["a subnormal baseline", "a huge candidate over a tiny baseline", "a huge negative"],
)
def test_finite_scores_too_far_apart_are_invalid_not_an_infinite_delta(
    baseline: float, candidate: float
) -> None:
    import json

    from qmo.api.qualityreport import QualityReportStatus

    judged = judge(a_report(("gsm8k", baseline, candidate)), quality())
    assert judged.verdict == Verdict.INVALID
    assert judged.reason == "NonFiniteDelta"
    status = QualityReportStatus(verdict=judged.verdict, reason=judged.reason).to_wire()
    json.dumps(status, allow_nan=False)  # the status can be written


# --- speed -----------------------------------------------------------------------------------


def sample(concurrency: int, tokens_per_second: float) -> dict[str, Any]:
    return {
        "concurrency": concurrency, "requests": 32, "ttftP50Seconds": 0.05,
        "ttftP95Seconds": 0.09, "itlP50Seconds": 0.01, "itlP95Seconds": 0.02,
        "outputTokensPerSecond": tokens_per_second,
    }  # fmt: skip


def with_speed(
    candidate: list[dict[str, Any]], baseline: list[dict[str, Any]]
) -> QualityReportSpec:
    wire = a_report(("gsm8k", 0.80, 0.80)).to_wire()
    wire["speed"] = {"candidate": candidate, "baseline": baseline}
    return QualityReportSpec.from_wire(wire)


def test_the_speedup_compares_the_highest_concurrency_both_measured() -> None:
    report = with_speed(
        [sample(1, 90.0), sample(8, 600.0), sample(32, 1500.0)], [sample(1, 80.0), sample(8, 400.0)]
    )
    judged = judge(report, quality())
    assert judged.verdict == Verdict.PASS
    assert judged.speedup == 1.5  # 600 / 400 at concurrency 8
    assert "speed-up 1.50x" in judged.message


def test_a_variant_slower_than_the_minimum_regresses_on_speed() -> None:
    report = with_speed([sample(8, 440.0)], [sample(8, 400.0)])
    judged = judge(report, quality(minSpeedup=1.2))
    assert (judged.verdict, judged.reason) == (Verdict.REGRESSED, "SpeedupBelowMinimum")
    assert "speed-up 1.10x is below the minimum 1.2x" in judged.message


def test_exactly_the_minimum_passes() -> None:
    report = with_speed([sample(8, 480.0)], [sample(8, 400.0)])
    assert judge(report, quality(minSpeedup=1.2)).verdict == Verdict.PASS


def test_a_quality_regression_is_named_before_speed() -> None:
    wire = with_speed([sample(8, 100.0)], [sample(8, 400.0)]).to_wire()
    wire["results"][0]["candidateScore"] = 0.70
    judged = judge(QualityReportSpec.from_wire(wire), quality(minSpeedup=1.2))
    assert (judged.verdict, judged.reason) == (Verdict.REGRESSED, "Regressed")


@pytest.mark.parametrize(
    "speed",
    [
        pytest.param(None, id="no speed at all"),
        pytest.param(([sample(8, 500.0)], []), id="no baseline measured"),
        pytest.param(([sample(8, 500.0)], [sample(1, 90.0)]), id="no common concurrency"),
        pytest.param(([sample(8, 500.0)], [sample(8, 0.0)]), id="a baseline that produced nothing"),
    ],
)
def test_a_minimum_without_comparable_speed_is_invalid(speed: Any) -> None:
    report = a_report(("gsm8k", 0.80, 0.80)) if speed is None else with_speed(*speed)
    judged = judge(report, quality(minSpeedup=1.2))
    assert (judged.verdict, judged.reason) == (Verdict.INVALID, "MissingSpeed")


def test_speed_samples_may_not_repeat_a_concurrency() -> None:
    with pytest.raises(ValueError, match="candidate: duplicate value"):
        with_speed([sample(8, 1.0), sample(8, 2.0)], [])


@pytest.mark.parametrize(
    ("candidate", "baseline"),
    [
        pytest.param(1e300, 1e-10, id="an overflowing speed-up"),
        pytest.param(float("inf"), 400.0, id="an infinite candidate"),
        pytest.param(500_000.0, 400.0, id="a speed-up of 1250x"),
    ],
)
def test_a_speedup_that_is_infinite_or_absurd_is_invalid_and_no_number(
    candidate: float, baseline: float
) -> None:
    import json

    from qmo.api.qualityreport import QualityReportStatus

    report = with_speed([sample(8, candidate)], [sample(8, baseline)])
    for spec in (quality(), quality(minSpeedup=1.2)):
        judged = judge(report, spec)
        assert (judged.verdict, judged.reason) == (Verdict.INVALID, "SpeedupOutOfRange")
        assert judged.speedup is None
        status = QualityReportStatus(
            verdict=judged.verdict, reason=judged.reason, speedup=judged.speedup
        ).to_wire()
        json.dumps(status, allow_nan=False)  # the status can be written


def test_a_speedup_of_a_thousand_is_still_believed() -> None:
    judged = judge(with_speed([sample(8, 400_000.0)], [sample(8, 400.0)]), quality())
    assert (judged.verdict, judged.speedup) == (Verdict.PASS, 1000.0)


@pytest.mark.parametrize(
    ("baseline", "candidate", "higher"),
    [
        pytest.param(1e-10, 0.9, True, id="a candidate 9e9 times its baseline"),
        pytest.param(0.01, -100.0, True, id="a huge negative candidate"),
        pytest.param(1.0, 20_000.0, False, id="a perplexity 20000 times the baseline's"),
    ],
)
def test_a_finite_but_absurd_delta_is_invalid(
    baseline: float, candidate: float, higher: bool
) -> None:
    judged = judge(a_report(("gsm8k", baseline, candidate, higher)), quality())
    assert (judged.verdict, judged.reason) == (Verdict.INVALID, "DeltaOutOfRange")
    assert judged.worst_delta_percent is None
    assert judged.deltas == ()
    assert judged.message.startswith("gsm8k: ")
