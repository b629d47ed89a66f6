"""Orthonormal bases for the locked adapter: from an update's SVD, or random.

`top_singular_basis(deltas, K)` gives the top-K right (or left) singular vectors of each
ΔW, computed in float64 (docs/geometry.md: angle-bearing SVDs in float64). Use it on the
early update ΔW_t0 (the locking test) or on the final update (the upper-bound control);
`random_orthonormal_basis` gives the random-basis control with the same K.
"""

import torch


def top_singular_basis(deltas: dict, k: int, side: str = "right") -> dict:
    """{name: (n, K) top right singular vectors} (or (m, K) left ones) of each delta (float64, geometry/linalg)."""
    from adapters_geo.geometry.linalg import top_pair

    bases = {}
    for name, delta in deltas.items():
        u, v = top_pair(delta.detach().cpu(), min(k, min(delta.shape)))
        bases[name] = (v if side == "right" else u).float().contiguous()
    return bases


def random_orthonormal_basis(shapes: dict, k: int, side: str = "right", seed: int = 0) -> dict:
    """{name: random (n, K) matrix with orthonormal columns} for each (m, n) shape."""
    generator = torch.Generator().manual_seed(seed)
    bases = {}
    for name, (m, n) in shapes.items():
        size = n if side == "right" else m
        gaussian = torch.randn(size, min(k, size), generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        bases[name] = (q * torch.sign(torch.diagonal(r))).float().contiguous()
    return bases
