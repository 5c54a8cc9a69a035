"""Runs one benchmark against one endpoint: the requests to send, sent, and the answers scored.

Called by evaluation.py once per (benchmark, endpoint). The endpoint is anything with the
`complete` and `chat` methods of `OpenAIClient`; scoring is scoring.py's. Requests go out over a
small thread pool and are deterministic (temperature 0, a fixed seed); items are scored in file
order, whatever order their answers come back in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from qmo.api.quantizedmodel import BenchmarkMetric
from qmo.evaluator import code_execution, judge, scoring
from qmo.evaluator.benchmarks import (
    Benchmark,
    ChoiceItem,
    CodeItem,
    ExactMatchItem,
    Item,
    JudgedItem,
    TextItem,
)
from qmo.evaluator.openai_client import Completion
from qmo.evaluator.scoring import LogLikelihood, Score, ScoringError

# A letter, maybe with "(" before or "." after it, and a token of slack.
CHOICE_MAX_TOKENS = 4
# Perplexity scores the prompt only; 1 is the fewest tokens every server accepts.
PERPLEXITY_MAX_TOKENS = 1
# A function body or a chat answer, unless the benchmark says otherwise (maxTokens).
ANSWER_MAX_TOKENS = 512
T = TypeVar("T")
R = TypeVar("R")


class Api(StrEnum):
    """Which endpoint exact-match and multiple-choice prompts go to."""

    COMPLETIONS = "completions"  # raw prompt: works for base and instruct models
    CHAT = "chat"  # the prompt as one user message, through the server's chat template


class Endpoint(Protocol):
    def complete(
        self, prompt: str, *, max_tokens: int, logprobs: int | None = None, echo: bool = False
    ) -> Completion: ...

    def chat(
        self, prompt: str, *, max_tokens: int, top_logprobs: int | None = None
    ) -> Completion: ...

    def converse(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        top_logprobs: int | None = None,
    ) -> Completion: ...


@dataclass(frozen=True)
class Settings:
    api: Api = Api.COMPLETIONS
    max_tokens: int = 64
    concurrency: int = 4
    # Top logprobs asked for on multiple-choice prompts; 0 reads the letter from the text.
    # trtllm-serve's TensorRT backend returns more than 1 only with gather_generation_logits.
    choice_logprobs: int = 0
    # Run model-written code (code-execution benchmarks): only where qmo-eval was told it may.
    allow_code_execution: bool = False
    code_limits: code_execution.Limits = field(default_factory=code_execution.Limits)


def score_benchmark(
    benchmark: Benchmark, endpoint: Endpoint, settings: Settings, judge_with: Endpoint | None = None
) -> Score:
    """The benchmark's score on the endpoint (`judge_with` rates a judged benchmark's
    answers). Raises EndpointError or ScoringError."""
    items = benchmark.items
    tokens = benchmark.spec.max_tokens or ANSWER_MAX_TOKENS
    if benchmark.metric == BenchmarkMetric.CODE_EXECUTION:
        if not settings.allow_code_execution:
            raise ScoringError("it runs model-written code: only with --allow-code-execution")
        problems = [_of(CodeItem, item) for item in items]
        completions = _map(
            lambda p: endpoint.complete(p.prompt, max_tokens=tokens).text,
            problems,
            settings.concurrency,
        )
        passed = _map(
            lambda pc: code_execution.passes(pc[0], pc[1], settings.code_limits),
            list(zip(problems, completions, strict=True)),
            settings.concurrency,
        )
        return scoring.accuracy(passed)
    if benchmark.metric == BenchmarkMetric.JUDGED:
        if judge_with is None:
            raise ScoringError("a judged benchmark needs a judge endpoint")
        conversations = [_of(JudgedItem, item) for item in items]
        rated = _map(
            lambda q: _judged(endpoint, judge_with, q, tokens), conversations, settings.concurrency
        )
        outcomes = tuple(outcome for outcome, _ in rated)
        return Score(
            sum(outcomes) / len(outcomes),
            len(outcomes),
            outcomes,
            details=tuple(detail for _, detail in rated),
        )
    if benchmark.metric == BenchmarkMetric.PERPLEXITY:
        texts = [_of(TextItem, item) for item in items]
        parts = _map(lambda t: _log_likelihood(endpoint, t), texts, settings.concurrency)
        return scoring.perplexity(parts)
    if benchmark.metric == BenchmarkMetric.MULTIPLE_CHOICE:
        questions = [_of(ChoiceItem, item) for item in items]
        picks = _map(lambda q: _choice(endpoint, q, settings), questions, settings.concurrency)
        return scoring.accuracy([p == q.answer for p, q in zip(picks, questions, strict=True)])
    exact = [_of(ExactMatchItem, item) for item in items]
    answers = _map(
        lambda e: _ask(endpoint, e.prompt, settings.max_tokens, settings, 0).text,
        exact,
        settings.concurrency,
    )
    return scoring.accuracy(
        [scoring.exact_match(a, e.answer) for a, e in zip(answers, exact, strict=True)]
    )


def _judged(
    endpoint: Endpoint, judge_with: Endpoint, item: JudgedItem, tokens: int
) -> tuple[float, dict[str, object]]:
    """The item's conversation with the endpoint, each turn rated by the judge: the mean
    rating, and the answers, verdicts and ratings to keep."""
    messages: list[dict[str, str]] = []
    answers: list[str] = []
    for question in item.turns:
        messages.append({"role": "user", "content": question})
        answer = endpoint.converse(messages, max_tokens=tokens).text
        messages.append({"role": "assistant", "content": answer})
        answers.append(answer)
    verdicts, ratings = [], []
    for turn in range(len(item.turns)):
        asked = judge.request(item, answers, turn)
        verdict = judge_with.converse(asked.messages(), max_tokens=judge.JUDGE_MAX_TOKENS).text
        found = judge.rating(verdict)
        if found is None:
            raise ScoringError(
                f"the judge's verdict has no [[rating]] of 1 to 10: {verdict[:200]!r}"
            )
        verdicts.append(verdict)
        ratings.append(found)
    detail = {"answers": answers, "verdicts": verdicts, "ratings": ratings}
    return sum(ratings) / len(ratings), detail


def _ask(
    endpoint: Endpoint, prompt: str, max_tokens: int, settings: Settings, top: int
) -> Completion:
    if settings.api == Api.CHAT:
        return endpoint.chat(prompt, max_tokens=max_tokens, top_logprobs=top or None)
    return endpoint.complete(prompt, max_tokens=max_tokens, logprobs=top or None)


def _choice(endpoint: Endpoint, item: ChoiceItem, settings: Settings) -> int | None:
    max_tokens = min(settings.max_tokens, CHOICE_MAX_TOKENS)
    completion = _ask(
        endpoint, scoring.choice_prompt(item), max_tokens, settings, settings.choice_logprobs
    )
    return scoring.pick_choice(completion.text, completion.first_top_logprobs(), len(item.choices))


def _log_likelihood(endpoint: Endpoint, item: TextItem) -> LogLikelihood:
    completion = endpoint.complete(
        item.text, max_tokens=PERPLEXITY_MAX_TOKENS, logprobs=1, echo=True
    )
    return scoring.prompt_log_likelihood(completion.token_logprobs, completion.prompt_tokens)


def _map(fn: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R]:
    """fn over items on at most `concurrency` threads, results in item order.

    The first failure is raised once the requests already in flight are done; the requests
    not yet started are cancelled.
    """
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _of(kind: type[T], item: Item) -> T:
    if not isinstance(item, kind):
        raise ScoringError(f"expected a {kind.__name__}, got {type(item).__name__}")
    return item
