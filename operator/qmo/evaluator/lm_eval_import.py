"""Two lm-evaluation-harness results files (baseline, candidate) as QualityReport results. Pure.

Called by `qmo-eval import-lm-eval` (evaluation.py). A results file is what `lm_eval
--output_path` writes (results_<date>.json), or `simple_evaluate()`'s return value as JSON:

    {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": 0.81, "acc_stderr,none": 0.008,
                              "acc_norm,none": 0.78, "acc_norm_stderr,none": 0.0085},
                 "wikitext": {"alias": "wikitext", "word_perplexity,none": 9.87,
                              "word_perplexity_stderr,none": "N/A", ...}},
     "group_subtasks": {"arc_easy": [], "wikitext": []},
     "higher_is_better": {"arc_easy": {"acc": true, "acc_norm": true},
                          "wikitext": {"word_perplexity": false, ...}},
     "n-samples": {"arc_easy": {"original": 2376, "effective": 2376}}, ...}

Metric keys are "<metric>,<filter>" (acc,none; exact_match,strict-match); releases before
0.4 wrote bare names (acc), which are accepted too. Which metric is lower-is-better comes from
the file's "higher_is_better" section, else from its name (perplexity, ppl, bits_per_byte,
loss).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qmo.api.qualityreport import BenchmarkResult
from qmo.evaluator.report import result

SOURCE = "lm-evaluation-harness"
# Without --task, each task's metric is the first of these it has.
PREFERRED_METRICS = (
    "acc,none",
    "acc_norm,none",
    "exact_match,strict-match",
    "exact_match,flexible-extract",
    "exact_match,none",
    "word_perplexity,none",
    "perplexity,none",
    "byte_perplexity,none",
    "bits_per_byte,none",
)
LOWER_IS_BETTER = re.compile(r"perplexity|ppl|bits_per_byte|loss")
_NOT_METRICS = frozenset({"alias", "samples", "name", "sample_len", " "})
_SELECTION = re.compile(r"^(?P<task>[^:=]+)(?::(?P<metric>[^=]+))?(?:=(?P<benchmark>.+))?$")


class LmEvalError(ValueError):
    """The results files cannot be turned into a report; the message says why."""


@dataclass(frozen=True)
class TaskSelection:
    """`TASK[:METRIC][=BENCHMARK]` from the command line."""

    task: str
    metric: str | None = None
    benchmark: str | None = None


@dataclass(frozen=True)
class LmEvalResults:
    source: str
    results: Mapping[str, Mapping[str, Any]]
    higher_is_better: Mapping[str, Mapping[str, Any]]
    n_samples: Mapping[str, Mapping[str, Any]]
    group_subtasks: Mapping[str, Sequence[str]]

    def task(self, name: str) -> Mapping[str, Any]:
        entry = self.results.get(name)
        if entry is None:
            known = ", ".join(sorted(self.results)) or "none"
            raise LmEvalError(f"{self.source}: no results for task {name} (tasks: {known})")
        return entry

    def samples(self, task: str) -> int | None:
        entry = self.n_samples.get(task)
        effective = entry.get("effective") if isinstance(entry, Mapping) else None
        return effective if isinstance(effective, int) and not isinstance(effective, bool) else None

    def top_level_tasks(self) -> list[str]:
        """Tasks that are no group's subtask (mmlu rather than its 57 subjects)."""
        nested = {t for subtasks in self.group_subtasks.values() for t in subtasks}
        return [t for t in self.results if t not in nested]


def parse_selection(text: str) -> TaskSelection:
    match = _SELECTION.match(text.strip())
    if match is None:
        raise LmEvalError(f"--task {text!r}: expected TASK[:METRIC][=BENCHMARK]")
    return TaskSelection(match["task"].strip(), match["metric"], match["benchmark"])


