"""Tasks: data with a verifiable answer, and its reward.

`load_task(TaskConfig)` returns a Task with disjoint train and test lists of Examples and
its reward function. `arithmetic` is the embedded default (generated, seeded); `file`
reads local JSON/JSONL or an HF dataset.
"""

import hashlib
import random
from dataclasses import dataclass, field

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.tasks import arithmetic
from adapters_geo.tasks.example import Example
from adapters_geo.tasks.files import load_records, to_example
from adapters_geo.tasks.rewards import REWARDS


@dataclass
class TaskConfig:
    """Which data to train and evaluate on."""

    name: str = "arithmetic"  # arithmetic | file
    levels: list = field(default_factory=lambda: [2])  # arithmetic difficulty levels (0-3)
    train_size: int = 2000  # examples in the training pool (arithmetic)
    test_size: int = 48  # held-out examples
    seed: int = 0
    pool: int = 0  # training prompts come from pool `pool` of `pools`: disjoint pools by a hash of the prompt
    pools: int = 1  # (the anchor, the teacher and the continuations train on disjoint prompts); the test split is shared
    path: str | None = None  # file: .json/.jsonl path or HF dataset id
    subset: str | None = None  # file: HF dataset config name
    train_split: str = "train"
    test_split: str | None = None  # file: a test split; None holds out test_size training rows
    prompt_field: str = "question"
    answer_field: str = "answer"
    solution_field: str | None = None
    reward: str = "exact"  # exact | exact_format
    system_prompt: str | None = None


@dataclass
class Task:
    train: list
    test: list
    reward: object  # (completion, answer) -> float
    config: TaskConfig


def in_pool(prompt: str, pool: int, pools: int) -> bool:
    """Whether `prompt` belongs to training pool `pool` of `pools` (a fixed hash of its text)."""
    return pools <= 1 or int(hashlib.sha1(prompt.encode()).hexdigest()[:12], 16) % pools == pool


def load_task(config: TaskConfig) -> Task:
    """Build the task's train / test examples and its reward."""
    if config.reward not in REWARDS:
        raise AdaptersGeoError(f"unknown reward '{config.reward}'", f"use one of {', '.join(REWARDS)}")
    if config.name == "arithmetic":
        bad = [level for level in config.levels if level not in arithmetic.GENERATORS]
        if bad:
            raise AdaptersGeoError(f"unknown arithmetic level {bad[0]}", "use levels among 0, 1, 2, 3")
        keep = (lambda prompt: in_pool(prompt, config.pool, config.pools)) if config.pools > 1 else None
        train, test = arithmetic.splits(config.train_size, config.test_size, config.levels, config.seed, keep)
    elif config.name == "file":
        if not config.path:
            raise AdaptersGeoError("task 'file' needs a path", "set task.path to a .jsonl file or a dataset id")
        train, test = _file_splits(config)
    else:
        raise AdaptersGeoError(f"unknown task '{config.name}'", "use arithmetic or file")
    return Task(train, test, REWARDS[config.reward], config)


def _file_splits(config: TaskConfig) -> tuple[list[Example], list[Example]]:
    convert = lambda rows: [to_example(r, config.prompt_field, config.answer_field, config.solution_field) for r in rows]
    rows = convert(load_records(config.path, config.train_split, config.subset))
    if config.test_split:
        test = convert(load_records(config.path, config.test_split, config.subset))[: config.test_size]
    else:
        random.Random(config.seed).shuffle(rows)
        test, rows = rows[: config.test_size], rows[config.test_size:]
    held = {e.prompt for e in test}
    return [e for e in rows if e.prompt not in held and in_pool(e.prompt, config.pool, config.pools)], test
