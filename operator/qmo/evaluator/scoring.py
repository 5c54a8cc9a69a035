"""Scoring of benchmark answers: prompts in, completions judged, scores out. Pure.

Called by harness.py for every completion it gets back. The rules (docs/quality.md):

exact-match
    A numeric answer ("42", "-3.5", "1,000") matches when the first number anywhere in the
    completion equals it as a number ("42.0" matches "42"; thousands commas are ignored).
    Any other answer matches when the first non-blank line of the completion, stripped,
    casefolded, with runs of whitespace collapsed and one trailing period dropped, equals the
    answer normalised the same way.
multiple-choice
    The choices are appended to the prompt as lettered lines and the model is asked for a
    letter. With per-token logprobs for the first position, the choice letter with the highest
    logprob is the answer; otherwise the completion must start with the letter ("B", "(B)",
    "B." or "B) ..."). Anything else counts as wrong.
perplexity
    exp(total negative log-likelihood / total scored tokens) over all texts, from the prompt
    token logprobs the server echoes back. The first token of each text has no logprob and is
    not scored. Lower is better.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from qmo.evaluator.benchmarks import ChoiceItem

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_LEADING_LETTER = re.compile(r"^[\s(\[]*([A-Z])(?![A-Za-z])")
_WHITESPACE = re.compile(r"\s+")


MAX_MEAN_NLL = math.log(1e300)


class ScoringError(ValueError):
    """A benchmark cannot be scored from what the server returned."""


@dataclass(frozen=True)
class Score:
    """A benchmark's score on one endpoint, how many items it rests on, and each item's
    outcome in item order (1/0 for right/wrong; a text's negative log-likelihood for
    perplexity, with its scored tokens in `weights`), for the paired statistics."""

    value: float
    samples: int
    outcomes: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    # Per item, what is worth keeping beside its outcome (a judge's raw verdicts).
    details: tuple[dict[str, object], ...] = ()


def normalise(text: str) -> str:
    """First non-blank line, stripped, casefolded, whitespace collapsed, one final '.' dropped."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = _WHITESPACE.sub(" ", line.strip().casefold())
    return line.removesuffix(".").rstrip()


def as_number(text: str) -> Decimal | None:
    """The text as a number when all of it is one ("1,000", "-2.5"), else None."""
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        return None
    return _decimal(stripped)


def first_number(text: str) -> Decimal | None:
    """The first number anywhere in the text, or None."""
    match = _NUMBER.search(text)
    return _decimal(match.group(0)) if match else None


def exact_match(completion: str, answer: str) -> bool:
    expected = as_number(answer)
    if expected is not None:
        return first_number(completion) == expected
    return normalise(completion) == normalise(answer)


def letter(index: int) -> str:
    return string.ascii_uppercase[index]


def choice_prompt(item: ChoiceItem) -> str:
    """The prompt with its choices as lettered lines, asking for the letter."""
    lines = [item.prompt.rstrip(), ""]
    lines += [f"{letter(i)}. {choice}" for i, choice in enumerate(item.choices)]
    lines += ["Answer with the letter of the correct choice.", "Answer:"]
    return "\n".join(lines)


def choice_from_text(completion: str, choices: int) -> int | None:
    """The choice whose letter starts the completion ("B", "(B)", "B." ...), or None."""
    match = _LEADING_LETTER.match(completion)
    if match is None:
        return None
    index = string.ascii_uppercase.index(match.group(1))
    return index if index < choices else None


def choice_from_logprobs(top_logprobs: Mapping[str, float], choices: int) -> int | None:
    """Among the candidate tokens of the first position, the choice letter most likely."""
    best: tuple[float, int] | None = None
    for token, logprob in top_logprobs.items():
        stripped = token.strip().lstrip("(")
        if len(stripped) != 1 or stripped not in string.ascii_uppercase[:choices]:
            continue
        candidate = (logprob, string.ascii_uppercase.index(stripped))
        if best is None or candidate[0] > best[0]:
            best = candidate
    return None if best is None else best[1]


def pick_choice(
    completion: str, first_top_logprobs: Mapping[str, float] | None, choices: int
) -> int | None:
    """The logprob comparison when the server returned one with a letter, else the text."""
    if first_top_logprobs:
        picked = choice_from_logprobs(first_top_logprobs, choices)
        if picked is not None:
            return picked
    return choice_from_text(completion, choices)


def accuracy(correct: Sequence[bool]) -> Score:
    if not correct:
        raise ScoringError("no items were scored")
    return Score(
        sum(correct) / len(correct), len(correct), tuple(1.0 if c else 0.0 for c in correct)
    )


@dataclass(frozen=True)
class LogLikelihood:
    """Negative log-likelihood of one text and the number of tokens it covers."""

    nll: float
    tokens: int


def prompt_log_likelihood(
    token_logprobs: Sequence[float | None] | None, prompt_tokens: int | None
) -> LogLikelihood:
    """The NLL of the prompt from an echoed completion's token logprobs.

    With `echo`, the server lists the prompt's tokens first (the very first without a
    logprob) and then the generated ones; `prompt_tokens` (usage) says where the prompt ends.
    A server that only returns logprobs of generated tokens cannot give a perplexity.
    """
    if not token_logprobs:
        raise ScoringError(
            "the server returned no token logprobs: perplexity needs prompt logprobs "
            "(/v1/completions with echo and logprobs), which this server does not provide"
        )
    if prompt_tokens is None:
        raise ScoringError(
            "the server reported no usage.prompt_tokens, so prompt logprobs cannot be told "
            "apart from generated ones"
        )
    if len(token_logprobs) < prompt_tokens:
        raise ScoringError(
            f"the server returned {len(token_logprobs)} token logprobs for a "
            f"{prompt_tokens}-token prompt: it does not echo prompt logprobs, so "
            "perplexity cannot be measured on it"
        )
    scored = [lp for lp in token_logprobs[:prompt_tokens] if lp is not None]
    if not all(math.isfinite(lp) and lp <= 0 for lp in scored):
        raise ScoringError("the server returned a token logprob that is not a finite value <= 0")
    return LogLikelihood(-sum(scored), len(scored))


def perplexity(parts: Iterable[LogLikelihood]) -> Score:
    """Token-weighted perplexity over every text: exp(sum NLL / sum tokens)."""
    items = list(parts)
    tokens = sum(p.tokens for p in items)
    if tokens == 0:
        raise ScoringError("no token had a logprob: the texts are too short to score")
    mean_nll = sum(p.nll for p in items) / tokens
    # exp overflows a float past a mean NLL of ~709: no model that bad is worth a number.
    if mean_nll > MAX_MEAN_NLL:
        raise ScoringError(
            f"the mean negative log-likelihood is {mean_nll:.0f} nats per token: the "
            "perplexity is too large to represent (the model or the endpoint is broken)"
        )
    return Score(
        math.exp(mean_nll),
        len(items),
        tuple(p.nll for p in items),
        tuple(float(p.tokens) for p in items),
    )


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
