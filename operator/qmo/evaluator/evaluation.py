"""The evaluation behind `qmo-eval run`: the candidate's and the BF16 baseline's endpoints on
every benchmark, then their serving speed when asked, into one QualityReport.

Called by `cli.run`, which writes the report and turns this module's errors into exit codes.
It loads the benchmark list and datasets (benchmarks.py), sends every item to both
OpenAI-compatible endpoints (openai_client.py, harness.py) or runs the lm-evaluation-harness
task against them (lm_eval_tasks.py), scores the answers (scoring.py), probes speed (speed.py)
and builds the report with the raw scores (report.py). Names the API would refuse and
unreadable JSONL datasets are found before the first request. A benchmark that fails on an
endpoint does not stop the others, but any failure means no report: one that lacks a declared
benchmark would only be judged Invalid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from qmo.api.evalcontract import ALLOW_CODE_EXECUTION_FLAG, judge_key_env
from qmo.api.qualityreport import BenchmarkResult, QualityReport, SpeedReport
from qmo.api.quantizedmodel import BenchmarkMetric, BenchmarkSpec
from qmo.evaluator import benchmarks as loading
from qmo.evaluator import lm_eval_tasks, pairing
from qmo.evaluator.benchmarks import Benchmark, InputError
from qmo.evaluator.harness import Settings, score_benchmark
from qmo.evaluator.openai_client import EndpointError, OpenAIClient
from qmo.evaluator.report import build_report, result
from qmo.evaluator.scoring import Score, ScoringError
from qmo.evaluator.speed import ProbeError, ProbeSettings
from qmo.evaluator.speed import probe as speed_probe

API_KEY_ENV = "QMO_EVAL_API_KEY"
log = logging.getLogger("qmo.eval")


@dataclass(frozen=True)
class RunOptions:
    model: str
    namespace: str
    variant: str
    cache_key: str
    candidate_url: str
    baseline_url: str
    baseline_variant: str
    benchmarks: Path
    served_model_name: str | None = None
    settings: Settings = field(default_factory=Settings)
    timeout: float = 60.0
    seed: int | None = 0
    datasets_root: Path = loading.DATASETS_ROOT
    store_root: Path = loading.STORE_ROOT
    speed: ProbeSettings | None = None  # measure serving speed too
    # Items per benchmark, over the spec's `samples` (a re-evaluation of an Inconclusive one).
    samples: dict[str, int] = field(default_factory=dict)
    # Where the per-item outcomes go (the engine store, beside the report); None: not kept.
    outcomes_dir: Path | None = None

    @property
    def allow_code_execution(self) -> bool:
        return self.settings.allow_code_execution

    @property
    def subject(self) -> str:
        """The variant evaluated, as log lines name it."""
        return f"{self.namespace}/{self.model} variant={self.variant}"


ClientFactory = Callable[[str, float, int | None], OpenAIClient]


def default_client(url: str, timeout: float, seed: int | None) -> OpenAIClient:
    return OpenAIClient(url, timeout=timeout, seed=seed, api_key=os.environ.get(API_KEY_ENV))


class BadInput(Exception):
    """The endpoints' URLs, the benchmark list, a dataset or a task cannot be used, or the
    report would be refused by the API."""


class EvaluationFailed(Exception):
    """An endpoint failed, or a server cannot give what a benchmark needs (prompt logprobs for
    perplexity)."""


class BenchmarkFailure(RuntimeError):
    """A benchmark could not be scored on one of the endpoints."""


def evaluate(options: RunOptions, make_client: ClientFactory = default_client) -> QualityReport:
    """Both endpoints on every benchmark (and their speed, when asked) as one report; raises
    BadInput or EvaluationFailed instead of returning a partial one."""
    for url in (options.candidate_url, options.baseline_url):
        if not url.startswith(("http://", "https://")):
            raise BadInput(f"endpoint {url!r} is not an http(s) URL")
    # Names the API would refuse are found now, not after an hour of requests.
    _report(options, [result("check", 1.0, 1.0, higher_is_better=True, samples=None)])
    try:
        specs = [
            s.model_copy(update={"samples": options.samples[s.name]})
            if s.name in options.samples
            else s
            for s in loading.load_specs(options.benchmarks)
        ]
        # JSONL benchmarks are read (and checked) before any request; lm-eval tasks load their
        # own data when they run.
        loaded = {
            s.name: loading.load_benchmark(
                s, datasets_root=options.datasets_root, store_root=options.store_root
            )
            for s in specs
            if s.dataset is not None
        }
    except InputError as err:
        raise BadInput(str(err)) from err
    running_code = [s.name for s in specs if s.metric == BenchmarkMetric.CODE_EXECUTION]
    if running_code and not options.allow_code_execution:
        raise BadInput(
            f"benchmark {', '.join(running_code)} runs model-written code: qmo-eval runs it only "
            f"with {ALLOW_CODE_EXECUTION_FLAG}, which eval Jobs pass (their pod holds no "
            "credentials and reaches only the two endpoints)"
        )
    judges = {s.name: _judge(s, options, make_client) for s in specs if s.judge is not None}
    endpoints = {
        "baseline": _endpoint(options, options.baseline_url, make_client),
        "candidate": _endpoint(options, options.candidate_url, make_client),
    }
    log.info(
        "Evaluating %s against baseline=%s on %d benchmarks (%s).",
        options.subject,
        options.baseline_variant,
        len(specs),
        ", ".join(
            f"{s.name}: lm-eval task {s.lm_eval.task}"
            if s.lm_eval is not None
            else f"{s.name}: {len(loaded[s.name].items)} items"
            for s in specs
        ),
    )
    results, failures = [], []
    for spec in specs:
        try:
            if spec.lm_eval is not None:
                results.append(_compare_task(spec, endpoints, options))
            else:
                results.append(
                    _compare(loaded[spec.name], endpoints, options, judges.get(spec.name))
                )
        except BenchmarkFailure as err:
            failures.append(str(err))
    speed = None
    if options.speed is not None and not failures:
        try:
            speed = _measure_speed(endpoints, options.speed)
        except ProbeError as err:
            failures.append(f"speed probe: {err}")
    if failures:
        raise EvaluationFailed("; ".join(failures) + " (no report written)")
    return _report(options, results, speed)


def _compare_task(
    spec: BenchmarkSpec, endpoints: dict[str, OpenAIClient], options: RunOptions
) -> BenchmarkResult:
    scores: dict[str, Score] = {}
    for role, client in endpoints.items():
        endpoint = lm_eval_tasks.Endpoint(
            url=client.base_url,
            model=client.model or "",
            concurrency=options.settings.concurrency,
            timeout=options.timeout,
        )
        try:
            scores[role] = lm_eval_tasks.score_task(
                spec,
                endpoint,
                datasets_root=options.datasets_root,
                store_root=options.store_root,
                allow_code_execution=options.allow_code_execution,
            )
        except InputError as err:
            raise BadInput(str(err)) from err
        except lm_eval_tasks.TaskFailure as err:
            raise BenchmarkFailure(f"benchmark {spec.name} on the {role}: {err}") from err
    scored = scores["candidate"].samples
    return _result(spec, scores, options, exhausted=spec.samples is None or scored < spec.samples)


def _measure_speed(endpoints: dict[str, OpenAIClient], settings: ProbeSettings) -> SpeedReport:
    figures = {
        role: speed_probe(client.base_url, client.model or "", settings)
        for role, client in endpoints.items()
    }
    for role, samples in figures.items():
        for sample in samples:
            log.info(
                "Speed of the %s at concurrency %d: %.1f output tokens/s, TTFT p50 %.3fs.",
                role, sample.concurrency, sample.output_tokens_per_second,
                sample.ttft_p50_seconds,
            )  # fmt: skip
    return SpeedReport(candidate=figures["candidate"], baseline=figures["baseline"])


def _report(
    options: RunOptions, results: list[BenchmarkResult], speed: SpeedReport | None = None
) -> QualityReport:
    try:
        return build_report(
            model=options.model,
            variant=options.variant,
            cache_key=options.cache_key,
            namespace=options.namespace,
            baseline_variant=options.baseline_variant,
            results=results,
            speed=speed,
        )
    except ValidationError as err:
        raise BadInput(f"the report would be invalid: {err}") from err


def _endpoint(options: RunOptions, url: str, make_client: ClientFactory) -> OpenAIClient:
    """A client for the endpoint, with the name of the model it serves."""
    client = make_client(url, options.timeout, options.seed)
    return _naming(client, options.served_model_name, f"{url}/v1/models")


def _judge(spec: BenchmarkSpec, options: RunOptions, make_client: ClientFactory) -> OpenAIClient:
    """The judge endpoint of a judged benchmark: its API key from the environment variable the
    eval Job fills from the spec's Secret (never an argument), its model as the spec names it
    or as it lists first."""
    judge = spec.judge
    assert judge is not None
    client = make_client(judge.url, options.timeout, options.seed)
    client.api_key = os.environ.get(judge_key_env(spec.name))
    return _naming(client, judge.model, f"benchmark {spec.name}: the judge's /v1/models")


def _naming(client: OpenAIClient, model: str | None, where: str) -> OpenAIClient:
    """`client` asking for `model`, or for the first model the endpoint lists."""
    if model:
        client.model = model
        return client
    try:
        served = client.models()
    except EndpointError as err:
        raise EvaluationFailed(f"{where}: cannot list the served models: {err}") from err
    if not served:
        raise EvaluationFailed(f"{where} lists no model")
    client.model = served[0]
    return client


def _compare(
    benchmark: Benchmark,
    endpoints: dict[str, OpenAIClient],
    options: RunOptions,
    judge_with: OpenAIClient | None = None,
) -> BenchmarkResult:
    scores: dict[str, Score] = {}
    for role, endpoint in endpoints.items():
        try:
            scores[role] = score_benchmark(benchmark, endpoint, options.settings, judge_with)
        except (EndpointError, ScoringError) as err:
            raise BenchmarkFailure(f"benchmark {benchmark.name} on the {role}: {err}") from err
        log.info(
            "Scored %s on the %s (%s): %.6g over %d items.",
            benchmark.name,
            role,
            endpoint.base_url,
            scores[role].value,
            scores[role].samples,
        )
    return _result(benchmark.spec, scores, options, exhausted=benchmark.exhausted)


def _result(
    spec: BenchmarkSpec, scores: dict[str, Score], options: RunOptions, *, exhausted: bool
) -> BenchmarkResult:
    """The report's row: both endpoints' scores, how many items the candidate's rests on, and
    the paired statistics of their per-item outcomes (kept on the store when it is given)."""
    baseline, candidate = scores["baseline"], scores["candidate"]
    outcomes = _keep_outcomes(spec, baseline, candidate, options)
    row = result(
        spec.name,
        baseline.value,
        candidate.value,
        higher_is_better=spec.higher_is_better,
        samples=candidate.samples,
    )
    found = pairing.paired_result(spec, baseline, candidate, exhausted=exhausted, outcomes=outcomes)
    if found is not None:
        log.info(
            "Paired %s over %d items: standard error of the regression %.3f%% (%s).",
            spec.name, found.items, found.standard_error_percent, found.method.value,
        )  # fmt: skip
    return row.model_copy(update={"paired": found})


def _keep_outcomes(
    spec: BenchmarkSpec, baseline: Score, candidate: Score, options: RunOptions
) -> str | None:
    """The outcomes file's path on the store (relative to its root), or None when none is
    kept: no directory given, nothing to pair, or the write failed (the report goes on)."""
    if options.outcomes_dir is None or not baseline.outcomes:
        return None
    try:
        path = pairing.write_outcomes(options.outcomes_dir, spec, baseline, candidate)
    except OSError as err:
        log.warning("Benchmark %s: per-item outcomes not kept: %s.", spec.name, err)
        return None
    try:
        return str(path.relative_to(options.store_root))
    except ValueError:
        return str(path)
