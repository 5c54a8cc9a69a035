"""`qmo-eval run` end to end against two real HTTP servers on 127.0.0.1.

The baseline answers every item right; the candidate gets some wrong and has a higher
perplexity. Nothing in qmo's HTTP client is mocked: requests go over sockets to
tests/support/openai_server.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmo.api.qualityreport import QualityReport
from qmo.evaluator.cli import ExitCode, main, run
from qmo.evaluator.evaluation import RunOptions
from qmo.evaluator.harness import Api, Settings
from qmo.evaluator.openai_client import OpenAIClient
from qmo.evaluator.report_writer import Written
from tests.support.openai_server import FakeModel, PromptLogprobs, closed_port_url, serving

KEY = "3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a"

EXACT = [
    {"prompt": "What is 12 + 30?", "answer": "42"},
    {"prompt": "What is 7 * 6?", "answer": 42},
    {"prompt": "Capital of France?", "answer": "Paris"},
    {"prompt": "What is 1000 * 3?", "answer": "3,000"},
    {"prompt": "Colour of a clear sky?", "answer": "blue"},  # beyond samples: 4
]
CHOICES = [
    {"prompt": "Largest planet?", "choices": ["Mars", "Jupiter", "Venus"], "answer": 1},
    {"prompt": "Smallest prime?", "choices": ["1", "3", "2", "0"], "answer": "C"},
    {"prompt": "Water freezes at?", "choices": ["0 C", "50 C"], "answer": "a"},
    {"prompt": "Square root of 81?", "choices": ["8", "7", "6", "9"], "answer": 3},
]
TEXTS = [{"text": "the cat sat on the mat"}, {"text": "a b c"}]  # 5 + 2 scored words

BASELINE_ANSWERS = {
    "What is 12 + 30?": " 42",
    "What is 7 * 6?": "The answer is 42.",
    "Capital of France?": " paris.\nIt is in Europe.",
    "What is 1000 * 3?": "3000",
    "Colour of a clear sky?": "Blue",
    "Largest planet?": " B",
    "Smallest prime?": "(C)",
    "Water freezes at?": "A.",
    "Square root of 81?": " D) 9",
}
CANDIDATE_ANSWERS = {
    **BASELINE_ANSWERS,
    "What is 7 * 6?": "41",  # wrong
    "Largest planet?": " A",  # wrong
    "Square root of 81?": "The answer is D",  # no leading letter: wrong
}
BENCHMARKS = [
    {
        "name": "arithmetic",
        "metric": "exact-match",
        "samples": 4,
        "dataset": {"configMap": {"name": "qmo-benchmarks", "key": "arithmetic.jsonl"}},
    },
    {
        "name": "trivia-mc",
        "metric": "multiple-choice",
        "dataset": {"configMap": {"name": "qmo-benchmarks", "key": "trivia.jsonl"}},
    },
    {
        "name": "wikitext-ppl",
        "metric": "perplexity",
        "higherIsBetter": False,
        "dataset": {"path": "benchmarks/wiki.jsonl"},
    },
]


@dataclass
class Layout:
    """The eval Job's mounts, in a temporary directory."""

    root: Path
    benchmarks: list[dict[str, Any]] = field(default_factory=lambda: list(BENCHMARKS))

    @property
    def datasets(self) -> Path:
        return self.root / "benchmarks"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def benchmarks_file(self) -> Path:
        return self.root / "etc" / "benchmarks.json"

    def write(self) -> Layout:
        _jsonl(self.datasets / "qmo-benchmarks" / "arithmetic.jsonl", EXACT)
        _jsonl(self.datasets / "qmo-benchmarks" / "trivia.jsonl", CHOICES)
        _jsonl(self.store / "benchmarks" / "wiki.jsonl", TEXTS)
        self.benchmarks_file.parent.mkdir(parents=True, exist_ok=True)
        self.benchmarks_file.write_text(json.dumps(self.benchmarks))
        return self


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


class CollectingWriter:
    def __init__(self) -> None:
        self.reports: list[QualityReport] = []

    def write(self, report: QualityReport) -> Written:
        self.reports.append(report)
        return Written.CREATED


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path).write()


@pytest.fixture
def baseline() -> FakeModel:
    return FakeModel("llama-bf16", answers=dict(BASELINE_ANSWERS), word_logprob=-1.0)


@pytest.fixture
def candidate() -> FakeModel:
    return FakeModel("llama-fp8", answers=dict(CANDIDATE_ANSWERS), word_logprob=-1.25)


