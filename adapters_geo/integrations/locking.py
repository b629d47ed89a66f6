"""The subspace-locking test with an HF / TRL trainer: a locked adapter from a run folder's t0 state.

`locked_for_trainer(model, run_folder, basis, K, mode)` attaches the toolkit's locked adapter to a fresh
base (continuation.locked_model): ΔW = ΔW_t0 + B Vᵀ, ΔW_t0 the run's adapter at t0 (RUN/t0_state/adapter,
written by AdaptersGeoCallback or by `adapters-geo train` with save_t0_state; ours or a plain peft folder),
V (n, K) the top-K right singular vectors of ΔW_t0 − ΔW_init (`early`), of the increment after t0
(`final`, ΔW_T − ΔW_t0), of the weights the run started from (`principal`), of another run's early update
(`cross`, with `basis_source=`), or a random orthonormal basis (`random`). How the locked run trains (`mode`, as locking/continuation.py):
- `projected` (default): ΔW itself is the parameter and each optimizer step is projected onto span(V),
  so Adam's per-step progress inside span(V) equals the unconstrained optimizer's. The trainer builds
  its optimizer lazily: call `projected_optimizer(trainer)` after building the trainer, before train().
  Unlike the toolkit's own continuations (experiments/lock.py) the optimizer state starts fresh at t0:
  an HF run's t0_state holds the adapter only, not the trainer's optimizer state.
- `adapter`: B is the parameter; any trainer optimizer works as it is, but under Adam a step makes only
  ≈ √(K/n) of the unconstrained first-order progress (docs/geometry.md): not the fair comparison.
- `gradient` (the published recipe, dense sources only): the source's dense adapter at t0 trains with
  g ← g V Vᵀ before the optimizer; ΔW then leaves span(V) under Adam.
Trainer checkpoints (save_strategy) cannot save a model carrying a locked or dense adapter (its
save_pretrained is refused, adapters/delta_linear.py): use save_strategy="no"; AdaptersGeoCallback saves it.
"""

from pathlib import Path

from adapters_geo.adapters.delta_linear import delta_layers
from adapters_geo.adapters.io import META_FILE, read_adapter_meta
from adapters_geo.adapters.locked import LockedDelta
from adapters_geo.config.run import LockedSpec, check_adapter_fits
from adapters_geo.locking.continuation import locked_model, t0_adapter
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.training.optim import project_locked
from adapters_geo.storage.runfolder import RunFolder


def locked_for_trainer(model, run_folder, basis: str = "early", K: int = 16, mode: str = "projected", seed: int = 0,
                       basis_source=None):
    """`model` (a fresh base, ideally from adapters_geo.load_base) with the locked adapter of `run_folder`'s t0
    (`basis_source`: the other run folder of a `cross` basis)."""
    folder = RunFolder(run_folder)
    if basis == "cross" and basis_source is None:
        raise AdaptersGeoError("the cross basis needs another run's early update", "pass basis_source=OTHER_RUN_FOLDER")
    spec = LockedSpec(source=str(folder.path), basis=basis, K=K, t0=folder.t0, seed=seed, mode=mode,
                      basis_source=str(RunFolder(basis_source).path) if basis_source else None)
    if mode == "gradient" and saved_kind(t0_adapter(folder)) != "dense":
        raise AdaptersGeoError(f"locking mode 'gradient' projects a dense adapter's gradients; {folder.path} has none at t0",
                               "use mode='projected' (or 'adapter')")
    check_adapter_fits(spec, model)
    return locked_model(model, spec)


def saved_kind(adapter_folder) -> str:
    """The kind of a saved adapter ('lora' for a plain peft folder, which has no adapter.json)."""
    ours = (Path(adapter_folder) / META_FILE).is_file()
    return read_adapter_meta(adapter_folder)["kind"] if ours else "lora"


def projected_optimizer(trainer):
    """Build `trainer`'s optimizer now, projecting every step onto the locked layers' span(V); returns it.

    Call after constructing the trainer and before trainer.train() (which keeps an existing optimizer).
    """
    from adapters_geo.integrations.callback import unwrap

    layers = [m.delta for m in delta_layers(unwrap(trainer.model)).values()
              if isinstance(m.delta, LockedDelta) and m.delta.mode == "projected"]
    if not layers:
        raise AdaptersGeoError("the trainer's model has no locked adapter in projected mode",
                               "attach one with locked_for_trainer(model, run_folder, mode='projected')")
    if trainer.optimizer is not None and hasattr(trainer.optimizer, "locked_layers"):
        return trainer.optimizer  # already projected
    if trainer.optimizer is None:
        trainer.create_optimizer()
    return project_locked(trainer.optimizer, layers)
