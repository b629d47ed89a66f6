"""Tasks: data with a verifiable answer, and its reward.

`load_task(TaskConfig)` returns a Task with disjoint train and test lists of Examples and
its reward function. `arithmetic` is the embedded default (generated, seeded); `file`
reads local JSON/JSONL or an HF dataset.
"""

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from adapters_geo.config.schema import Section, rule
from adapters_geo.tasks import arithmetic
from adapters_geo.tasks.example import Example
from adapters_geo.tasks.files import load_records, to_example
from adapters_geo.tasks.rewards import REWARDS


class TaskConfig(Section):
    """Which data to train and evaluate on."""

    name: Literal["arithmetic", "file"] = "arithmetic"
    levels: list[Literal[tuple(arithmetic.GENERATORS)]] = Field(default_factory=lambda: [2], min_length=1)  # arithmetic difficulty
    solution_style: Literal[tuple(arithmetic.STYLES)] = "steps"  # arithmetic: how the worked steps are written
    train_size: int = Field(2000, ge=1)  # examples in the training pool (arithmetic)
    test_size: int = Field(48, ge=1)  # held-out examples
    seed: int = Field(0, ge=0, lt=2**31)
    pool: int = Field(0, ge=0)  # training prompts come from pool `pool` of `pools`: disjoint pools by a hash of the prompt
    pools: int = Field(1, ge=1)  # (the anchor, the teacher and the continuations train on disjoint prompts); test shared
    path: str | None = None  # file: .json/.jsonl path or HF dataset id
    subset: str | None = None  # file: HF dataset config name
    train_split: str = "train"
    test_split: str | None = None  # file: a test split; None holds out test_size training rows
    prompt_field: str = "question"
    answer_field: str = "answer"
    solution_field: str | None = None
    reward: Literal[tuple(REWARDS)] = "exact"  # exact | exact_format

    @model_validator(mode="after")
    def _file_has_a_path(self):
        if self.name == "file" and not self.path:
            raise rule("path", "{key} is missing: task 'file' reads its examples from a path",
                       "set {key} to a .json/.jsonl file or an HF dataset id")
        if self.name == "file" and self.solution_style != "steps":
            raise rule("solution_style", "{key} applies to the arithmetic task; a file's solutions are its own",
                       "remove {key}, or point solution_field at the solutions you want")
        return self


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
    if config.name == "arithmetic":
        keep = (lambda prompt: in_pool(prompt, config.pool, config.pools)) if config.pools > 1 else None
        train, test = arithmetic.splits(config.train_size, config.test_size, config.levels, config.seed, keep,
                                         config.solution_style)
    else:
        train, test = _file_splits(config)
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
