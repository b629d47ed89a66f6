"""Continuing a run from its t0 inside a subspace: the locked adapter of the locking test (GEOMETRY.md).

From an unconstrained run that saved its exact adapter at t0 (`train.save_adapter_at`):
- ΔW_t0 is the full update at t0 (including any init the run started from), the frozen offset;
- V is the top-K right singular vectors of the run's own cumulative update ΔW_t0 − ΔW_init
  (`early`), a random orthonormal basis (`random`) or the top-K of the final update
  ΔW_T − ΔW_init (`final`, an upper bound);
- the continuation trains only B in ΔW = ΔW_t0 + B Vᵀ from step t0 to T, with the run's method,
  data order and optimizer settings, and is compared with the unconstrained run over the same
  window. With Adam (not plain SGD) this differs from projected-gradient training only in the
  optimizer's coordinates.
The experiment kind that runs these continuations is experiments/lock.py.
"""

from typing import get_args

import torch

from adapters_geo.adapters import LockedConfig, random_orthonormal_basis, top_singular_basis
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.config import Basis, LockedSpec, RunConfig, saved_run_config
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.runfolder import RunFolder

BASES = get_args(Basis)  # early, random, final


def _deltas(folder) -> dict:
    return dict(load_saved_deltas(folder)[1])


def source_t0(run_dir) -> int:
    """The step whose exact adapter the source run saved (the locking t0)."""
    folder = RunFolder(run_dir)
    t0 = folder.t0
    if t0 is None or not folder.adapter_at(t0).is_dir():
        raise AdaptersGeoError(
            f"run {folder.path} saved no adapter at an early step",
            "train it with train.save_adapter_at: [t0] (about 20% of the steps)",
        )
    return t0


def locked_config(run_dir, basis: str = "early", k: int = 16, seed: int = 0) -> tuple[LockedConfig, int]:
    """(LockedConfig for the continuation, t0) from a finished unconstrained run."""
    if basis not in BASES:
        raise AdaptersGeoError(f"unknown locking basis '{basis}'", f"use one of {', '.join(BASES)}")
    folder = RunFolder(run_dir)
    t0 = source_t0(folder)
    at_t0 = _deltas(folder.adapter_at(t0))
    source = folder.config_dict()
    init = _deltas(source["init"]) if source.get("init") else {n: torch.zeros_like(d) for n, d in at_t0.items()}
    if basis == "early":
        right = top_singular_basis({n: at_t0[n] - init[n] for n in at_t0}, k)
    elif basis == "final":
        final = _deltas(folder.adapter)
        right = top_singular_basis({n: final[n] - init[n] for n in at_t0}, k)
    else:
        right = random_orthonormal_basis({n: tuple(d.shape) for n, d in at_t0.items()}, k, seed=seed)
    extra = {"source": str(run_dir), "basis": basis, "K": k, "t0": t0}
    return LockedConfig(right=right, offset=at_t0, extra=extra), t0


def continuation_config(run_dir, basis: str = "early", k: int = 16, seed: int = 0) -> RunConfig:
    """The source run's config, with the locked adapter and first_step = t0."""
    folder = RunFolder(run_dir)
    source = folder.config_dict()
    source.pop("init", None)
    source["adapter"] = {"kind": "dense"}  # replaced below by the locked adapter
    config = saved_run_config(source, str(folder.config_file))
    adapter, t0 = locked_config(folder.path, basis, k, seed)
    train = config.train.model_copy(update={"first_step": t0, "save_adapter_at": None})
    return config.model_copy(update={"adapter": adapter, "train": train})


def build_locked(spec: LockedSpec) -> LockedConfig:
    """The LockedConfig a LockedSpec names (a continuation's config.json read back)."""
    return locked_config(spec.source, spec.basis, spec.K, spec.seed)[0]
