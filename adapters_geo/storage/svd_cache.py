"""A disk cache of reference decompositions (geometry/reference.py), one folder per reference model.

`$ADAPTERS_GEO_CACHE/svd/<fingerprint>-<quant>/`, one safetensors file per matrix. A cached entry
with at least the columns asked for is reused. Where the cache folder cannot be written (a
read-only home, a full disk) the decompositions are kept in memory for the run instead.
"""

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from adapters_geo.storage.atomic import atomic_write_bytes
from adapters_geo.geometry.reference import RefSVD, reference_svd
from adapters_geo.storage.paths import cache_root


class SVDCache:
    """RefSVDs of one reference model (identity + quantization); key None: no disk cache."""

    def __init__(self, key: str | None, root: Path | None = None):
        self.folder = None if key is None else (root or cache_root() / "svd") / key
        self.hits = self.misses = 0

    def _path(self, name: str) -> Path:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        return self.folder / f"{name[-80:]}-{digest}.safetensors"

    def get(self, name: str, w0: torch.Tensor, cols: int) -> RefSVD:
        """RefSVD of `w0` with ≥ `cols` vectors, from the cache or computed (and stored)."""
        if self.folder is not None and self._path(name).is_file():
            stored = _read(self._path(name))  # None when damaged: recomputed and rewritten below (a cache heals)
            if stored is not None and stored["u"].shape[1] >= min(cols, stored["s"].numel()) \
                    and tuple(stored["shape"].tolist()) == tuple(w0.shape):
                self.hits += 1
                return RefSVD(stored["u"], stored["s"], stored["v"])
        self.misses += 1
        ref = reference_svd(w0, cols)
        if self.folder is not None:
            tensors = {"u": ref.u.contiguous(), "s": ref.s.contiguous(), "v": ref.v.contiguous(), "shape": torch.tensor(w0.shape)}
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self._path(name), safetensors_bytes(tensors), sync=False)  # a cache: no fsync
            except OSError:
                self.folder = None  # not writable: compute without a disk cache from here on
        return ref


def _read(path: Path) -> dict | None:
    """A cached decomposition, or None when the file is truncated, edited or lacks a part."""
    try:
        stored = load_file(str(path))
    except Exception:  # safetensors' own error types (header, size): all mean a damaged cache file here
        return None
    parts = ("u", "s", "v", "shape")
    if not all(key in stored for key in parts) or stored["u"].dim() != 2 or stored["v"].dim() != 2:
        return None
    if not all(torch.isfinite(stored[key]).all() for key in ("u", "s", "v")):
        return None
    return stored
