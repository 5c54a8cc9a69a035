"""`qmo-eval`, the console script of eval Jobs: the command line, and exit codes.

`qmo-eval run` is what the operator's eval Job runs (manifests/evaluation.py): evaluation.py
scores the candidate's and the BF16 baseline's endpoints into a QualityReport with the raw
scores, and this module hands it on (report_writer.py): with `--termination-log` (the eval
Job) as the container's termination message, from which the operator creates the report;
without it (by hand, or an external pipeline) into the cluster with the caller's credentials.
It never writes status: the operator judges the report.

`qmo-eval import-lm-eval` turns two lm-evaluation-harness results files into the same kind of
report (lm_eval_report.py), printed as YAML or JSON, or applied.

This module parses the arguments, calls one of those two, writes the report and maps errors to
exit codes: 0 the report was written (or printed); 2 bad input (arguments, benchmark list,
datasets, results files, a report too long for a termination message); 1 an endpoint or the
Kubernetes API failed, or a server cannot give what a benchmark needs (prompt logprobs for
perplexity). No partial report is ever written: a
report that lacks a declared benchmark would only be judged Invalid.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from qmo import __version__
from qmo.api.evalcontract import ALLOW_CODE_EXECUTION_FLAG
from qmo.api.qualityreport import QualityReport
from qmo.argparsing import show_defaults
from qmo.evaluator import benchmarks as loading
from qmo.evaluator.benchmarks import InputError
from qmo.evaluator.evaluation import (
    BadInput,
    ClientFactory,
    EvaluationFailed,
    RunOptions,
    default_client,
    evaluate,
)
from qmo.evaluator.harness import Api, Settings
from qmo.evaluator.lm_eval_import import LmEvalError
from qmo.evaluator.lm_eval_report import report_from_files
from qmo.evaluator.report_writer import (
    KubeWriter,
    PrintWriter,
    ReportTooLong,
    ReportWriter,
    TerminationWriter,
    WriteError,
    Written,
)
from qmo.evaluator.speed import ProbeSettings
from qmo.planner.cachekey import short_key

log = logging.getLogger("qmo.eval")


class ExitCode:
    OK = 0
    FAILED = 1  # an endpoint, the Kubernetes API, or a server capability
    BAD_INPUT = 2


def run(
    options: RunOptions, writer: ReportWriter, make_client: ClientFactory = default_client
) -> int:
    """Evaluate both endpoints on every benchmark and write one report; the exit code."""
    try:
        report = evaluate(options, make_client)
        written = writer.write(report)
    except BadInput as err:
        log.error("Evaluation of %s failed: %s", options.subject, err)
        return ExitCode.BAD_INPUT
    except EvaluationFailed as err:
        log.error("Evaluation of %s failed: %s", options.subject, err)
        return ExitCode.FAILED
    except ReportTooLong as err:
        log.error("Evaluation of %s finished but cannot be reported: %s", options.subject, err)
        return ExitCode.BAD_INPUT
    except WriteError as err:
        log.error(
            "Evaluation of %s finished but the report was not written: %s", options.subject, err
        )
        return ExitCode.FAILED
    log.info(
        "QualityReport %s/%s %s (cacheKey=%s).",
        options.namespace,
        report.metadata["name"],
        written.value,
        short_key(options.cache_key),
    )
    return ExitCode.OK


def import_lm_eval(args: argparse.Namespace, writer: ReportWriter) -> int:
    """Build the report from the two results files and write it; the exit code."""
    try:
        report = report_from_files(
            args.results,
            args.candidate_results,
            args.task or (),
            model=args.model,
            variant=args.variant,
            cache_key=args.cache_key,
            namespace=args.namespace,
            baseline_variant=args.baseline_variant,
        )
    except (InputError, LmEvalError) as err:
        log.error("Cannot import lm-evaluation-harness results: %s", err)
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


def _samples(text: str) -> tuple[str, int]:
    name, sep, count = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not BENCHMARK=N")
    return name, _positive_int(count)


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
    parser.add_argument("--version", action="version", version=f"qmo-eval {__version__}")
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
    run_out = run_p.add_mutually_exclusive_group()
    run_out.add_argument(
        "--dry-run", action="store_true", help="Print the report as YAML instead of creating it."
    )
    run_out.add_argument(
        "--termination-log",
        type=Path,
        metavar="PATH",
        help="Write the scores to PATH, the container's termination message, for the operator "
        "to create the report from (what eval Jobs do; needs no credentials).",
    )
    run_p.add_argument(
        ALLOW_CODE_EXECUTION_FLAG,
        action="store_true",
        help="Run model-written code (code-execution benchmarks, lm-eval tasks marked unsafe): "
        "only where that is safe, as in an eval Job's pod.",
    )
    run_p.add_argument(
        "--samples",
        action="append",
        default=[],
        type=_samples,
        metavar="BENCHMARK=N",
        help="Score N items of BENCHMARK, over its spec's samples (repeatable): a "
        "re-evaluation of an Inconclusive report.",
    )
    run_p.add_argument(
        "--outcomes-dir",
        type=Path,
        help="Keep each benchmark's per-item outcomes of both endpoints here (JSON Lines).",
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
    return show_defaults(parser)


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
            allow_code_execution=args.allow_code_execution,
        ),
        timeout=args.timeout,
        seed=args.seed,
        datasets_root=args.datasets_root,
        store_root=args.store_root,
        samples=dict(args.samples),
        outcomes_dir=args.outcomes_dir,
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
        writer: ReportWriter
        if args.termination_log is not None:
            writer = TerminationWriter(args.termination_log)
        else:
            writer = PrintWriter() if args.dry_run else KubeWriter()
        return run(_run_options(args), writer)
    if args.apply:
        args.namespace = args.namespace or "default"
        import_writer: ReportWriter = KubeWriter()
    elif args.output == "json":
        import_writer = JsonWriter()
    else:
        import_writer = PrintWriter()
    return import_lm_eval(args, import_writer)
