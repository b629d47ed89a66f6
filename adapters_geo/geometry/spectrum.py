"""Spectral diagnostics of an update ΔW and of the weights (docs/geometry.md).

- spectral_drift (NSS) = ‖S1 − S0‖₂ / ‖S0‖₂ over the full spectrum.
- stable_rank = ‖ΔW‖²_F / ‖ΔW‖²₂ = Σσ² / σ₁².
- effective_rank = exp(entropy of σ / Σσ); rank_at_90 = smallest r with Σ_{i≤r} σᵢ² ≥ 0.9 Σσ².
- hill_alpha = [(1/(q−1)) Σ_{i<q} log(σᵢ/σ_q)]⁻¹, q = 10 (tail index of the top values).
- principal_energy = ‖U0ₖᵀ ΔW V0ₖ‖²_F / ‖ΔW‖²_F (the update's share inside W0's top-k
  left and right subspaces); isotropic value k²/(m·n).
- update_norm = ‖ΔW‖_F, update_norm_rel = ‖ΔW‖_F / ‖W0‖_F.
All take singular values in descending order.
"""

import math

import torch

NAN = float("nan")


def spectral_drift(s0: torch.Tensor, s1: torch.Tensor) -> float:
    return ((s1 - s0).norm() / s0.norm()).item()


def stable_rank(s: torch.Tensor) -> float:
    return NAN if s[0] == 0 else ((s**2).sum() / s[0] ** 2).item()


def effective_rank(s: torch.Tensor) -> float:
    total = s.sum()
    if total == 0:
        return NAN
    p = s[s > 0] / total
    return math.exp(-(p * p.log()).sum().item())


def rank_at(s: torch.Tensor, share: float = 0.9) -> int:
    """Smallest r whose top-r singular values hold `share` of Σσ²."""
    energy = (s**2).cumsum(0)
    if energy[-1] == 0:
        return 0
    return int(torch.searchsorted(energy / energy[-1], torch.tensor(share, dtype=energy.dtype) - 1e-12).item()) + 1


def hill_alpha(s: torch.Tensor, q: int = 10) -> float:
    if s.numel() < q or s[q - 1] <= 0:
        return NAN
    logs = (s[: q - 1] / s[q - 1]).log()
    mean = logs.sum().item() / (q - 1)
    return NAN if mean == 0 else 1.0 / mean


def principal_energy(delta: torch.Tensor, u0k: torch.Tensor, v0k: torch.Tensor) -> tuple[float, float]:
    """(share of ‖ΔW‖²_F in W0's top-k two-sided subspace, that share / isotropic k²/(m·n))."""
    delta = delta.to(torch.float64)
    total = (delta**2).sum()
    if total == 0:
        return NAN, NAN
    inside = ((u0k.T.to(torch.float64) @ delta @ v0k.to(torch.float64)) ** 2).sum()
    share = (inside / total).item()
    m, n = delta.shape
    return share, share / (u0k.shape[1] * v0k.shape[1] / (m * n))


def update_norms(delta: torch.Tensor, w0: torch.Tensor) -> tuple[float, float]:
    """(‖ΔW‖_F, ‖ΔW‖_F / ‖W0‖_F)."""
    norm = delta.to(torch.float64).norm().item()
    return norm, norm / w0.to(torch.float64).norm().item()
