"""How qmo-eval judges answers and computes scores (qmo.evaluator.scoring), table by table."""

from __future__ import annotations

import math

import pytest

from qmo.evaluator.benchmarks import ChoiceItem
from qmo.evaluator.scoring import (
    LogLikelihood,
    ScoringError,
    accuracy,
    choice_from_logprobs,
    choice_from_text,
    choice_prompt,
    exact_match,
    normalise,
    perplexity,
    pick_choice,
    prompt_log_likelihood,
)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        pytest.param("  Paris  ", "paris", id="stripped-and-casefolded"),
        pytest.param("\n\nParis\nis the capital", "paris", id="first-non-blank-line"),
        pytest.param("New   York.", "new york", id="whitespace-collapsed-final-period-dropped"),
        pytest.param("STRASSE", "strasse", id="casefold-not-lower"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalise(text: str, normalised: str) -> None:
    assert normalise(text) == normalised


@pytest.mark.parametrize(
    ("completion", "answer", "matches"),
    [
        pytest.param(" 42", "42", True, id="number-with-leading-space"),
        pytest.param("The answer is 42.", "42", True, id="first-number-in-a-sentence"),
        pytest.param("42.0", "42", True, id="numbers-compare-as-numbers"),
        pytest.param("3000", "3,000", True, id="thousands-comma-in-the-answer"),
        pytest.param("1,000,000 people", "1000000", True, id="thousands-comma-in-the-completion"),
        pytest.param("-7 degrees", "-7", True, id="negative-number"),
        pytest.param("41", "42", False, id="wrong-number"),
        pytest.param("12 + 30 = 42", "42", False, id="only-the-first-number-counts"),
        pytest.param("42.5", "42", False, id="a-longer-decimal-is-another-number"),
        pytest.param("no idea", "42", False, id="no-number-at-all"),
        pytest.param("paris.\nIt is in Europe.", "Paris", True, id="text-first-line-casefolded"),
        pytest.param("Blue", "blue", True, id="text-case-differs"),
        pytest.param("Paris, France", "Paris", False, id="text-must-equal-not-contain"),
        pytest.param("", "Paris", False, id="empty-completion"),
    ],
)
def test_exact_match(completion: str, answer: str, matches: bool) -> None:
    assert exact_match(completion, answer) is matches


def test_choice_prompt_letters_the_choices_and_asks_for_a_letter() -> None:
    item = ChoiceItem("Largest planet?", ("Mars", "Jupiter"), 1)
    assert choice_prompt(item) == (
        "Largest planet?\n\nA. Mars\nB. Jupiter\n"
        "Answer with the letter of the correct choice.\nAnswer:"
    )


@pytest.mark.parametrize(
    ("completion", "choices", "picked"),
    [
        pytest.param("B", 4, 1, id="bare-letter"),
        pytest.param(" C", 4, 2, id="leading-space"),
        pytest.param("(D)", 4, 3, id="parenthesised"),
        pytest.param("A. Mars", 4, 0, id="letter-dot-text"),
        pytest.param("B) Jupiter", 4, 1, id="letter-paren-text"),
        pytest.param("E", 4, None, id="letter-beyond-the-choices"),
        pytest.param("Because", 4, None, id="a-word-is-not-a-letter"),
        pytest.param("The answer is B", 4, None, id="letter-not-first"),
        pytest.param("b", 4, None, id="lowercase-is-not-read"),
        pytest.param("", 4, None, id="empty"),
    ],
)
def test_choice_from_text(completion: str, choices: int, picked: int | None) -> None:
    assert choice_from_text(completion, choices) == picked


@pytest.mark.parametrize(
    ("top", "choices", "picked"),
    [
        pytest.param({" A": -2.0, " B": -0.3}, 4, 1, id="most-likely-letter"),
        pytest.param({"The": -0.1, " C": -1.5, " A": -1.6}, 4, 2, id="non-letters-ignored"),
        pytest.param({" E": -0.1, " B": -3.0}, 4, 1, id="letters-beyond-the-choices-ignored"),
        pytest.param({"(D": -0.2}, 4, 3, id="opening-paren-allowed"),
        pytest.param({"The": -0.1}, 4, None, id="no-letter-at-all"),
        pytest.param({}, 4, None, id="empty"),
    ],
)
def test_choice_from_logprobs(top: dict[str, float], choices: int, picked: int | None) -> None:
    assert choice_from_logprobs(top, choices) == picked


@pytest.mark.parametrize(
    ("text", "top", "picked"),
    [
        pytest.param("The answer", {" D": -0.4, " A": -2.0}, 3, id="logprobs-win-over-text"),
        pytest.param("B", {"The": -0.1}, 1, id="text-when-logprobs-have-no-letter"),
        pytest.param("C", None, 2, id="text-when-no-logprobs"),
    ],
)
def test_pick_choice(text: str, top: dict[str, float] | None, picked: int) -> None:
    assert pick_choice(text, top, 4) == picked


@pytest.mark.parametrize(
    ("correct", "value"),
    [
        pytest.param([True, True, False, True], 0.75, id="three-of-four"),
        pytest.param([False], 0.0, id="none-right"),
        pytest.param([True] * 7, 1.0, id="all-right"),
    ],
)
def test_accuracy(correct: list[bool], value: float) -> None:
    score = accuracy(correct)
    assert (score.value, score.samples) == (value, len(correct))


def test_accuracy_of_nothing_is_an_error() -> None:
    with pytest.raises(ScoringError, match="no items"):
        accuracy([])


@pytest.mark.parametrize(
    ("token_logprobs", "prompt_tokens", "nll", "tokens"),
    [
        pytest.param([None, -1.0, -2.0, -0.5], 3, 3.0, 2, id="generated-token-not-counted"),
        pytest.param([None, -1.5, -0.5], 3, 2.0, 2, id="prompt-only"),
        pytest.param([None, -0.5], 1, 0.0, 0, id="one-token-prompt-scores-nothing"),
    ],
)
def test_prompt_log_likelihood(
    token_logprobs: list[float | None], prompt_tokens: int, nll: float, tokens: int
) -> None:
    assert prompt_log_likelihood(token_logprobs, prompt_tokens) == LogLikelihood(nll, tokens)


@pytest.mark.parametrize(
    ("token_logprobs", "prompt_tokens", "says"),
    [
        pytest.param(None, 3, "no token logprobs", id="no-logprobs"),
        pytest.param([], 3, "no token logprobs", id="empty-logprobs"),
        pytest.param([-0.5], 6, "does not echo prompt logprobs", id="generated-only"),
        pytest.param([None, -1.0], None, "no usage.prompt_tokens", id="no-usage"),
        pytest.param([None, 0.5, -1.0], 2, "finite value <= 0", id="positive-logprob"),
        pytest.param([None, -math.inf], 2, "finite value <= 0", id="infinite-logprob"),
    ],
)
def test_prompt_log_likelihood_refuses_what_is_no_prompt_logprob(
    token_logprobs: list[float | None] | None, prompt_tokens: int | None, says: str
) -> None:
    with pytest.raises(ScoringError, match=says):
        prompt_log_likelihood(token_logprobs, prompt_tokens)


def test_perplexity_is_token_weighted_over_every_text() -> None:
    score = perplexity([LogLikelihood(5.0, 5), LogLikelihood(4.0, 2)])
    assert score.value == pytest.approx(math.exp(9.0 / 7))
    assert score.samples == 2


def test_perplexity_without_a_scored_token_is_an_error() -> None:
    with pytest.raises(ScoringError, match="too short"):
        perplexity([LogLikelihood(0.0, 0)])


def test_a_perplexity_too_large_for_a_float_is_an_error_not_an_overflow() -> None:
    with pytest.raises(ScoringError, match="too large to represent"):
        perplexity([LogLikelihood(800.0, 1)])
