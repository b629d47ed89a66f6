"""`locked`: the frozen-basis adapter of the subspace-locking test (docs/geometry.md).

Per target matrix ΔW = ΔW_t0 + B Vᵀ, with ΔW_t0 a frozen offset (may be absent), V (n, K)
a frozen orthonormal right basis and B (m, K) trainable, zero-initialised. Two-sided:
ΔW = ΔW_t0 + U M Vᵀ with U (m, K) frozen too and M (K, K) trainable. With plain SGD,
training B equals full training with every weight gradient projected as g ← g V Vᵀ.
Bases come from `adapters/bases.py` (early update, random, final update).

How B is trained (`mode`):
- `adapter`: B is the parameter; any optimizer acts on its m·K coordinates. With Adam this is not
  the unconstrained optimizer restricted to span(V): Adam normalises per coordinate, so with a
  gradient inside span(V) a first step makes ≈ √(K/n) of the full-coordinate step's first-order
  progress (docs/geometry.md).
- `projected`: the parameter is ΔW itself (m, n), kept equal to offset + B Vᵀ; the optimizer runs
  in ΔW's full coordinates (its state can carry over from an unconstrained run) and after each
  step its update U is projected, B ← B + U V, ΔW ← offset + B Vᵀ (`project_update`,
  optim.project_locked). ΔW − offset never leaves span(V); with the gradient inside span(V) the
  first-order progress equals the unconstrained step's. One-sided bases only.
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
    mode: str = "adapter"  # adapter (B is the parameter) | projected (ΔW is, updates projected onto span(V))
    offset_from: str | None = None  # the saved adapter the offset is (ΔW_t0 of a source run): saved adapters refer to it
    kind = "locked"

OFFSET_FROM = "adapters_geo_locked_offset_from"  # model attribute: where the offset came from (export refers to it)


MODES = ("adapter", "projected")


class LockedDelta(nn.Module):
    """ΔW = offset + B Vᵀ (or offset + U M Vᵀ); only B (or M) trains."""

    def __init__(self, shape, right, offset=None, left=None, dtype=torch.float32, mode: str = "adapter"):
        super().__init__()
        m, n = shape
        k = right.shape[1]
        if mode not in MODES or (mode == "projected" and left is not None):
            raise AdaptersGeoError(f"locked mode '{mode}' (two-sided: {left is not None}) is not available",
                                   f"use one of {', '.join(MODES)}; projected needs a one-sided basis")
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
        coef = torch.zeros((k if left is not None else m, k), dtype=dtype)
        self.mode = mode
        if mode == "adapter":
            self.coef = nn.Parameter(coef)
            self.full = None
        else:  # B is derived state; the trainable tensor is ΔW = offset + B Vᵀ
            self.register_buffer("coef", coef)
            self.full = nn.Parameter(compose(coef, self.right, None, self.offset).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.full is not None:
            return F.linear(x.to(self.full.dtype), self.full)
        x = x.to(self.coef.dtype)
        h = F.linear(F.linear(x, self.right.T), self.coef)  # (…, K) -> (…, m or K)
        if self.left is not None:
            h = F.linear(h, self.left)
        return h if self.offset is None else h + F.linear(x, self.offset)

    def delta_weight(self) -> torch.Tensor:
        if self.full is not None:
            return self.full
        return compose(self.coef, self.right, self.left, self.offset)

    @torch.no_grad()
    def project_update(self) -> None:
        """projected mode, after an optimizer step: B ← B + U V with U = ΔW_new − (offset + B Vᵀ); ΔW ← offset + B Vᵀ."""
        before = compose(self.coef, self.right, None, self.offset)
        self.coef.add_((self.full - before) @ self.right)
        self.full.copy_(compose(self.coef, self.right, None, self.offset))

    @torch.no_grad()
    def set_coef(self, value: torch.Tensor) -> None:
        """Load B (both modes)."""
        self.coef.copy_(value)
        if self.full is not None:
            self.full.copy_(compose(self.coef, self.right, None, self.offset))


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
        return LockedDelta(layer_shape(layer), config.right[name], offsets.get(name), lefts.get(name), dtype, config.mode)

    paths = [name.removesuffix(".weight") for name in config.right]
    model = inject(model, paths, make, "locked")
    if config.offset_from is not None:
        setattr(model, OFFSET_FROM, str(config.offset_from))
    return model


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
        "mode": first.mode,
    }
    offset_from = getattr(model, OFFSET_FROM, None)
    if offset_from is not None:  # ΔW_t0 is already on disk in the source run: refer to it instead of copying it
        config["offset_from"] = offset_reference(offset_from)
    tensors = {}
    for name, layer in layers.items():
        for part in ("coef", "right", "left", "offset"):
            value = getattr(layer.delta, part)
            if value is not None and not (part == "offset" and offset_from is not None):
                tensors[f"{name}:{part}"] = value.detach().cpu().contiguous()
    return config, tensors


def offset_reference(folder) -> dict:
    """{"folder": absolute path, "adapter_json_sha256": …}: a saved adapter a locked adapter's offset is read from."""
    import hashlib
    from pathlib import Path

    folder = Path(folder).resolve()
    return {"folder": str(folder), "adapter_json_sha256": hashlib.sha256((folder / "adapter.json").read_bytes()).hexdigest()}


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

    attach(model, LockedConfig(right=part("right"), offset=part("offset"), left=part("left"), dtype=config["dtype"],
                               offset_from=(config.get("offset_from") or {}).get("folder")))
    with torch.no_grad():
        for name, layer in delta_layers(model).items():
            layer.delta.coef.copy_(tensors[f"{name}:coef"])
    return model
