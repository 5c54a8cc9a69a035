"""The contract between the operator and its eval Jobs: the eval container's termination message.

`qmo-eval run --termination-log PATH` (what the eval Job runs) writes an `EvalResult` as compact
JSON to PATH, the container's terminationMessagePath; the operator reads it from the finished
pod's status (controller.gather) and creates the QualityReport itself, owned by the model
(manifests.quality_report). So the eval pod holds no token and no rights: code it runs (an
lm-eval `!function` from the model's task files) can at worst misreport its own variant's
scores, never write a report about another model or revision, nor anything else.

Only what the gate judges travels: per benchmark its name, the baseline's and the candidate's
scores, which way is better and how many items were scored, and the speed figures. Who is
judged (model, variant, cache key, baseline variant) the operator takes from its own Job, never
from the pod. Results are rows, not objects. Measured: 3 benchmarks and the speed probe (two
concurrency levels) are 1,264 bytes as the QualityReport spec in compact JSON and 395 as rows;
32 benchmarks (the most a QuantizedModel declares) with 20-character names are 4,927 and 1,970,
with 63-character names 6,303 and 3,346. The spec would pass Kubernetes' 4096 bytes; rows fit.
`to_message` refuses a message that would not fit (scores of many digits) rather than let it be
cut. Neither side imports the other's code.
"""

from __future__ import annotations

import json
import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qmo.api.base import LocalObjectReference
from qmo.api.buildcontract import TERMINATION_MESSAGE_LIMIT, TERMINATION_MESSAGE_PATH
from qmo.api.qualityreport import (
    BenchmarkResult,
    PairedResult,
    PairingMethod,
    QualityReportSpec,
    SpeedReport,
    SpeedSample,
)

__all__ = [
    "ALLOW_CODE_EXECUTION_FLAG",
    "SOURCE",
    "TERMINATION_MESSAGE_LIMIT",
    "TERMINATION_MESSAGE_PATH",
    "EvalResult",
    "MessageError",
    "judge_key_env",
    "parse_message",
]

SOURCE = "qmo-eval"  # spec.source of the reports the operator writes from eval Jobs
# Tells qmo-eval it runs where model-written code may run (the eval pod): code-execution
# benchmarks, and lm-eval tasks marked unsafe, run only with it.
ALLOW_CODE_EXECUTION_FLAG = "--allow-code-execution"


def judge_key_env(benchmark: str) -> str:
    """The environment variable that carries a judged benchmark's judge API key into the eval
    pod (from the Secret the spec names): QMO_EVAL_JUDGE_KEY_<BENCHMARK>."""
    return "QMO_EVAL_JUDGE_KEY_" + "".join(c if c.isalnum() else "_" for c in benchmark.upper())


# [standardErrorPercent, method, exhausted, outcomesKept]: a row's paired statistics (the
# items are the row's samples; the outcomes file's path is the Job's, which the operator knows).
PairedRow = tuple[Annotated[float, Field(ge=0, le=1e6)], PairingMethod, bool, bool]
# [benchmark, baselineScore, candidateScore, higherIsBetter, samples]
ResultRow = tuple[
    Annotated[str, Field(min_length=1, max_length=63)], float, float, bool, int | None
]
# [concurrency, requests, ttftP50, ttftP95, itlP50, itlP95 (seconds), outputTokensPerSecond]
SpeedRow = tuple[int, int, float, float, float, float, float]


class MessageError(ValueError):
    """A termination message that is not an eval result, or one too long to be one."""


class _Contract(BaseModel):
    # Tolerant of fields a newer qmo-eval adds; strict on the JSON types of the ones read.
    model_config = ConfigDict(extra="ignore", strict=True)


class EvalSpeed(_Contract):
    candidate: list[SpeedRow] = Field(min_length=1, max_length=8)
    baseline: list[SpeedRow] = Field(default_factory=list, max_length=8)


