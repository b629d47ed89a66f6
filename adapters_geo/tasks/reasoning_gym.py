"""reasoning-gym's procedural tasks (PyPI `reasoning-gym`, the optional extra `.[tasks]`): the prompts, the answers
and the score all come from the library, so a verdict on them is a verdict on a task someone else designed and scores.

A dataset NAME is drawn with `reasoning_gym.create_dataset(NAME, seed=..., size=..., **config)`: the test split from
seed 10_000 + seed, the training stream from seed, skipping every test prompt and every prompt of another pool (as the
arithmetic task does), so the splits are disjoint and each depends only on its own seed, size and config.

The reward is the dataset's own `score_answer(answer, entry)` on the answer a completion states: the rest of the line
after its last 'Answer:' (the toolkit's format, which the SFT anchor learns), else the inside of its last
<answer>…</answer> (the library's format); no answer scores 0. Several datasets give partial credit in (0, 1).
SFT trains on 'Answer: <oracle answer>': reasoning-gym entries carry no worked solution.
"""

import difflib
from dataclasses import fields, is_dataclass

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.tasks.example import Example, with_final_answer
from adapters_geo.tasks.rewards import ANSWER_LINE_RE

FIX_INSTALL = "pip install -e '.[tasks]' (make setup installs it)"
RESERVED = ("seed", "size")  # set from task.seed and the split sizes


def library():
    """The reasoning_gym module, or one line naming the fix."""
    try:
        import reasoning_gym
    except ImportError:
        raise AdaptersGeoError("task 'reasoning_gym' needs the reasoning-gym package, which is not installed",
                               FIX_INSTALL) from None
    return reasoning_gym


def check(dataset: str, config: dict) -> None:
    """Raise one line when `dataset` is not a reasoning-gym dataset or `config` does not build its config class."""
    from reasoning_gym.factory import DATASETS

    if dataset not in DATASETS:
        close = difflib.get_close_matches(dataset, DATASETS, n=3, cutoff=0.5)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise AdaptersGeoError(f"reasoning-gym has no dataset '{dataset}'{hint}",
                               f"set task.dataset to one of its {len(DATASETS)} names, e.g. chain_sum, basic_arithmetic, leg_counting")
    config_cls = DATASETS[dataset][1]
    known = [f.name for f in fields(config_cls)] if is_dataclass(config_cls) else []
    for key in config:
        if key in RESERVED:
            raise AdaptersGeoError(f"task.config.{key} is set by the toolkit (task.seed and the split sizes)",
                                   f"remove task.config.{key}; use task.seed / task.train_size / task.test_size")
        if key not in known:
            raise AdaptersGeoError(f"task.config.{key} is not a field of reasoning-gym's {config_cls.__name__}",
                                   f"use its fields: {', '.join(k for k in known if k not in RESERVED)}")
    try:
        built = config_cls(**config, seed=0, size=1)
        if hasattr(built, "validate"):
            built.validate()
    except Exception as exc:  # the library's own checks: assertions or ValueErrors with its message
        raise AdaptersGeoError(f"reasoning-gym rejects task.config for '{dataset}': {type(exc).__name__} {exc}".strip(),
                               f"change task.config to values {config_cls.__name__} accepts") from None


def stated_answer(completion: str) -> str | None:
    """The answer a completion states: after its last 'Answer:' (to the line's end), else in its last <answer> tag."""
    found = ANSWER_LINE_RE.findall(completion)
    if found:
        return found[-1].strip()
    from reasoning_gym.utils import extract_answer

    return extract_answer(completion)


class Scorer:
    """score(completion, example): the dataset's score_answer against the entry the example was drawn from."""

    def __init__(self, dataset, entries: dict[str, dict]):
        self.dataset, self.entries = dataset, entries

    def __call__(self, completion: str, example: Example) -> float:
        entry = self.entries.get(example.prompt)
        if entry is None:
            raise AdaptersGeoError(f"no reasoning-gym entry for the prompt {example.prompt[:60]!r}",
                                   "score examples of this task only")
        return float(self.dataset.score_answer(stated_answer(completion), entry))


def _draw(name: str, config: dict, count: int, seed: int, exclude: set, keep) -> tuple[list[dict], object]:
    """(`count` entries of distinct prompts from the seed stream, skipping `exclude` and prompts not `keep(prompt)`,
    the dataset drawn from)."""
    rg = library()
    size = 2 * count + 64
    while True:
        dataset = rg.create_dataset(name, seed=seed, size=size, **config)
        entries, seen = [], set()
        for index in range(size):
            entry = dataset[index]
            prompt = entry["question"]
            if prompt in seen or prompt in exclude or (keep is not None and not keep(prompt)):
                continue
            seen.add(prompt)
            entries.append(entry)
            if len(entries) == count:
                return entries, dataset
        if size >= 100 * count + 1000:
            raise AdaptersGeoError(
                f"reasoning-gym dataset '{name}' gave {len(entries)} distinct prompts of the {count} asked for in "
                f"{size} draws", "lower task.train_size / task.test_size, or widen its task.config")
        size *= 4


def splits(name: str, config: dict, train_size: int, test_size: int, seed: int, keep=None):
    """(train, test, scorer): disjoint Examples, and the library's score of a completion against an example's entry."""
    library()
    check(name, config)
    test, dataset = _draw(name, config, test_size, 10_000 + seed, set(), None)
    if any("\n" in str(e["answer"]) for e in test):  # e.g. grids: 'Answer:' states one line
        raise AdaptersGeoError(f"reasoning-gym dataset '{name}' has answers of several lines, which the 'Answer:' "
                               "format cannot state", "choose a dataset whose answers fit on one line")
    train, _ = _draw(name, config, train_size, seed, {e["question"] for e in test}, keep)
    entries = {e["question"]: e for e in test + train}
    as_example = lambda e: Example(e["question"], str(e["answer"]), with_final_answer("", e["answer"]))
    return [as_example(e) for e in train], [as_example(e) for e in test], Scorer(dataset, entries)
