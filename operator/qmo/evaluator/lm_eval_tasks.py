"""Benchmarks that are lm-evaluation-harness tasks: the task run against one OpenAI-compatible
endpoint with lm-eval's own `local-completions` / `local-chat-completions` models, and the
judged metric read from its results.

lm-eval (the `evaluator` extra) is imported here only, inside a function: the rest of qmo-eval
runs without it. Task data comes from the Hugging Face hub for named tasks (gsm8k,
mmlu_pro, ...), or from local files for custom tasks (`lmEval.include`), which is what an
air-gapped cluster uses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from qmo.api.quantizedmodel import BenchmarkSpec, LmEvalApi, LmEvalTask
from qmo.evaluator.benchmarks import DATASETS_ROOT, STORE_ROOT, InputError
from qmo.evaluator.scoring import Score

log = logging.getLogger("qmo.eval.lm_eval")

MODELS = {LmEvalApi.COMPLETIONS: "local-completions", LmEvalApi.CHAT: "local-chat-completions"}
PATHS = {LmEvalApi.COMPLETIONS: "/v1/completions", LmEvalApi.CHAT: "/v1/chat/completions"}


class TaskFailure(RuntimeError):
    """The task did not run to a score on this endpoint (the endpoint, or lm-eval itself)."""


@dataclass(frozen=True)
class Endpoint:
    url: str  # http://host:port, without /v1
    model: str  # the served model's name
    concurrency: int = 4
    timeout: float = 60.0


def include_path(
    task: LmEvalTask, *, datasets_root: Path = DATASETS_ROOT, store_root: Path = STORE_ROOT
) -> Path | None:
    """The directory of custom task YAMLs, as the eval Job mounts it."""
    include = task.include
    if include is None:
        return None
    if include.config_map is not None:
        return datasets_root / include.config_map.name
    parts = PurePosixPath((include.path or "").lstrip("/")).parts
    if not parts or ".." in parts:
        raise InputError(f"lmEval.include.path {include.path!r} must be inside the engine store")
    return store_root.joinpath(*parts)


def model_args(task: LmEvalTask, endpoint: Endpoint) -> dict[str, Any]:
    """lm-eval's model arguments for an OpenAI-compatible endpoint."""
    args: dict[str, Any] = {
        "base_url": endpoint.url.rstrip("/") + PATHS[task.api],
        "model": endpoint.model,
        "num_concurrent": endpoint.concurrency,
        "max_retries": 3,
        "timeout": int(endpoint.timeout),
    }
    if task.tokenizer:
        args.update(tokenizer=task.tokenizer, tokenizer_backend="huggingface")
    else:
        args["tokenizer_backend"] = None  # generation tasks need no tokenizer
    return args


def metric_value(results: dict[str, Any], task: str, metric: str) -> tuple[float, int | None]:
    """(score, samples) of `metric` (lm-eval's "metric,filter" key) from simple_evaluate's
    output. InputError names the metrics there are when the asked one is not."""
    by_task = results.get("results") or {}
    found = by_task.get(task)
    if found is None:
        raise InputError(f"lm-eval returned no results for task {task} ({', '.join(by_task)})")
    value = found.get(metric)
    if not isinstance(value, int | float) or isinstance(value, bool):
        known = sorted(k for k, v in found.items() if isinstance(v, int | float) and "," in k)
        raise InputError(
            f"task {task} has no metric {metric!r}; it reports {', '.join(known) or 'none'}"
        )
    if not math.isfinite(value):
        raise TaskFailure(f"task {task}: {metric} is {value}")
    samples = ((results.get("n-samples") or {}).get(task) or {}).get("effective")
    return float(value), int(samples) if isinstance(samples, int) else None


def score_task(
    spec: BenchmarkSpec,
    endpoint: Endpoint,
    *,
    datasets_root: Path = DATASETS_ROOT,
    store_root: Path = STORE_ROOT,
    allow_code_execution: bool = False,
) -> Score:
    """Run the benchmark's lm-eval task against the endpoint. Tasks lm-eval marks unsafe (they
    run model-written code, as humaneval_plus does) run only with `allow_code_execution`."""
    task = spec.lm_eval
    assert task is not None
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise InputError(
            f"benchmark {spec.name} is an lm-eval task, but lm-eval is not installed here "
            "(the evaluator image has it: pip install 'qmo[evaluator]')"
        ) from err
    include = include_path(task, datasets_root=datasets_root, store_root=store_root)
    if include is not None and not include.is_dir():
        raise InputError(f"benchmark {spec.name}: task directory {include} does not exist")
    manager = TaskManager(
        include_path=str(include) if include else None, include_defaults=include is None
    )
    if not manager.match_tasks([task.task]):
        raise InputError(f"benchmark {spec.name}: lm-eval knows no task {task.task!r}")
    try:
        results = lm_eval.simple_evaluate(
            model=MODELS[task.api],
            model_args=model_args(task, endpoint),
            tasks=[task.task],
            num_fewshot=task.num_fewshot,
            limit=spec.samples,
            task_manager=manager,
            apply_chat_template=task.api == LmEvalApi.CHAT,
            log_samples=True,  # each document's outcome, for the paired statistics
            confirm_run_unsafe_code=allow_code_execution,
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    except InputError:
        raise
    except Exception as err:  # lm-eval raises plain exceptions for endpoint failures
        raise TaskFailure(f"lm-eval task {task.task} failed: {type(err).__name__}: {err}") from err
    if not results:
        raise TaskFailure(f"lm-eval task {task.task} returned nothing")
    value, samples = metric_value(results, task.task, task.metric)
    log.info("lm-eval %s on %s: %s = %.6g", task.task, endpoint.url, task.metric, value)
    outcomes, weights = per_document(results, task.task, task.metric)
    return Score(
        value=value,
        samples=samples if samples is not None else 0,
        outcomes=outcomes,
        weights=weights,
    )


def per_document(
    results: dict[str, Any], task: str, metric: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each document's outcome for `metric` ("metric,filter") in document order, from
    lm-eval's logged samples, and its weight: a mean metric logs a number per document
    (no weights); a perplexity (word_, byte_, token_perplexity) logs (log-likelihood, words),
    which becomes (negative log-likelihood, words) for the paired bootstrap. Empty where a
    document logs something else (bits_per_byte aggregates differently): not paired."""
    name, _, filter_key = metric.partition(",")
    filter_key = filter_key or "none"
    logged = [
        s for s in (results.get("samples") or {}).get(task) or [] if s.get("filter") == filter_key
    ]
    outcomes: list[float] = []
    weights: list[float] = []
    for sample in sorted(logged, key=lambda s: s.get("doc_id", 0)):
        value = sample.get(name)
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and math.isfinite(value):
            outcomes.append(float(value))
        elif name.endswith("perplexity") and _pair(value):
            outcomes.append(-float(value[0]))
            weights.append(float(value[1]))
        else:
            return (), ()
    if weights and len(weights) != len(outcomes):
        return (), ()
    return tuple(outcomes), tuple(weights)


def _pair(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        and value[1] > 0
    )
