"""`locked`: the frozen-basis adapter of the subspace-locking test (GEOMETRY.md).

Per target matrix ΔW = ΔW_t0 + B Vᵀ, with ΔW_t0 a frozen offset (may be absent), V (n, K)
a frozen orthonormal right basis and B (m, K) trainable, zero-initialised. Two-sided:
ΔW = ΔW_t0 + U M Vᵀ with U (m, K) frozen too and M (K, K) trainable. With plain SGD,
training B equals full training with every weight gradient projected as g ← g V Vᵀ.
Bases come from `adapters/bases.py` (early update, random, final update).
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from adapters_geo.adapters.delta_linear import delta_layers, inject, layer_shape
from adapters_geo.errors import AdaptersGeoError


@dataclass
class LockedConfig:
    """Per-layer frozen tensors of the locked adapter, keyed by canonical weight name."""

    right: dict  # name -> V (n, K), orthonormal columns
    offset: dict | None = None  # name -> ΔW_t0 (m, n); None: restart from the reference
    left: dict | None = None  # name -> U (m, K) for the two-sided variant
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)  # free-form provenance (basis source, K, t0)
    kind = "locked"


class LockedDelta(nn.Module):
    """ΔW = offset + B Vᵀ (or offset + U M Vᵀ); only B (or M) trains."""

    def __init__(self, shape, right, offset=None, left=None, dtype=torch.float32):
        super().__init__()
        m, n = shape
        k = right.shape[1]
        if right.shape[0] != n or (left is not None and left.shape != (m, k)):
            raise AdaptersGeoError(
                f"locked basis shapes {tuple(right.shape)} / {None if left is None else tuple(left.shape)} "
                f"do not fit a ({m}, {n}) weight",
                "build V as (in_features, K) and U as (out_features, K) for this base",
            )
        if offset is not None and tuple(offset.shape) != (m, n):
            raise AdaptersGeoError(f"locked offset shape {tuple(offset.shape)} is not ({m}, {n})", "use this base's deltas")
        self.register_buffer("right", right.to(dtype).contiguous())
        self.register_buffer("left", None if left is None else left.to(dtype).contiguous())
        self.register_buffer("offset", None if offset is None else offset.to(dtype).contiguous())
        self.coef = nn.Parameter(torch.zeros((k if left is not None else m, k), dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.coef.dtype)
        h = F.linear(F.linear(x, self.right.T), self.coef)  # (…, K) -> (…, m or K)
        if self.left is not None:
            h = F.linear(h, self.left)
        return h if self.offset is None else h + F.linear(x, self.offset)

    def delta_weight(self) -> torch.Tensor:
        return compose(self.coef, self.right, self.left, self.offset)


def compose(coef, right, left=None, offset=None) -> torch.Tensor:
    """ΔW = offset + B Vᵀ (coef = B), or offset + U M Vᵀ (coef = M, left = U)."""
    core = coef if left is None else left @ coef
    delta = core @ right.T
    return delta if offset is None else delta + offset


def attach(model: nn.Module, config: LockedConfig) -> nn.Module:
    """Wrap the layers named in `config.right` with frozen-basis deltas."""
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]
    offsets, lefts = config.offset or {}, config.left or {}

    def make(name, layer):
        if config.left is not None and name not in lefts:
            raise AdaptersGeoError(f"two-sided locked adapter has no left basis for {name}", "give U for every layer")
        return LockedDelta(layer_shape(layer), config.right[name], offsets.get(name), lefts.get(name), dtype)

    paths = [name.removesuffix(".weight") for name in config.right]
    return inject(model, paths, make, "locked")


def is_attached(model: nn.Module) -> bool:
    return any(isinstance(layer.delta, LockedDelta) for layer in delta_layers(model).values())


def export(model: nn.Module) -> tuple[dict, dict]:
    """(config dict, tensors): coefficients and the frozen bases / offsets."""
    layers = delta_layers(model)
    first = next(iter(layers.values())).delta
    config = {
        "dtype": str(first.coef.dtype).removeprefix("torch."),
        "K": int(first.right.shape[1]),
        "two_sided": first.left is not None,
        "offset": first.offset is not None,
    }
    tensors = {}
    for name, layer in layers.items():
        for part in ("coef", "right", "left", "offset"):
            value = getattr(layer.delta, part)
            if value is not None:
                tensors[f"{name}:{part}"] = value.detach().cpu().contiguous()
    return config, tensors


def saved_deltas(config: dict, tensors: dict):
    """Yield (name, fp32 ΔW) from saved tensors, without building a model."""
    for name in dict.fromkeys(key.rsplit(":", 1)[0] for key in tensors):
        parts = {p: tensors.get(f"{name}:{p}") for p in ("coef", "right", "left", "offset")}
        yield name, compose(**{p: (None if t is None else t.float()) for p, t in parts.items()})


def restore(model: nn.Module, config: dict, tensors: dict) -> nn.Module:
    """Attach a locked adapter from saved tensors."""
    def part(name):
        found = {k.rsplit(":", 1)[0]: v for k, v in tensors.items() if k.endswith(f":{name}")}
        return found or None

    attach(model, LockedConfig(right=part("right"), offset=part("offset"), left=part("left"), dtype=config["dtype"]))
    with torch.no_grad():
        for name, layer in delta_layers(model).items():
            layer.delta.coef.copy_(tensors[f"{name}:coef"])
    return model
