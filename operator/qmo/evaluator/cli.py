"""`qmo-eval`: the evaluator that runs in eval Jobs, and the lm-evaluation-harness importer.

`qmo-eval run` is what the operator's eval Job runs (manifests/evaluation.py): it loads the
benchmark list and datasets (benchmarks.py), sends every item to the candidate's and the BF16
baseline's OpenAI-compatible endpoints (openai_client.py, harness.py), scores the answers
(scoring.py) and creates a QualityReport with the raw scores (report.py, report_writer.py).
It never writes status: the operator judges the report.

`qmo-eval import-lm-eval` turns two lm-evaluation-harness results files into the same kind of
report (lm_eval_import.py), printed as YAML or applied.

Exit codes: 0 the report was written (or printed); 2 bad input (arguments, benchmark list,
datasets, results files); 1 an endpoint or the Kubernetes API failed, or a server cannot give
what a benchmark needs (prompt logprobs for perplexity). No partial report is ever written: a
report that lacks a declared benchmark would only be judged Invalid.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qmo.api.qualityreport import BenchmarkResult, QualityReport, SpeedReport
from qmo.api.quantizedmodel import BenchmarkSpec
from qmo.evaluator import benchmarks as loading
from qmo.evaluator import lm_eval_import, lm_eval_tasks
from qmo.evaluator.benchmarks import Benchmark, InputError
from qmo.evaluator.harness import Api, Settings, score_benchmark
from qmo.evaluator.openai_client import EndpointError, OpenAIClient
from qmo.evaluator.report import build_report, result
from qmo.evaluator.report_writer import KubeWriter, PrintWriter, ReportWriter, WriteError, Written
from qmo.evaluator.scoring import Score, ScoringError
from qmo.evaluator.speed import ProbeError, ProbeSettings
from qmo.evaluator.speed import probe as speed_probe
from qmo.planner.cachekey import short_key

API_KEY_ENV = "QMO_EVAL_API_KEY"
log = logging.getLogger("qmo.eval")


class ExitCode:
    OK = 0
    FAILED = 1  # an endpoint, the Kubernetes API, or a server capability
    BAD_INPUT = 2


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


ClientFactory = Callable[[str, float, int | None], OpenAIClient]


def default_client(url: str, timeout: float, seed: int | None) -> OpenAIClient:
    return OpenAIClient(url, timeout=timeout, seed=seed, api_key=os.environ.get(API_KEY_ENV))


class BenchmarkFailure(RuntimeError):
    """A benchmark could not be scored on one of the endpoints."""


class _Failed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def run(
    options: RunOptions, writer: ReportWriter, make_client: ClientFactory = default_client
) -> int:
    """Evaluate both endpoints on every benchmark and write one report; the exit code."""
    where = f"{options.namespace}/{options.model} variant={options.variant}"
    try:
        report = _evaluate(options, make_client, where)
        written = writer.write(report)
    except _Failed as err:
        log.error("Evaluation of %s failed: %s", where, err)
        return err.code
    except WriteError as err:
        log.error("Evaluation of %s finished but the report was not written: %s", where, err)
        return ExitCode.FAILED
    log.info(
        "QualityReport %s/%s %s (cacheKey=%s).",
        options.namespace,
        report.metadata["name"],
        written.value,
        short_key(options.cache_key),
    )
    return ExitCode.OK


def _evaluate(options: RunOptions, make_client: ClientFactory, where: str) -> QualityReport:
    for url in (options.candidate_url, options.baseline_url):
        if not url.startswith(("http://", "https://")):
            raise _Failed(ExitCode.BAD_INPUT, f"endpoint {url!r} is not an http(s) URL")
    # Names the API would refuse are found now, not after an hour of requests.
    _report(options, [result("check", 1.0, 1.0, higher_is_better=True, samples=None)])
    try:
        specs = loading.load_specs(options.benchmarks)
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
        raise _Failed(ExitCode.BAD_INPUT, str(err)) from err
    endpoints = {
        "baseline": _endpoint(options, options.baseline_url, make_client),
        "candidate": _endpoint(options, options.candidate_url, make_client),
    }
    log.info(
        "Evaluating %s against baseline=%s on %d benchmarks (%s).",
        where,
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
                results.append(_compare(loaded[spec.name], endpoints, options.settings))
        except BenchmarkFailure as err:
            failures.append(str(err))
    speed = None
    if options.speed is not None and not failures:
        try:
            speed = _measure_speed(endpoints, options.speed)
        except ProbeError as err:
            failures.append(f"speed probe: {err}")
    if failures:
        raise _Failed(ExitCode.FAILED, "; ".join(failures) + " (no report written)")
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
                spec, endpoint, datasets_root=options.datasets_root, store_root=options.store_root
            )
        except InputError as err:
            raise _Failed(ExitCode.BAD_INPUT, str(err)) from err
        except lm_eval_tasks.TaskFailure as err:
            raise BenchmarkFailure(f"benchmark {spec.name} on the {role}: {err}") from err
    return _result(spec, scores)


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
        raise _Failed(ExitCode.BAD_INPUT, f"the report would be invalid: {err}") from err


def _endpoint(options: RunOptions, url: str, make_client: ClientFactory) -> OpenAIClient:
    """A client for the endpoint, with the name of the model it serves."""
    client = make_client(url, options.timeout, options.seed)
    if options.served_model_name:
        client.model = options.served_model_name
        return client
    try:
        served = client.models()
    except EndpointError as err:
        raise _Failed(ExitCode.FAILED, f"cannot list the served models: {err}") from err
    if not served:
        raise _Failed(ExitCode.FAILED, f"{url}/v1/models lists no model")
    client.model = served[0]
    return client


def _compare(
    benchmark: Benchmark, endpoints: dict[str, OpenAIClient], settings: Settings
) -> BenchmarkResult:
    scores: dict[str, Score] = {}
    for role, endpoint in endpoints.items():
        try:
            scores[role] = score_benchmark(benchmark, endpoint, settings)
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
    return _result(benchmark.spec, scores)


def _result(spec: BenchmarkSpec, scores: dict[str, Score]) -> BenchmarkResult:
    """The report's row: both endpoints' scores, and how many items the candidate's rests on."""
    return result(
        spec.name,
        scores["baseline"].value,
        scores["candidate"].value,
        higher_is_better=spec.higher_is_better,
        samples=scores["candidate"].samples,
    )


