"""How much two updates of the same matrix share: whether one run moved where another did.

For ΔA and ΔB of one (m, n) matrix (two runs from the same or different starts):
- cosine(ΔA, ΔB) = ⟨ΔA, ΔB⟩_F / (‖ΔA‖_F ‖ΔB‖_F): 1 the same direction, 0 orthogonal (a random pair of
  m·n-dimensional directions sits at ±1/√(mn), about 0.002 for 576 × 576).
- Sim_K(ΔA, ΔB) = ‖V_K(A)ᵀ V_K(B)‖²_F / K, V_K the top-K right singular vectors (as Sim_K(t, T) of
  geometry/trajectory.py): the share of one update's main input directions the other's span; two random
  K-dimensional subspaces of ℝⁿ share K/n of it on average (`random_level`).
Used to show a teacher is not its student's SFT twin (issue 22): the teacher's update against the
SFT anchor's or sft_dense's.
"""

import torch

from adapters_geo.geometry.trajectory import subspace_similarity, top_vectors


def update_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """⟨a, b⟩_F / (‖a‖_F ‖b‖_F) in float64; nan if either is zero."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    norms = a.norm() * b.norm()
    return float("nan") if norms == 0 else ((a * b).sum() / norms).item()


def random_level(shape, k: int) -> float:
    """Expected Sim_K of two independent uniformly random K-dimensional subspaces of ℝⁿ (n = shape[1]): K/n."""
    return min(k, min(shape)) / shape[1]


def matrix_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> dict:
    """{"cosine", "sim_right", "sim_random", "norm_ratio"} of two updates of one matrix."""
    k = min(k, min(a.shape))
    return {
        "cosine": update_cosine(a, b),
        "sim_right": subspace_similarity(top_vectors(a, k), top_vectors(b, k)),
        "sim_random": random_level(a.shape, k),
        "norm_ratio": (a.double().norm() / b.double().norm()).item() if b.any() else float("nan"),
    }
