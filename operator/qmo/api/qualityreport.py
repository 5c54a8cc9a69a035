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
    INVALID = "Invalid"


class ReportState(StrEnum):
    """Whether the operator acts on a report."""

    CURRENT = "Current"  # judges the revision the variant serves or is about to serve
    STALE = "Stale"  # judges a revision the variant no longer has
    ORPHANED = "Orphaned"  # names a model or variant that does not exist


class BenchmarkResult(ApiModel):
    """Scores of one benchmark for the baseline and the candidate."""

    benchmark: str = Field(min_length=1, max_length=63, description="Benchmark name.")
    baseline_score: float = Field(description="Score of the baseline (BF16) variant.")
    candidate_score: float = Field(description="Score of the variant under test.")
    higher_is_better: bool = Field(
        default=True, description="False for perplexity, latency and other lower-wins metrics."
    )
    samples: int | None = Field(default=None, ge=0, description="Items scored.")


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
    regressed: bool = Field(default=False, description="Delta above the threshold.")


class QualityReportStatus(StatusModel):
    """The operator's judgement of the report."""

    observed_generation: int | None = Field(default=None, description="Generation judged.")
    verdict: Verdict | None = Field(default=None, description="Pass, Regressed or Invalid.")
    state: ReportState | None = Field(default=None, description="Current, Stale or Orphaned.")
    reason: str | None = Field(default=None, description="CamelCase reason of the verdict.")
    message: str | None = Field(default=None, description="The verdict in a sentence.")
    deltas: list[BenchmarkDelta] = Field(default_factory=list, description="Per benchmark.")
    worst_benchmark: str | None = Field(default=None, description="Benchmark with worst delta.")
    worst_delta_percent: float | None = Field(default=None, description="Worst delta.")
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
