"""The QualityReport resource: raw scores in spec, the operator's judgement in status.

Any evaluation system (qmo-eval, lm-evaluation-harness, a CI pipeline) can write the spec;
only the operator writes the status (deltas and verdict) and acts on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field

from qmo.api.base import ApiModel, Condition, LocalObjectReference, Rule, StatusModel

KIND = "QualityReport"
PLURAL = "qualityreports"
SHORT_NAMES = ("qr",)


class Verdict(StrEnum):
    PASS = "Pass"
    REGRESSED = "Regressed"
    # The interval straddles the threshold: neither within it nor over it with the model's
    # confidence. quality.inconclusive says what the gate does with it.
    INCONCLUSIVE = "Inconclusive"
    INVALID = "Invalid"


class PairingMethod(StrEnum):
    """How a paired result's standard error was computed (qmo.quality.paired)."""

    PAIRED_NORMAL = "paired-normal"  # mean metrics: closed form from the paired differences
    PAIRED_BOOTSTRAP = "paired-bootstrap"  # perplexity: resampled documents, both endpoints


class ReportState(StrEnum):
    """Whether the operator acts on a report."""

    CURRENT = "Current"  # judges the revision the variant serves or is about to serve
    STALE = "Stale"  # judges a revision the variant no longer has
    ORPHANED = "Orphaned"  # names a model or variant that does not exist


class PairedResult(ApiModel):
    """The standard error of a benchmark's regression, from the per-item outcomes of the
    candidate and the baseline on the same items (the outcomes themselves stay in the engine
    store, at `outcomes`)."""

    items: int = Field(ge=2, le=10000000, description="Items scored by both endpoints.")
    standard_error_percent: float = Field(
        ge=0, le=1e6, description="Standard error of the regression, in percent."
    )
    method: PairingMethod = Field(description="paired-normal or paired-bootstrap.")
    exhausted: bool = Field(
        default=False,
        description="The dataset has no items beyond those scored: more samples cannot be asked.",
    )
    outcomes: str | None = Field(
        default=None,
        max_length=1024,
        description="Where the per-item outcomes are, relative to the engine store.",
    )


class BenchmarkResult(ApiModel):
    """Scores of one benchmark for the baseline and the candidate."""

    benchmark: str = Field(min_length=1, max_length=63, description="Benchmark name.")
    baseline_score: float = Field(description="Score of the baseline (BF16) variant.")
    candidate_score: float = Field(description="Score of the variant under test.")
    higher_is_better: bool = Field(
        default=True, description="False for perplexity, latency and other lower-wins metrics."
    )
    samples: int | None = Field(default=None, ge=0, description="Items scored.")
    paired: PairedResult | None = Field(
        default=None,
        description="The regression's uncertainty from per-item outcomes of both endpoints on "
        "the same items; without it the result is judged on its point estimate.",
    )


class SpeedSample(ApiModel):
    """Serving speed of one endpoint at one concurrency (streaming requests)."""

    concurrency: int = Field(ge=1, le=4096, description="Requests in flight.")
    requests: int = Field(ge=1, le=1000000, description="Requests measured.")
    ttft_p50_seconds: float = Field(ge=0, description="Time to first token, median.")
    ttft_p95_seconds: float = Field(ge=0, description="Time to first token, 95th percentile.")
    itl_p50_seconds: float = Field(ge=0, description="Inter-token latency, median.")
    itl_p95_seconds: float = Field(ge=0, description="Inter-token latency, 95th percentile.")
    output_tokens_per_second: float = Field(
        ge=0, description="Output tokens per second over all requests in flight."
    )


class SpeedReport(ApiModel):
    """Serving speed of the candidate and of its BF16 reference on the same GPU class."""

    candidate: list[SpeedSample] = Field(
        min_length=1, max_length=8, description="One per concurrency.",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["concurrency"]},
    )  # fmt: skip
    baseline: list[SpeedSample] = Field(
        default_factory=list, max_length=8,
        description="The BF16 reference, where one serves on the same GPU class.",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["concurrency"]},
    )  # fmt: skip


class QualityReportSpec(ApiModel):
    """Raw evaluation results of one variant revision against its baseline."""

    model_ref: LocalObjectReference = Field(description="The QuantizedModel in this namespace.")
    variant: str = Field(min_length=1, max_length=63, description="Variant judged, e.g. h100-fp8.")
    cache_key: str = Field(
        min_length=1, max_length=128, description="Revision (cache key) of the variant judged."
    )
    baseline_variant: str | None = Field(default=None, description="Variant used as baseline.")
    results: list[BenchmarkResult] = Field(
        min_length=1,
        max_length=64,
        description="One entry per benchmark.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["benchmark"],
        },
    )
    source: str = Field(default="qmo-eval", max_length=63, description="Who produced the scores.")
    speed: SpeedReport | None = Field(
        default=None, description="Serving speed of the candidate and its BF16 reference."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.results.all(r, self.results.exists_one(s, s.benchmark == r.benchmark))",
            message="results must not list the same benchmark twice",
            check=lambda s: len({r.benchmark for r in s.results}) == len(s.results),
            field_path=".results",
        ),
    )


class BenchmarkDelta(StatusModel):
    """How much worse the candidate scored, in percent of the baseline (negative is better)."""

    benchmark: str = Field(description="Benchmark name.")
    delta_percent: float | None = Field(default=None, description="Regression in percent.")
    threshold_percent: float | None = Field(default=None, description="Threshold applied.")
    regressed: bool = Field(default=False, description="Over the threshold.")
    inconclusive: bool = Field(default=False, description="The interval straddles the threshold.")
    method: str | None = Field(
        default=None,
        description="paired-normal or paired-bootstrap (an interval), or point-estimate (the "
        "report had no per-item outcomes: judged without an interval).",
    )
    interval_low_percent: float | None = Field(
        default=None, description="Lower end of the regression's interval."
    )
    interval_high_percent: float | None = Field(
        default=None, description="Upper end of the regression's interval."
    )
    confidence: float | None = Field(default=None, description="The interval's confidence.")
    items: int | None = Field(default=None, description="Paired items it rests on.")
    samples_to_resolve: int | None = Field(
        default=None,
        description="About how many items would put the interval on one side of the threshold.",
    )


class QualityReportStatus(StatusModel):
    """The operator's judgement of the report."""

    observed_generation: int | None = Field(default=None, description="Generation judged.")
    verdict: Verdict | None = Field(
        default=None, description="Pass, Regressed, Inconclusive or Invalid."
    )
    state: ReportState | None = Field(default=None, description="Current, Stale or Orphaned.")
    reason: str | None = Field(default=None, description="CamelCase reason of the verdict.")
    message: str | None = Field(default=None, description="The verdict in a sentence.")
    deltas: list[BenchmarkDelta] = Field(default_factory=list, description="Per benchmark.")
    worst_benchmark: str | None = Field(default=None, description="Benchmark with worst delta.")
    worst_delta_percent: float | None = Field(default=None, description="Worst delta.")
    speedup: float | None = Field(
        default=None,
        description="Candidate output tokens/s over the baseline's, at the highest concurrency "
        "both were measured at.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Judged condition.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class QualityReport(ApiModel):
    """Scores of one quantized variant against its baseline, judged by the operator."""

    api_version: Literal["qmo.dev/v1alpha1"] = Field(default="qmo.dev/v1alpha1")
    kind: Literal["QualityReport"] = Field(default="QualityReport")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: QualityReportSpec
    status: QualityReportStatus | None = None