def read_results(data: Any, source: str) -> LmEvalResults:
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise LmEvalError(
            f'{source}: not an lm-evaluation-harness results file (no "results" object)'
        )
    return LmEvalResults(
        source=source,
        results={k: v for k, v in data["results"].items() if isinstance(v, dict)},
        higher_is_better=_mapping(data.get("higher_is_better")),
        n_samples=_mapping(data.get("n-samples")),
        group_subtasks={
            k: [str(t) for t in v]
            for k, v in _mapping(data.get("group_subtasks")).items()
            if isinstance(v, list)
        },
    )


def benchmark_name(task: str) -> str:
    """A task name as a benchmark name: lowercase, [-a-z0-9_.], at most 63 characters."""
    name = re.sub(r"[^-a-z0-9_.]+", "-", task.lower())[:63]
    name = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", name)
    if not name:
        raise LmEvalError(f"task {task!r} gives no usable benchmark name: name it TASK=NAME")
    return name


def metric_key(entry: Mapping[str, Any], wanted: str | None, where: str) -> str:
    """The key of the metric to compare: the one asked for, else the first preferred one."""
    if wanted is not None:
        for key in (wanted, f"{wanted},none"):
            if key in entry:
                return key
        raise LmEvalError(f"{where}: no metric {wanted} (metrics: {', '.join(_metrics(entry))})")
    for key in PREFERRED_METRICS:
        for candidate in (key, key.split(",")[0]):
            if candidate in entry and _number(entry[candidate]) is not None:
                return candidate
    found = _metrics(entry)
    if not found:
        raise LmEvalError(f"{where}: no numeric metric")
    return found[0]


def higher_is_better(results: LmEvalResults, task: str, key: str) -> bool:
    metric = key.split(",")[0]
    declared = results.higher_is_better.get(task, {}).get(metric)
    if isinstance(declared, bool):
        return declared
    return LOWER_IS_BETTER.search(metric) is None


def import_results(
    baseline: LmEvalResults,
    candidate: LmEvalResults,
    selections: Sequence[TaskSelection] = (),
) -> list[BenchmarkResult]:
    """One result per selected task; every top-level task both files have when none is."""
    if not selections:
        shared = [t for t in candidate.top_level_tasks() if t in baseline.results]
        if not shared:
            raise LmEvalError(f"{baseline.source} and {candidate.source} have no task in common")
        selections = [TaskSelection(t) for t in shared]
    results = []
    for selection in selections:
        task = selection.task
        base_entry, cand_entry = baseline.task(task), candidate.task(task)
        key = metric_key(cand_entry, selection.metric, f"{candidate.source}: {task}")
        if key not in base_entry:
            raise LmEvalError(f"{baseline.source}: {task} has no metric {key}")
        scores = _score(baseline, task, base_entry, key), _score(candidate, task, cand_entry, key)
        results.append(
            result(
                selection.benchmark or benchmark_name(task),
                scores[0],
                scores[1],
                higher_is_better=higher_is_better(candidate, task, key),
                samples=_samples(baseline, candidate, task),
            )
        )
    names = [r.benchmark for r in results]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LmEvalError(f"benchmark names repeat: {', '.join(duplicates)}")
    return results


def _score(results: LmEvalResults, task: str, entry: Mapping[str, Any], key: str) -> float:
    value = _number(entry[key])
    if value is None:
        raise LmEvalError(f"{results.source}: {task} {key} is {entry[key]!r}, not a number")
    return value


def _samples(baseline: LmEvalResults, candidate: LmEvalResults, task: str) -> int | None:
    base, cand = baseline.samples(task), candidate.samples(task)
    if base is not None and cand is not None and base != cand:
        raise LmEvalError(
            f"{task}: the baseline scored {base} samples and the candidate {cand}; "
            "compare runs with the same --limit"
        )
    return cand if cand is not None else base


def _metrics(entry: Mapping[str, Any]) -> list[str]:
    return [
        k
        for k, v in entry.items()
        if k not in _NOT_METRICS and "_stderr" not in k and _number(v) is not None
    ]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
