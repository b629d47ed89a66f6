"""One task example: a prompt, its verifiable integer answer and a worked solution."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    prompt: str  # the question, without chat formatting
    answer: str  # the final answer, as the reward compares it
    solution: str  # a worked reference solution ending in the parseable final answer


ANSWER_PREFIX = "Answer:"


def with_final_answer(reasoning: str, answer) -> str:
    """A solution in the fixed format: reasoning, then 'Answer: N'."""
    reasoning = reasoning.strip()
    return f"{reasoning} {ANSWER_PREFIX} {answer}" if reasoning else f"{ANSWER_PREFIX} {answer}"
