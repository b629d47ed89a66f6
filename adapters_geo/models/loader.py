"""Load a frozen base (or teacher) model from a spec, optionally quantized.

The returned model carries a `BaseInfo` (spec, content fingerprint, quantization) that
adapters record when saved, so that loading one onto another base fails clearly.
"""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.quant import bnb_config, check_quant, keep_4bit_layout
from adapters_geo.models.specs import fingerprint, resolve_spec

INFO_ATTR = "adapters_geo_base"


@dataclass(frozen=True)
class BaseInfo:
    """Identity of a loaded base: what an adapter must be loaded back onto."""

    spec: str
    folder: str
    fingerprint: str
    quant: str
    double_quant: bool
    dtype: str
    device: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Base:
    """A loaded base model with its tokenizer and identity."""

    model: nn.Module
    tokenizer: object
    info: BaseInfo


def pick_device(device: str = "auto") -> torch.device:
    """`auto` means CUDA when present (under a data-parallel launcher, this process's GPU: LOCAL_RANK), else CPU."""
    if device == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` means fp32 on CPU and bf16 on CUDA."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise AdaptersGeoError(f"unknown dtype '{dtype}'", "use auto, float32 or bfloat16")
    return table[dtype]


def load_base(
    spec: str,
    quant: str = "none",
    *,
    double_quant: bool = True,
    dtype: str = "auto",
    device: str = "auto",
) -> Base:
    """Load `spec` frozen, in eval mode, quantized as asked. See models/specs.py for specs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_quant(quant)
    folder = resolve_spec(spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    quantization = bnb_config(quant, torch_dtype, double_quant=double_quant)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch_dtype, quantization_config=quantization, device_map={"": str(dev)}
        )
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise AdaptersGeoError(
            f"could not load model '{spec}' from {folder}: {str(exc).splitlines()[0]}",
            "check that the folder holds a causal-LM checkpoint written by save_pretrained",
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.requires_grad_(False)
    model.eval()
    if quant == "4bit":
        keep_4bit_layout(model)
    info = BaseInfo(
        spec=spec,
        folder=str(Path(folder)),
        fingerprint=fingerprint(Path(folder)),
        quant=quant,
        double_quant=double_quant if quant == "4bit" else False,
        dtype=str(torch_dtype).removeprefix("torch."),
        device=str(dev),
    )
    setattr(model, INFO_ATTR, info)
    return Base(model=model, tokenizer=tokenizer, info=info)


def load_teacher(spec: str, quant: str = "none", **kwargs) -> Base:
    """Load a teacher alongside a student: the same loader, always frozen."""
    return load_base(spec, quant, **kwargs)


def base_info(model: nn.Module) -> BaseInfo:
    """The BaseInfo of a model loaded by `load_base`, through any adapter wrapping."""
    for module in model.modules():
        info = getattr(module, INFO_ATTR, None)
        if isinstance(info, BaseInfo):
            return info
    raise AdaptersGeoError("this model was not loaded by adapters_geo.load_base", "load it with load_base(spec)")


def checkpoint_activations(model: nn.Module) -> None:
    """Gradient (activation) checkpointing on `model`, non-reentrant (frozen bases need no input grads);
    transformers 5.24 renamed gradient_checkpointing_enable to activation_checkpointing_enable."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
