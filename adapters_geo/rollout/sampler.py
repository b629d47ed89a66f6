"""A low-precision copy of the merged policy for drawing rollouts, as vLLM-based trainers do.

Decoding is memory-bound matrix-vector work: reading the weights in bf16 halves the bytes per token
(measured 3.2× faster matrix-vector products on this project's AVX512-BF16 CPU). Training and
scoring stay in the run's precision; only sampling uses the copy, so the samples come from a
slightly different policy π_sampler. Its log-probabilities of the sampled tokens are returned with
the samples and become the behaviour policy of the clipped importance ratio π_θ / π_sampler
(methods/policy.py), so the mismatch is corrected, not ignored; its size, the mean
|log π_sampler − log π_θ| per token, is logged as `policy_mismatch`.

The copy is a plain transformers model of the base's architecture whose every weight is the
merged one, W0 + ΔW, added in fp32 and then cast (casting ΔW alone would lose updates below bf16
resolution twice); `refresh(model)` re-merges the adapter's targets before each batch.
"""

import torch

from adapters_geo.adapters import delta_readers
from adapters_geo.models.quant import dequantized_weight
from adapters_geo.models.weights import PEFT_PREFIX, base_linears
from adapters_geo.rollout.sampling import cut_at_eos, draw_options, left_pad, shared_prefill

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def fast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware has fast bf16 kernels (CUDA, AVX512-BF16 / AMX CPUs), else fp32."""
    if device.type == "cuda":
        return torch.bfloat16
    supported = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return torch.bfloat16 if supported else torch.float32


def sampler_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` (fast_dtype), `float32` or `bfloat16`."""
    return fast_dtype(device) if name == "auto" else DTYPES[name]


def _plain_name(name: str) -> str | None:
    """The base model's parameter name of a (possibly wrapped) parameter; None for adapter parameters."""
    name = name.removeprefix(PEFT_PREFIX)
    parts = name.split(".")
    if any(p.startswith("lora_") or p == "delta" for p in parts):
        return None
    return ".".join(p for p in parts if p != "base_layer")


class Sampler:
    """The merged policy in `dtype`, for sampling only."""

    def __init__(self, model, dtype: torch.dtype):
        from transformers import AutoModelForCausalLM

        self.dtype = dtype
        self.device = next(model.parameters()).device
        config = model.config
        with torch.device("meta"):
            replica = AutoModelForCausalLM.from_config(config, dtype=dtype)
        replica.to_empty(device=self.device)
        own = dict(replica.named_parameters()) | dict(replica.named_buffers())
        linears = base_linears(model)  # their weights are merged (and dequantized) by refresh
        with torch.no_grad():
            for name, value in list(model.named_parameters()) + list(model.named_buffers()):
                plain = _plain_name(name)
                if plain in own and plain not in linears:
                    own[plain].copy_(value)  # into the replica's dtype (bf16 weights; fp32 buffers stay fp32)
        replica.tie_weights()
        replica.eval()
        replica.generation_config = model.generation_config
        self.model = replica
        self.params = own
        self.refresh(model)

    @torch.no_grad()
    def refresh(self, model) -> None:
        """Copy W0 + ΔW of every adapted (and every other linear) layer into the replica, merged in fp32."""
        deltas = delta_readers(model)  # one ΔW at a time: never every target's fp32 ΔW at once
        for name, layer in base_linears(model).items():
            merged = dequantized_weight(layer).to(self.device, torch.float32)
            if name in deltas:
                merged = merged + deltas[name]().to(self.device)
            self.params[name].copy_(merged.to(self.dtype))

    @torch.no_grad()
    def sample(self, tokenizer, prompts: list[list[int]], num_samples: int, max_new_tokens: int, temperature: float):
        """(completions prompt-major, (B, L) log π_sampler of each sampled token at temperature 1, 0 beyond its length)."""
        rows = [p for p in prompts for _ in range(num_samples)]
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id
        input_ids, attention = left_pad(rows, pad, width, self.device)
        options = draw_options(temperature)
        if num_samples > 1 and width > 1:
            options["cache"] = shared_prefill(self.model, prompts, pad, width, num_samples, self.device)
        out = self.model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                  pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, output_logits=True,
                                  return_dict_in_generate=True, **options)
        completions = [cut_at_eos(row[width:].tolist(), tokenizer.eos_token_id, pad) for row in out.sequences]
        logits = torch.stack(out.logits, 1).float()  # (B, steps, V), raw (temperature 1)
        new = out.sequences[:, width:]
        token_logp = torch.log_softmax(logits, -1).gather(-1, new[:, : logits.shape[1], None]).squeeze(-1)
        length = max((len(c) for c in completions), default=1) or 1
        behaviour = torch.zeros(len(rows), length)
        for i, c in enumerate(completions):
            behaviour[i, : len(c)] = token_logp[i, : len(c)].cpu()
        return completions, behaviour
