"""Merged checkpoints: base + ΔW written as a plain transformers folder.

For every adapter kind (dense, LoRA, locked) each target's merged weight is W = W0 + ΔW,
with ΔW from the saved adapter's own files (fp32) and W0 the weight the adapter was trained
against: the checkpoint's weight for quant=none, the dequantized weight
(`models.quant.dequantized_weight`) for an 8bit / 4bit base, where every other linear of the
blocks takes its dequantized weight too, since the quantized model computes with those.
W0 + ΔW is summed in fp32 and cast once at the end: the folder holds fp32 (default) or bf16
weights (`dtype`, half the size: a 7B model is 14 GB instead of 28), the tokenizer and no quantization config, so
`AutoModelForCausalLM.from_pretrained(out)` gives a plain model that computes like the
adapted one. Its config names the base portably (models/specs.py's portable_name: the hub id the base came
from, not a local cache folder); `adapters_geo_export.json` says which adapter it came from.
"""

import json
from pathlib import Path

import torch
from torch import nn

from adapters_geo.adapters.io import check_compatible, load_saved_deltas
from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.weights import base_linears
from adapters_geo.storage.runfolder import refuse_inside_finished_run

RUN_ADAPTER = "adapter"  # a training run folder keeps its final adapter here
PROVENANCE_FILE = "adapters_geo_export.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # what a merged checkpoint may be written in


def adapter_folder(path) -> Path:
    """The adapter folder behind `path`: `path/adapter` for a training run folder, else `path`."""
    path = Path(path)
    return path / RUN_ADAPTER if (path / RUN_ADAPTER).is_dir() else path


def export_merged(source, out, dtype: str = "float32") -> Path:
    """Write base + ΔW of the adapter (or run folder) `source` to the new folder `out` in `dtype`; returns `out`."""
    from adapters_geo.models import load_base
    from adapters_geo.models.specs import portable_name

    if dtype not in DTYPES:
        raise AdaptersGeoError(f"export dtype '{dtype}' is not supported", f"use one of {', '.join(DTYPES)}")
    out = Path(out)
    refuse_inside_finished_run(out, "--merged")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AdaptersGeoError(f"{out} already exists and is not empty", "choose a new folder for the merged checkpoint")
    folder = adapter_folder(source)
    meta, deltas = load_saved_deltas(folder)
    saved = meta["base"]
    plain = load_base(saved["spec"], "none", dtype="float32", device="cpu")
    if saved["quant"] == "none":
        check_compatible(plain.model, meta, folder)
    else:
        quantized = load_base(saved["spec"], saved["quant"], double_quant=saved["double_quant"], dtype=saved["dtype"])
        check_compatible(quantized.model, meta, folder)
        copy_dequantized(quantized.model, plain.model)
        del quantized
    count = add_deltas(plain.model, deltas)  # in fp32
    plain.model.to(DTYPES[dtype])  # one rounding, of the sum
    config = plain.model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = portable_name(saved["spec"])
    provenance = {"adapter": str(Path(folder).resolve()), "kind": meta["kind"], "matrices": count,
                  "base": saved, "base_model_name_or_path": config._name_or_path,
                  "adapter_sha256": meta.get("sha256"), "dtype": dtype}
    with atomic_dir(out, overwrite=out.exists()) as tmp:
        plain.model.save_pretrained(tmp, safe_serialization=True)
        plain.tokenizer.save_pretrained(tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))
    return out


@torch.no_grad()
def copy_dequantized(quantized: nn.Module, plain: nn.Module) -> None:
    """Give every block linear of `plain` the fp32 weight its quantized twin computes with."""
    from adapters_geo.models.quant import dequantized_weight

    targets = base_linears(plain)
    for name, layer in base_linears(quantized).items():
        targets[name].weight.copy_(dequantized_weight(layer).to(targets[name].weight.device))


@torch.no_grad()
def add_deltas(model: nn.Module, deltas) -> int:
    """W ← W + ΔW for each (name, fp32 ΔW); returns how many matrices changed."""
    layers = base_linears(model)
    count = 0
    for name, delta in deltas:
        weight = layers[name].weight
        weight += delta.to(weight.device, weight.dtype)
        count += 1
    return count
