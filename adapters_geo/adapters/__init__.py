"""The three adapter kinds and the one contract the geometry needs.

Each kind module offers attach / is_attached / merged_deltas / export / restore:
- `dense`: full-rank-tracked delta of each target weight (dense.py);
- `lora`: low-rank, through peft (lora.py);
- `locked`: frozen-basis delta of the subspace-locking test (locked.py, bases.py).
`merged_deltas(model)` gives {weight name: fp32 ΔW} for whichever kind is attached, with
the names `adapters_geo.models.base_weights` uses.
"""

from torch import nn

from adapters_geo.adapters import dense, locked, lora
from adapters_geo.adapters.bases import random_orthonormal_basis, top_singular_basis
from adapters_geo.adapters.delta_linear import merged_deltas as _delta_linear_deltas
from adapters_geo.adapters.delta_linear import readers as _delta_linear_readers
from adapters_geo.adapters.dense import DenseConfig
from adapters_geo.adapters.locked import LockedConfig
from adapters_geo.adapters.lora import LoraConfig
from adapters_geo.errors import AdaptersGeoError

KINDS = {"dense": dense, "lora": lora, "locked": locked}


def attach_adapter(model: nn.Module, config) -> nn.Module:
    """Attach the adapter `config` describes (DenseConfig, LoraConfig, LockedConfig); returns the model to train."""
    kind = getattr(config, "kind", None)
    if kind not in KINDS:
        raise AdaptersGeoError(f"unknown adapter config {type(config).__name__}", f"use one of {', '.join(KINDS)}")
    return KINDS[kind].attach(model, config)


def adapter_kind(model: nn.Module) -> str:
    """Name of the adapter kind attached to `model`."""
    for name, module in KINDS.items():
        if module.is_attached(model):
            return name
    raise AdaptersGeoError("this model carries no adapter", "attach one with attach_adapter or load_adapter")


def merged_deltas(model: nn.Module) -> dict:
    """{weight name: fp32 ΔW} computed from the attached adapter's own factors."""
    if adapter_kind(model) == "lora":
        return lora.merged_deltas(model)
    return _delta_linear_deltas(model)


def delta_readers(model: nn.Module) -> dict:
    """{weight name: callable giving that matrix's fp32 ΔW}: merged_deltas one matrix at a time (call under no_grad).

    For whoever must not hold every target's ΔW at once (the tracker: 6.4 GB at 1.7B with LoRA).
    """
    return lora.readers(model) if adapter_kind(model) == "lora" else _delta_linear_readers(model)


def low_rank_factors(model: nn.Module) -> dict:
    """{weight name: (L, R)} with ΔW = L @ R where the adapter is low-rank by construction (LoRA), else {}."""
    return lora.factors(model) if adapter_kind(model) == "lora" else {}


def trainable_named(model: nn.Module) -> dict:
    """{parameter name: tensor} of the adapter's trainable parameters (the base is frozen)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def trainable_parameters(model: nn.Module) -> list:
    """The adapter's trainable parameters, in the model's order."""
    return list(trainable_named(model).values())


__all__ = [
    "DenseConfig", "KINDS", "LockedConfig", "LoraConfig", "adapter_kind", "attach_adapter", "delta_readers",
    "low_rank_factors", "merged_deltas",
    "random_orthonormal_basis", "top_singular_basis", "trainable_named", "trainable_parameters",
]
