"""`lora`: the low-rank adapter, through peft. ΔW = scaling · B A, rank ≤ r.

scaling = alpha / r (alpha / √r with rslora). ΔW is computed here from the factors in
fp32, never by merging into a (possibly quantized) base layer. Saved as a standard peft
folder (`save_peft`), which `peft.PeftModel.from_pretrained` loads as it is.
"""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from adapters_geo.adapters.targets import Targets, resolve_targets
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.weights import canonical_name
from adapters_geo.config.schema import Section

ADAPTER_NAME = "default"


class LoraConfig(Section):
    """Config of the LoRA adapter (mapped onto peft.LoraConfig); r ≤ min(m, n) is checked once the base is loaded."""

    kind: Literal["lora"] = "lora"
    r: int = Field(8, ge=1)  # rank
    alpha: float = Field(16.0, gt=0)  # scaling alpha / r
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: Targets = "all-linear"  # "all-linear" or a list of module-name suffixes
    rslora: bool = False  # scaling alpha/sqrt(r) instead of alpha/r


def attach(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Wrap `model` in a peft LoRA model over the target layers; returns the PeftModel."""
    import peft

    if hasattr(model, "peft_config") or any(hasattr(m, "base_layer") for m in model.modules()):
        raise AdaptersGeoError("this model already carries an adapter", "load a fresh base with load_base")
    paths = list(resolve_targets(model, config.targets).values())
    peft_config = peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=paths,
        use_rslora=config.rslora,
        init_lora_weights=True,  # A Kaiming-uniform, B zero: ΔW starts at 0
    )
    return peft.get_peft_model(model, peft_config)


def lora_layers(model: nn.Module) -> dict:
    """{canonical weight name: peft LoraLayer}."""
    from peft.tuners.lora import LoraLayer

    return {canonical_name(p): m for p, m in model.named_modules() if isinstance(m, LoraLayer)}


def is_attached(model: nn.Module) -> bool:
    return bool(lora_layers(model))


def compose(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """ΔW = scaling · B A in fp32; A (r, n), B (m, r)."""
    return (b.float() @ a.float()) * scaling


def scaling_of(r: int, alpha: float, rslora: bool) -> float:
    return alpha / r**0.5 if rslora else alpha / r


def layer_delta(layer) -> torch.Tensor:
    """ΔW of one peft LoRA layer, in fp32."""
    name = layer.active_adapters[0]
    if layer.use_dora.get(name, False):
        raise AdaptersGeoError("DoRA adapters are not supported", "train plain LoRA (use_dora=False)")
    delta = compose(layer.lora_A[name].weight, layer.lora_B[name].weight, layer.scaling[name])
    return delta.T if getattr(layer, "fan_in_fan_out", False) else delta


def layer_factors(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, R) with ΔW = L @ R for one peft LoRA layer: (scaling · B, A), transposed for fan_in_fan_out; fp32 copies."""
    name = layer.active_adapters[0]
    if layer.use_dora.get(name, False):
        raise AdaptersGeoError("DoRA adapters are not supported", "train plain LoRA (use_dora=False)")
    a = layer.lora_A[name].weight.detach().to(torch.float32, copy=True)  # copies: a caller may hold them past the next step
    b = layer.lora_B[name].weight.detach().to(torch.float32, copy=True)
    scaling = layer.scaling[name]
    return (a.T, b.T * scaling) if getattr(layer, "fan_in_fan_out", False) else (b * scaling, a)


def readers(model: nn.Module) -> dict:
    """{canonical weight name: callable returning that layer's fp32 ΔW}, one matrix at a time."""
    return {name: (lambda layer=layer: layer_delta(layer)) for name, layer in lora_layers(model).items()}


def factors(model: nn.Module) -> dict:
    """{canonical weight name: (L, R)}, ΔW = L @ R, of every LoRA layer (rank r: small to hold)."""
    with torch.no_grad():
        return {name: layer_factors(layer) for name, layer in lora_layers(model).items()}


def merged_deltas(model: nn.Module) -> dict[str, torch.Tensor]:
    """{canonical weight name: fp32 ΔW} from each layer's LoRA factors."""
    with torch.no_grad():
        return {name: read() for name, read in readers(model).items()}


def export(model: nn.Module) -> tuple[dict, dict]:
    """(config dict, tensors): r, alpha, dropout, rslora and the A, B factors."""
    layers = lora_layers(model)
    peft_config = model.peft_config[ADAPTER_NAME]
    config = {
        "r": int(peft_config.r),
        "alpha": float(peft_config.lora_alpha),
        "dropout": float(peft_config.lora_dropout),
        "rslora": bool(peft_config.use_rslora),
    }
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{name}:lora_A"] = layer.lora_A[ADAPTER_NAME].weight.detach().cpu().contiguous()
        tensors[f"{name}:lora_B"] = layer.lora_B[ADAPTER_NAME].weight.detach().cpu().contiguous()
    return config, tensors


def save_peft(model: nn.Module, folder) -> list[str]:
    """Write adapter_config.json + adapter_model.safetensors through peft's own save_pretrained; returns their names."""
    from adapters_geo.adapters.peft_files import CONFIG_FILE, WEIGHTS_FILE

    from adapters_geo.models.loader import base_info
    from adapters_geo.models.specs import portable_name

    config = model.peft_config[ADAPTER_NAME]
    recorded = config.base_model_name_or_path
    # peft records the folder the base was loaded from (a local cache path): name it as another machine can
    config.base_model_name_or_path = portable_name(base_info(model).spec)
    try:
        model.save_pretrained(str(folder), safe_serialization=True, save_embedding_layers=False)
    finally:
        config.base_model_name_or_path = recorded
    return [WEIGHTS_FILE, CONFIG_FILE]


def saved_deltas(config: dict, tensors: dict):
    """Yield (name, fp32 ΔW) from saved factors, without building a model."""
    scaling = scaling_of(config["r"], config["alpha"], config["rslora"])
    for name in dict.fromkeys(key.rsplit(":", 1)[0] for key in tensors):
        yield name, compose(tensors[f"{name}:lora_A"], tensors[f"{name}:lora_B"], scaling)


def restore(model: nn.Module, config: dict, tensors: dict) -> nn.Module:
    """Attach LoRA with the saved config and copy the saved factors in."""
    names = sorted({key.rsplit(":", 1)[0] for key in tensors})
    targets = [name.removesuffix(".weight") for name in names]
    config = LoraConfig(r=config["r"], alpha=config["alpha"], dropout=config["dropout"], targets=targets, rslora=config["rslora"])
    model = attach(model, config)
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            layer.lora_A[ADAPTER_NAME].weight.copy_(tensors[f"{name}:lora_A"])
            layer.lora_B[ADAPTER_NAME].weight.copy_(tensors[f"{name}:lora_B"])
    return model
