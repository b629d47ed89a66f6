"""A frozen base linear layer plus a trainable delta: y = base(x) + x ΔWᵀ.

Shared by the `dense` and `locked` adapters. The base may be a torch or bitsandbytes
layer; it is never modified, so ΔW always comes from the delta's own factors.
For a plain (unquantized) torch base the forward is one matmul with W0 + ΔW, built on the
fly: the cost of full fine-tuning instead of two matmuls, the same gradient for ΔW; without
gradients too (teacher-forced scoring, evaluation) once an input has MERGE_ROWS rows.
`inference_weights(model)` caches W0 + ΔW for the length of a block without gradients
(sampling): decoding then reads one matrix per layer and token instead of two.
`inject` also disables the model's `save_pretrained`: it would write base_layer/delta keys
that transformers reloads as random weights; export_merged writes the merged checkpoint.
"""

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from adapters_geo.adapters.targets import replace_module, resolve_targets
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.weights import canonical_name


MERGE_ROWS = 16  # inputs of at least this many rows use one matmul with W0 + ΔW also without gradients


class DeltaLinear(nn.Module):
    """Wraps `base_layer` (frozen) and adds `delta(x)`; `delta.delta_weight()` is ΔW."""

    def __init__(self, base_layer: nn.Module, delta: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.delta = delta
        self.merged = None  # W0 + ΔW cached by inference_weights, else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            # bf16-mixed (training/precision.py): W0 and ΔW are cast to bf16 apart and never summed first; a
            # bf16(W0 + ΔW) would drop every update under W0's bf16 resolution (2^-8 relative; a 40-step ΔW is
            # ~1e-3 of W0), the bf16-base bug of issue 14; the two outputs are summed in fp32 for the same reason
            # (tests/training/test_precision.py: the layer's output moves as in fp32, cosine > 0.99)
            return self.base_layer(x).float() + self.delta(x).float()
        if self.merged is not None and not torch.is_grad_enabled():
            return F.linear(x, self.merged, self.base_layer.bias)
        # merging costs one pass over the matrix per call: worth it for training and for scoring many tokens
        # (measured on a 1536 × 576 layer, 2-core CPU: 800 rows 7.5 ms merged vs 15.5 ms as two matmuls, 32 rows
        # 0.75 vs 1.1, 8 rows 0.42 vs 0.41, 1 row 0.34 vs 0.19); one decoded token per call keeps two matmuls
        if type(self.base_layer) is nn.Linear and (torch.is_grad_enabled() or x.numel() >= MERGE_ROWS * x.shape[-1]):
            weight, delta = self.base_layer.weight, self.delta.delta_weight()
            # one matmul with W0 + ΔW where W0 is fp32 (or as precise as ΔW); a bf16 base (CUDA) keeps the
            # two-matmul path below: W0 + ΔW rounded to bf16 drops every update under W0's bf16 resolution
            if weight.dtype == torch.float32 or weight.dtype == delta.dtype:
                return F.linear(x, weight + delta.to(weight.dtype), self.base_layer.bias)
        out = self.base_layer(x)
        return out + self.delta(x).to(out.dtype)


@contextlib.contextmanager
def inference_weights(model: nn.Module):
    """Inside the block (no gradients), plain-linear DeltaLinear layers use a cached W0 + ΔW."""
    layers = [m for m in model.modules() if isinstance(m, DeltaLinear) and type(m.base_layer) is nn.Linear]
    with torch.no_grad():
        for layer in layers:
            weight = layer.base_layer.weight
            layer.merged = (weight.float() + layer.delta.delta_weight().float()).to(weight.dtype)  # one rounding
    try:
        yield model
    finally:
        for layer in layers:
            layer.merged = None


def layer_shape(layer: nn.Module) -> tuple[int, int]:
    """(out_features, in_features) of a torch or bitsandbytes linear layer."""
    return int(layer.out_features), int(layer.in_features)


def inject(model: nn.Module, targets, make_delta, kind: str) -> nn.Module:
    """Wrap every target layer with DeltaLinear(layer, make_delta(name, layer)); `kind` names the adapter."""
    if delta_layers(model) or hasattr(model, "peft_config"):
        raise AdaptersGeoError("this model already carries an adapter", "load a fresh base with load_base")
    model.requires_grad_(False)  # the base is always frozen; only the deltas created below train
    for name, path in resolve_targets(model, targets).items():
        layer = model.get_submodule(path)
        delta = make_delta(name, layer)
        device = next(layer.parameters()).device
        replace_module(model, path, DeltaLinear(layer, delta.to(device)))
    model.save_pretrained = refuse_save_pretrained(kind)  # this instance only; the class is untouched
    return model


def refuse_save_pretrained(kind: str):
    """A stand-in for `save_pretrained` on a model carrying a dense or locked adapter."""

    def save_pretrained(*args, **kwargs):
        raise AdaptersGeoError(
            f"save_pretrained cannot save a model carrying a {kind} adapter "
            "(transformers would reload its base_layer/delta weights as random weights)",
            "save the adapter with save_adapter, or write base + ΔW as a plain checkpoint with "
            "adapters_geo.adapters.export.export_merged / `adapters-geo export ADAPTER --merged OUT`",
        )

    return save_pretrained


def delta_layers(model: nn.Module) -> dict[str, DeltaLinear]:
    """{canonical weight name: DeltaLinear} of every wrapped layer."""
    return {canonical_name(p): m for p, m in model.named_modules() if isinstance(m, DeltaLinear)}


def readers(model: nn.Module) -> dict:
    """{canonical weight name: callable returning that layer's fp32 ΔW (a copy, never a view)}."""
    return {name: (lambda layer=layer: layer.delta.delta_weight().detach().to(torch.float32, copy=True))
            for name, layer in delta_layers(model).items()}


def merged_deltas(model: nn.Module) -> dict[str, torch.Tensor]:
    """{canonical weight name: fp32 ΔW} from each wrapped layer's delta module (copies, never views)."""
    with torch.no_grad():
        return {name: read() for name, read in readers(model).items()}
