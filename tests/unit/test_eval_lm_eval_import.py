"""`qmo-eval import-lm-eval`: lm-evaluation-harness results files become a QualityReport.

The files below follow what lm-evaluation-harness 0.4 writes with --output_path
(lm_eval/evaluator.py: results, group_subtasks, configs, versions, n-shot,
higher_is_better, n-samples; metric keys "<metric>,<filter>", stderr "N/A" where none).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmo.evaluator.cli import ExitCode, main
from qmo.evaluator.lm_eval_import import (
    LmEvalError,
    TaskSelection,
    benchmark_name,
    import_results,
    parse_selection,
    read_results,
)

KEY = "9c1e" + "0" * 60


def results_file(
    arc: float = 0.8127,
    arc_norm: float = 0.7862,
    gsm8k: float = 0.7619,
    mmlu: float = 0.6812,
    wikitext: float = 9.8702,
    limit: int | None = None,
) -> dict[str, Any]:
    """A results_<date>.json as lm_eval writes it for arc_easy, gsm8k, mmlu and wikitext."""
    arc_docs, gsm_docs = 2376, 1319
    return {
        "results": {
            "arc_easy": {
                "alias": "arc_easy",
                "acc,none": arc,
                "acc_stderr,none": 0.0080,
                "acc_norm,none": arc_norm,
                "acc_norm_stderr,none": 0.0084,
            },
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": gsm8k,
                "exact_match_stderr,strict-match": 0.0117,
                "exact_match,flexible-extract": gsm8k + 0.01,
                "exact_match_stderr,flexible-extract": 0.0115,
            },
            "mmlu": {"acc,none": mmlu, "acc_stderr,none": 0.0037, "alias": "mmlu"},
            "mmlu_humanities": {
                "acc,none": mmlu - 0.05,
                "acc_stderr,none": 0.0066,
                "alias": " - humanities",
            },
            "mmlu_formal_logic": {
                "alias": "  - formal_logic",
                "acc,none": 0.4603,
                "acc_stderr,none": 0.0446,
            },
            "wikitext": {
                "alias": "wikitext",
                "word_perplexity,none": wikitext,
                "word_perplexity_stderr,none": "N/A",
                "byte_perplexity,none": 1.5378,
                "byte_perplexity_stderr,none": "N/A",
                "bits_per_byte,none": 0.6209,
                "bits_per_byte_stderr,none": "N/A",
            },
        },
        "groups": {"mmlu": {"acc,none": mmlu, "acc_stderr,none": 0.0037, "alias": "mmlu"}},
        "group_subtasks": {
            "mmlu_humanities": ["mmlu_formal_logic"],
            "mmlu": ["mmlu_humanities"],
            "arc_easy": [],
            "gsm8k": [],
            "wikitext": [],
        },
        "configs": {"arc_easy": {"task": "arc_easy", "num_fewshot": 0}},
        "versions": {"arc_easy": 1.0, "gsm8k": 3.0, "mmlu": 2, "wikitext": 2.0},
        "n-shot": {"arc_easy": 0, "gsm8k": 5, "mmlu": 0, "wikitext": 0},
        "higher_is_better": {
            "arc_easy": {"acc": True, "acc_norm": True},
            "gsm8k": {"exact_match": True},
            "mmlu": {"acc": True},
            "wikitext": {
                "word_perplexity": False,
                "byte_perplexity": False,
                "bits_per_byte": False,
            },
        },
        "n-samples": {
            "arc_easy": {"original": arc_docs, "effective": limit or arc_docs},
            "gsm8k": {"original": gsm_docs, "effective": limit or gsm_docs},
            "wikitext": {"original": 62, "effective": 62},
            "mmlu_formal_logic": {"original": 126, "effective": 126},
        },
        "config": {"model": "local-completions", "batch_size": 1, "limit": limit},
        "git_hash": "a1b2c3d",
        "date": 1730000000.0,
        "model_name": "meta-llama/Llama-3.1-8B-Instruct",
    }


BASELINE = results_file()
TWICE = [TaskSelection("arc_easy"), TaskSelection("gsm8k", None, "arc_easy")]
CANDIDATE = results_file(arc=0.8047, arc_norm=0.7801, gsm8k=0.7437, mmlu=0.6755, wikitext=10.02)


def test_every_top_level_task_is_reported_with_its_headline_metric() -> None:
    results = import_results(read_results(BASELINE, "b.json"), read_results(CANDIDATE, "c.json"))

    assert [r.to_wire() for r in results] == [
        {
            "benchmark": "arc_easy",
            "baselineScore": 0.8127,
            "candidateScore": 0.8047,
            "higherIsBetter": True,
            "samples": 2376,
        },
        {
            "benchmark": "gsm8k",
            "baselineScore": 0.7619,
            "candidateScore": 0.7437,
            "higherIsBetter": True,
            "samples": 1319,
        },
        {
            "benchmark": "mmlu",  # a group: lm_eval gives groups no n-samples
            "baselineScore": 0.6812,
            "candidateScore": 0.6755,
            "higherIsBetter": True,
        },
        {
            "benchmark": "wikitext",
            "baselineScore": 9.8702,
            "candidateScore": 10.02,
            "higherIsBetter": False,
            "samples": 62,
        },
    ]  # fmt: skip


def test_tasks_metrics_and_names_can_be_chosen() -> None:
    selections = [
        parse_selection("arc_easy:acc_norm=arc"),
        parse_selection("gsm8k:exact_match,flexible-extract"),
        parse_selection("wikitext:bits_per_byte,none=wiki-bpb"),
    ]
    results = import_results(
        read_results(BASELINE, "b.json"), read_results(CANDIDATE, "c.json"), selections
    )
    rows = [(r.benchmark, r.baseline_score, r.candidate_score, r.higher_is_better) for r in results]
    assert rows == [
        ("arc", 0.7862, 0.7801, True),
        ("gsm8k", 0.7719, 0.7537, True),
        ("wiki-bpb", 0.6209, 0.6209, False),
    ]  # fmt: skip


def test_old_results_without_filters_or_higher_is_better_are_read_by_name() -> None:
    # lm-evaluation-harness before 0.4: bare metric names, no higher_is_better section.
    old = {"results": {"lambada": {"ppl": 3.2, "acc": 0.7, "acc_stderr": 0.01}}, "versions": {}}
    new = copy.deepcopy(old)
    new["results"]["lambada"]["ppl"] = 3.4
    reader = read_results(old, "b.json"), read_results(new, "c.json")

    (acc,) = import_results(*reader)
    (ppl,) = import_results(*reader, [TaskSelection("lambada", "ppl")])

    assert (acc.benchmark, acc.baseline_score, acc.higher_is_better) == ("lambada", 0.7, True)
    assert (ppl.candidate_score, ppl.higher_is_better) == (3.4, False)


@pytest.mark.parametrize(
    ("baseline", "candidate", "selections", "says"),
    [
        pytest.param({"version": 1}, BASELINE, [], "not an lm-evaluation-harness", id="no-results"),
        pytest.param(
            BASELINE, CANDIDATE, [TaskSelection("hellaswag")], "no results for task hellaswag",
            id="task-missing",
        ),
        pytest.param(
            BASELINE, CANDIDATE, [TaskSelection("arc_easy", "f1")], "no metric f1", id="no-metric"
        ),
        pytest.param(
            BASELINE, CANDIDATE, [TaskSelection("wikitext", "word_perplexity_stderr,none")],
            "not a number", id="stderr-n-a",
        ),
        pytest.param(
            BASELINE, results_file(limit=100), [TaskSelection("arc_easy")],
            "same --limit", id="different-sample-counts",
        ),
        pytest.param(
            BASELINE, CANDIDATE, TWICE, "repeat: arc_easy", id="duplicate-names",
        ),
        pytest.param(
            {"results": {"a": {"acc,none": 1.0}}}, {"results": {"b": {"acc,none": 1.0}}}, [],
            "no task in common", id="nothing-in-common",
        ),
    ],
)  # fmt: skip
def test_results_that_cannot_be_compared_are_refused(
    baseline: Any, candidate: Any, selections: list[TaskSelection], says: str
) -> None:
    with pytest.raises(LmEvalError, match=says):
        import_results(
            read_results(baseline, "b.json"), read_results(candidate, "c.json"), selections
        )


@pytest.mark.parametrize(
    ("text", "selection"),
    [
        pytest.param("arc_easy", TaskSelection("arc_easy"), id="task"),
        pytest.param("arc_easy:acc_norm", TaskSelection("arc_easy", "acc_norm"), id="metric"),
        pytest.param(
            "gsm8k:exact_match,strict-match=gsm",
            TaskSelection("gsm8k", "exact_match,strict-match", "gsm"),
            id="metric-with-filter-and-name",
        ),
        pytest.param("mmlu=mmlu-5shot", TaskSelection("mmlu", None, "mmlu-5shot"), id="name"),
    ],
)
def test_parse_selection(text: str, selection: TaskSelection) -> None:
    assert parse_selection(text) == selection


@pytest.mark.parametrize(
    ("task", "name"),
    [
        pytest.param("arc_easy", "arc_easy", id="kept"),
        pytest.param("MMLU Pro", "mmlu-pro", id="lowercased-space-dashed"),
        pytest.param("_leaderboard_bbh_", "leaderboard_bbh", id="ends-trimmed"),
        pytest.param("x" * 80, "x" * 63, id="cut-to-63"),
    ],
)
def test_benchmark_name(task: str, name: str) -> None:
    assert benchmark_name(task) == name


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def _cli(tmp_path: Path, candidate: dict[str, Any] = CANDIDATE) -> list[str]:
    return [
        "import-lm-eval",
        "--results", str(_write(tmp_path / "results_bf16.json", BASELINE)),
        "--candidate-results", str(_write(tmp_path / "results_fp8.json", candidate)),
        "--model", "llama",
        "--variant", "h100-fp8",
        "--cache-key", KEY,
        "--baseline-variant", "h100-bf16",
    ]  # fmt: skip


def test_the_cli_prints_a_quality_report_as_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*_cli(tmp_path), "--namespace", "team-a", "--task", "gsm8k", "--task", "wikitext"]
    assert main(args) == ExitCode.OK

    report = yaml.safe_load(capsys.readouterr().out)
    assert report["kind"] == "QualityReport"
    assert report["metadata"]["name"] == f"llama-h100-fp8-{KEY[:12]}"
    assert report["metadata"]["namespace"] == "team-a"
    assert report["spec"] == {
        "modelRef": {"name": "llama"},
        "variant": "h100-fp8",
        "cacheKey": KEY,
        "baselineVariant": "h100-bf16",
        "results": [
            {
                "benchmark": "gsm8k",
                "baselineScore": 0.7619,
                "candidateScore": 0.7437,
                "higherIsBetter": True,
                "samples": 1319,
            },
            {
                "benchmark": "wikitext",
                "baselineScore": 9.8702,
                "candidateScore": 10.02,
                "higherIsBetter": False,
                "samples": 62,
            },
        ],
        "source": "lm-evaluation-harness",
    }


def test_the_cli_prints_json_and_leaves_out_the_namespace_when_none_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_cli(tmp_path), "-o", "json"]) == ExitCode.OK

    report = json.loads(capsys.readouterr().out)
    assert "namespace" not in report["metadata"]
    assert [r["benchmark"] for r in report["spec"]["results"]] == [
        "arc_easy",
        "gsm8k",
        "mmlu",
        "wikitext",
    ]


def test_the_cli_exits_2_on_results_it_cannot_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(_cli(tmp_path, results_file(limit=10))) == ExitCode.BAD_INPUT
    assert capsys.readouterr().out == ""
    assert "same --limit" in caplog.text


def test_the_cli_exits_2_on_a_file_that_is_not_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = _cli(tmp_path)
    (tmp_path / "results_fp8.json").write_text("not json")
    assert main(args) == ExitCode.BAD_INPUT
    assert "results_fp8.json: cannot read JSON" in caplog.text
