"""The tracker: what a run records about its update at the tracked steps, apart from training.

At each tracked step it snapshots ΔW_t − ΔW_start into the trajectory (trajectory.py) and logs
the cheap online geometry scalars (geometry/online.py) and ΔW singular-value histograms per
module type, plus its own cost (group "tracking": snapshot_seconds, geometry_seconds, format).
ΔW_start is the adapter's update when the run started (non-zero for a run from an init adapter);
it is part of the tracker's state, so a resumed run measures from the same start.
"""

import time
from pathlib import Path

import torch

from adapters_geo.adapters import merged_deltas
from adapters_geo.geometry.aggregate import module_type
from adapters_geo.geometry.online import online_scalars
from adapters_geo.models.weights import LazyBaseWeights
from adapters_geo.trajectory import TrajectoryWriter


class Tracker:
    """Trajectory snapshots and online geometry of one run's adapter."""

    def __init__(self, model, folder: Path, total_steps: int, steps=None, rank: int = 32, t0: int | None = None,
                 references: dict | None = None, start: str | None = None):
        """`references`, `start`: snapshots kept as references to adapters the run saves anyway (trajectory.py)."""
        self.model = model
        initial = merged_deltas(model)
        self.names = list(initial)
        self.start = {n: d for n, d in initial.items() if d.abs().max() > 0}  # zeros are not held
        self.writer = TrajectoryWriter(folder, total_steps, steps, rank, t0, references, start)
        self.rank = rank

    def state_dict(self) -> dict:
        return {"start_deltas": self.start or None}  # None: the run started from a zero adapter

    def load_state_dict(self, state: dict) -> None:
        if state.get("start_deltas") is not None:
            self.start = state["start_deltas"]

    def on_step(self, step: int, log) -> None:
        """At a tracked step: snapshot ΔW_t, log online scalars, histograms and the cost."""
        if not self.writer.due(step):
            return
        started = time.perf_counter()
        relative = {n: d - self.start[n] if n in self.start else d for n, d in merged_deltas(self.model).items()}
        spectra = self.writer.save(step, relative)
        snapshot_seconds = time.perf_counter() - started
        reference = LazyBaseWeights(self.model, self.names, self.start)  # W_start, one matrix at a time
        for group, values in online_scalars(reference, relative, spectra).items():
            log.scalars(step, values, f"geometry/{group}")
        by_type = {}
        for name, values in spectra.items():
            by_type.setdefault(module_type(name), []).append(values[: self.rank].float())
        for kind, values in by_type.items():
            log.histogram(step, f"delta_singular_values/{kind}", torch.cat(values))
        geometry_seconds = time.perf_counter() - started - snapshot_seconds
        log.scalars(step, {"snapshot_seconds": snapshot_seconds, "geometry_seconds": geometry_seconds,
                           "format": self.writer.index[str(step)]["format"]}, "tracking")

    def disk_bytes(self) -> int:
        return self.writer.disk_bytes()
