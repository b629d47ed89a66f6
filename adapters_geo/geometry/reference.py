"""The reference model's decomposition, computed once and cached on disk.

For each reference matrix W0 we keep the full spectrum S0 and the top `cols` left and right
singular vectors (float64), in `$ADAPTERS_GEO_CACHE/svd/<fingerprint>-<quant>/`, one
safetensors file per matrix. A cached entry with at least the columns asked for is reused.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from adapters_geo.atomic import atomic_write_bytes
from adapters_geo.geometry.linalg import svd64
from adapters_geo.paths import cache_root


@dataclass
class RefSVD:
    """Thin top part of W0's SVD: u (m, c), s (all), v (n, c), float64."""

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor


class SVDCache:
    """Disk cache of RefSVDs for one reference model (identity + quantization)."""

    def __init__(self, key: str | None, root: Path | None = None):
        self.folder = None if key is None else (root or cache_root() / "svd") / key
        self.hits = self.misses = 0

    def _path(self, name: str) -> Path:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        return self.folder / f"{name[-80:]}-{digest}.safetensors"

    def get(self, name: str, w0: torch.Tensor, cols: int) -> RefSVD:
        """RefSVD of `w0` with ≥ `cols` vectors, from the cache or computed (and stored)."""
        if self.folder is not None and self._path(name).is_file():
            stored = load_file(str(self._path(name)))
            if stored["u"].shape[1] >= min(cols, stored["s"].numel()) and tuple(stored["shape"].tolist()) == tuple(w0.shape):
                self.hits += 1
                return RefSVD(stored["u"], stored["s"], stored["v"])
        self.misses += 1
        u, s, v = svd64(w0, cols)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            tensors = {"u": u.contiguous(), "s": s.contiguous(), "v": v.contiguous(), "shape": torch.tensor(w0.shape)}
            atomic_write_bytes(self._path(name), safetensors_bytes(tensors))
        return RefSVD(u, s, v)
