"""Benchmarks that are lm-evaluation-harness tasks, end to end: qmo-eval runs a custom task
from local files (as an air-gapped cluster would) with lm-eval's own local-completions model
against two real OpenAI-compatible test servers on 127.0.0.1, then measures their speed; the
report carries both, and the operator's verdict judges it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmo.api.quantizedmodel import QualitySpec
from qmo.evaluator import lm_eval_tasks
from qmo.evaluator.cli import ExitCode, run
from qmo.evaluator.evaluation import RunOptions
from qmo.evaluator.lm_eval_tasks import metric_value
from qmo.evaluator.speed import ProbeSettings
from qmo.quality.verdict import judge
from tests.support.openai_server import FakeModel, serving
from tests.unit.test_eval_run import CollectingWriter

KEY = "3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a"
QUESTIONS = {
    "What is 2 + 2?": "4",
    "What is 3 + 3?": "6",
    "Capital of Italy?": "Rome",
    "Colour of grass?": "green",
}
TASK = """\
task: qmo_facts
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 16
  do_sample: false
filter_list:
  - name: strip
    filter:
      - function: remove_whitespace
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def layout(root: Path, benchmark: dict[str, Any]) -> Path:
    """A store with the task directory (YAML + JSONL) and the benchmarks file; returns it."""
    tasks = root / "store" / "tasks" / "facts"
    tasks.mkdir(parents=True)
    data = tasks / "facts.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": q, "answer": a}) + "\n" for q, a in QUESTIONS.items())
    )
    (tasks / "facts.yaml").write_text(TASK.format(data=data))
    benchmarks = root / "benchmarks.json"
    benchmarks.write_text(json.dumps([benchmark]))
    return benchmarks


FACTS = {
    "name": "facts",
    "lmEval": {"task": "qmo_facts", "metric": "exact_match,strip",
               "include": {"path": "tasks/facts"}},
}  # fmt: skip


def options(
    root: Path, benchmarks: Path, candidate: str, baseline: str, **extra: Any
) -> RunOptions:
    return RunOptions(
        model="llama", namespace="team-a", variant="h100-fp8", cache_key=KEY,
        candidate_url=candidate, baseline_url=baseline, baseline_variant="h100-bf16",
        benchmarks=benchmarks, store_root=root / "store", datasets_root=root / "benchmarks",
        **extra,
    )  # fmt: skip


def test_an_lm_eval_task_from_local_files_scores_both_endpoints(tmp_path: Path) -> None:
    benchmarks = layout(tmp_path, FACTS)
    baseline = FakeModel("llama-bf16", answers=dict(QUESTIONS))
    candidate = FakeModel("llama-fp8", answers={**QUESTIONS, "Capital of Italy?": " Milan"})
    writer = CollectingWriter()
    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        code = run(options(tmp_path, benchmarks, candidate_url, baseline_url), writer)
    assert code == ExitCode.OK
    (report,) = writer.reports
    (row,) = report.spec.results
    assert (row.benchmark, row.baseline_score, row.candidate_score, row.samples) == (
        "facts", 1.0, 0.75, 4,
    )  # fmt: skip
    sent = candidate.requests[0]
    assert sent["path"] == "/v1/completions"
    assert sent["model"] == "llama-fp8"  # the served name, from /v1/models
    assert sent["temperature"] == 0
    assert report.spec.speed is None
    # lm-eval's per-sample log pairs the 4 documents: 25% worse on facts, but 4 items cannot
    # tell 25% from 1.5% with 80% confidence (the interval is about -7% to +57%).
    assert row.paired is not None
    assert (row.paired.items, row.paired.method.value) == (4, "paired-normal")
    assert row.paired.standard_error_percent == pytest.approx(25.0)
    verdict = judge(report.spec, QualitySpec())
    assert verdict.verdict == "Inconclusive"
    assert verdict.more_samples == ()  # the task's 4 documents are all it has
    assert verdict.acts_as == "Regressed"
    unpaired = report.spec.model_copy(update={"results": [row.model_copy(update={"paired": None})]})
    assert judge(unpaired, QualitySpec()).verdict == "Regressed"  # on the point estimate


