"""How qmo-eval finds and reads benchmarks (qmo.evaluator.benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmo.api.quantizedmodel import BenchmarkMetric, BenchmarkSpec
from qmo.evaluator.benchmarks import (
    ChoiceItem,
    ExactMatchItem,
    InputError,
    TextItem,
    dataset_path,
    load_benchmark,
    load_specs,
    parse_items,
    parse_specs,
)

EM, MC, PPL = (
    BenchmarkMetric.EXACT_MATCH,
    BenchmarkMetric.MULTIPLE_CHOICE,
    BenchmarkMetric.PERPLEXITY,
)


def spec(**wire: Any) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate({"name": "b", **wire})


def test_the_list_the_operator_writes_is_read_back() -> None:
    # What manifests/evaluation.py puts into the benchmarks ConfigMap: to_wire() of each spec.
    original = [
        spec(metric="exact-match", samples=50, dataset={"configMap": {"name": "cm", "key": "a"}}),
        BenchmarkSpec.model_validate(
            {
                "name": "ppl",
                "metric": "perplexity",
                "higherIsBetter": False,
                "dataset": {"path": "benchmarks/wiki.jsonl"},
            }
        ),
    ]
    wire = json.loads(json.dumps([s.to_wire() for s in original], indent=2, sort_keys=True))
    assert parse_specs(wire, "benchmarks.json") == original


@pytest.mark.parametrize(
    ("data", "says"),
    [
        pytest.param({"name": "b"}, "expected a JSON list", id="not-a-list"),
        pytest.param([], "empty", id="empty"),
        pytest.param([{"name": "B!"}], "0.name", id="bad-name"),
        pytest.param([{"name": "b", "metric": "bleu"}], "0.metric", id="unknown-metric"),
        pytest.param(
            [{"name": "b", "dataset": {"path": "x", "configMap": {"name": "c", "key": "k"}}}],
            "exactly one of configMap or path",
            id="two-dataset-sources",
        ),
        pytest.param([{"name": "b"}], "has no dataset", id="no-dataset"),
        pytest.param(
            [{"name": "b", "dataset": {"path": "x"}}] * 2, "listed twice", id="duplicate-name"
        ),
    ],
)
def test_a_bad_benchmark_list_is_refused_with_the_reason(data: Any, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_specs(data, "benchmarks.json")


def test_a_benchmarks_file_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.json"
    path.write_text("[{")
    with pytest.raises(InputError, match=r"benchmarks\.json: not valid JSON"):
        load_specs(path)


@pytest.mark.parametrize(
    ("dataset", "path"),
    [
        pytest.param(
            {"configMap": {"name": "qmo-benchmarks", "key": "a.jsonl"}},
            "/benchmarks/qmo-benchmarks/a.jsonl",
            id="configmap-key-under-benchmarks",
        ),
        pytest.param({"path": "benchmarks/w.jsonl"}, "/store/benchmarks/w.jsonl", id="store-path"),
        pytest.param({"path": "/benchmarks/w.jsonl"}, "/store/benchmarks/w.jsonl", id="abs-path"),
        pytest.param(
            {"path": "store:///benchmarks/w.jsonl"},
            "/store/benchmarks/w.jsonl",
            id="store-scheme",
        ),
    ],
)
def test_dataset_path_follows_the_eval_job_mounts(dataset: dict[str, Any], path: str) -> None:
    assert dataset_path(spec(dataset=dataset)) == Path(path)


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "store://", "/"])
def test_a_dataset_path_outside_the_store_is_refused(path: str) -> None:
    with pytest.raises(InputError, match="inside the engine store"):
        dataset_path(spec(dataset={"path": path}))


@pytest.mark.parametrize(
    ("metric", "line", "item"),
    [
        pytest.param(EM, {"prompt": "2+2?", "answer": "4"}, ExactMatchItem("2+2?", "4"), id="em"),
        pytest.param(
            EM, {"prompt": "2+2?", "answer": 4}, ExactMatchItem("2+2?", "4"), id="em-number"
        ),
        pytest.param(
            MC,
            {"prompt": "q", "choices": ["x", "y", "z"], "answer": 2},
            ChoiceItem("q", ("x", "y", "z"), 2),
            id="mc-index",
        ),
        pytest.param(
            MC,
            {"prompt": "q", "choices": ["x", "y"], "answer": "b"},
            ChoiceItem("q", ("x", "y"), 1),
            id="mc-letter-any-case",
        ),
        pytest.param(PPL, {"text": "some text"}, TextItem("some text"), id="ppl"),
    ],
)
def test_items_of_each_format(metric: BenchmarkMetric, line: dict[str, Any], item: Any) -> None:
    assert parse_items(metric, json.dumps(line) + "\n\n", "d.jsonl") == [item]


TWO = ["Mars", "Venus"]


@pytest.mark.parametrize(
    ("metric", "text", "says"),
    [
        pytest.param(EM, {"prompt": "q"}, r'd\.jsonl:1: .*missing "answer"', id="no-answer"),
        pytest.param(EM, {"answer": "a"}, r'd\.jsonl:1: .*"prompt"', id="no-prompt"),
        pytest.param(EM, {"prompt": "q", "answer": True}, "string or a number", id="bool"),
        pytest.param(EM, {"prompt": "q", "answer": " "}, "empty", id="blank-answer"),
        pytest.param(
            EM,
            '\n{"prompt": "q", "answer": "a"}\n{nope',
            r"d\.jsonl:3: not valid JSON",
            id="bad-json-names-the-line",
        ),
        pytest.param(EM, ["q", "a"], "expected a JSON object", id="not-an-object"),
        pytest.param(
            MC, {"prompt": "q", "choices": ["x"], "answer": 0}, "2 to 26", id="one-choice"
        ),
        pytest.param(
            MC, {"prompt": "q", "choices": TWO, "answer": 2}, "not one of the 2", id="index-too-big"
        ),
        pytest.param(
            MC,
            {"prompt": "q", "choices": TWO, "answer": "C"},
            "not one of the 2",
            id="letter-too-big",
        ),
        pytest.param(
            MC, {"prompt": "q", "choices": TWO, "answer": "Mars"}, "index or a letter", id="text"
        ),
        pytest.param(
            MC, {"prompt": "q", "choices": ["x", ""], "answer": 0}, "non-empty", id="empty-choice"
        ),
        pytest.param(PPL, {"prompt": "q"}, '"text"', id="ppl-without-text"),
        pytest.param(PPL, "\n\n", "no items", id="no-items"),
    ],
)
def test_a_bad_item_names_its_line(metric: BenchmarkMetric, text: Any, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_items(metric, text if isinstance(text, str) else json.dumps(text), "d.jsonl")


def test_samples_keeps_the_first_items_in_file_order(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(5)]
    (tmp_path / "cm").mkdir()
    (tmp_path / "cm" / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))

    benchmark = load_benchmark(
        spec(samples=3, dataset={"configMap": {"name": "cm", "key": "d.jsonl"}}),
        datasets_root=tmp_path,
    )

    assert [i.prompt for i in benchmark.items if isinstance(i, ExactMatchItem)] == [
        "q0",
        "q1",
        "q2",
    ]
    assert benchmark.source == str(tmp_path / "cm" / "d.jsonl")


def test_a_dataset_that_is_not_mounted_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_benchmark(spec(dataset={"path": "benchmarks/w.jsonl"}), store_root=tmp_path)
