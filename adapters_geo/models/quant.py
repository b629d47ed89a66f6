"""Quantized bases through bitsandbytes, and the dequantized weight a layer computes with.

quant = `none` (fp32 on CPU, bf16 on CUDA), `8bit` (LLM.int8 row-wise absmax), `4bit`
(NF4 by default, optional double quantization). `dequantized_weight` is the reference W0
of docs/geometry.md for a quantized base: exactly what the layer multiplies by.
"""

from typing import Literal

import torch
from torch import nn

from adapters_geo.errors import AdaptersGeoError

QUANTS = ("none", "8bit", "4bit")
Quant = Literal[QUANTS]  # the type of a config's quant field


def check_quant(quant: str) -> str:
    """Validate a quantization name."""
    if quant not in QUANTS:
        raise AdaptersGeoError(f"unknown quantization '{quant}'", f"use one of {', '.join(QUANTS)}")
    return quant


def bnb_config(quant: str, compute_dtype: torch.dtype, double_quant: bool = True, quant_type: str = "nf4"):
    """The transformers BitsAndBytesConfig for `quant`, or None for `none`."""
    from transformers import BitsAndBytesConfig

    if check_quant(quant) == "none":
        return None
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def is_linear(module: nn.Module) -> bool:
    """True for torch and bitsandbytes linear layers."""
    import bitsandbytes as bnb

    return isinstance(module, (nn.Linear, bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """The fp32 (m, n) weight that `layer` effectively multiplies its input by."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf

    weight = layer.weight
    if isinstance(layer, bnb.nn.Linear4bit):
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            return _dequantize_cpu_packed(weight.data, weight.quant_state)
        return bnbf.dequantize_4bit(weight.data, weight.quant_state).float()
    if isinstance(layer, bnb.nn.Linear8bitLt):
        scales = weight.SCB if weight.SCB is not None else layer.state.SCB
        return bnbf.int8_vectorwise_dequant(weight.data, scales).float()
    return weight.detach().float()


def _dequantize_cpu_packed(packed: torch.Tensor, state, block_n: int = 32) -> torch.Tensor:
    """Dequantize a 4-bit weight that bitsandbytes repacked for its AVX512-BF16 CPU kernel.

    On such CPUs an eval-mode forward rewrites the layer in place: codes become an (N, K/2)
    tile-interleaved layout and absmax a de-nested (K/blocksize, N) bf16 table. Read the codes
    back without touching the layer: W[n, k] = code[q[n, k]] * absmax[k // blocksize, n].
    """
    n, k_half = packed.shape
    tiles = packed.reshape(-1, 32)
    codes = torch.cat([tiles & 0xF, (tiles >> 4) & 0xF], dim=-1)
    codes = codes.reshape(n // block_n, k_half, block_n, 2).transpose(1, 2).reshape(n, 2 * k_half)
    values = state.code.float()[codes.long()]
    scales = state.absmax.float().T.repeat_interleave(state.blocksize, dim=1)
    return values * scales


def keep_4bit_layout(model: nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU kernel at the first eval forward.

    The repacked layer computes with bf16 scales, so train-mode and eval-mode forwards would use
    slightly different weights; keeping one layout makes them agree on every CPU.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