def test_speed_is_measured_when_asked_and_judged_against_a_minimum(tmp_path: Path) -> None:
    benchmarks = layout(tmp_path, FACTS)
    # Delays long beside a loaded machine's overhead per token, so the measured ratio stays
    # near the 5x served (at 6 ms against 2 ms it fell under 1.5x on a busy CI machine).
    baseline = FakeModel("llama-bf16", answers=dict(QUESTIONS), token_seconds=0.025)
    candidate = FakeModel("llama-fp8", answers=dict(QUESTIONS), token_seconds=0.005)
    probe = ProbeSettings(concurrency=4, requests=8, max_tokens=12, prompt_words=8)
    writer = CollectingWriter()
    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        code = run(options(tmp_path, benchmarks, candidate_url, baseline_url, speed=probe), writer)
    assert code == ExitCode.OK
    speed = writer.reports[0].spec.speed
    assert speed is not None
    assert [s.concurrency for s in speed.candidate] == [1, 4]
    assert [s.concurrency for s in speed.baseline] == [1, 4]
    judged = judge(writer.reports[0].spec, QualitySpec(min_speedup=1.5))
    assert judged.verdict == "Pass"
    assert judged.speedup is not None
    assert judged.speedup > 1.5
    assert judge(writer.reports[0].spec, QualitySpec(min_speedup=20)).reason == (
        "SpeedupBelowMinimum"
    )


@pytest.mark.parametrize(
    ("lm_eval", "message"),
    [
        (
            {"task": "qmo_facts", "metric": "acc,none", "include": {"path": "tasks/facts"}},
            "has no metric 'acc,none'; it reports exact_match,strip",
        ),
        (
            {"task": "no_such_task", "metric": "acc,none", "include": {"path": "tasks/facts"}},
            "lm-eval knows no task 'no_such_task'",
        ),
        (
            {"task": "qmo_facts", "metric": "acc,none", "include": {"path": "tasks/missing"}},
            "does not exist",
        ),
    ],
)
def test_a_wrong_task_or_metric_is_bad_input_and_says_what_there_is(
    tmp_path: Path, lm_eval: dict[str, Any], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    benchmarks = layout(tmp_path, {"name": "facts", "lmEval": lm_eval})
    model = FakeModel("m", answers=dict(QUESTIONS))
    writer = CollectingWriter()
    with serving(model) as url:
        code = run(options(tmp_path, benchmarks, url, url), writer)
    assert code == ExitCode.BAD_INPUT
    assert writer.reports == []
    assert message in caplog.text


def test_the_metric_is_read_as_lm_eval_names_it() -> None:
    results = {"results": {"gsm8k": {"exact_match,strict-match": 0.5, "alias": "gsm8k"}},
               "n-samples": {"gsm8k": {"original": 1319, "effective": 100}}}  # fmt: skip
    assert metric_value(results, "gsm8k", "exact_match,strict-match") == (0.5, 100)


def test_per_document_outcomes_come_from_lm_evals_sample_log_in_document_order() -> None:
    samples = [
        {"doc_id": 1, "filter": "none", "acc": 0.0, "word_perplexity": [-6.0, 3]},
        {"doc_id": 0, "filter": "none", "acc": 1.0, "word_perplexity": [-4.0, 2]},
        {"doc_id": 0, "filter": "strict", "acc": 0.0, "word_perplexity": [-9.0, 9]},
    ]
    results = {"samples": {"t": samples}}
    assert lm_eval_tasks.per_document(results, "t", "acc,none") == ((1.0, 0.0), ())
    # A perplexity's (log-likelihood, words) becomes (negative log-likelihood, words).
    assert lm_eval_tasks.per_document(results, "t", "word_perplexity,none") == (
        (4.0, 6.0),
        (2.0, 3.0),
    )
    assert lm_eval_tasks.per_document(results, "t", "acc,strict") == ((0.0,), ())
    odd = {"samples": {"t": [{"doc_id": 0, "filter": "none", "bits_per_byte": [-1.0, 4]}]}}
    assert lm_eval_tasks.per_document(odd, "t", "bits_per_byte,none") == ((), ())
    assert lm_eval_tasks.per_document({}, "t", "acc,none") == ((), ())


class ByQuestion(FakeModel):
    """Answers whichever of `answers`' questions the prompt contains (lm-eval's prompts put a
    task description or examples before the question)."""

    def answer(self, prompt: str) -> str:
        return next((a for q, a in self.answers.items() if q in prompt), self.default_answer)


GSM8K_ITEMS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples?",
     "answer": "3 + 4 = 7\n#### 7"},
    {"question": "A box holds 12 eggs. How many eggs in 3 boxes?",
     "answer": "12 * 3 = 36\n#### 36"},
]  # fmt: skip
MMLU_PRO_ITEMS = [
    {"question_id": 1, "question": "What is 6 times 7?", "options": ["40", "42", "44", "48"],
     "answer": "B", "answer_index": 1, "cot_content": "", "category": "math", "src": "local"},
    {"question_id": 2, "question": "What is 9 minus 4?", "options": ["3", "4", "5", "6"],
     "answer": "C", "answer_index": 2, "cot_content": "", "category": "math", "src": "local"},
]  # fmt: skip