# --- import-lm-eval -------------------------------------------------------------------------


def import_lm_eval(args: argparse.Namespace, writer: ReportWriter) -> int:
    try:
        baseline = lm_eval_import.read_results(_read_json(args.results), str(args.results))
        candidate = lm_eval_import.read_results(
            _read_json(args.candidate_results), str(args.candidate_results)
        )
        selections = [lm_eval_import.parse_selection(t) for t in args.task or ()]
        results = lm_eval_import.import_results(baseline, candidate, selections)
        report = build_report(
            model=args.model,
            variant=args.variant,
            cache_key=args.cache_key,
            namespace=args.namespace,
            baseline_variant=args.baseline_variant,
            results=results,
            source=lm_eval_import.SOURCE,
        )
    except (InputError, lm_eval_import.LmEvalError) as err:
        log.error("Cannot import lm-evaluation-harness results: %s", err)
        return ExitCode.BAD_INPUT
    except ValidationError as err:
        log.error("Cannot import lm-evaluation-harness results: the report is invalid: %s", err)
        return ExitCode.BAD_INPUT
    try:
        written = writer.write(report)
    except WriteError as err:
        log.error("The report was not written: %s", err)
        return ExitCode.FAILED
    if written != Written.PRINTED:
        log.info("QualityReport %s/%s %s.", args.namespace, report.metadata["name"], written.value)
    return ExitCode.OK


class JsonWriter:
    """-o json: the report as JSON on stdout."""

    def write(self, report: QualityReport) -> Written:
        sys.stdout.write(json.dumps(report.to_wire(), indent=2) + "\n")
        return Written.PRINTED


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read JSON: {err}") from err


