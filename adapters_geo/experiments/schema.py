"""What an experiment file may hold, validated by pydantic like a run file (schema.py).

`kind: train` (the default): the sections of a run file (RunConfig) plus `description`.
`kind: lock`: the subspace-locking test of lock.py on `source: experiment:NAME`, for one or more
training `seeds` of the source.
`experiment:NAME` strings stand for other experiments' runs (resolve.py); here they are text.
"""

from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag

from adapters_geo.config import RunConfig
from adapters_geo.schema import Section

META_KEYS = ("kind", "description")  # the keys of a train experiment that are not RunConfig's
LOCK_BASES = ("unconstrained", "frozen", "early", "random", "final")  # GEOMETRY.md's arms


class TrainExperiment(RunConfig):
    kind: Literal["train"] = "train"
    description: str | None = None  # one line for `make experiment` (else the file's second comment line)


class LockExperiment(Section):
    kind: Literal["lock"]
    source: str = Field(pattern=r"^experiment:[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
                        description="experiment:NAME, a training experiment that saves its adapter at t0")
    K: int = Field(16, ge=1)  # basis size per matrix (≤ min(m, n), checked once the base is loaded)
    # the arms (GEOMETRY.md); unconstrained and frozen are always run: retention is measured against them
    bases: list[Literal[LOCK_BASES]] = Field(default_factory=lambda: list(LOCK_BASES), min_length=1)
    seed: int = Field(0, ge=0, lt=2**31)  # seed of the random basis
    mode: Literal["projected", "gradient", "adapter"] = "projected"  # how the locked arms train (continuation.py)
    # the unconstrained arm: the source run itself from t0 on (`source`: it is the same computation, resumed from its t0
    # state; tests/test_locking.py checks the re-run equals it to every digit), or re-run from the t0 state (`rerun`)
    unconstrained: Literal["source", "rerun"] = "source"
    # training seeds: one source run and one set of arms per seed (teacher and anchor shared); default the source's
    seeds: list[int] | None = Field(None, min_length=1)
    description: str | None = None


def _kind(value):
    return value.get("kind", "train") if isinstance(value, dict) else None


Experiment = Annotated[Union[Annotated[TrainExperiment, Tag("train")], Annotated[LockExperiment, Tag("lock")]],
                       Discriminator(_kind)]
