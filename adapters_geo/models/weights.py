"""Naming and reading the base's linear weights, whatever wraps them.

Every target matrix is named by its parameter name in the plain base model
(`model.layers.0.self_attn.q_proj.weight`), whether the layer is bare, wrapped by one of
our adapters or by peft (`base_model.model.` prefixes and `.base_layer` are removed).
`base_weights` and every adapter's `merged_deltas` use these names.
"""

from collections.abc import Mapping

import torch
from torch import nn

from adapters_geo.models.quant import dequantized_weight, is_linear

PEFT_PREFIX = "base_model.model."


def canonical_name(module_path: str) -> str:
    """Parameter name of a linear layer's weight in the unwrapped base model."""
    if module_path.startswith(PEFT_PREFIX):
        module_path = module_path[len(PEFT_PREFIX):]
    parts = [p for p in module_path.split(".") if p != "base_layer"]
    return ".".join(parts) + ".weight"


def base_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Every base linear layer except the output head, by canonical name."""
    head = model.get_output_embeddings()
    found = {}
    for path, module in model.named_modules():
        if not is_linear(module) or module is head:
            continue
        if any(part.startswith("lora_") for part in path.split(".")):
            continue  # peft's own factor layers
        found[canonical_name(path)] = module
    return found


def adapted_linears(model: nn.Module) -> dict[str, nn.Module]:
    """The base linear layers that an adapter wraps (empty when none is attached)."""
    return {
        canonical_name(path): module.base_layer
        for path, module in model.named_modules()
        if hasattr(module, "base_layer") and is_linear(module.base_layer)
    }


def target_layers(model: nn.Module, names=None) -> dict[str, nn.Module]:
    """{name: base linear layer} of the adapter's targets (all linears if none), or of `names`."""
    layers = adapted_linears(model) or base_linears(model)
    if names is not None:
        missing = sorted(set(names) - set(layers))
        if missing:
            raise KeyError(f"not a base linear weight of this model: {missing[:3]}")
        layers = {n: layers[n] for n in names}
    return layers


@torch.no_grad()
def base_weights(model: nn.Module, names=None) -> dict[str, torch.Tensor]:
    """{name: fp32 dequantized base weight} for the adapter's targets (all linears if none)."""
    return {name: dequantized_weight(layer) for name, layer in target_layers(model, names).items()}


class LazyBaseWeights(Mapping):
    """{name: fp32 dequantized base weight (+ offset)} read one matrix at a time, never all held.

    For the tracked steps of a run: a quantized 1.5B base would otherwise keep a 6 GB fp32 copy.
    """

    def __init__(self, model: nn.Module, names, offsets: dict | None = None):
        self.layers = target_layers(model, names)
        self.offsets = offsets or {}

    @torch.no_grad()
    def __getitem__(self, name: str) -> torch.Tensor:
        weight = dequantized_weight(self.layers[name])
        return weight + self.offsets[name] if name in self.offsets else weight

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)