def named_task_with_local_items(root: Path, name: str, upstream: str, splits: list[str],
                                items: list[dict[str, Any]]) -> None:  # fmt: skip
    """lm-eval's own task YAML, included as it ships, with only its data swapped for a local
    copy of a few items (what an air-gapped cluster does with the real sets)."""
    import lm_eval

    tasks = root / "store" / "tasks" / "seed"
    tasks.mkdir(parents=True, exist_ok=True)
    data = tasks / f"{name}.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    shipped = Path(lm_eval.__file__).parent / "tasks" / upstream
    files = "".join(f"    {split}: {data}\n" for split in splits)
    (tasks / f"{name}.yaml").write_text(
        f"include: {shipped}\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n{files}"
    )


def test_gsm8k_and_mmlu_pro_run_by_name_with_lm_evals_own_task_configs(tmp_path: Path) -> None:
    named_task_with_local_items(tmp_path, "gsm8k", "gsm8k/gsm8k.yaml", ["train", "test"],
                                GSM8K_ITEMS)  # fmt: skip
    named_task_with_local_items(tmp_path, "mmlu_pro_math", "mmlu_pro/mmlu_pro_math.yaml",
                                ["validation", "test"], MMLU_PRO_ITEMS)  # fmt: skip
    include = {"path": "tasks/seed"}
    benchmarks = [
        {"name": "gsm8k", "lmEval": {"task": "gsm8k", "metric": "exact_match,strict-match",
                                     "numFewshot": 0, "include": include}},
        {"name": "mmlu-pro", "lmEval": {"task": "mmlu_pro_math",
                                        "metric": "exact_match,custom-extract",
                                        "numFewshot": 0, "include": include}},
    ]  # fmt: skip
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps(benchmarks))
    right = {
        "Tom has 3 apples": " 3 + 4 = 7.\n#### 7",
        "A box holds 12 eggs": " 12 * 3 = 36.\n#### 36",
        "What is 6 times 7?": " 6 x 7 = 42, so the answer is (B).",
        "What is 9 minus 4?": " 9 - 4 = 5, so the answer is (C).",
    }
    wrong = {**right, "A box holds 12 eggs": " 12 + 3 = 15.\n#### 15",
             "What is 9 minus 4?": " the answer is (A)."}  # fmt: skip
    baseline, candidate = ByQuestion("bf16", answers=right), ByQuestion("fp8", answers=wrong)
    writer = CollectingWriter()
    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        code = run(options(tmp_path, path, candidate_url, baseline_url), writer)
    assert code == ExitCode.OK
    (report,) = writer.reports
    rows = {r.benchmark: r for r in report.spec.results}
    # lm-eval's own prompt ("Question: ...\nAnswer:"), regex filters and metric decided these.
    assert (rows["gsm8k"].baseline_score, rows["gsm8k"].candidate_score) == (1.0, 0.5)
    assert (rows["mmlu-pro"].baseline_score, rows["mmlu-pro"].candidate_score) == (1.0, 0.5)
    assert all(r.samples == 2 and r.paired is not None for r in rows.values())
    sent = [r["prompt"] for r in candidate.requests if "Tom has 3 apples" in r.get("prompt", "")]
    assert sent[0].startswith("Question: Tom has 3 apples")
    assert sent[0].rstrip().endswith("Answer:")
