"""Verifiable rewards: plain functions, completion text in, float out.

The final answer is parsed from 'Answer: N' (our format), '#### N' (GSM8K) or, failing
both, the last number in the text. `exact` gives 1 when it equals the reference, else 0;
`exact_format` adds 0.1 for using the 'Answer: N' format (a format reward).
"""

import re

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
ANSWER_RE = re.compile(rf"Answer:\s*\$?({NUMBER})")
GSM8K_RE = re.compile(rf"####\s*\$?({NUMBER})")
LAST_NUMBER_RE = re.compile(NUMBER)


def normalize(number: str) -> str:
    """'1,234' -> '1234', '7.0' -> '7'."""
    number = number.replace(",", "").strip()
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number


def parse_final_answer(text: str, strict: bool = False):
    """The final answer in `text`, normalised; None if absent (strict: only the marked formats)."""
    for pattern in (ANSWER_RE, GSM8K_RE):
        found = pattern.findall(text)
        if found:
            return normalize(found[-1])
    if strict:
        return None
    found = LAST_NUMBER_RE.findall(text)
    return normalize(found[-1]) if found else None


def exact(completion: str, answer: str) -> float:
    parsed = parse_final_answer(completion)
    return float(parsed is not None and parsed == normalize(answer))


def exact_format(completion: str, answer: str) -> float:
    return exact(completion, answer) + (0.1 if ANSWER_RE.search(completion) else 0.0)


REWARDS = {"exact": exact, "exact_format": exact_format}
