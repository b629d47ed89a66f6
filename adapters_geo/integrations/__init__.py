"""Using the toolkit from the HF Trainer / TRL: a callback that writes a run folder, and locked continuations.

- `AdaptersGeoCallback(out_dir, steps=None, rank=32, t0=None)` (callback.py): ΔW_t at the tracked steps of any
  transformers Trainer or TRL trainer run, in the run-folder format of `adapters-geo train`.
- `locked_for_trainer(model, run_folder, basis, K, mode)` and `projected_optimizer(trainer)` (locking.py): the
  subspace-locking test's locked adapter from a run folder's t0 state, trained by a trainer.
TRL is never imported here: it stays the optional benchmark extra; transformers' TrainerCallback suffices.
"""

from adapters_geo.integrations.callback import AdaptersGeoCallback
from adapters_geo.integrations.locking import locked_for_trainer, projected_optimizer

__all__ = ["AdaptersGeoCallback", "locked_for_trainer", "projected_optimizer"]
