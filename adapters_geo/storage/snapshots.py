"""Snapshots of the cumulative update ΔW_t = W_t − W_start during training, with bounded storage.

At the tracked steps (default: 10 points, denser early, plus the run's t0) every target matrix is saved as
- fp32 in full at the final step,
- bf16 in full at t0 (the early step of the locking test, default round(0.2 · steps)),
- top-r factors (U_r·S_r and V_r, r = 32, float64 SVD) at the others, and beside them, for every matrix of
  `track_exact_layers` (2) evenly spaced layers, ΔW_t itself in bf16 (`NAME:exact`, `read_exact`): the null test of
  Sim_K(t0, T) re-sums the run's increments, which truncations do not give;
and, at every tracked step, the exact full singular-value spectrum of each ΔW_t (`NAME:s`, a few
hundred floats), so rank dynamics (stable / effective rank, norms) stay exact where only factors
are kept; steps kept in full also keep the top-K (16) singular vectors the tracker computed anyway
(`NAME:u`, `NAME:v`, a few MB). `read_snapshots` gives both back in one pass: {step: {name: ΔW}} and {step: {name: σ}}.
A step whose exact adapter the run keeps anyway (the final adapter/, the t0 state's adapter) is
stored as a reference to it (format `adapter`: ΔW_t = that adapter's ΔW − the start adapter's),
not copied: on SmolLM2 with a dense adapter that saves 0.4 GB (fp32) and 0.2 GB (bf16) per run.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from adapters_geo.storage.atomic import atomic_write_bytes, atomic_write_text
from adapters_geo.geometry.linalg import decompose64
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.storage.runfolder import read_json
from adapters_geo.training.config import default_t0

FRACTIONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
INDEX = "index.json"
SPECTRUM = ":s"
LEFT, RIGHT = ":u", ":v"  # top-K singular vectors of a snapshot stored in full (or as a reference)
EXACT = ":exact"  # ΔW_t itself (bf16) beside a factor snapshot, for the matrices kept exact (the null test's)


def default_steps(total: int, fractions=FRACTIONS) -> list[int]:
    """Tracked steps: about one per 5 steps of the run (3 to 10 points, the first ones denser), always ending at total.

    Of the fractions 2%, 5%, 10%, 15%, 20%, 30%, 45%, 60%, 80%, 100% a run keeps n = clamp(total / 5, 3, 10) evenly
    spaced by index (first and last included), rounded, distinct and ≥ 1: a 100-step run tracks all 10, a 20-step run
    4 (each tracked step costs a fixed few seconds of exact spectra: short runs would otherwise mostly track).
    """
    count = max(3, min(len(fractions), round(total / 5)))
    picked = [fractions[round(i * (len(fractions) - 1) / (count - 1))] for i in range(count)]
    steps = sorted({max(1, round(f * total)) for f in picked} | {total})
    return [s for s in steps if s <= total]


def tracked_steps(total: int, steps=None, t0: int | None = None) -> list[int]:
    """The steps a run snapshots: `steps` (None: default_steps(total)) with t0 added; [] tracks nothing."""
    if steps is not None and not steps:
        return []
    chosen = set(steps) if steps is not None else set(default_steps(total))
    if t0 is not None and 0 < t0 <= total:
        chosen.add(t0)
    return sorted(chosen)


class TrajectoryWriter:
    """Saves ΔW_t snapshots into `folder` (one safetensors file per tracked step + index.json)."""

    def __init__(self, folder: Path, total_steps: int, steps=None, rank: int = 32, t0: int | None = None,
                 references: dict | None = None, start: str | None = None, exact=()):
        """`references` {step: adapter folder relative to the run folder} kept by the run anyway;
        `start`: the adapter the run started from (its ΔW is subtracted when reading a reference), or None;
        `exact`: names of matrices also stored exact (bf16) at factor steps."""
        self.exact = set(exact)
        self.folder = Path(folder)
        self.references, self.start = references or {}, start
        t0 = t0 if t0 is not None else default_t0(total_steps)
        self.steps = tracked_steps(total_steps, steps, t0)
        self.final = self.steps[-1] if self.steps else None
        self.full = {self.final, t0}
        self.rank = rank
        index_path = self.folder / INDEX
        self.index = json.loads(index_path.read_text()) if index_path.is_file() else {}

    def due(self, step: int) -> bool:
        return step in self.steps

    def format_of(self, step: int) -> str:
        """How `step` is stored: adapter (a reference), fp32 (final), bf16 (t0) or factors."""
        return "adapter" if step in self.references else "fp32" if step == self.final else "bf16" if step in self.full else "factors"

    def vectors_needed(self, step: int, k: int = 0) -> int:
        """How many top singular vectors `step`'s snapshot needs: the factors' rank, or the caller's k."""
        return max(self.rank, k) if self.format_of(step) == "factors" else k

    def pack(self, step: int, name: str, delta: torch.Tensor, u, s: torch.Tensor, v) -> dict:
        """The tensors (on the CPU) one matrix adds to `step`'s file, from ΔW_t and its decomposition (decompose64)."""
        fmt = self.format_of(step)
        tensors = {name + SPECTRUM: s.float().cpu().contiguous()}
        if fmt == "factors":
            r = min(self.rank, s.numel(), v.shape[1])
            tensors[f"{name}:us"] = (u[:, :r] * s[:r]).float().cpu().contiguous()
            tensors[f"{name}:v"] = v[:, :r].float().cpu().contiguous()
            if name in self.exact:
                tensors[name + EXACT] = delta.to(torch.bfloat16).cpu().contiguous()
            return tensors
        if fmt != "adapter":
            tensors[name] = delta.to(torch.float32 if fmt == "fp32" else torch.bfloat16).cpu().contiguous()
        if u is not None:  # the top-k vectors computed anyway: the trajectory analysis need not decompose again
            tensors[name + LEFT] = u.float().cpu().contiguous()
            tensors[name + RIGHT] = v.float().cpu().contiguous()
        return tensors

    def write(self, step: int, tensors: dict) -> None:
        """Write `step`'s file (every matrix's packed tensors) and its index entry."""
        fmt = self.format_of(step)
        file = f"step_{step:06d}.safetensors"
        bad = next((key for key, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
        if bad is not None:  # an update too large for the snapshot's precision (finite ΔW, overflowing factors)
            raise AdaptersGeoError(f"refused to write the trajectory snapshot of step {step}: {bad} holds non-finite values",
                                   "the update diverged: lower train.lr")
        atomic_write_bytes(self.folder / file, safetensors_bytes(tensors))
        self.index[str(step)] = {"format": fmt, "file": file, "rank": self.rank, "spectrum": True}
        if fmt == "adapter":
            self.index[str(step)].update({"adapter": self.references[step], "start": self.start})
        atomic_write_text(self.folder / INDEX, json.dumps(self.index, indent=1))

    def save(self, step: int, deltas: dict, k: int = 0) -> tuple[dict, dict]:
        """Store the snapshot ΔW_t of `step` (relative to the run's start), all matrices at once.

        Returns ({name: all singular values}, {name: top-k right singular vectors (n, k)}, empty when k = 0).
        """
        tensors, spectra, right = {}, {}, {}
        for name, delta in deltas.items():
            u, s, v = decompose64(delta, self.vectors_needed(step, k))
            tensors.update(self.pack(step, name, delta, u, s, v))
            spectra[name] = s
            if k:
                right[name] = v[:, :k]
        self.write(step, tensors)
        return spectra, right

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))


