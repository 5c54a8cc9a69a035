"""MT-Bench's single-answer grading: a judge model rates each answer 1 to 10.

The prompts are the MT-Bench paper's (Zheng et al., 2023, "Judging LLM-as-a-Judge with
MT-Bench and Chatbot Arena"; the `single-v1`, `single-math-v1` and their `-multi-turn`
variants of its judge_prompts.jsonl, FastChat, Apache-2.0): a first turn is rated on its own,
a second turn on the whole conversation, and the categories MT-Bench grades against a
reference answer (math, reasoning, coding) get the reference. The judge answers at
temperature 0 and must end with "[[rating]]"; the rating is read as FastChat reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmo.evaluator.benchmarks import JudgedItem

NEEDS_REFERENCE = frozenset({"math", "reasoning", "coding"})
JUDGE_MAX_TOKENS = 2048
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_LOOSE = re.compile(r"\[(\d+\.?\d*)\]")

_FORMAT = (
    "After providing your explanation, you must rate the response on a scale of 1 to 10 by "
    'strictly following this format: "[[rating]]", for example: "Rating: [[5]]".'
)
SINGLE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
    "provided by an AI assistant to the user question displayed below. Your evaluation should "
    "consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and "
    "level of detail of the response. Begin your evaluation by providing a short explanation. "
    f"Be as objective as possible. {_FORMAT}\n\n[Question]\n{{question}}\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
SINGLE_MATH = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
    "provided by an AI assistant to the user question displayed below. Your evaluation should "
    "consider correctness and helpfulness. You will be given a reference answer and the "
    "assistant's answer. Begin your evaluation by comparing the assistant's answer with the "
    "reference answer. Identify and correct any mistakes. Be as objective as possible. "
    f"{_FORMAT}\n\n[Question]\n{{question}}\n\n[The Start of Reference Answer]\n"
    "{reference}\n[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{answer}"
    "\n[The End of Assistant's Answer]"
)
MULTI_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an "
    "AI assistant to the user question displayed below. Your evaluation should consider "
    "factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of "
    "detail of the response. You evaluation should focus on the assistant's answer to the "
    "second user question. Begin your evaluation by providing a short explanation. Be as "
    f"objective as possible. {_FORMAT}\n\n"
)
MULTI_MATH_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an "
    "AI assistant to the user question. Your evaluation should consider correctness and "
    "helpfulness. You will be given a reference answer and the assistant's answer. You "
    "evaluation should focus on the assistant's answer to the second question. Begin your "
    "evaluation by comparing the assistant's answer with the reference answer. Identify and "
    f"correct any mistakes. Be as objective as possible. {_FORMAT}\n\n"
)
_CONVERSATION = (
    "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n"
    "### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}"
    "\n\n<|The End of Assistant A's Conversation with User|>"
)
_REFERENCE = (
    "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n"
    "{reference_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{reference_2}\n\n"
    "<|The End of Reference Answer|>\n\n\n"
)


@dataclass(frozen=True)
class JudgeRequest:
    """The messages that ask the judge to rate one turn."""

    system: str
    prompt: str

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.prompt},
        ]


def request(item: JudgedItem, answers: list[str], turn: int) -> JudgeRequest:
    """What asks the judge to rate `answers[turn]` (turn 0 or 1) of the item's conversation."""
    referenced = item.category in NEEDS_REFERENCE and len(item.reference) > turn
    if turn == 0:
        if referenced:
            prompt = SINGLE_MATH.format(
                question=item.turns[0], reference=item.reference[0], answer=answers[0]
            )
        else:
            prompt = SINGLE.format(question=item.turns[0], answer=answers[0])
        return JudgeRequest("You are a helpful assistant.", prompt)
    conversation = _CONVERSATION.format(
        question_1=item.turns[0], answer_1=answers[0], question_2=item.turns[1], answer_2=answers[1]
    )
    if referenced:
        reference = _REFERENCE.format(
            question_1=item.turns[0],
            reference_1=item.reference[0],
            question_2=item.turns[1],
            reference_2=item.reference[1],
        )
        return JudgeRequest(MULTI_MATH_SYSTEM, reference + conversation)
    return JudgeRequest(MULTI_SYSTEM, conversation)


def rating(verdict: str) -> float | None:
    """The judge's "[[r]]" (or, failing that, "[r]"), between 1 and 10; None when absent."""
    found = _RATING.search(verdict) or _RATING_LOOSE.search(verdict)
    if found is None:
        return None
    value = float(found.group(1))
    return value if 1 <= value <= 10 else None
