"""Benchmarks as qmo-eval reads them: the BenchmarkSpec list and each benchmark's JSONL items.

Called by `qmo-eval run` (evaluation.py). Reads files only; no HTTP, no Kubernetes. Every
problem with the input is an `InputError` whose message names the file and line, so the eval
Job's log says exactly what to fix (the CLI exits 2 on it).

Where datasets are found, as the eval Job mounts them (manifests/evaluation.py):
- `dataset.configMap {name, key}` -> `<datasets root>/<name>/<key>` (default /benchmarks);
- `dataset.path` -> `<store root>/<path>` on the engine store (default /store); a
  `store://` prefix is accepted and `..` is refused.

JSONL formats, one JSON object per line (blank lines are skipped):
- exact-match:     {"prompt": str, "answer": str | number}
- multiple-choice: {"prompt": str, "choices": [str, ...], "answer": int index | "B"}
- perplexity:      {"text": str}
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import TypeAdapter, ValidationError

from qmo.api.quantizedmodel import BenchmarkMetric, BenchmarkSpec

DATASETS_ROOT = Path("/benchmarks")
STORE_ROOT = Path("/store")
STORE_SCHEME = "store://"
MAX_CHOICES = 26  # one letter each


class InputError(ValueError):
    """The benchmark list or a dataset cannot be used; the message says where and why."""


@dataclass(frozen=True)
class ExactMatchItem:
    prompt: str
    answer: str


@dataclass(frozen=True)
class ChoiceItem:
    prompt: str
    choices: tuple[str, ...]
    answer: int  # index into choices


@dataclass(frozen=True)
class TextItem:
    text: str


@dataclass(frozen=True)
class CodeItem:
    """A HumanEval(+) problem: the function's signature and docstring, and the tests that
    call `check(<entry_point>)` (HumanEval+'s extended test suite, where the item has it)."""

    prompt: str
    test: str
    entry_point: str


@dataclass(frozen=True)
class JudgedItem:
    """An MT-Bench question: its turns (two), its category, and reference answers for the
    categories MT-Bench judges against one (math, reasoning, coding)."""

    turns: tuple[str, ...]
    category: str = ""
    reference: tuple[str, ...] = ()


Item = ExactMatchItem | ChoiceItem | TextItem | CodeItem | JudgedItem


@dataclass(frozen=True)
class Benchmark:
    """One benchmark ready to run: its spec and the items it scores (already capped)."""

    spec: BenchmarkSpec
    source: str
    items: tuple[Item, ...]
    exhausted: bool = True  # the dataset has no items beyond these

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def metric(self) -> BenchmarkMetric:
        return self.spec.metric


_SPECS = TypeAdapter(list[BenchmarkSpec])


def parse_specs(data: Any, source: str) -> list[BenchmarkSpec]:
    """The BenchmarkSpec list in wire form (camelCase), as spec.quality.benchmarks holds it."""
    if not isinstance(data, list):
        raise InputError(f"{source}: expected a JSON list of benchmarks, got {type(data).__name__}")
    if not data:
        raise InputError(f"{source}: the benchmark list is empty: there is nothing to evaluate")
    try:
        specs = _SPECS.validate_python(data)
    except ValidationError as err:
        raise InputError(f"{source}: invalid benchmark list: {_first_error(err)}") from err
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InputError(f"{source}: benchmark {spec.name} is listed twice")
        seen.add(spec.name)
        if spec.dataset is None and spec.lm_eval is None:
            raise InputError(
                f"{source}: benchmark {spec.name} has no dataset and no lmEval task: qmo-eval "
                "cannot score it (an external evaluation system must report it)"
            )
    return specs


def load_specs(path: Path) -> list[BenchmarkSpec]:
    return parse_specs(_read_json(path), str(path))


def dataset_path(
    spec: BenchmarkSpec, *, datasets_root: Path = DATASETS_ROOT, store_root: Path = STORE_ROOT
) -> Path:
    """Where the eval Job finds the benchmark's JSONL."""
    dataset = spec.dataset
    if dataset is None:
        raise InputError(f"benchmark {spec.name} has no dataset")
    if dataset.config_map is not None:
        return datasets_root / dataset.config_map.name / dataset.config_map.key
    raw = dataset.path or ""
    relative = raw.removeprefix(STORE_SCHEME).lstrip("/")
    parts = PurePosixPath(relative).parts
    if not parts or ".." in parts:
        raise InputError(
            f"benchmark {spec.name}: dataset path {raw!r} must be a path inside the engine store"
        )
    return store_root.joinpath(*parts)


def parse_item(metric: BenchmarkMetric, obj: Any) -> Item:
    """One JSONL object as an item of the metric's format; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if metric == BenchmarkMetric.PERPLEXITY:
        return TextItem(_text(obj, "text"))
    if metric == BenchmarkMetric.JUDGED:
        return _judged_item(obj)
    prompt = _text(obj, "prompt")
    if metric == BenchmarkMetric.CODE_EXECUTION:
        entry = _text(obj, "entry_point")
        if not entry.isidentifier():
            raise ValueError('"entry_point" must be a Python identifier')
        return CodeItem(prompt, _text(obj, "test"), entry)
    if "answer" not in obj:
        raise ValueError('missing "answer"')
    if metric == BenchmarkMetric.EXACT_MATCH:
        answer = obj["answer"]
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise ValueError('"answer" must be a string or a number')
        if not str(answer).strip():
            raise ValueError('"answer" is empty')
        return ExactMatchItem(prompt, str(answer))
    choices = obj.get("choices")
    if not isinstance(choices, list) or not 2 <= len(choices) <= MAX_CHOICES:
        raise ValueError(f'"choices" must be a list of 2 to {MAX_CHOICES} strings')
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError('every entry of "choices" must be a non-empty string')
    return ChoiceItem(prompt, tuple(choices), _choice_index(obj["answer"], len(choices)))


def parse_items(metric: BenchmarkMetric, text: str, source: str) -> list[Item]:
    """Every item of a JSONL text; an error names the line."""
    items: list[Item] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(parse_item(metric, json.loads(line)))
        except json.JSONDecodeError as err:
            raise InputError(f"{source}:{number}: not valid JSON: {err.msg}") from err
        except ValueError as err:
            raise InputError(f"{source}:{number}: not a {metric.value} item: {err}") from err
    if not items:
        raise InputError(f"{source}: no items")
    return items


def load_benchmark(
    spec: BenchmarkSpec, *, datasets_root: Path = DATASETS_ROOT, store_root: Path = STORE_ROOT
) -> Benchmark:
    """The benchmark's items in file order, the first `spec.samples` of them when set."""
    path = dataset_path(spec, datasets_root=datasets_root, store_root=store_root)
    items = parse_items(spec.metric, _read_text(path), str(path))
    exhausted = spec.samples is None or len(items) <= spec.samples
    if spec.samples is not None:
        items = items[: spec.samples]
    return Benchmark(spec, str(path), tuple(items), exhausted)


def _judged_item(obj: dict[str, Any]) -> JudgedItem:
    turns = obj.get("turns")
    if not isinstance(turns, list) or not 1 <= len(turns) <= 2:
        raise ValueError('"turns" must be a list of one or two questions')
    if not all(isinstance(t, str) and t.strip() for t in turns):
        raise ValueError("every turn must be a non-empty string")
    reference = obj.get("reference") or []
    if not isinstance(reference, list) or not all(isinstance(r, str) for r in reference):
        raise ValueError('"reference" must be a list of answers, one per turn')
    category = obj.get("category") or ""
    return JudgedItem(tuple(turns), str(category), tuple(reference))


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{key}" must be a non-empty string')
    return value


def _choice_index(answer: Any, count: int) -> int:
    """An answer given as an index (0-based) or as a letter (A is the first choice)."""
    if isinstance(answer, bool):
        raise ValueError('"answer" must be a choice index or a letter')
    if isinstance(answer, int):
        index = answer
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().isalpha():
        index = string.ascii_uppercase.find(answer.strip().upper())
    else:
        raise ValueError(f'"answer" must be a choice index or a letter, got {answer!r}')
    if not 0 <= index < count:
        raise ValueError(f'"answer" {answer!r} is not one of the {count} choices')
    return index


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InputError(f"{path}: no such file (is the dataset mounted?)") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read: {err}") from err


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON: {err}") from err


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
