"""The QualityReport qmo-eval produces: its name, its spec from the scores, and its YAML. Pure.

Called by evaluation.py (`run`) and lm_eval_report.py (`import-lm-eval`); report_writer.py
puts the result into the cluster. Raw scores only: the operator computes deltas and the
verdict into status.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from qmo.api.base import LocalObjectReference
from qmo.api.qualityreport import (
    BenchmarkResult,
    QualityReport,
    QualityReportSpec,
    SpeedReport,
)
from qmo.manifests import labels, names
from qmo.planner.cachekey import short_key

SOURCE = "qmo-eval"
NAME_KEY_LENGTH = 12
# Decimals kept in reported scores: far below any threshold, and readable in kubectl.
SCORE_DIGITS = 6


def report_name(model: str, variant: str, cache_key: str) -> str:
    """`<model>-<variant>-<key[:12]>`, cut with a hash past 63 characters. A key that is not
    hex (an external system's revision id) is made name-safe: lower case, no trailing '-'."""
    key = re.sub(r"[^a-z0-9-]+", "-", cache_key[:NAME_KEY_LENGTH].lower()).strip("-")
    return names.bounded(model, variant, key)


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
        "labels": _labels(model, variant, cache_key),
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


def _labels(model: str, variant: str, cache_key: str) -> dict[str, str]:
    """Labels to select reports by; values a label cannot hold are left out."""
    candidates = {
        "app.kubernetes.io/name": "qmo",
        labels.COMPONENT: "evaluation",
        labels.MODEL: model,
        labels.VARIANT: variant,
        labels.CACHE_KEY: short_key(cache_key),
    }
    return {k: v for k, v in candidates.items() if _label_value(v)}


def _label_value(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", value) is not None
