"""Geometry scalars for tracked training steps (TensorBoard), from ΔW_t, its exact spectrum and top vectors.

On every matrix (cheap, from what the trajectory already computes):
- bf16 sparsity and absolute sparsity |ΔW| ≤ 1e-5 (parameter-weighted), update_norm_rel, stable rank and effective rank (spectrum.py);
  a rank is undefined for a zero update and then left out of the mean;
- sim_right_to_first = Sim_K(t, t_first) = ‖V_K(t)ᵀ V_K(t_first)‖²_F / K: the top-K right singular
  subspace of ΔW_t against that of the run's first tracked update (K = 16, or the smaller rank of
  the two updates when lower, e.g. a LoRA); 1 at the first tracked step.
On a fixed subset of matrices (`along_row`; the tracker takes every matrix of about 4 evenly
spaced layers): an SVD of W_start + ΔW_t per matrix, so not on all of them:
- rotation_right_max_deg: max principal angle between W_start's and W_start + ΔW_t's top-k right
  singular subspaces, k = min(m, n) // 8 (rotation.py);
- principal_energy: share of ‖ΔW_t‖²_F inside W_start's top-k two-sided subspace (spectrum.py).
Rows are per matrix (the tracker streams the matrices one at a time); `group_means` gives the means
per module type and "overall"; fractions are parameter-weighted (aggregate.summarize).
The full suite runs on the final update; this keeps a tracked step cheap.
"""

import math

import torch

from adapters_geo.geometry.aggregate import module_type, summarize
from adapters_geo.geometry.sparsity import sparsity_abs, sparsity_bf16
from adapters_geo.geometry.spectrum import effective_rank, stable_rank
from adapters_geo.geometry.trajectory import K_DEFAULT, endpoint_along, subspace_similarity


def top_rank(s: torch.Tensor, k: int = K_DEFAULT) -> int:
    """How many of the top-k singular directions of an update with spectrum `s` are defined (σ > 0)."""
    return min(k, int((s > 0).sum()))


def update_scalars(w0: torch.Tensor, delta: torch.Tensor) -> dict:
    """The scalars that need W_start and ΔW_t themselves (on whichever device they are)."""
    return {
        "params": delta.numel(),
        "sparsity_bf16": sparsity_bf16(w0, w0 + delta),
        "sparsity_abs": sparsity_abs(delta),
        "update_norm_rel": delta.norm().item() / max(w0.norm().item(), 1e-12),
    }


def spectrum_scalars(s: torch.Tensor) -> dict:
    """The scalars that need only ΔW_t's spectrum `s`: stable and effective rank."""
    return {
        "stable_rank": stable_rank(s) if s.numel() else math.nan,
        "effective_rank": effective_rank(s) if s.numel() else math.nan,
    }


def similarity_to_first(right, first) -> float:
    """Sim_K of two top right singular bases (n, ≤ K) over their common K; NaN where either update was zero."""
    k = 0 if right is None or first is None else min(right.shape[1], first.shape[1])
    return subspace_similarity(right[:, :k], first[:, :k]) if k else math.nan


def along_row(w_start: torch.Tensor, delta: torch.Tensor, ref) -> dict:
    """rotation_right_max_deg and principal_energy of one matrix; ref: W_start's top-k SVD (geometry/reference.py)."""
    found = endpoint_along(w_start, ref.u, ref.v, delta)
    return {"params": delta.numel(), "rotation_right_max_deg": found["rotation_right_max_deg"],
            "principal_energy": found["principal_energy"]}


def group_means(rows: dict) -> dict:
    """{"overall": {key: mean}, "<module type>": {...}} of per-matrix rows {name: {key: value, "params": n}}."""
    groups = {}
    for name, row in rows.items():
        for group in ("overall", module_type(name)):
            groups.setdefault(group, []).append(row)
    out = {}
    for group, found in groups.items():
        summary = summarize(found)
        out[group] = {key: math.nan if value["mean"] is None else value["mean"]
                      for key, value in summary.items() if key != "matrices"}
    return out
