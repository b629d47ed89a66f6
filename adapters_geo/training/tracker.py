"""The tracker: what a run records about its update at the tracked steps, apart from training.

At each tracked step it snapshots ΔW_t − ΔW_start into the trajectory (trajectory.py) and logs
the online geometry scalars (geometry/online.py) under "geometry/<group>", ΔW singular-value
histograms per module type, and its own cost (group "tracking": snapshot_seconds,
geometry_seconds, along_seconds, format):
- on every matrix: bf16 sparsity, relative norm, stable and effective rank, and Sim_K of ΔW_t's
  top-16 right subspace to the first tracked step's (its vectors come with the snapshot's SVD);
- on every matrix of about 4 evenly spaced layers (aggregate.layer_subset): rotation of W_start's
  top-k right subspace and principal energy, which need W_start's SVD (once per run, held) and an
  SVD of W_start + ΔW_t per matrix.
ΔW_start is the adapter's update when the run started (non-zero for a run from an init adapter);
it (or, for a run from a saved adapter, that adapter's folder) and the first tracked step's subspaces
are part of the tracker's state, so a resumed run measures from the same start.
"""

import hashlib
import time
from pathlib import Path

import torch

from adapters_geo.adapters import merged_deltas
from adapters_geo.adapters.io import META_FILE, load_saved_deltas
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.geometry.aggregate import ALONG_LAYERS, layer_subset, module_type
from adapters_geo.geometry.online import along_scalars, online_scalars, top_rank
from adapters_geo.geometry.reference import reference_svd
from adapters_geo.geometry.rotation import default_k
from adapters_geo.geometry.trajectory import K_DEFAULT
from adapters_geo.models.weights import LazyBaseWeights
from adapters_geo.trajectory import TrajectoryWriter


class Tracker:
    """Trajectory snapshots and online geometry of one run's adapter.

    `along_layers`: how many evenly spaced layers get rotation and principal energy (0: none);
    `references`, `start`: snapshots kept as references to adapters the run saves anyway (trajectory.py).
    """

    def __init__(self, model, folder: Path, total_steps: int, steps=None, rank: int = 32, t0: int | None = None,
                 along_layers: int = ALONG_LAYERS, references: dict | None = None, start: str | None = None):
        self.model = model
        initial = merged_deltas(model)
        self.names = list(initial)
        self.start = {n: d for n, d in initial.items() if d.abs().max() > 0}  # zeros are not held
        self.writer = TrajectoryWriter(folder, total_steps, steps, rank, t0, references, start)
        self.rank = rank
        self.along = layer_subset(self.names, along_layers) if along_layers else []
        self.refs = {}  # {name: W_start's top-k SVD} of the `along` matrices, from the first tracked step on
        self.first_right = None  # {name: (n, ≤ K) top right singular vectors} of the first tracked update
        self.start_adapter = start  # the saved adapter ΔW_start was read from (None: zero, or not saved)

    def state_dict(self) -> dict:
        # ΔW_start of a run from a saved adapter is that adapter's: checkpoints (the t0 state a locking
        # test keeps too) name it instead of holding another fp32 copy (425 MB for SmolLM2-135M, dense)
        meta = Path(self.start_adapter) / META_FILE if self.start_adapter is not None else None
        saved = meta is not None and meta.is_file() and bool(self.start)  # ours: adapter.json hashes every file
        return {"start_deltas": None if saved else (self.start or None),  # None: a zero start, or the adapter's
                "start_adapter": str(self.start_adapter) if saved else None,
                "start_adapter_sha256": hashlib.sha256(meta.read_bytes()).hexdigest() if saved else None,
                "first_right": self.first_right}

    def load_state_dict(self, state: dict) -> None:
        if state.get("start_adapter") is not None:
            meta = Path(state["start_adapter"]) / META_FILE
            if not meta.is_file() or hashlib.sha256(meta.read_bytes()).hexdigest() != state.get("start_adapter_sha256"):
                raise AdaptersGeoError(
                    f"the adapter this run started from ({state['start_adapter']}) changed or went since its checkpoint",
                    "train the run afresh into a new --out (a named experiment: FORCE=1)")
            if not self.start:  # built before the resume, the model still held that adapter: self.start is it
                device = next(self.model.parameters()).device
                self.start = {n: d.to(device) for n, d in load_saved_deltas(state["start_adapter"])[1] if d.abs().max() > 0}
        elif state.get("start_deltas") is not None:
            self.start = state["start_deltas"]
        if state.get("first_right") is not None:
            self.first_right = state["first_right"]

    def on_step(self, step: int, log) -> None:
        """At a tracked step: snapshot ΔW_t, log online scalars, histograms and the cost."""
        if not self.writer.due(step):
            return
        started = time.perf_counter()
        relative = {n: d - self.start[n] if n in self.start else d for n, d in merged_deltas(self.model).items()}
        spectra, right = self.writer.save(step, relative, K_DEFAULT)
        right = {n: v[:, : top_rank(spectra[n])].float() for n, v in right.items() if top_rank(spectra[n])}
        self.first_right = right if self.first_right is None else self.first_right
        snapshot_seconds = time.perf_counter() - started
        reference = LazyBaseWeights(self.model, self.names, self.start)  # W_start, one matrix at a time
        groups = online_scalars(reference, relative, spectra, right, self.first_right)
        geometry_seconds = time.perf_counter() - started - snapshot_seconds
        along = along_scalars(reference, relative, self.reference_svds(reference))
        along_seconds = time.perf_counter() - started - snapshot_seconds - geometry_seconds
        for group, values in groups.items():
            log.scalars(step, {**values, **along.get(group, {})}, f"geometry/{group}")
        by_type = {}
        for name, values in spectra.items():
            by_type.setdefault(module_type(name), []).append(values[: self.rank].float())
        for kind, values in by_type.items():
            log.histogram(step, f"delta_singular_values/{kind}", torch.cat(values))
        log.scalars(step, {"snapshot_seconds": snapshot_seconds, "geometry_seconds": geometry_seconds,
                           "along_seconds": along_seconds, "format": self.writer.index[str(step)]["format"]}, "tracking")

    def reference_svds(self, reference) -> dict:
        """W_start's top-k SVD (k = min(m, n) // 8) of each `along` matrix, computed once per run."""
        for name in self.along:
            if name not in self.refs:
                w0 = reference[name]
                self.refs[name] = reference_svd(w0, default_k(w0.shape))
        return self.refs

    def disk_bytes(self) -> int:
        return self.writer.disk_bytes()


class NoTracking:
    """The tracker of a data-parallel run's other processes (training/parallel.py): the main one tracks."""

    start = None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def on_step(self, step: int, log) -> None:
        pass

    def disk_bytes(self) -> int:
        return 0
