"""Snapshots of the cumulative update ΔW_t = W_t − W_start during training, with bounded storage.

At the tracked steps (default: 10 points, denser early) every target matrix is saved as
- fp32 in full at the final step,
- bf16 in full at the step nearest 20% of training (the t0 of the locking test),
- top-r factors (U_r·S_r and V_r, r = 32, float64 SVD) at the others;
and, at every tracked step, the exact full singular-value spectrum of each ΔW_t (`NAME:s`, a few
hundred floats), so rank dynamics (stable / effective rank, norms) stay exact where only factors
are kept. `read_snapshots` gives both back in one pass: {step: {name: ΔW}} and {step: {name: σ}}.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from adapters_geo.atomic import atomic_write_bytes, atomic_write_text
from adapters_geo.geometry.linalg import svdvals64, top_svd64

FRACTIONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
INDEX = "index.json"
SPECTRUM = ":s"


def default_steps(total: int, fractions=FRACTIONS) -> list[int]:
    """Tracked steps: the given fractions of `total`, rounded, distinct, ≥ 1, always ending at total."""
    steps = sorted({max(1, round(f * total)) for f in fractions} | {total})
    return [s for s in steps if s <= total]


def full_steps(steps: list[int], total: int, t0_fraction: float = 0.2) -> set[int]:
    """Steps stored in full: the one nearest t0_fraction·total, and the last."""
    nearest = min(steps, key=lambda s: abs(s - t0_fraction * total))
    return {nearest, steps[-1]}


class TrajectoryWriter:
    """Saves ΔW_t snapshots into `folder` (one safetensors file per tracked step + index.json)."""

    def __init__(self, folder: Path, total_steps: int, steps=None, rank: int = 32, start=None):
        self.folder = Path(folder)
        self.steps = sorted(steps) if steps else default_steps(total_steps)
        self.full = full_steps(self.steps, total_steps)
        self.final = self.steps[-1]
        self.rank = rank
        self.start = start or {}
        index_path = self.folder / INDEX
        self.index = json.loads(index_path.read_text()) if index_path.is_file() else {}

    def due(self, step: int) -> bool:
        return step in self.steps

    def save(self, step: int, deltas: dict) -> dict:
        """Store the snapshot of `step`; returns {name: top singular values} for logging."""
        fmt = "fp32" if step == self.final else "bf16" if step in self.full else "factors"
        tensors, spectra = {}, {}
        for name, delta in deltas.items():
            delta = (delta - self.start[name]) if name in self.start else delta
            if fmt == "factors":
                u, s, v = top_svd64(delta, self.rank)
            else:  # stored in full: only the spectrum is needed (no eigenvectors, about 25% cheaper)
                s = svdvals64(delta)
            spectra[name] = s[: self.rank].float()
            tensors[name + SPECTRUM] = s.float().contiguous()
            if fmt == "factors":
                r = min(self.rank, s.numel())
                tensors[f"{name}:us"] = (u[:, :r] * s[:r]).float().contiguous()
                tensors[f"{name}:v"] = v[:, :r].float().contiguous()
            else:
                tensors[name] = delta.to(torch.float32 if fmt == "fp32" else torch.bfloat16).contiguous()
        file = f"step_{step:06d}.safetensors"
        atomic_write_bytes(self.folder / file, safetensors_bytes(tensors))
        self.index[str(step)] = {"format": fmt, "file": file, "rank": self.rank, "spectrum": True}
        atomic_write_text(self.folder / INDEX, json.dumps(self.index, indent=1))
        return spectra

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))


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
    folder = Path(folder)
    index = json.loads((folder / INDEX).read_text())
    snapshots, spectra = {}, {}
    for step, entry in sorted(index.items(), key=lambda item: int(item[0])):
        loaded = load_file(str(folder / entry["file"]))
        tensors = {k: t for k, t in loaded.items() if not k.endswith(SPECTRUM)}
        if entry["format"] == "factors":
            names = dict.fromkeys(key.rsplit(":", 1)[0] for key in tensors)
            snapshots[int(step)] = {n: tensors[f"{n}:us"] @ tensors[f"{n}:v"].T for n in names}
        else:
            snapshots[int(step)] = {n: t.float() for n, t in tensors.items()}
        if entry.get("spectrum"):
            spectra[int(step)] = {k[: -len(SPECTRUM)]: t for k, t in loaded.items() if k.endswith(SPECTRUM)}
        elif entry["format"] == "factors":
            spectra[int(step)] = None
    return snapshots, spectra
