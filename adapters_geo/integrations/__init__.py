"""Using the toolkit from the HF Trainer / TRL: a callback that writes a run folder.

- `AdaptersGeoCallback(out_dir, steps=None, rank=32, t0=None)` (callback.py): ΔW_t at the tracked steps of any
  transformers Trainer or TRL trainer run, in the run-folder format of `adapters-geo train`.
TRL is never imported here: it stays the optional benchmark extra; transformers' TrainerCallback suffices.
"""

from adapters_geo.integrations.callback import AdaptersGeoCallback

__all__ = ["AdaptersGeoCallback"]
