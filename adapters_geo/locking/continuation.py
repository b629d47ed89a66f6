"""Continuing a run from its exact t0 state: the arms of the subspace-locking test (docs/geometry.md).

A source run that kept its full training state at t0 (`train.save_t0_state`: adapter, optimizer
and scheduler state, method state, step) is continued from that state over the same steps and
batches by every arm; they differ in one thing only, how the update may move:
- `unconstrained`: the source's own adapter, re-run from t0 (treated exactly like the others);
- `frozen`: no update after t0 (the floor; evaluation only);
- `early` / `random` / `final`: inside span(V), V the top-K right singular vectors of the source's
  own update at t0, ΔW_t0 − ΔW_init (`early`), a random orthonormal basis (`random`), or the top-K
  of the final update ΔW_T − ΔW_init (`final`, an upper bound).
The locked arms' `mode` (adapters/locked.py, dense.project_gradients):
- `projected` (default, fair): ΔW = ΔW_t0 + B Vᵀ, the optimizer in ΔW's full coordinates with its
  state carried over from t0, each step projected onto span(V);
- `gradient` (the published recipe): g ← g V Vᵀ, then the optimizer; ΔW leaves span(V);
- `adapter`: plain optimizer on B, fresh state (≈ √(K/n) of the first-order progress under Adam).
A LoRA source's locked arms continue the same LoRA with its factors' movement confined so that the merged increment
stays in span(V) (adapters/lora_locked.py; modes projected and gradient).
An arm is evaluated at its end only (its start, t0, is the frozen arm's evaluation); the source's
curve is the unconstrained arm's. The experiment kind that runs the arms is experiments/lock.py.
"""

import functools
from pathlib import Path
from typing import get_args

import torch

from adapters_geo.adapters import LockedConfig, attach_adapter, random_orthonormal_basis, top_singular_basis
from adapters_geo.adapters.dense import project_gradients
from adapters_geo.adapters.io import META_FILE, load_adapter, load_saved_deltas
from adapters_geo.adapters.peft_files import CONFIG_FILE, lora_deltas
from adapters_geo.config.run import Basis, LockedSpec, RunConfig, saved_run_config
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.storage.runfolder import RunFolder

BASES = get_args(Basis)  # early, random, final, principal, cross
ARMS = ("unconstrained", "frozen") + BASES
DEFAULT_ARMS = ("unconstrained", "frozen", "early", "random", "final")  # what a lock experiment runs unless it names arms
MODES = get_args(LockedSpec.model_fields["mode"].annotation)  # projected, gradient, adapter


def _deltas(folder) -> dict:
    """{name: ΔW} of a saved adapter: ours (adapter.json), or a plain peft LoRA folder (integrations.callback)."""
    if not (Path(folder) / META_FILE).is_file() and (Path(folder) / CONFIG_FILE).is_file():
        return dict(lora_deltas(folder)[0])
    return dict(load_saved_deltas(folder)[1])


def t0_adapter(source) -> str:
    """The source's adapter at t0 (inside its t0 state); one line when the source kept none."""
    folder = RunFolder(source)
    if "t0_state" in ((folder.done() or {}).get("dropped") or []):
        from adapters_geo.storage.disk import dropped_line

        raise dropped_line(folder.path, "t0 state (t0_state/), which a locking test continues from")
    if not (folder.t0_state / "adapter").is_dir():
        raise AdaptersGeoError(
            f"run {folder.path} kept no training state at t0 ({folder.t0_state} is missing), which a locking test continues from",
            "train the source with train.save_t0_state: true (re-run its experiment with FORCE=1)",
        )
    return str(folder.t0_state / "adapter")


def start_deltas(source) -> tuple[dict, dict]:
    """(ΔW_t0, ΔW_init) of the source: its update at t0 and the adapter it started from (zeros if none)."""
    folder = RunFolder(source)
    at_t0 = _deltas(t0_adapter(folder))
    init = (folder.config_dict() or {}).get("init")
    start = _deltas(init) if init else {n: torch.zeros_like(d) for n, d in at_t0.items()}
    return at_t0, start


def start_weights(source) -> dict:
    """{matrix: W_start} of the source run: its base's weights (dequantized for a quantized base) plus the ΔW of the
    adapter it started from, the W0 its geometry is measured against."""
    from adapters_geo.models import base_weights, load_base

    config = RunFolder(source).config()
    _, start = start_deltas(source)
    w0 = base_weights(load_base(config.model, config.quant).model)
    return {n: w0[n].float() + start[n] for n in start}


@functools.lru_cache(maxsize=8)
def basis(source: str, name: str, k: int, seed: int = 0, other: str | None = None) -> dict:
    """{matrix: V (n, K)} of a locked arm (docs/geometry.md's bases), for the source run folder `source`:

    early: the top-K right singular vectors of the source's update at t0 (ΔW_t0 − ΔW_init);
    final: those of its increment after t0 (ΔW_T − ΔW_t0, the unconstrained continuation's own movement: an upper bound);
    principal: those of the weights it started from (W_start, start_weights); random: an orthonormal draw (`seed`);
    cross: the early basis of the other run folder `other` (e.g. SFT's early subspace for an OPD source).
    """
    if name not in BASES:
        raise AdaptersGeoError(f"unknown locking basis '{name}'", f"use one of {', '.join(BASES)}")
    if name == "cross":
        if other is None:
            raise AdaptersGeoError("the cross basis needs another run's early update",
                                   "name it in the lock experiment: cross: experiment:NAME")
        return basis(str(RunFolder(other).path), "early", k)
    at_t0, start = start_deltas(source)
    if name == "early":
        return top_singular_basis({n: at_t0[n] - start[n] for n in at_t0}, k)
    if name == "final":
        final = _deltas(RunFolder(source).adapter)
        return top_singular_basis({n: final[n] - at_t0[n] for n in at_t0}, k)
    if name == "principal":
        return top_singular_basis(start_weights(source), k)
    return random_orthonormal_basis({n: tuple(d.shape) for n, d in at_t0.items()}, k, seed=seed)


