"""Rotation of the principal subspaces: how far W1's top-k singular vectors turned from W0's.

θᵢ = principal angles between span(U0[:, :k]) and span(U1[:, :k]) (resp. V); we report
the max and the mean in degrees, and the curve of the max angle for k = 1, 2, 4, … up to
k. Default k = min(m, n) // 8 (512 for a 4096-wide layer, as published).
"""

import math

import torch

from adapters_geo.geometry.linalg import principal_angles


def default_k(shape) -> int:
    return max(1, min(shape) // 8)


def rotation_deg(base_vectors: torch.Tensor, tuned_vectors: torch.Tensor, k: int) -> tuple[float, float]:
    """(max, mean) principal angle in degrees between the top-k columns of each."""
    angles = principal_angles(base_vectors[:, :k], tuned_vectors[:, :k])
    return math.degrees(angles.max().item()), math.degrees(angles.mean().item())


def curve_ks(k: int) -> list[int]:
    """1, 2, 4, … below k, then k."""
    ks = [2**i for i in range(int(math.log2(k)) + 1) if 2**i < k] if k > 1 else []
    return ks + [k]


def rotation_stats(base_vectors: torch.Tensor, tuned_vectors: torch.Tensor, k: int) -> tuple[float, float, dict]:
    """(max, mean) angle in degrees at k, and the curve {k': max angle at k'} for k' in curve_ks(k)."""
    curve, mean = {}, 0.0
    for kk in curve_ks(k):
        angles = principal_angles(base_vectors[:, :kk], tuned_vectors[:, :kk])
        curve[kk] = math.degrees(angles.max().item())
        mean = math.degrees(angles.mean().item())
    return curve[k], mean, curve
