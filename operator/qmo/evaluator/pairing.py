"""The paired result of one benchmark: both endpoints' per-item outcomes, on the same items in
the same order, into the standard error the report carries (qmo.quality.paired), and the
outcomes themselves into a JSON Lines file beside the report on the engine store.

A benchmark whose outcomes cannot be paired (an lm-eval metric without per-sample values, or
different item counts) gets no paired result: the operator judges it on its point estimate
and says so.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from qmo.api.qualityreport import PairedResult
from qmo.api.quantizedmodel import BenchmarkSpec
from qmo.evaluator.scoring import Score
from qmo.quality import paired

log = logging.getLogger("qmo.eval.pairing")
MAX_STANDARD_ERROR_PERCENT = 1e6  # what the report's schema takes


def estimate(spec: BenchmarkSpec, baseline: Score, candidate: Score) -> paired.Estimate | None:
    if not baseline.outcomes or len(baseline.outcomes) != len(candidate.outcomes):
        return None
    try:
        if baseline.weights:
            return paired.perplexity(
                paired.Documents(
                    baseline.outcomes, baseline.weights, candidate.outcomes, candidate.weights
                )
            )
        return paired.mean_metric(
            baseline.outcomes, candidate.outcomes, higher_is_better=spec.higher_is_better
        )
    except paired.PairingError as err:
        log.warning("Benchmark %s: no paired statistics (%s).", spec.name, err)
        return None


def paired_result(
    spec: BenchmarkSpec,
    baseline: Score,
    candidate: Score,
    *,
    exhausted: bool,
    outcomes: str | None = None,
) -> PairedResult | None:
    found = estimate(spec, baseline, candidate)
    if found is None:
        return None
    error = found.standard_error_percent
    if not math.isfinite(error) or error > MAX_STANDARD_ERROR_PERCENT:
        log.warning("Benchmark %s: the standard error %s is not usable.", spec.name, error)
        return None
    return PairedResult(
        items=found.items,
        standard_error_percent=round(error, 6),
        method=found.method,
        exhausted=exhausted,
        outcomes=outcomes,
    )


def write_outcomes(directory: Path, spec: BenchmarkSpec, baseline: Score, candidate: Score) -> Path:
    """`<directory>/<benchmark>.jsonl`: one line per item, both endpoints' outcomes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec.name}.jsonl"
    lines = []
    for index, (b, c) in enumerate(zip(baseline.outcomes, candidate.outcomes, strict=False)):
        line: dict[str, object] = {"item": index, "baseline": b, "candidate": c}
        if baseline.weights and candidate.weights:
            line["baselineTokens"] = baseline.weights[index]
            line["candidateTokens"] = candidate.weights[index]
        if baseline.details and candidate.details:  # a judge's raw verdicts, both endpoints
            line["baselineDetail"] = baseline.details[index]
            line["candidateDetail"] = candidate.details[index]
        lines.append(json.dumps(line))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