FIX = "re-run the run (make experiment ... FORCE=1 archives it): its trajectory cannot be recomputed from elsewhere"


def read_index(folder) -> dict:
    """{step (str): {"format", "file", "rank", "spectrum"}} of a trajectory folder."""
    index = read_json(Path(folder) / INDEX, FIX)
    if not isinstance(index, dict) or not all(isinstance(e, dict) and {"format", "file"} <= set(e) for e in index.values()):
        raise AdaptersGeoError(f"{Path(folder) / INDEX} is not a trajectory index (edited or damaged)", FIX)
    return index


def _load(path: Path) -> dict:
    """A snapshot file's tensors; a truncated or changed file is one line naming it."""
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors' own error types, a missing file: all mean a damaged trajectory here
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: Exception) -> AdaptersGeoError:
    return AdaptersGeoError(f"trajectory snapshot {path} cannot be read ({type(exc).__name__}): truncated or changed", FIX)


def read_step_spectra(folder, step: int) -> dict:
    """{name: exact singular values of ΔW_step} as stored (only those tensors are read); {} if none are."""
    from safetensors import safe_open

    entry = read_index(folder).get(str(step)) if (Path(folder) / INDEX).is_file() else None
    if not entry or not entry.get("spectrum"):
        return {}
    try:
        with safe_open(str(Path(folder) / entry["file"]), framework="pt") as f:
            return {key[: -len(SPECTRUM)]: f.get_tensor(key) for key in f.keys() if key.endswith(SPECTRUM)}
    except Exception as exc:  # as in _load
        raise _damaged(Path(folder) / entry["file"], exc) from None


def read_trajectory(folder) -> dict:
    """{step: {name: fp32 ΔW_t}} (factor snapshots are expanded to U_r S_r V_rᵀ)."""
    return read_snapshots(folder)[0]