@pytest.fixture
def urls(baseline: FakeModel, candidate: FakeModel) -> Iterator[tuple[str, str]]:
    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        yield baseline_url, candidate_url


def cli_args(layout: Layout, baseline_url: str, candidate_url: str) -> list[str]:
    return [
        "run",
        "--model", "llama",
        "--namespace", "team-a",
        "--variant", "h100-fp8",
        "--cache-key", KEY,
        "--candidate-url", candidate_url,
        "--baseline-url", baseline_url,
        "--baseline-variant", "h100-bf16",
        "--benchmarks", str(layout.benchmarks_file),
        "--datasets-root", str(layout.datasets),
        "--store-root", str(layout.store),
    ]  # fmt: skip


def options(layout: Layout, baseline_url: str, candidate_url: str, **kw: Any) -> RunOptions:
    return RunOptions(
        model="llama",
        namespace="team-a",
        variant="h100-fp8",
        cache_key=KEY,
        candidate_url=candidate_url,
        baseline_url=baseline_url,
        baseline_variant="h100-bf16",
        benchmarks=layout.benchmarks_file,
        datasets_root=layout.datasets,
        store_root=layout.store,
        **kw,
    )


def test_dry_run_prints_the_report_with_both_scores_of_every_benchmark(
    layout: Layout, urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline_url, candidate_url = urls
    code = main([*cli_args(layout, baseline_url, candidate_url), "--dry-run"])

    assert code == ExitCode.OK
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["apiVersion"] == "qmo.dev/v1alpha1"
    assert report["kind"] == "QualityReport"
    assert report["metadata"]["name"] == f"llama-h100-fp8-{KEY[:12]}"
    assert report["metadata"]["namespace"] == "team-a"
    assert report["metadata"]["labels"]["qmo.dev/variant"] == "h100-fp8"
    assert "status" not in report
    paired = {r["benchmark"]: r.pop("paired") for r in report["spec"]["results"]}
    assert {name: (p["items"], p["method"]) for name, p in paired.items()} == {
        "arithmetic": (4, "paired-normal"),
        "trivia-mc": (4, "paired-normal"),
        "wikitext-ppl": (2, "paired-bootstrap"),
    }
    assert report["spec"] == {
        "modelRef": {"name": "llama"},
        "variant": "h100-fp8",
        "cacheKey": KEY,
        "baselineVariant": "h100-bf16",
        "results": [
            {
                "benchmark": "arithmetic",
                "baselineScore": 1.0,
                "candidateScore": 0.75,
                "higherIsBetter": True,
                "samples": 4,
            },
            {
                "benchmark": "trivia-mc",
                "baselineScore": 1.0,
                "candidateScore": 0.5,
                "higherIsBetter": True,
                "samples": 4,
            },
            {
                "benchmark": "wikitext-ppl",
                "baselineScore": round(math.exp(1.0), 6),
                "candidateScore": round(math.exp(1.25), 6),
                "higherIsBetter": False,
                "samples": 2,
            },
        ],
        "source": "qmo-eval",
    }


def test_every_request_is_deterministic_and_names_the_model_each_endpoint_serves(
    layout: Layout, baseline: FakeModel, candidate: FakeModel, urls: tuple[str, str]
) -> None:
    writer = CollectingWriter()
    assert run(options(layout, *urls), writer) == ExitCode.OK

    for model in (baseline, candidate):
        # 4 exact-match items (samples caps 5), 4 choices, 2 texts
        assert len(model.requests) == 10
        assert {r["model"] for r in model.requests} == {model.name}
        assert {(r["temperature"], r["seed"]) for r in model.requests} == {(0, 0)}
        perplexity = [r for r in model.requests if r.get("echo")]
        assert sorted(r["prompt"] for r in perplexity) == sorted(t["text"] for t in TEXTS)
        assert all(r["logprobs"] == 1 and r["max_tokens"] == 1 for r in perplexity)
        choices = [r for r in model.requests if "Answer:" in r["prompt"]]
        assert len(choices) == 4
        assert all(r["max_tokens"] <= 4 for r in choices)
        assert any(
            r["prompt"].startswith("Largest planet?\n\nA. Mars\nB. Jupiter\n") for r in choices
        )


def test_chat_api_sends_the_prompt_as_a_user_message_and_scores_the_same(
    layout: Layout, baseline: FakeModel, urls: tuple[str, str]
) -> None:
    layout.benchmarks = BENCHMARKS[:2]
    layout.write()
    writer = CollectingWriter()

    code = run(options(layout, *urls, settings=Settings(api=Api.CHAT)), writer)

    assert code == ExitCode.OK
    scores = [(r.baseline_score, r.candidate_score) for r in writer.reports[0].spec.results]
    assert scores == [(1.0, 0.75), (1.0, 0.5)]
    assert {r["path"] for r in baseline.requests} == {"/v1/chat/completions"}
    assert baseline.requests[0]["messages"][0]["role"] == "user"


def test_choice_logprobs_decide_when_the_server_returns_them(
    layout: Layout, candidate: FakeModel, urls: tuple[str, str]
) -> None:
    # The text starts with no letter, but the first position's logprobs favour D.
    candidate.top_logprobs["Square root of 81?"] = {" D": -0.2, " A": -1.9, "The": -0.1}
    layout.benchmarks = [BENCHMARKS[1]]
    layout.write()
    writer = CollectingWriter()

    code = run(options(layout, *urls, settings=Settings(choice_logprobs=5)), writer)

    assert code == ExitCode.OK
    assert writer.reports[0].spec.results[0].candidate_score == 0.75
    assert {r.get("logprobs") for r in candidate.requests} == {5}


@pytest.mark.parametrize(
    ("logprobs", "says"),
    [
        pytest.param(PromptLogprobs.NONE, "returned no token logprobs", id="no-logprobs-at-all"),
        pytest.param(
            PromptLogprobs.GENERATED_ONLY,
            "does not echo prompt logprobs",
            id="logprobs-of-generated-tokens-only",
        ),
    ],
)
def test_perplexity_fails_clearly_and_writes_no_report_without_prompt_logprobs(
    layout: Layout,
    candidate: FakeModel,
    urls: tuple[str, str],
    logprobs: PromptLogprobs,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    candidate.prompt_logprobs = logprobs
    writer = CollectingWriter()

    code = run(options(layout, *urls), writer)

    assert code == ExitCode.FAILED
    assert writer.reports == []
    assert "benchmark wikitext-ppl on the candidate" in caplog.text
    assert says in caplog.text


def test_an_endpoint_that_answers_errors_fails_the_run_with_the_server_message(
    layout: Layout, candidate: FakeModel, urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    candidate.error_status = 400
    writer = CollectingWriter()

    assert run(options(layout, *urls), writer) == ExitCode.FAILED
    assert writer.reports == []
    assert "HTTP 400: injected 400" in caplog.text


def test_an_unreachable_endpoint_is_retried_then_fails_with_exit_code_1(
    layout: Layout, baseline: FakeModel, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []

    def client(url: str, timeout: float, seed: int | None) -> OpenAIClient:
        return OpenAIClient(url, timeout=timeout, seed=seed, sleep=waits.append)

    with serving(baseline) as baseline_url:
        code = run(options(layout, baseline_url, closed_port_url()), CollectingWriter(), client)

    assert code == ExitCode.FAILED
    assert waits == [1.0, 2.0]
    assert "cannot list the served models" in caplog.text


@pytest.mark.parametrize(
    ("benchmarks", "says"),
    [
        pytest.param([], "the benchmark list is empty", id="empty-list"),
        pytest.param(
            [{"name": "external", "metric": "exact-match"}],
            "has no dataset",
            id="benchmark-without-dataset",
        ),
        pytest.param(
            [{"name": "missing", "dataset": {"configMap": {"name": "nope", "key": "x.jsonl"}}}],
            "no such file",
            id="dataset-not-mounted",
        ),
    ],
)
def test_bad_input_exits_2_before_any_request(
    layout: Layout,
    baseline: FakeModel,
    urls: tuple[str, str],
    benchmarks: list[dict[str, Any]],
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    layout.benchmarks = benchmarks
    layout.write()

    assert run(options(layout, *urls), CollectingWriter()) == ExitCode.BAD_INPUT
    assert says in caplog.text
    assert baseline.requests == []


def test_a_missing_required_argument_exits_2() -> None:
    assert main(["run", "--model", "llama"]) == ExitCode.BAD_INPUT


def test_a_variant_name_the_api_would_refuse_exits_2_before_any_request(
    layout: Layout, baseline: FakeModel, urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    too_long = replace(options(layout, *urls), variant="v" * 64)

    assert run(too_long, CollectingWriter()) == ExitCode.BAD_INPUT
    assert "the report would be invalid" in caplog.text
    assert baseline.requests == []
