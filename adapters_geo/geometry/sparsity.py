"""Which entries an update changed, and where they sit (docs/geometry.md, The Path Not Taken).

- changed mask M: cast W0, W1 to bf16 and back; an entry is unchanged when
  |Ŵ1 − Ŵ0| ≤ η · max(|Ŵ0|, |Ŵ1|) (η = 1e-3; for η < 2⁻⁹ this is bitwise bf16 equality).
- sparsity_bf16 = unchanged / total; update_density = 1 − sparsity_bf16.
- sparsity_abs = #{|ΔW_ij| ≤ τ} / total, τ = 1e-5 (absolute, the follow-up 2606.13657's definition): it reads
  very differently from sparsity_bf16 on the same update (53.8 % vs 77.9 % on one published pair), so both are kept.
- principal_overlap = |M_princ ∩ M| / |M|, M_princ the top-α fraction of entries of
  |rank-r reconstruction of W0| (r = 64, α = 0.5); low_magnitude_overlap likewise with
  M_low the bottom-α fraction of |W0|. A mask drawn at random overlaps M in α of it.
"""

import numpy as np
import torch

ETA = 1e-3
ABS_TOL = 1e-5  # sparsity_abs's threshold on |ΔW| (weight units)
BF16_GAP = 2.0**-9  # below it, η-relative bf16 equality is exact equality (tests/geometry check it)


def bf16_changed(w0: torch.Tensor, w1: torch.Tensor, eta: float = ETA) -> torch.Tensor:
    """Boolean mask of entries that differ in bf16 by more than η relative."""
    a = w0.to(torch.bfloat16)
    b = w1.to(torch.bfloat16)
    if eta < BF16_GAP:  # two distinct bf16 values differ by more than 2⁻⁹ of the larger: the test is a != b
        return a != b  # (3 passes over the matrix instead of 8: the tracker runs this on every matrix)
    a, b = a.float(), b.float()
    return (b - a).abs() > eta * torch.maximum(a.abs(), b.abs())


def sparsity_bf16(w0: torch.Tensor, w1: torch.Tensor, eta: float = ETA) -> float:
    """Fraction of entries left unchanged in bf16."""
    return 1.0 - bf16_changed(w0, w1, eta).float().mean().item()


def sparsity_abs(delta: torch.Tensor, tol: float = ABS_TOL) -> float:
    """Fraction of entries whose update is at most `tol` in absolute value."""
    return (delta.abs() <= tol).float().mean().item()


def top_fraction_mask(values: torch.Tensor, alpha: float, largest: bool = True) -> torch.Tensor:
    """Mask of the top (or bottom) α fraction of entries of `values`.

    Entries tied with the threshold value are all included (exactly α·size for distinct values).
    The threshold comes from numpy's introselect, ~10x faster than torch.topk here.
    """
    flat = values.detach().flatten().cpu().numpy()
    count = int(round(alpha * flat.size))
    if count == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    if largest:
        threshold = np.partition(flat, flat.size - count)[flat.size - count]
        return values >= float(threshold)
    threshold = np.partition(flat, count - 1)[count - 1]
    return values <= float(threshold)


def principal_mask(u: torch.Tensor, s: torch.Tensor, v: torch.Tensor, r: int = 64, alpha: float = 0.5):
    """Top-α entries of |U_r S_r V_rᵀ|: where W0's principal components put their weight."""
    r = min(r, s.numel())
    recon = (u[:, :r] * s[:r]) @ v[:, :r].T
    return top_fraction_mask(recon.abs(), alpha)


def low_magnitude_mask(w0: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Bottom-α entries of |W0|."""
    return top_fraction_mask(w0.abs(), alpha, largest=False)


def mask_overlap(region: torch.Tensor, changed: torch.Tensor) -> float:
    """|region ∩ changed| / |changed| (nan when nothing changed)."""
    total = changed.sum().item()
    return float("nan") if total == 0 else (region & changed).sum().item() / total
