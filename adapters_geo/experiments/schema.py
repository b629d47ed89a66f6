"""What an experiment file may hold, validated by pydantic like a run file (config/schema.py).

`kind: train` (the default): the sections of a run file (RunConfig) plus `description`.
`kind: lock`: the subspace-locking test of lock.py on `source: experiment:NAME`, for one or more
training `seeds` of the source.
`kind: claims`: the seed paper's claims 1 and 2 (claims.py) over `sources: [experiment:NAME, ...]`, one training
experiment per method from one start, each for the same training `seeds`.
`experiment:NAME` strings stand for other experiments' runs (resolve.py); here they are text.
"""

from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from adapters_geo.config.run import RunConfig
from adapters_geo.config.schema import Section, rule
from adapters_geo.locking.stats import DEGRADES, PRESERVES

META_KEYS = ("kind", "description")  # the keys of a train experiment that are not RunConfig's
LOCK_BASES = ("unconstrained", "frozen", "early", "random", "final", "principal", "cross")  # docs/geometry.md's arms
DEFAULT_LOCK_ARMS = LOCK_BASES[:5]  # principal and cross when named
REF_PATTERN = r"^experiment:[A-Za-z0-9_-][A-Za-z0-9_.-]*$"


class TrainExperiment(RunConfig):
    kind: Literal["train"] = "train"
    description: str | None = None  # one line for `make experiment` (else the file's second comment line)


class LockExperiment(Section):
    kind: Literal["lock"]
    source: str = Field(pattern=REF_PATTERN, description="experiment:NAME, a training experiment that saves its adapter at t0")
    K: int = Field(16, ge=1)  # basis size per matrix (≤ min(m, n), checked once the base is loaded)
    # the arms (docs/geometry.md); unconstrained and frozen are always run: retention is measured against them
    bases: list[Literal[LOCK_BASES]] = Field(default_factory=lambda: list(DEFAULT_LOCK_ARMS), min_length=1)
    # the arm `cross` locks into another run's early subspace: experiment:NAME (e.g. sft_dense for an OPD source)
    cross: str | None = Field(None, pattern=REF_PATTERN)
    seed: int = Field(0, ge=0, lt=2**31)  # seed of the random basis
    mode: Literal["projected", "gradient", "adapter"] = "projected"  # how the locked arms train (locking/continuation.py)
    # the unconstrained arm: the source run itself from t0 on (`source`: it is the same computation, resumed from its t0
    # state; tests/test_locking.py checks the re-run equals it to every digit), or re-run from the t0 state (`rerun`)
    unconstrained: Literal["source", "rerun"] = "source"
    # training seeds: one source run and one set of arms per seed (teacher and anchor shared); default the source's
    seeds: list[int] | None = Field(None, min_length=1)
    # the verdict's margins on the early arm's retention R (stats.margin_reading): "preserves" when the interval says
    # R ≥ preserves, "degrades" when it says R ≤ degrades; declared here, before the numbers exist
    preserves: float = Field(PRESERVES, gt=0, le=1)
    degrades: float = Field(DEGRADES, ge=0, lt=1)
    description: str | None = None

    @model_validator(mode="after")
    def _cross_named(self):
        if "cross" in self.bases and self.cross is None:
            raise rule("cross", "bases hold cross but {key} names no run whose early subspace it locks into",
                       "set {key}: experiment:NAME (another method's run with a t0 state), or drop cross from bases")
        if self.cross is not None and "cross" not in self.bases:  # it would train that run for nothing
            raise rule("cross", f"{{key}} = {self.cross} is set but bases hold no cross arm",
                       "add cross to bases, or drop {key}")
        return self

    @model_validator(mode="after")
    def _margins_ordered(self):
        if self.degrades >= self.preserves:
            raise rule("degrades", f"{{key}} = {self.degrades} is not below preserves = {self.preserves}",
                       f"set {{key}} below {self.preserves} (the defaults are 0.8 and 0.9)")
        return self


class ClaimsExperiment(Section):
    kind: Literal["claims"]
    # the training experiments compared (one per method, from one start; each must track its t0)
    sources: list[Annotated[str, Field(pattern=REF_PATTERN)]] = Field(min_length=2)
    # training seeds of every source: SOURCE for its own seed, SOURCE-seedS for the others (a lock on it reuses them)
    seeds: list[int] | None = Field(None, min_length=1)
    K: int = Field(16, ge=1)  # Sim_K's subspace size
    layers: int = Field(2, ge=1)  # the null test's matrices: every matrix of this many evenly spaced layers
    draws: int = Field(200, ge=1)  # shuffle-null block orders per run (cheap: distinct sets are decomposed once)
    walks: int = Field(20, ge=1)  # random-walk draws per run (each decomposes every matrix of the subset)
    description: str | None = None


def _kind(value):
    return value.get("kind", "train") if isinstance(value, dict) else None


Experiment = Annotated[Union[Annotated[TrainExperiment, Tag("train")], Annotated[LockExperiment, Tag("lock")],
                             Annotated[ClaimsExperiment, Tag("claims")]], Discriminator(_kind)]