def read_spectra(folder) -> dict:
    """{step: {name: exact singular values of ΔW_t} or None}; see read_snapshots."""
    return read_snapshots(folder)[1]


def read_snapshots(folder) -> tuple[dict, dict]:
    """(snapshots {step: {name: ΔW_t}}, spectra {step: {name: σ} or None}) in one pass.

    A spectrum is None where the step kept only factors and no spectrum (trajectories written
    before spectra were stored): its rank metrics are unknown. Full-format steps without a stored
    spectrum are left out of `spectra` (computed from the snapshot itself).
    """
    return read_parts(folder)[:2]


def read_parts(folder) -> tuple[dict, dict, dict]:
    """(snapshots, spectra, vectors): as read_snapshots, plus {step: {name: (U, V)}} where known.

    The stored factors are the top-r SVD of ΔW_t, so its top-K singular vectors (K ≤ r) need no
    new decomposition: V_r as stored, U_r = (U_r S_r) / S_r. Steps stored in full (or by reference)
    carry the top-K vectors the tracker computed (`NAME:u`, `NAME:v`; older trajectories do not).
    """
    folder = Path(folder)
    index = read_index(folder)
    snapshots, spectra, vectors = {}, {}, {}
    for step, entry in sorted(index.items(), key=lambda item: int(item[0])):
        loaded = _load(folder / entry["file"])
        tensors = {k: t for k, t in loaded.items() if not k.endswith(SPECTRUM)}
        if entry["format"] != "factors":  # full or referenced snapshots may carry their top-K vectors
            known = {k[: -len(RIGHT)] for k in tensors if k.endswith(RIGHT)}
            if known:
                vectors[int(step)] = {n: (tensors[n + LEFT].double(), tensors[n + RIGHT].double()) for n in known}
            tensors = {k: t for k, t in tensors.items() if not (k.endswith(LEFT) or k.endswith(RIGHT))}
        if entry["format"] == "factors":
            tensors = {k: t for k, t in tensors.items() if not k.endswith(EXACT)}
            names = dict.fromkeys(key.rsplit(":", 1)[0] for key in tensors)
            snapshots[int(step)] = {n: tensors[f"{n}:us"] @ tensors[f"{n}:v"].T for n in names}
            vectors[int(step)] = {n: _left_right(tensors[f"{n}:us"], tensors[f"{n}:v"]) for n in names}
        elif entry["format"] == "adapter":
            snapshots[int(step)] = _referenced(folder.parent, entry)
        else:
            snapshots[int(step)] = {n: t.float() for n, t in tensors.items()}
        if entry.get("spectrum"):
            spectra[int(step)] = {k[: -len(SPECTRUM)]: t for k, t in loaded.items() if k.endswith(SPECTRUM)}
        elif entry["format"] == "factors":
            spectra[int(step)] = None
    return snapshots, spectra, vectors


def read_exact(folder, names: list) -> dict:
    """{step: {name: ΔW_t}} of `names` at every tracked step, exact: full and referenced snapshots as stored, factor
    steps from the exact copies kept beside them (EXACT); a factor step without one is one line naming the fix."""
    folder = Path(folder)
    found = {}
    for step, entry in sorted(read_index(folder).items(), key=lambda item: int(item[0])):
        if entry["format"] == "adapter":
            deltas = _referenced(folder.parent, entry)
            found[int(step)] = {n: deltas[n] for n in names}
            continue
        loaded = _load(folder / entry["file"])
        key = (lambda n: n + EXACT) if entry["format"] == "factors" else (lambda n: n)
        missing = [n for n in names if key(n) not in loaded]
        if missing:
            raise AdaptersGeoError(f"{folder} keeps step {step} of {missing[0]} only as rank-{entry.get('rank')} factors "
                                   f"(and {len(missing) - 1} more matrices)", "re-run it with train.track_exact_layers "
                                   "covering them (the default, 2, since 2026-12-06; a named experiment: FORCE=1)")
        found[int(step)] = {n: loaded[key(n)].double() for n in names}
    return found


def _referenced(run: Path, entry: dict) -> dict:
    """ΔW_t of a snapshot kept as a reference: the referenced adapter's ΔW minus the start adapter's."""
    from adapters_geo.adapters.io import load_saved_deltas

    deltas = dict(load_saved_deltas(run / entry["adapter"])[1])
    if entry.get("start"):
        start = dict(load_saved_deltas(entry["start"])[1])
        deltas = {n: d - start[n] if n in start else d for n, d in deltas.items()}
    return deltas


def _left_right(us: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(U_r, V_r) from stored (U_r S_r, V_r); columns with σ = 0 are left as they are (zero)."""
    s = us.double().norm(dim=0)
    return us.double() / torch.where(s > 0, s, torch.ones_like(s)), v.double()