# --- command line ----------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _identity(parser: argparse.ArgumentParser, *, namespace_required: bool) -> None:
    parser.add_argument("--model", required=True, help="QuantizedModel name.")
    parser.add_argument(
        "--namespace",
        required=namespace_required,
        default=None,
        help="Namespace of the model and the report.",
    )
    parser.add_argument("--variant", required=True, help="Variant judged, e.g. h100-fp8.")
    parser.add_argument("--cache-key", required=True, help="Revision (cache key) judged.")
    parser.add_argument(
        "--baseline-variant", required=namespace_required, help="Variant used as baseline."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmo-eval",
        description="Score a quantized variant against its baseline into a QualityReport.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="Evaluate two OpenAI-compatible endpoints.")
    _identity(run_p, namespace_required=True)
    run_p.add_argument("--candidate-url", required=True, help="http://SERVICE:PORT of the variant.")
    run_p.add_argument("--baseline-url", required=True, help="http://SERVICE:PORT of the baseline.")
    run_p.add_argument(
        "--benchmarks", required=True, type=Path, help="JSON list of BenchmarkSpecs."
    )
    run_p.add_argument(
        "--served-model-name",
        help="Model name in requests; default: the first id of each endpoint's /v1/models.",
    )
    run_p.add_argument(
        "--max-tokens", type=_positive_int, default=64, help="Tokens per exact-match answer."
    )
    run_p.add_argument("--timeout", type=_positive_float, default=60.0, help="Seconds per request.")
    run_p.add_argument(
        "--concurrency", type=_positive_int, default=4, help="Requests in flight per endpoint."
    )
    run_p.add_argument(
        "--api",
        choices=[a.value for a in Api],
        default=Api.COMPLETIONS.value,
        help="Endpoint for exact-match and multiple-choice prompts (perplexity: completions).",
    )
    run_p.add_argument(
        "--choice-logprobs",
        type=int,
        default=0,
        help="Top logprobs to compare choice letters with (0: read the letter from the text).",
    )
    run_p.add_argument("--seed", type=int, default=0, help="Sampling seed sent with requests.")
    run_p.add_argument(
        "--datasets-root", type=Path, default=loading.DATASETS_ROOT, help="ConfigMap datasets."
    )
    run_p.add_argument(
        "--store-root", type=Path, default=loading.STORE_ROOT, help="Engine store mount."
    )
    run_p.add_argument(
        "--dry-run", action="store_true", help="Print the report as YAML instead of creating it."
    )
    run_p.add_argument(
        "--speed-concurrency",
        type=_positive_int,
        help="Also measure serving speed, at concurrency 1 and at this one.",
    )
    run_p.add_argument(
        "--speed-requests", type=_positive_int, default=32, help="Requests per speed level."
    )
    run_p.add_argument(
        "--speed-max-tokens", type=_positive_int, default=128, help="Output tokens per request."
    )
    run_p.add_argument(
        "--speed-prompt-words", type=_positive_int, default=256, help="Words per speed prompt."
    )

    imp = sub.add_parser(
        "import-lm-eval", help="Turn two lm-evaluation-harness results files into a report."
    )
    imp.add_argument("--results", required=True, type=Path, help="Baseline results JSON.")
    imp.add_argument(
        "--candidate-results", required=True, type=Path, help="Candidate results JSON."
    )
    _identity(imp, namespace_required=False)
    imp.add_argument(
        "--task",
        action="append",
        metavar="TASK[:METRIC][=BENCHMARK]",
        help="Task to report (repeatable); default: every top-level task in both files.",
    )
    out = imp.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    out.add_argument("--apply", action="store_true", help="Create or apply it in the cluster.")
    return parser


def _run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        model=args.model,
        namespace=args.namespace,
        variant=args.variant,
        cache_key=args.cache_key,
        candidate_url=args.candidate_url,
        baseline_url=args.baseline_url,
        baseline_variant=args.baseline_variant,
        benchmarks=args.benchmarks,
        served_model_name=args.served_model_name,
        settings=Settings(
            api=Api(args.api),
            max_tokens=args.max_tokens,
            concurrency=args.concurrency,
            choice_logprobs=max(0, args.choice_logprobs),
        ),
        timeout=args.timeout,
        seed=args.seed,
        datasets_root=args.datasets_root,
        store_root=args.store_root,
        speed=ProbeSettings(
            concurrency=args.speed_concurrency,
            requests=args.speed_requests,
            max_tokens=args.speed_max_tokens,
            prompt_words=args.speed_prompt_words,
            timeout=max(args.timeout, 120.0),
        )
        if args.speed_concurrency
        else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command == "run":
        writer: ReportWriter = PrintWriter() if args.dry_run else KubeWriter()
        return run(_run_options(args), writer)
    if args.apply:
        args.namespace = args.namespace or "default"
        import_writer: ReportWriter = KubeWriter()
    elif args.output == "json":
        import_writer = JsonWriter()
    else:
        import_writer = PrintWriter()
    return import_lm_eval(args, import_writer)
