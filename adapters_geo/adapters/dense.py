"""`dense`: the full-rank-tracked adapter. ΔW is a trainable tensor of the weight's shape.

Zero-initialised, fp32 by default (bf16 optional), added to the frozen (possibly
quantized) base in the forward pass: y = base(x) + x ΔWᵀ. Training it is full fine-tuning
of the target matrices, with the update kept apart from the base so it can be measured.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from adapters_geo.adapters.delta_linear import delta_layers, inject, layer_shape
from adapters_geo.adapters.targets import Targets
from adapters_geo.config.schema import Section

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class DenseConfig(Section):
    """Config of the dense adapter."""

    kind: Literal["dense"] = "dense"
    targets: Targets = "all-linear"  # "all-linear" or a list of module-name suffixes
    dtype: Literal[tuple(DTYPES)] = "float32"  # storage dtype of ΔW: float32 or bfloat16


class DenseDelta(nn.Module):
    """A full (m, n) trainable delta."""

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight)

    def delta_weight(self) -> torch.Tensor:
        return self.weight


def attach(model: nn.Module, config: DenseConfig) -> nn.Module:
    """Wrap the target layers with zero-initialised dense deltas."""
    dtype = DTYPES[config.dtype]
    return inject(model, config.targets, lambda name, layer: DenseDelta(layer_shape(layer), dtype), "dense")


def is_attached(model: nn.Module) -> bool:
    return any(isinstance(layer.delta, DenseDelta) for layer in delta_layers(model).values())


def export(model: nn.Module) -> tuple[dict, dict]:
    """(config dict, tensors) describing the adapter, for saving."""
    layers = delta_layers(model)
    dtype = next(iter(layers.values())).delta.weight.dtype
    config = {"dtype": str(dtype).removeprefix("torch.")}
    tensors = {f"{name}:delta": layer.delta.weight.detach().cpu().contiguous() for name, layer in layers.items()}
    return config, tensors


def saved_deltas(config: dict, tensors: dict):
    """Yield (name, fp32 ΔW) from saved tensors."""
    for key, value in tensors.items():
        yield key.rsplit(":", 1)[0], value.float()


def project_gradients(model: nn.Module, right: dict) -> None:
    """From now on every dense delta's gradient is projected, g ← g V Vᵀ, before any optimizer sees it.

    The published locking recipe (docs/geometry.md, mode `gradient`): it restricts the gradient's
    information to span(V); Adam's per-coordinate scaling then moves ΔW out of span(V).
    """
    for name, layer in delta_layers(model).items():
        v = right[name].to(layer.delta.weight.device, torch.float32)
        layer.delta.weight.register_hook(lambda g, v=v: ((g.float() @ v) @ v.T).to(g.dtype))


def restore(model: nn.Module, config: dict, tensors: dict) -> nn.Module:
    """Attach a dense adapter holding the saved tensors."""
    names = [key.rsplit(":", 1)[0] for key in tensors]
    paths = [name.removesuffix(".weight") for name in names]
    attach(model, DenseConfig(targets=paths, dtype=config["dtype"]))
    with torch.no_grad():
        for name, layer in delta_layers(model).items():
            layer.delta.weight.copy_(tensors[f"{name}:delta"])
    return model
