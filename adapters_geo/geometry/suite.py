"""All endpoint diagnostics of one matrix, sharing the decompositions they need.

Per matrix the suite needs: W0's SVD (cached: `reference.py`), the thin SVD of
W1 = W0 + ΔW (top-k vectors, full spectrum) and the singular values of ΔW; everything
else is elementwise or small. See the metric modules for the formulas.
"""

from dataclasses import asdict, dataclass

import torch

from adapters_geo.geometry.linalg import svd64, svdvals64
from adapters_geo.geometry.reference import RefSVD
from adapters_geo.geometry.rotation import default_k, rotation_stats
from adapters_geo.geometry.sparsity import bf16_changed, low_magnitude_mask, mask_overlap, principal_mask, sparsity_abs
from adapters_geo.geometry.spectrum import (
    effective_rank,
    hill_alpha,
    principal_energy,
    rank_at,
    spectral_drift,
    stable_rank,
    update_norms,
)


@dataclass
class Settings:
    """Parameters of the diagnostics (docs/geometry.md defaults)."""

    k: int | None = None  # rotation / principal-energy subspace size; None: min(m, n) // 8 per matrix
    K: int = 16  # trajectory subspace size
    r: int = 64  # rank of W0's reconstruction for principal_overlap
    alpha: float = 0.5  # fraction of entries in the principal / low-magnitude masks
    eta: float = 1e-3  # relative tolerance of the bf16 "unchanged" test
    q: int = 10  # Hill estimator tail size

    def k_for(self, shape) -> int:
        return min(self.k or default_k(shape), min(shape))

    def reference_columns(self, shape) -> int:
        """How many of W0's singular vectors the suite uses."""
        return min(max(self.k_for(shape), self.r), min(shape))

    def to_dict(self) -> dict:
        return asdict(self)


def matrix_metrics(w0: torch.Tensor, delta: torch.Tensor, ref: RefSVD, settings: Settings, with_spectra=False,
                   delta_spectrum: torch.Tensor | None = None):
    """Every endpoint diagnostic of one matrix; w0 and delta fp32 (m, n), ref = W0's RefSVD.

    `delta_spectrum`: ΔW's singular values where already known (e.g. stored by the tracker), else computed.
    With `with_spectra`, also returns {"w0", "w1", "delta": singular values} for plots.
    """
    w0, delta = w0.float(), delta.float()
    w1 = w0 + delta
    k = settings.k_for(w0.shape)
    u1, s1, v1 = svd64(w1, k)
    sd = svdvals64(delta) if delta_spectrum is None else delta_spectrum.to(torch.float64)
    changed = bf16_changed(w0, w1, settings.eta)
    sparsity = 1.0 - changed.float().mean().item()
    energy, energy_ratio = principal_energy(delta, ref.u[:, :k], ref.v[:, :k])
    norm, norm_rel = update_norms(delta, w0)
    left_max, left_mean, left_curve = rotation_stats(ref.u, u1, k)
    right_max, right_mean, right_curve = rotation_stats(ref.v, v1, k)
    row = {
        "params": w0.numel(),
        "k": k,
        "sparsity_bf16": sparsity,
        "update_density": 1.0 - sparsity,
        "sparsity_abs": sparsity_abs(delta),
        "rotation_left_max_deg": left_max,
        "rotation_left_mean_deg": left_mean,
        "rotation_right_max_deg": right_max,
        "rotation_right_mean_deg": right_mean,
        "rotation_curve_left": left_curve,
        "rotation_curve_right": right_curve,
        "spectral_drift": spectral_drift(ref.s, s1),
        "principal_overlap": mask_overlap(principal_mask(ref.u, ref.s, ref.v, settings.r, settings.alpha), changed),
        "low_magnitude_overlap": mask_overlap(low_magnitude_mask(w0, settings.alpha), changed),
        "overlap_random_baseline": settings.alpha,
        "principal_energy": energy,
        "principal_energy_ratio": energy_ratio,
        "stable_rank": stable_rank(sd),
        "effective_rank": effective_rank(sd),
        "rank_at_90": rank_at(sd, 0.9),
        "hill_alpha": hill_alpha(sd, settings.q),
        "update_norm": norm,
        "update_norm_rel": norm_rel,
    }
    if not with_spectra:
        return row
    return row, {"w0": ref.s.float(), "w1": s1.float(), "delta": sd.float()}