def source_kind(source) -> str:
    """The adapter kind of the source run (dense, lora, ...), from its saved config."""
    return (RunFolder(source).config_dict() or {}).get("adapter", {}).get("kind", "dense")


def locked_model(base_model, spec: LockedSpec):
    """The model of a locked arm: the frozen-basis adapter (projected / adapter mode), or the source's
    dense adapter at t0 with projected gradients (gradient mode)."""
    source = str(RunFolder(spec.source).path)
    right = basis(source, spec.basis, spec.K, spec.seed, spec.basis_source)
    ours = (Path(t0_adapter(source)) / "adapter.json").is_file()  # a plain peft folder (a TRL run) is locked as dense
    if source_kind(source) == "lora" and ours:  # the same LoRA, its factors' movement confined (adapters/lora_locked.py)
        from adapters_geo.adapters.lora_locked import confine

        model = load_adapter(base_model, t0_adapter(source))
        confine(model, right, spec.mode)
        return model
    if spec.mode == "gradient":
        model = load_adapter(base_model, t0_adapter(source))
        project_gradients(model, right)
        return model
    extra = {"source": source, "basis": spec.basis, "K": spec.K, "mode": spec.mode}
    at_t0 = t0_adapter(source)
    referable = (Path(at_t0) / "adapter.json").is_file()  # our adapter folders carry a hash to refer to; plain peft ones not
    return attach_adapter(base_model, LockedConfig(right=dict(right), offset=_deltas(at_t0), extra=extra, mode=spec.mode,
                                                   offset_from=at_t0 if referable else None))


def arm_config(source, arm: str, k: int = 16, mode: str = "projected", seed: int = 0, other: str | None = None) -> RunConfig:
    """The RunConfig of one arm: the source's, continuing from its t0 state to its last step (`other`: the run whose
    early update spans the cross arm's basis)."""
    if arm not in ARMS:
        raise AdaptersGeoError(f"unknown locking arm '{arm}'", f"use some of {', '.join(ARMS)}")
    if mode not in MODES:
        raise AdaptersGeoError(f"unknown locking mode '{mode}'", f"use one of {', '.join(MODES)}")
    folder = RunFolder(source)
    data = folder.config_dict()
    t0 = folder.t0
    t0_adapter(folder)  # refuses a source without a t0 state, before anything loads
    data["init"] = None
    config = saved_run_config(data, str(folder.config_file))
    steps = t0 if arm == "frozen" else config.train.steps
    train = config.train.model_copy(update=dict(steps=steps, first_step=t0, t0=t0, start_state=str(folder.t0_state),
                                                save_t0_state=False, save_adapter_at=None, track_steps=[], eval_at_start=False,
                                                eval_every=0))  # an arm is judged at its end only: no curve points
    if arm in BASES:
        if mode == "adapter" and source_kind(folder.path) == "lora":
            raise AdaptersGeoError(f"locking mode 'adapter' re-parametrises a dense update; {folder.path} trained a LoRA",
                                   "use mode projected or gradient for a LoRA source")
        if arm == "cross":
            basis(str(folder.path), "cross", k, other=other)  # refuses a missing other run before anything trains
        adapter = LockedSpec(source=str(folder.path), basis=arm, K=k, t0=t0, seed=seed, mode=mode,
                             basis_source=str(RunFolder(other).path) if arm == "cross" else None)
        return config.model_copy(update={"adapter": adapter, "train": train})
    return config.model_copy(update={"init": t0_adapter(folder), "train": train})


def arm_of(config: RunConfig) -> str | None:
    """Which arm a config (arm_config's) continues as; None for a run that is not a continuation."""
    train = config.train
    if not train.start_state:
        return None
    if isinstance(config.adapter, LockedSpec):
        return config.adapter.basis
    return "frozen" if train.steps == train.first_step else "unconstrained"


def increment(source, arm_adapter, right: dict) -> dict:
    """How far an arm moved after t0: ‖ΔW_T − ΔW_t0‖²_F summed over matrices, the part inside span(V),
    its share, and the share a random K-dimensional subspace would hold (K/n, parameter-weighted)."""
    at_t0 = _deltas(t0_adapter(source))
    total = inside = baseline = 0.0
    for name, final in _deltas(arm_adapter).items():
        moved = (final - at_t0[name]).double()
        v = right[name].double()
        energy = moved.square().sum().item()
        total += energy
        inside += (moved @ v).square().sum().item()
        baseline += energy * v.shape[1] / v.shape[0]
    return {"increment_sq": total, "inside_sq": inside, "inside_share": inside / total if total else float("nan"),
            "random_share": baseline / total if total else float("nan")}