class EvalResult(_Contract):
    """The termination message of an eval container: raw scores, no identity."""

    results: list[ResultRow] = Field(min_length=1, max_length=64)
    # One per result, in the same order: its paired statistics, or null where it has none.
    paired: list[PairedRow | None] | None = None
    speed: EvalSpeed | None = None

    @model_validator(mode="after")
    def _one_paired_row_per_result(self) -> EvalResult:
        if self.paired is not None and len(self.paired) != len(self.results):
            raise ValueError(
                f"{len(self.paired)} paired rows for {len(self.results)} results: one each"
            )
        return self

    @classmethod
    def of(cls, results: list[BenchmarkResult], speed: SpeedReport | None) -> EvalResult:
        """The rows of a report's results and speed."""
        paired = [_paired_row(r) for r in results]
        return cls(
            results=[
                (r.benchmark, r.baseline_score, r.candidate_score, r.higher_is_better, r.samples)
                for r in results
            ],
            paired=paired if any(p is not None for p in paired) else None,
            speed=EvalSpeed(
                candidate=[_speed_row(s) for s in speed.candidate],
                baseline=[_speed_row(s) for s in speed.baseline],
            )
            if speed is not None
            else None,
        )

    def to_message(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """Compact JSON; MessageError when it would not fit in `limit` bytes (Kubernetes
        would cut it, and a cut message is no result)."""
        text = json.dumps(
            self.model_dump(mode="json", exclude_none=True), separators=(",", ":"), allow_nan=False
        )
        size = len(text.encode("utf-8"))
        if size > limit:
            raise MessageError(
                f"the report is {size} bytes as a termination message, over Kubernetes' "
                f"{limit} (shorten the benchmark names or declare fewer benchmarks)"
            )
        return text

    def report_spec(
        self,
        *,
        model: str,
        variant: str,
        cache_key: str,
        baseline_variant: str | None,
        outcomes_dir: str | None = None,
    ) -> QualityReportSpec:
        """The QualityReport spec these scores make for the given revision; MessageError when
        the API would refuse it (a benchmark twice, a name too long). `outcomes_dir`: where
        the Job kept per-item outcomes on the store (the report names each file)."""
        speed = None
        if self.speed is not None:
            speed = SpeedReport(
                candidate=[_speed_sample(r) for r in self.speed.candidate],
                baseline=[_speed_sample(r) for r in self.speed.baseline],
            )
        try:
            return QualityReportSpec(
                model_ref=LocalObjectReference(name=model),
                variant=variant,
                cache_key=cache_key,
                baseline_variant=baseline_variant,
                results=[
                    _benchmark_result(row, paired, outcomes_dir)
                    for row, paired in zip(
                        self.results, self.paired or [None] * len(self.results), strict=True
                    )
                ],
                source=SOURCE,
                speed=speed,
            )
        except (ValidationError, ValueError) as err:
            raise MessageError(f"the scores do not make a valid report: {_summary(err)}") from err


def _paired_row(result: BenchmarkResult) -> PairedRow | None:
    found = result.paired
    if found is None:
        return None
    kept = found.outcomes is not None
    return (found.standard_error_percent, found.method, found.exhausted, kept)


def _benchmark_result(
    row: ResultRow, paired: PairedRow | None, outcomes_dir: str | None
) -> BenchmarkResult:
    name, baseline, candidate, higher, samples = row
    found = None
    if paired is not None:
        error, method, exhausted, kept = paired
        found = PairedResult(
            items=samples or 0,
            standard_error_percent=error,
            method=method,
            exhausted=exhausted,
            outcomes=f"{outcomes_dir}/{name}.jsonl" if kept and outcomes_dir else None,
        )
    return BenchmarkResult(
        benchmark=name,
        baseline_score=baseline,
        candidate_score=candidate,
        higher_is_better=higher,
        samples=samples,
        paired=found,
    )


def parse_message(text: str) -> EvalResult:
    """The eval result in a termination message; MessageError saying what is wrong."""
    if not text.strip():
        raise MessageError("the termination message is empty")
    try:
        result = EvalResult.model_validate_json(text)
    except ValidationError as err:
        raise MessageError(f"the termination message is no eval result: {_summary(err)}") from err
    scores = [v for r in result.results for v in r[1:3]]
    if result.speed is not None:
        scores += [v for r in [*result.speed.candidate, *result.speed.baseline] for v in r[2:]]
    if not all(math.isfinite(v) for v in scores):
        raise MessageError("the termination message holds a score that is not a finite number")
    return result


def _summary(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the message"
        return f"{where}: {first['msg']} ({err.error_count()} error(s))"
    return str(err)


def _speed_row(sample: SpeedSample) -> SpeedRow:
    return (
        sample.concurrency,
        sample.requests,
        sample.ttft_p50_seconds,
        sample.ttft_p95_seconds,
        sample.itl_p50_seconds,
        sample.itl_p95_seconds,
        sample.output_tokens_per_second,
    )


def _speed_sample(row: SpeedRow) -> SpeedSample:
    concurrency, requests, ttft50, ttft95, itl50, itl95, tokens = row
    return SpeedSample(
        concurrency=concurrency,
        requests=requests,
        ttft_p50_seconds=ttft50,
        ttft_p95_seconds=ttft95,
        itl_p50_seconds=itl50,
        itl_p95_seconds=itl95,
        output_tokens_per_second=tokens,
    )
