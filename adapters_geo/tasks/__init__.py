"""Tasks: data with a verifiable answer, and its reward.

`load_task(TaskConfig)` returns a Task with disjoint train and test lists of Examples and
its score (`Task.score(completion, example)`). `arithmetic` is the embedded default (generated,
seeded); `file` reads local JSON/JSONL/parquet or an HF dataset; `reasoning_gym` draws one of that
library's procedural datasets and scores with its own scorer (tasks/reasoning_gym.py).
"""

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from adapters_geo.config.schema import Section, rule
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.tasks import arithmetic, reasoning_gym
from adapters_geo.tasks.example import Example
from adapters_geo.tasks.files import load_records, to_example
from adapters_geo.tasks.rewards import REWARDS


class TaskConfig(Section):
    """Which data to train and evaluate on."""

    name: Literal["arithmetic", "file", "reasoning_gym"] = "arithmetic"
    levels: list[Literal[tuple(arithmetic.GENERATORS)]] = Field(default_factory=lambda: [2], min_length=1)  # arithmetic difficulty
    solution_style: Literal[tuple(arithmetic.STYLES)] = "steps"  # arithmetic: how the worked steps are written
    train_size: int = Field(2000, ge=1)  # examples in the training pool (arithmetic, reasoning_gym)
    test_size: int = Field(48, ge=1)  # held-out examples
    seed: int = Field(0, ge=0, lt=2**31)
    dataset: str | None = None  # reasoning_gym: the library's dataset name (chain_sum, basic_arithmetic, ...)
    config: dict = Field(default_factory=dict)  # reasoning_gym: that dataset's config fields (not seed / size)
    pool: int = Field(0, ge=0)  # training prompts come from pool `pool` of `pools`: disjoint pools by a hash of the prompt
    pools: int = Field(1, ge=1)  # (the anchor, the teacher and the continuations train on disjoint prompts); test shared
    path: str | None = None  # file: .json/.jsonl path or HF dataset id
    subset: str | None = None  # file: HF dataset config name
    train_split: str = "train"
    test_split: str | None = None  # file: a test split; None holds out test_size training rows
    prompt_field: str = "question"
    answer_field: str = "answer"
    solution_field: str | None = None
    reward: Literal[tuple(REWARDS)] = "exact"  # exact | exact_format (arithmetic, file)

    @model_validator(mode="after")
    def _reasoning_gym_dataset(self):
        if self.name != "reasoning_gym":
            for key in ("dataset", "config"):
                if getattr(self, key):
                    raise rule(key, f"{{key}} applies to task 'reasoning_gym', not '{self.name}'",
                               "remove {key}, or set task.name to reasoning_gym")
            return self
        if not self.dataset:
            raise rule("dataset", "{key} is missing: task 'reasoning_gym' draws one of that library's datasets",
                       "set {key} to its name, e.g. chain_sum or basic_arithmetic")
        for key, default in (("levels", [2]), ("solution_style", "steps"), ("reward", "exact"), ("path", None)):
            if getattr(self, key) != default:
                raise rule(key, "{key} does not apply to task 'reasoning_gym' (its prompts, answers and scorer are the library's)",
                           "remove {key}; set the dataset's own options under task.config")
        try:
            reasoning_gym.library()
            reasoning_gym.check(self.dataset, self.config)
        except AdaptersGeoError as exc:  # one line through the config's own error path
            raise rule("dataset", exc.problem, exc.fix) from None
        return self

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
    reward: object  # (completion, answer) -> float: arithmetic and file tasks
    config: TaskConfig
    scorer: object = None  # (completion, example) -> float, where the answer alone does not score (reasoning_gym)

    def score(self, completion: str, example) -> float:
        """The reward of `completion` as an answer to `example`."""
        return self.scorer(completion, example) if self.scorer is not None else self.reward(completion, example.answer)


def label(task: dict) -> str:
    """What a run trained on, for a report (a saved config's task section): arithmetic, reasoning_gym:chain_sum, file:NAME."""
    name = task.get("name", "arithmetic")
    if name == "reasoning_gym":
        return f"reasoning_gym:{task.get('dataset')}"
    return f"file:{str(task.get('path')).rstrip('/').rsplit('/', 1)[-1]}" if name == "file" else name


def in_pool(prompt: str, pool: int, pools: int) -> bool:
    """Whether `prompt` belongs to training pool `pool` of `pools` (a fixed hash of its text)."""
    return pools <= 1 or int(hashlib.sha1(prompt.encode()).hexdigest()[:12], 16) % pools == pool


def load_task(config: TaskConfig) -> Task:
    """Build the task's train / test examples and its reward."""
    keep = (lambda prompt: in_pool(prompt, config.pool, config.pools)) if config.pools > 1 else None
    if config.name == "arithmetic":
        train, test = arithmetic.splits(config.train_size, config.test_size, config.levels, config.seed, keep,
                                         config.solution_style)
    elif config.name == "reasoning_gym":
        train, test, scorer = reasoning_gym.splits(config.dataset, config.config, config.train_size, config.test_size,
                                                   config.seed, keep)
        return Task(train, test, None, config, scorer)
    else:
        train, test = _file_splits(config)
    return Task(train, test, REWARDS[config.reward], config)


def _file_splits(config: TaskConfig) -> tuple[list[Example], list[Example]]:
    def convert(rows):
        try:
            return [to_example(r, config.prompt_field, config.answer_field, config.solution_field) for r in rows]
        except AdaptersGeoError as exc:  # say which data the record came from
            raise AdaptersGeoError(f"task file {config.path}: {exc.problem}", exc.fix) from None

    rows = convert(load_records(config.path, config.train_split, config.subset))
    if config.test_split:
        test = convert(load_records(config.path, config.test_split, config.subset))[: config.test_size]
    else:
        random.Random(config.seed).shuffle(rows)
        test, rows = rows[: config.test_size], rows[config.test_size:]
    held = {e.prompt for e in test}
    return [e for e in rows if e.prompt not in held and in_pool(e.prompt, config.pool, config.pools)], test
