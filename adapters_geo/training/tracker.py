"""The tracker: what a run records about its update at the tracked steps, apart from training.

At each tracked step it snapshots ΔW_t − ΔW_start into the trajectory (storage/snapshots.py) and logs
the online geometry scalars (geometry/online.py) under "geometry/<group>", ΔW singular-value
histograms per module type, and its own cost (group "tracking": seconds, the training thread's wall time for the
step (in the background: copying and waiting; background_seconds, the worker's), and
snapshot_seconds, geometry_seconds, along_seconds, its parts summed over the matrices (and so over
the parallel workers of a CPU: they can add up to more than `seconds`); format):
- on every matrix: bf16 sparsity, relative norm, stable and effective rank, and Sim_K of ΔW_t's
  top-16 right subspace to the first tracked step's (its vectors come with the snapshot's SVD);
- on every matrix of about 4 evenly spaced layers (aggregate.layer_subset): rotation of W_start's
  top-k right subspace and principal energy, which need W_start's SVD (once per run, held) and an
  SVD of W_start + ΔW_t per matrix.
The matrices are streamed: one target's ΔW_t at a time on the model's device (never all of them: 6.4 GB
of fp32 at 1.7B with LoRA), everything kept moved to the CPU. With `background` (meant for a model on an
accelerator, whose CPU cores idle while it trains), the training thread only copies each ΔW_t (a LoRA's: its
factors) and what needs the device to the CPU and trains on; one worker thread decomposes and writes them
meanwhile. That holds one step's copies in CPU memory (dense ΔW: 4 bytes per targeted weight; the layer
subset's W_start) until they are measured. A LoRA's spectrum and top vectors come exactly from its factors
(linalg.factored_svd64), never from the m × n matrix.
ΔW_start is the adapter's update when the run started (non-zero for a run from an init adapter);
it (or, for a run from a saved adapter, that adapter's folder) and the first tracked step's subspaces
are part of the tracker's state, so a resumed run measures from the same start.
"""

import hashlib
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from adapters_geo.adapters import delta_readers, low_rank_factors
from adapters_geo.adapters.io import META_FILE, load_saved_deltas
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.geometry.aggregate import ALONG_LAYERS, layer_subset, module_type
from adapters_geo.geometry.linalg import decompose64
from adapters_geo.geometry.online import along_row, group_means, similarity_to_first, spectrum_scalars, top_rank, update_scalars
from adapters_geo.geometry.reference import reference_svd
from adapters_geo.geometry.rotation import default_k
from adapters_geo.geometry.trajectory import K_DEFAULT
from adapters_geo.models.weights import LazyBaseWeights
from adapters_geo.storage.snapshots import TrajectoryWriter


