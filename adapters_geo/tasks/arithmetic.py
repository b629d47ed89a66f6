"""The embedded default task: procedurally generated arithmetic word problems.

Levels: 0 recall (the answer is stated in the problem — a format-learning check for tiny
models), 1 one step (a ± b), 2 two steps with small numbers ('Tom has 23 apples, buys 4
boxes with 7 each…'), 3 two steps with larger numbers. Every solution is
'<worked steps> Answer: N', the steps written in one of two styles (`STYLES`): `steps`, equations
('4 * 7 = 28. 23 + 28 = 51.'), or `words` ('4 times 7 is 28. 23 plus 28 is 51.'), the same
computation in other tokens — a teacher trained on one style and a student on the other are not
SFT twins (issue 22). The style changes no prompt, answer or split. The test split is drawn from its own seed stream and the
training stream skips every test prompt, so the two never overlap.
"""

import random

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.tasks.example import Example, with_final_answer

NAMES = ["Tom", "Ana", "Li", "Sam", "Maya", "Omar", "Zoe", "Ivan", "Nia", "Ben"]
ITEMS = ["apples", "pens", "books", "coins", "cards", "eggs", "shells", "stamps", "marbles", "cups"]


def _recall(rng: random.Random) -> tuple[str, int, list]:
    name, item, a = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(1, 9)
    return f"{name} has {a} {item}. How many {item} does {name} have?", a, []


def _one_step(rng: random.Random) -> tuple[str, int, list]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(5, 40), rng.randint(1, 20)
    if rng.random() < 0.5:
        prompt = f"{name} has {a} {item} and finds {b} more. How many {item} does {name} have now?"
        return prompt, a + b, [(a, "+", b, a + b)]
    a = max(a, b + 1)
    prompt = f"{name} has {a} {item} and gives away {b}. How many {item} does {name} have now?"
    return prompt, a - b, [(a, "-", b, a - b)]


def _two_step(rng: random.Random, big: bool) -> tuple[str, int, list]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    top = 99 if big else 30
    a, b, c = rng.randint(2, top), rng.randint(2, 9 if not big else 12), rng.randint(2, 9 if not big else 15)
    kind = rng.randrange(3)
    if kind == 0:
        prompt = f"{name} has {a} {item}, buys {b} boxes with {c} {item} each. How many {item} does {name} have now?"
        return prompt, a + b * c, [(b, "*", c, b * c), (a, "+", b * c, a + b * c)]
    if kind == 1:
        total = b * c
        sold = rng.randint(1, total - 1)
        prompt = f"A shop has {b} shelves with {c} {item} on each. It sells {sold}. How many {item} are left?"
        return prompt, total - sold, [(b, "*", c, total), (total, "-", sold, total - sold)]
    gave = rng.randint(1, a - 1) if a > 1 else 0
    prompt = f"{name} had {a} {item}, gave away {gave} and then got {c} more. How many {item} does {name} have?"
    return prompt, a - gave + c, [(a, "-", gave, a - gave), (a - gave, "+", c, a - gave + c)]


WORDS = {"+": "plus", "-": "minus", "*": "times"}
STYLES = {
    "steps": lambda x, op, y, z: f"{x} {op} {y} = {z}.",
    "words": lambda x, op, y, z: f"{x} {WORDS[op]} {y} is {z}.",
}


def render(prompt: str, answer: int, steps: list, style: str = "steps") -> Example:
    """The Example of a drawn problem, its worked steps written in `style`."""
    reasoning = " ".join(STYLES[style](*step) for step in steps)
    return Example(prompt, str(answer), with_final_answer(reasoning, answer))


GENERATORS = {
    0: _recall,
    1: _one_step,
    2: lambda rng: _two_step(rng, big=False),
    3: lambda rng: _two_step(rng, big=True),
}


# Distinct prompts a level can produce (names × items × the generator's number choices): level 0 a ∈ 1..9;
# level 1 a + b with a ∈ 5..40, b ∈ 1..20 (720 pairs) and max(a, b + 1) − b (584 pairs). Levels 2 and 3 hold
# hundreds of thousands and more: the attempt limit below covers them.
CAPACITY = {0: 100 * 9, 1: 100 * (720 + 584)}


def generate(count: int, levels, seed: int, exclude: set | None = None, keep=None, style: str = "steps") -> list[Example]:
    """`count` distinct problems drawn evenly over `levels`, skipping prompts in `exclude` or not `keep(prompt)`."""
    rng = random.Random(seed)
    levels = list(levels)
    for position, level in enumerate(levels):  # before drawing: a count past a level's size would spin for minutes
        share = len(range(position, count, len(levels)))
        if share > CAPACITY.get(level, share):
            raise AdaptersGeoError(
                f"cannot draw {count} distinct arithmetic problems at levels {levels}: level {level} has "
                f"{CAPACITY[level]} distinct problems and would need {share}",
                "lower task.train_size / task.test_size or add harder levels (level 0 has 900 problems)",
            )
    exclude = exclude or set()
    seen, examples = set(), []
    attempts = 0
    while len(examples) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise AdaptersGeoError(
                f"cannot draw {count} distinct arithmetic problems at levels {levels}",
                "lower task.train_size / task.test_size or add harder levels (level 0 has 900 problems)",
            )
        prompt, answer, steps = GENERATORS[levels[len(examples) % len(levels)]](rng)
        if prompt in seen or prompt in exclude or (keep is not None and not keep(prompt)):
            continue
        seen.add(prompt)
        examples.append(render(prompt, answer, steps, style))
    return examples


def splits(train_size: int, test_size: int, levels=(2,), seed: int = 0, keep=None,
           style: str = "steps") -> tuple[list[Example], list[Example]]:
    """(train, test): disjoint; the test split depends only on (test_size, levels, seed); `keep` filters train prompts."""
    test = generate(test_size, levels, seed=10_000 + seed, style=style)
    train = generate(train_size, levels, seed=seed, exclude={e.prompt for e in test}, keep=keep, style=style)
    return train, test
