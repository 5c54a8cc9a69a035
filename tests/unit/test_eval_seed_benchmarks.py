"""The seed's code and chat benchmarks in qmo-eval: HumanEval(+) items whose completions run
against their tests in a limited child process, and MT-Bench items rated 1-10 by a judge
endpoint with the MT-Bench paper's prompts. Real HTTP to the test servers; real processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qmo.api.evalcontract import ALLOW_CODE_EXECUTION_FLAG, judge_key_env
from qmo.api.quantizedmodel import BenchmarkSpec
from qmo.evaluator import code_execution, judge
from qmo.evaluator.benchmarks import CodeItem, JudgedItem, parse_item
from qmo.evaluator.cli import ExitCode, main
from qmo.evaluator.evaluation import RunOptions, evaluate
from qmo.evaluator.harness import Settings
from tests.support.openai_server import FakeModel, serving

KEY = "5c" * 32

ADD = CodeItem(
    prompt='def add(a, b):\n    """The sum of a and b."""\n',
    test=(
        "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
    ),
    entry_point="add",
)
LIMITS = code_execution.Limits(cpu_seconds=2, wall_seconds=10)


# --- code execution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "passes"),
    [
        pytest.param("    return a + b\n", True, id="right"),
        pytest.param("    return a * b\n", False, id="wrong"),
        pytest.param(
            "    return a + b\n\ndef add(a, b):\n    return 0\n", True, id="cut at a stop"
        ),
        pytest.param("    while True:\n        pass\n", False, id="an endless loop"),
        pytest.param("    return [0] * (1 << 31)\n", False, id="past the memory limit"),
        pytest.param(
            "    open('big', 'w').write('x' * (1 << 22))\n    return a + b\n",
            False,
            id="past the file size limit",
        ),
        pytest.param(
            "    import os\n    assert 'HOME' not in os.environ and 'PATH' not in os.environ\n"
            "    assert not any(k.startswith('QMO') for k in os.environ)\n    return a + b\n",
            True,
            id="without the evaluator's environment",
        ),
    ],
)
def test_model_written_code_runs_against_the_tests_within_limits(
    completion: str, passes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QMO_EVAL_JUDGE_KEY_X", "s3cret")  # the evaluator's own secrets
    started = time.monotonic()
    assert code_execution.passes(ADD, completion, LIMITS) is passes
    assert time.monotonic() - started < LIMITS.wall_seconds


def test_a_humaneval_plus_item_parses_and_needs_an_identifier_entry_point() -> None:
    raw = {"task_id": "HumanEval/0", "prompt": ADD.prompt, "test": ADD.test, "entry_point": "add"}
    from qmo.api.quantizedmodel import BenchmarkMetric

    assert parse_item(BenchmarkMetric.CODE_EXECUTION, raw) == ADD
    with pytest.raises(ValueError, match="identifier"):
        parse_item(BenchmarkMetric.CODE_EXECUTION, {**raw, "entry_point": "add; import os"})


@dataclass
class Run:
    root: Path

    def benchmarks(self, *specs: dict[str, Any]) -> Path:
        path = self.root / "benchmarks.json"
        path.write_text(json.dumps(list(specs)))
        return path

    def dataset(self, name: str, rows: list[dict[str, Any]]) -> None:
        (self.root / "store" / "sets").mkdir(parents=True, exist_ok=True)
        (self.root / "store" / "sets" / name).write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )

    def options(
        self, benchmarks: Path, candidate: str, baseline: str, **settings: Any
    ) -> RunOptions:
        return RunOptions(
            model="llama", namespace="team-a", variant="h100-fp8", cache_key=KEY,
            candidate_url=candidate, baseline_url=baseline, baseline_variant="h100-bf16",
            benchmarks=benchmarks, store_root=self.root / "store",
            datasets_root=self.root / "benchmarks", settings=Settings(**settings),
            outcomes_dir=self.root / "store" / "evaluations" / "x",
        )  # fmt: skip


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


CODE = {"name": "humaneval-plus", "metric": "code-execution", "dataset": {"path": "sets/he.jsonl"}}
SUB = CodeItem("def sub(a, b):\n", "def check(c):\n    assert c(5, 3) == 2\n", "sub")


def test_a_code_benchmark_scores_pass_at_1_on_both_endpoints_only_where_code_may_run(
    run: Run,
) -> None:
    items = [ADD, SUB]
    run.dataset("he.jsonl", [{"prompt": i.prompt, "test": i.test, "entry_point": i.entry_point}
                             for i in items])  # fmt: skip
    baseline = FakeModel("bf16", answers={"def add(a, b):": "    return a + b\n",
                                          "def sub(a, b):": "    return a - b\n"})  # fmt: skip
    candidate = FakeModel("fp8", answers={"def add(a, b):": "    return a + b\n",
                                          "def sub(a, b):": "    return b - a\n"})  # fmt: skip
    benchmarks = run.benchmarks(CODE)
    with serving(baseline) as b_url, serving(candidate) as c_url:
        report = evaluate(run.options(benchmarks, c_url, b_url, allow_code_execution=True))
        [row] = report.spec.results
        assert (row.baseline_score, row.candidate_score, row.samples) == (1.0, 0.5, 2)
        assert row.paired is not None
        assert row.paired.items == 2
        # Without the flag (anywhere but an eval pod) nothing is asked and nothing runs.
        before = len(candidate.requests)
        code = main(
            ["run", "--model", "llama", "--namespace", "team-a", "--variant", "h100-fp8",
             "--cache-key", KEY, "--candidate-url", c_url, "--baseline-url", b_url,
             "--baseline-variant", "h100-bf16", "--benchmarks", str(benchmarks),
             "--store-root", str(run.root / "store"), "--dry-run"]
        )  # fmt: skip
        assert code == ExitCode.BAD_INPUT
        assert len(candidate.requests) == before


# --- MT-Bench ------------------------------------------------------------------------------

MATH = JudgedItem(("What is 2+2?", "And times 3?"), "math", ("4", "12"))
WRITING = JudgedItem(("Write a haiku.", "Now about rain."), "writing")


def test_the_judge_prompts_are_mt_benchs_single_answer_grading() -> None:
    first = judge.request(WRITING, ["Leaves fall.", "Rain taps."], 0)
    assert first.system == "You are a helpful assistant."
    assert first.prompt.startswith("[Instruction]\nPlease act as an impartial judge")
    assert '"[[rating]]", for example: "Rating: [[5]]"' in first.prompt
    assert "[Question]\nWrite a haiku.\n\n[The Start of Assistant's Answer]\nLeaves fall." in (
        first.prompt
    )
    second = judge.request(WRITING, ["Leaves fall.", "Rain taps."], 1)
    assert "focus on the assistant's answer to the second user question" in second.system
    assert "### User:\nNow about rain.\n\n### Assistant A:\nRain taps." in second.prompt
    math = judge.request(MATH, ["4", "12"], 0)
    assert "[The Start of Reference Answer]\n4\n[The End of Reference Answer]" in math.prompt
    assert "### Reference answer:\n12" in judge.request(MATH, ["4", "12"], 1).prompt


@pytest.mark.parametrize(
    ("verdict", "rating"),
    [("Fine work. Rating: [[8]]", 8.0), ("[[7.5]]", 7.5), ("Rating: [6]", 6.0),
     ("No rating here", None), ("[[11]]", None), ("[[0]]", None)],
)  # fmt: skip
def test_the_rating_is_read_as_fastchat_reads_it(verdict: str, rating: float | None) -> None:
    assert judge.rating(verdict) == rating


class Judge(FakeModel):
    """Rates an answer 9 when it says GOOD and 4 otherwise, as a judge model would."""

    def answer(self, prompt: str) -> str:
        conversation = prompt.split("<|The Start of Assistant A's Conversation with User|>")[-1]
        answers = conversation.split("[The Start of Assistant's Answer]")[-1]
        last = answers.split("### Assistant A:")[-1]
        return "Explanation. Rating: [[9]]" if "GOOD" in last else "Meh. Rating: [[4]]"


@pytest.fixture
def judge_endpoint() -> Iterator[tuple[Judge, str]]:
    rater = Judge("judge-70b")
    with serving(rater) as url:
        yield rater, url


MT = {
    "name": "mt-bench",
    "metric": "judged",
    "dataset": {"path": "sets/mt.jsonl"},
    "judge": {"url": "http://placeholder", "apiKeySecretRef": {"name": "judge", "key": "token"}},
}


def test_mt_bench_items_are_rated_turn_by_turn_and_the_verdicts_are_kept(
    run: Run, judge_endpoint: tuple[Judge, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rater, judge_url = judge_endpoint
    run.dataset("mt.jsonl", [{"turns": list(WRITING.turns), "category": "writing"},
                             {"turns": list(MATH.turns), "category": "math",
                              "reference": list(MATH.reference)}])  # fmt: skip
    baseline = FakeModel("bf16", default_answer="GOOD answer")
    candidate = FakeModel("fp8", answers={"And times 3?": "GOOD: 12"}, default_answer="so-so")
    monkeypatch.setenv(judge_key_env("mt-bench"), "s3cret")
    benchmarks = run.benchmarks({**MT, "judge": {**MT["judge"], "url": judge_url}})
    with serving(baseline) as b_url, serving(candidate) as c_url:
        report = evaluate(run.options(benchmarks, c_url, b_url))
    [row] = report.spec.results
    # Baseline: every turn GOOD (9). Candidate: only the math item's second turn.
    assert row.baseline_score == 9.0
    assert row.candidate_score == pytest.approx((4 + (4 + 9) / 2) / 2)
    assert row.paired is not None
    # Both turns of both items on both endpoints: 8 verdicts, each asked with the key.
    assert len(rater.requests) == 8
    assert {h.get("Authorization") for h in rater.headers} == {"Bearer s3cret"}
    assert all(r["temperature"] == 0 for r in rater.requests)
    assert "s3cret" not in json.dumps(report.to_wire())
    # The judge's raw verdicts are kept with the per-item outcomes, never in the report.
    kept = [json.loads(line) for line in (run.root / "store" / "evaluations" / "x" /
                                          "mt-bench.jsonl").read_text().splitlines()]  # fmt: skip
    assert kept[1]["candidateDetail"]["ratings"] == [4.0, 9.0]
    assert kept[1]["candidateDetail"]["verdicts"][1].endswith("[[9]]")
    assert kept[0]["baselineDetail"]["answers"] == ["GOOD answer", "GOOD answer"]


def test_a_judged_benchmark_needs_a_judge_and_only_it_takes_one() -> None:
    with pytest.raises(ValueError, match="needs a judge"):
        BenchmarkSpec.model_validate({"name": "mt", "metric": "judged"})
    with pytest.raises(ValueError, match="needs a judge"):
        BenchmarkSpec.model_validate({"name": "mt", "judge": {"url": "http://j"}})


def test_the_eval_job_allows_code_only_in_its_pod_and_passes_the_judge_key_by_reference() -> None:
    from qmo.api.quantizedmodel import QuantizedModelSpec
    from qmo.manifests.evaluation import eval_job
    from qmo.manifests.labels import Owner
    from qmo.planner.types import Evaluation

    spec = QuantizedModelSpec.model_validate(
        {"model": {"source": "hf://m/m", "revision": "v1"},
         "quality": {"benchmarks": [{**MT, "judge": {**MT["judge"], "url": "http://judge:80"}},
                                    CODE]}}
    )  # fmt: skip
    owner = Owner("llama", "team-a", "uid-1")
    job = eval_job(spec, Evaluation("h100-fp8", KEY, False, "h100-bf16"), owner, image="qmo:x")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert ALLOW_CODE_EXECUTION_FLAG in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    [key] = [e for e in container["env"] if e["name"] == judge_key_env("mt-bench")]
    assert key == {
        "name": "QMO_EVAL_JUDGE_KEY_MT_BENCH",
        "valueFrom": {"secretKeyRef": {"name": "judge", "key": "token"}},
    }
    assert "s3cret" not in json.dumps(job)


def test_eval_pods_reach_only_their_models_servers_dns_and_what_the_spec_needs() -> None:
    from qmo.api.quantizedmodel import QuantizedModelSpec
    from qmo.manifests.evaluation import eval_network_policy
    from qmo.manifests.labels import Owner

    owner = Owner("llama", "team-a", "uid-1")
    local = QuantizedModelSpec.model_validate(
        {"model": {"source": "hf://m/m", "revision": "v1"}, "quality": {"benchmarks": [CODE]}}
    )
    policy = eval_network_policy(local, owner)
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "qmo.dev/model": "llama",
        "app.kubernetes.io/component": "evaluation",
    }
    assert policy["spec"]["ingress"] == []
    servers, dns = policy["spec"]["egress"]
    assert servers["to"] == [
        {"podSelector": {"matchLabels": {"qmo.dev/model": "llama",
                                         "app.kubernetes.io/component": "server"}}}
    ]  # fmt: skip
    assert servers["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert "to" not in dns
    assert {p["port"] for p in dns["ports"]} == {53}

    # A judge by URL and a named lm-eval task (data from the hub) open their ports, nothing else.
    gsm8k = {"name": "gsm8k", "lmEval": {"task": "gsm8k", "metric": "exact_match,strict-match"}}
    judge_at = {**MT, "judge": {**MT["judge"], "url": "http://judge:8080"}}
    judged = QuantizedModelSpec.model_validate(
        {"model": {"source": "hf://m/m", "revision": "v1"},
         "quality": {"benchmarks": [judge_at, gsm8k]}}
    )  # fmt: skip
    outside = eval_network_policy(judged, owner)["spec"]["egress"][2]
    assert sorted(p["port"] for p in outside["ports"]) == [443, 8080]
