"""Verifiable rewards: plain functions, completion text in, float out.

A numeric reference answer is parsed from 'Answer: N' (our format), '#### N' (GSM8K) or, failing
both, the last number in the text. Any other reference (MATH's '\\frac{1}{2}', 'x^2 + 1', 'B') is
compared with the rest of the line after the last 'Answer:', else the last \\boxed{...}, both
normalised (spaces, '$' and a final '.' dropped). `exact` gives 1 when the two are equal, else 0;
`exact_format` adds 0.1 for using the 'Answer: N' format (a format reward).
"""

import re

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
ANSWER_RE = re.compile(rf"Answer:\s*\$?({NUMBER})")
GSM8K_RE = re.compile(rf"####\s*\$?({NUMBER})")
LAST_NUMBER_RE = re.compile(NUMBER)
ANSWER_LINE_RE = re.compile(r"Answer:[ \t]*([^\n]*)")
BOXED = "\\boxed{"


def is_number(text: str) -> bool:
    return re.fullmatch(NUMBER, text.strip()) is not None


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text` (braces balanced), None if there is none or it is unclosed."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(BOXED)
    for position in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[begin:position]
    return None


def normalize_text(text: str) -> str:
    """A non-numeric answer for comparison: no spaces, no '$', no final '.'; a number as `normalize` writes it."""
    text = text.strip().rstrip(".").strip().strip("$")
    boxed = last_boxed(text)
    text = "".join((boxed if boxed is not None else text).split())
    return normalize(text) if is_number(text) else text


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


def stated_text(completion: str) -> str | None:
    """The answer a completion states in words: after its last 'Answer:', else its last \\boxed{...}."""
    found = ANSWER_LINE_RE.findall(completion)
    return found[-1] if found else last_boxed(completion)


def exact(completion: str, answer: str) -> float:
    if not is_number(answer):
        stated = stated_text(completion)
        return float(stated is not None and normalize_text(stated) == normalize_text(answer))
    parsed = parse_final_answer(completion)
    return float(parsed is not None and parsed == normalize(answer))


def exact_format(completion: str, answer: str) -> float:
    return exact(completion, answer) + (0.1 if ANSWER_RE.search(completion) else 0.0)


REWARDS = {"exact": exact, "exact_format": exact_format}
