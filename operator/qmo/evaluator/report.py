"""The QualityReport qmo-eval produces: its spec from the scores, and its YAML. Pure.

Called by evaluation.py (`run`) and lm_eval_report.py (`import-lm-eval`); report_writer.py
hands the result on (the termination message of an eval Job, the cluster, or stdout). The
name and labels are the operator's (`qmo.manifests.quality_report`), so a report about a
revision has one name whoever writes it. Raw scores only: the operator computes deltas and
the verdict into status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from qmo.api.base import LocalObjectReference
from qmo.api.evalcontract import SOURCE
from qmo.api.qualityreport import (
    BenchmarkResult,
    QualityReport,
    QualityReportSpec,
    SpeedReport,
)
from qmo.manifests.quality_report import report_labels, report_name

__all__ = ["SOURCE", "build_report", "report_name", "result", "to_yaml"]

# Decimals kept in reported scores: far below any threshold, and readable in kubectl.
SCORE_DIGITS = 6


def result(
    benchmark: str,
    baseline: float,
    candidate: float,
    *,
    higher_is_better: bool,
    samples: int | None,
) -> BenchmarkResult:
    return BenchmarkResult(
        benchmark=benchmark,
        baseline_score=round(baseline, SCORE_DIGITS),
        candidate_score=round(candidate, SCORE_DIGITS),
        higher_is_better=higher_is_better,
        samples=samples,
    )


def build_report(
    *,
    model: str,
    variant: str,
    cache_key: str,
    results: Sequence[BenchmarkResult],
    namespace: str | None = None,
    baseline_variant: str | None = None,
    source: str = SOURCE,
    speed: SpeedReport | None = None,
) -> QualityReport:
    """The report; raises pydantic's ValidationError when the API would refuse it."""
    metadata: dict[str, Any] = {
        "name": report_name(model, variant, cache_key),
        "labels": report_labels(model, variant, cache_key),
    }
    if namespace:
        metadata["namespace"] = namespace
    spec = QualityReportSpec(
        model_ref=LocalObjectReference(name=model),
        variant=variant,
        cache_key=cache_key,
        baseline_variant=baseline_variant,
        results=list(results),
        source=source,
        speed=speed,
    )
    return QualityReport(metadata=metadata, spec=spec)


def to_yaml(report: QualityReport) -> str:
    return yaml.safe_dump(report.to_wire(), sort_keys=False)
