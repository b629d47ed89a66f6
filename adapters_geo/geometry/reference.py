"""The reference matrix's decomposition the endpoint suite needs: full spectrum, top vectors.

For a reference W0 the suite uses its full spectrum S0 and its top `cols` left and right singular
vectors (float64). They are the same for every update measured against W0, so callers cache
them (storage/svd_cache.py keeps them on disk per reference model).
"""

from dataclasses import dataclass

import torch

from adapters_geo.geometry.linalg import svd64


@dataclass
class RefSVD:
    """Thin top part of W0's SVD: u (m, c), s (all), v (n, c), float64."""

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor

    @property
    def columns(self) -> int:
        return self.u.shape[1]


def reference_svd(w0: torch.Tensor, cols: int) -> RefSVD:
    """RefSVD of `w0` with its top `cols` singular vectors (float64)."""
    u, s, v = svd64(w0, cols)
    return RefSVD(u, s, v)