class Tracker:
    """Trajectory snapshots and online geometry of one run's adapter.

    `along_layers`: how many evenly spaced layers get rotation and principal energy (0: none);
    `references`, `start`: snapshots kept as references to adapters the run saves anyway (storage/snapshots.py);
    `background`: measure off the training thread (on_step), for a model on an accelerator, whose CPU cores idle;
    `close()` stops its worker.
    """

    def __init__(self, model, folder: Path, total_steps: int, steps=None, rank: int = 32, t0: int | None = None,
                 along_layers: int = ALONG_LAYERS, references: dict | None = None, start: str | None = None,
                 background: bool = False, exact_layers: int = 0):
        self.model = model
        readers = delta_readers(model)
        self.names = list(readers)
        # a LoRA's start is held as its factors (ΔW_t − ΔW_start then keeps a factored form, rank ≤ 2r, and a
        # 1.7B LoRA start costs MBs, not 6.4 GB of fp32 matrices); another adapter's as matrices
        factors = low_rank_factors(model)
        with torch.no_grad():  # one matrix at a time; zeros (a fresh adapter) are not held
            nonzero = [n for n, read in readers.items() if read().abs().max() > 0]
        self.start_factors = {n: factors[n] for n in nonzero if n in factors}
        self.start = FactoredDeltas(self.start_factors) if factors else {n: readers[n]() for n in nonzero}
        exact = layer_subset(self.names, exact_layers) if exact_layers else []  # kept exact at every tracked step
        self.writer = TrajectoryWriter(folder, total_steps, steps, rank, t0, references, start, exact)
        self.rank = rank
        self.along = layer_subset(self.names, along_layers) if along_layers else []
        self.refs = {}  # {name: W_start's top-k SVD} of the `along` matrices, from the first tracked step on
        self.first_right = None  # {name: (n, ≤ K) top right singular vectors (CPU)} of the first tracked update
        self.start_adapter = start  # the saved adapter ΔW_start was read from (None: zero, or not saved)
        # measuring off the training thread: one worker, one tracked step at a time (the next needs its subspaces)
        self.background = ThreadPoolExecutor(1, thread_name_prefix="tracker") if background else None
        self.pending = None  # (step, log, seconds spent gathering, future) of the step measured in the background
        self.spread = next(model.parameters()).device.type != "cpu"  # the background's matrices over the CPU's cores

    def state_dict(self) -> dict:
        self.flush()  # a checkpoint holds every tracked step before it: measured, written and logged
        # ΔW_start of a run from a saved adapter is that adapter's: checkpoints (the t0 state a locking
        # test keeps too) name it instead of holding another fp32 copy (425 MB for SmolLM2-135M, dense)
        meta = Path(self.start_adapter) / META_FILE if self.start_adapter is not None else None
        saved = meta is not None and meta.is_file() and bool(self.start)  # ours: adapter.json hashes every file
        factored = isinstance(self.start, FactoredDeltas)
        return {"start_deltas": None if saved or factored else (self.start or None),  # None: zero, the adapter's, or factors
                "start_factors": self.start_factors if factored and not saved and self.start_factors else None,
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
                self.start_factors = {}
        elif state.get("start_factors") is not None:  # checkpoints load on the CPU: back to the model's device
            device = next(self.model.parameters()).device
            self.start_factors = {n: (left.to(device), right.to(device)) for n, (left, right) in state["start_factors"].items()}
            self.start = FactoredDeltas(self.start_factors)
        elif state.get("start_deltas") is not None:
            device = next(self.model.parameters()).device
            self.start = {n: d.to(device) for n, d in state["start_deltas"].items()}  # held dense: the snapshot route
            self.start_factors = {}
        if state.get("first_right") is not None:
            self.first_right = {n: v.cpu() for n, v in state["first_right"].items()}

    def on_step(self, step: int, log) -> None:
        """At a tracked step: snapshot ΔW_t, log online scalars, histograms and the cost.

        Matrix by matrix: ΔW_t of one target at a time on the model's device (gather_matrix: what needs the
        device), its decompositions on the CPU (finish_matrix). Inline, on a CPU the matrices are spread over a
        thread per core (LAPACK's values-only eigensolver uses one thread: 40 eigvalsh of 576 × 576 took 0.39 s on
        two one-thread workers against 0.79 s in sequence with two threads, and the full eigh 0.73 s against
        0.93 s, on this 2-core CPU). In the background (`background`), the training thread only gathers CPU copies
        and goes on; the step is logged when the next tracked step, a checkpoint or the end of training flushes it.
        """
        if not self.writer.due(step):
            return
        self.flush()  # one tracked step in flight at a time: the next one needs the previous one's subspaces
        started = time.perf_counter()
        readers, factors = delta_readers(self.model), low_rank_factors(self.model)
        reference = LazyBaseWeights(self.model, self.names, self.start)  # W_start, one matrix at a time
        if self.background is None:
            results = over_matrices(lambda name: self.finish_matrix(step, name, self.gather_matrix(
                name, readers[name], factors.get(name), reference, copy=False)), self.names, next(self.model.parameters()).device)
            written = self.write(step, results)
            self.record(step, results, log, {"seconds": time.perf_counter() - started}, written)
            return
        gathered = {name: self.gather_matrix(name, readers[name], factors.get(name), reference, copy=True) for name in self.names}
        self.pending = (step, log, time.perf_counter() - started, self.background.submit(self.finish_all, step, gathered))

    def flush(self) -> None:
        """Wait for the tracked step measured in the background (if any), then log it from the training thread."""
        if self.pending is None:
            return
        step, log, gathering, future = self.pending
        self.pending = None
        waited = time.perf_counter()
        results, written, background = future.result()
        timing = {"seconds": gathering + time.perf_counter() - waited, "background_seconds": background}
        self.record(step, results, log, timing, written)

    def finish_all(self, step: int, gathered: dict) -> tuple[list, float, float]:
        """The background job of one tracked step: (finish_matrix of every matrix, write seconds, its wall seconds)."""
        begun = time.perf_counter()

        def measure(name):
            return self.finish_matrix(step, name, gathered.pop(name))  # pop: a copy goes once measured

        if self.spread:  # an accelerator trains: the CPU's cores are the worker's but one, for the training thread
            results = over_matrices(measure, self.names, torch.device("cpu"), workers=torch.get_num_threads() - 1)
        else:  # training shares these cores (and torch's thread count, which over_matrices would set to 1)
            results = [measure(name) for name in self.names]
        written = self.write(step, results)
        for found in results:
            del found["tensors"]  # written: not held until the flush
        return results, written, time.perf_counter() - begun

    def write(self, step: int, results: list) -> float:
        """Write the step's snapshot file from every matrix's packed tensors; returns the seconds it took."""
        begun = time.perf_counter()
        tensors = {}
        for found in results:
            tensors.update(found["tensors"])
        self.writer.write(step, tensors)
        return time.perf_counter() - begun

    def record(self, step: int, results: list, log, timing: dict, written: float) -> None:
        """Log a measured step: group means of the rows, ΔW's singular values per module type, the cost."""
        rows, along, right, costs = {}, {}, {}, {"snapshot": written, "geometry": 0.0, "along": 0.0}
        for name, found in zip(self.names, results):
            rows[name] = found["row"]
            if found["along"] is not None:
                along[name] = found["along"]
            if found["right"] is not None:
                right[name] = found["right"]
            for part in costs:
                costs[part] += found["seconds"][part]
        self.first_right = right if self.first_right is None else self.first_right
        along = group_means(along) if along else {}
        for group, values in group_means(rows).items():
            log.scalars(step, {**values, **along.get(group, {})}, f"geometry/{group}")
        by_type = {}
        for name, found in zip(self.names, results):
            by_type.setdefault(module_type(name), []).append(found["top"])
        for kind, values in by_type.items():
            log.histogram(step, f"delta_singular_values/{kind}", torch.cat(values))
        log.scalars(step, {**timing, "snapshot_seconds": costs["snapshot"], "geometry_seconds": costs["geometry"],
                           "along_seconds": costs["along"], "format": self.writer.format_of(step)}, "tracking")

    @torch.no_grad()
    def gather_matrix(self, name: str, read, factors, reference, copy: bool) -> dict:
        """What one matrix's measurement needs of the model, read on its device: ΔW_t (or its factors), the
        scalars that need W_start, W_start itself for the `along` subset. `copy`: all of it moved to the CPU, to
        be measured while the model trains on (a LoRA's ΔW then travels as its factors only)."""
        begun = time.perf_counter()
        delta = read()
        if name in self.start:
            delta = delta - self.start[name]
            if factors is not None and name in self.start_factors:  # L R − L0 R0 = [L, −L0] [R; R0]
                left0, right0 = self.start_factors[name]
                factors = (torch.cat([factors[0], -left0], 1), torch.cat([factors[1], right0], 0))
            else:
                factors = None
        read_seconds = time.perf_counter() - begun
        w_start = reference[name]
        row = update_scalars(w_start, delta)
        found = {"delta": delta, "factors": factors, "row": row, "w_start": w_start if name in self.along else None}
        if copy:
            found = {"delta": None if factors is not None else delta.cpu(), "row": row,
                     "factors": None if factors is None else tuple(f.cpu() for f in factors),
                     "w_start": None if found["w_start"] is None else w_start.cpu()}
        found["seconds"] = {"snapshot": read_seconds, "geometry": time.perf_counter() - begun - read_seconds}
        return found

    @torch.no_grad()
    def finish_matrix(self, step: int, name: str, gathered: dict) -> dict:
        """Everything a tracked step needs of one gathered matrix; only CPU tensors and numbers come back.

        `seconds` {snapshot, geometry, along}: this matrix's share of the tracking cost.
        """
        begun = time.perf_counter()
        factors, delta = gathered["factors"], gathered["delta"]
        if delta is None:  # gathered as factors alone
            delta = factors[0] @ factors[1]
        u, s, v = decompose64(delta, self.writer.vectors_needed(step, K_DEFAULT), factors)
        tensors = self.writer.pack(step, name, delta, u, s, v)
        k = top_rank(s)
        right = v[:, :k].float().cpu() if k else None
        snapshot = time.perf_counter()
        row = {**gathered["row"], **spectrum_scalars(s)}
        first = self.first_right
        if first is not None:
            row["sim_right_to_first"] = similarity_to_first(right, first.get(name))
        else:  # the first tracked step is its own reference
            row["sim_right_to_first"] = 1.0 if right is not None else math.nan
        geometry = time.perf_counter()
        along, w_start = None, gathered["w_start"]
        if w_start is not None:
            if name not in self.refs:  # W_start's top-k SVD, once per run
                self.refs[name] = reference_svd(w_start, default_k(w_start.shape))
            along = along_row(w_start, delta, self.refs[name])
        return {"tensors": tensors, "row": row, "along": along, "right": right, "top": s[: self.rank].float().cpu(),
                "seconds": {"snapshot": snapshot - begun + gathered["seconds"]["snapshot"],
                            "geometry": geometry - snapshot + gathered["seconds"]["geometry"],
                            "along": time.perf_counter() - geometry}}

    def close(self) -> None:
        """Stop the background worker: a step in flight is finished (its file stays whole), none is started."""
        if self.background is not None:
            self.background.shutdown(wait=True, cancel_futures=True)

    def disk_bytes(self) -> int:
        return self.writer.disk_bytes()


class FactoredDeltas(Mapping):
    """{name: L @ R} of held factors {name: (L, R)}, each product computed when read (fp32), never all held."""

    def __init__(self, factors: dict):
        self.factors = factors

    def __getitem__(self, name: str) -> torch.Tensor:
        left, right = self.factors[name]
        return left @ right

    def __contains__(self, name) -> bool:  # without computing the product
        return name in self.factors

    def __iter__(self):
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.factors)


def over_matrices(measure, names: list, device, workers: int | None = None) -> list:
    """[measure(name) for name in names]; on a CPU spread over `workers` (default: one per torch thread) one-thread workers.

    Each decomposition then runs single-threaded beside the others (results do not depend on the split);
    the thread count is restored after. On an accelerator the matrices go one after the other.
    """
    threads = torch.get_num_threads()
    workers = threads if workers is None else workers
    if device.type != "cpu" or workers < 2 or len(names) < 2:
        return [measure(name) for name in names]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(measure, names))
    finally:
        torch.set_num_threads(threads)


class NoTracking:
    """The tracker of a data-parallel run's other processes (training/parallel.py): the main one tracks."""

    start = None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def on_step(self, step: int, log) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def disk_bytes(self) -> int:
        return 0
