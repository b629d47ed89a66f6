"""Sampling completions from a policy: G samples per prompt, or greedy.

Prompts are left-padded into one batch; sampling is pure temperature sampling (top-k and
top-p off), so the samples follow the policy exactly, as on-policy methods assume. Each
completion is returned as a token list cut after the first EOS (kept).

With G > 1 samples per prompt, each prompt is prefilled once and its KV cache repeated G times
before decoding (`shared_prefill`): the G copies of a prompt would otherwise be run through the
model G times. Same tokens, same distribution; (G − 1)/G of the prefill saved.
"""

import torch

from adapters_geo.adapters.delta_linear import inference_weights


@torch.no_grad()
def sample(model, tokenizer, prompts: list[list[int]], num_samples: int = 1, max_new_tokens: int = 32,
           temperature: float = 1.0) -> list[list[int]]:
    """num_samples completions per prompt (temperature 0: greedy), prompt-major order."""
    was_training = model.training
    model.eval()
    rows = [p for p in prompts for _ in range(num_samples)]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    input_ids, attention = left_pad(rows, pad, width, device)
    options = {"do_sample": False} if temperature == 0 else {
        "do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0,
    }
    with inference_weights(model):
        if num_samples > 1 and width > 1:
            options["cache"] = shared_prefill(model, prompts, pad, width, num_samples, device)
        out = model.generate(
            input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
            pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **options,
        )
    model.train(was_training)
    return [cut_at_eos(row[width:].tolist(), tokenizer.eos_token_id, pad) for row in out]


def left_pad(rows: list[list[int]], pad: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (len(rows), width), rows padded on the left."""
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def shared_prefill(model, prompts: list[list[int]], pad: int, width: int, repeats: int, device):
    """The KV cache of every prompt but its last token, computed once per prompt, repeated `repeats` times.

    generate() then runs only the last prompt token of each row before sampling; the cache has the
    rows' left-padded layout (width `width`), positions following the attention mask as generate's.
    """
    from transformers import DynamicCache

    ids, mask = (t[:, :-1] for t in left_pad(prompts, pad, width, device))
    cache = DynamicCache(config=model.config)
    model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0),
          cache=cache, use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(repeats)
    return cache


def cut_at_eos(tokens: list[int], eos: int, pad: int) -> list[int]:
    """Tokens up to and including the first EOS (trailing padding dropped)."""
    if eos in tokens:
        return tokens[: tokens.index(eos) + 1]
    while tokens and tokens[-1] == pad and pad != eos:
        tokens = tokens[:-1]
    return tokens
