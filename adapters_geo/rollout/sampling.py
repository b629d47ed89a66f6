"""Sampling completions from a policy: G samples per prompt, or greedy.

Prompts are left-padded into one batch; sampling is pure temperature sampling (top-k and
top-p off), so the samples follow the policy exactly, as on-policy methods assume. Each
completion is returned as a token list cut after the first EOS (kept).

With G > 1 samples per prompt, each prompt is prefilled once and its KV cache repeated G times
before decoding (`shared_prefill`): the G copies of a prompt would otherwise be run through the
model G times. Same tokens, same distribution; (G − 1)/G of the prefill saved.

Each token is drawn by inverse CDF (`inverse_cdf`), for a cost generate() cannot drop: one
uniform per row against the cumulative softmax, where generate()'s torch.multinomial draws one exponential per
vocabulary entry (49 152 for SmolLM2); same distribution, and on the 2-core Xeon the draw alone took 9 / 73 / 302 ms
per token at 8 / 64 / 256 rows with multinomial, 0.5 / 6 / 50 ms by inverse CDF, of a 68 / 204 / 824 ms decode step
(2026-12-05). `sample()` decodes in our own loop (`decode`), where a row that has sampled EOS leaves the batch:
generate() decodes every row until the longest one ends. It serves evaluation and the rollouts drawn at the
model's own precision (teacher rollouts, SFT's teacher completions, a CPU without fast bf16); the bf16 sampler's
rollouts (rollout/sampler.py) keep generate() with the draw as its last logits processor (`InverseCdfDraw`), as
the shipped experiments were run. Measured side by side: benchmarks/bench_decode.py.
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
    device = next(model.parameters()).device
    input_ids, attention = left_pad(rows, tokenizer.pad_token_id, width, device)
    with inference_weights(model):
        cache = None
        if num_samples > 1 and width > 1:
            cache = shared_prefill(model, prompts, tokenizer.pad_token_id, width, num_samples, device)
        completions = decode(model, input_ids, attention, max_new_tokens, tokenizer.eos_token_id, temperature, cache)
    model.train(was_training)
    return completions


def inverse_cdf(logits: torch.Tensor, temperature: float, u: torch.Tensor) -> torch.Tensor:
    """(B,) tokens drawn from softmax(logits / temperature), (B, V), by inverse CDF with uniforms u ∈ [0, 1), (B,).

    Token = the first index whose cumulative weight reaches u · total (at least the smallest positive float, so a
    zero-weight first token is never drawn at u = 0). Token i is drawn with probability c_i − c_{i−1} = p_i up to one
    fp32 rounding of each partial sum (≤ 2^-24 of the mass before it): a token whose weight is below half an ulp of
    the running sum is never drawn, at most V · 2^-24 (0.3 % for V = 49 152) of the mass when every token is that
    small, and none of the tokens that carry the samples. fp32 keeps the draw bitwise equal to the one the
    shipped experiments were run with.
    """
    if temperature <= 0:
        raise ValueError(f"inverse_cdf samples at a temperature > 0 (got {temperature}); temperature 0 is argmax")
    scaled = logits.float() / temperature
    weights = (scaled - scaled.max(-1, keepdim=True).values).exp_()
    cumulative = weights.cumsum_(-1)  # (B, V), unnormalised
    target = (u[:, None].to(cumulative.dtype) * cumulative[:, -1:]).clamp_min_(torch.finfo(cumulative.dtype).tiny)
    return torch.searchsorted(cumulative, target).squeeze(1).clamp_max_(logits.shape[-1] - 1)  # (B,)


@torch.no_grad()
def decode(model, input_ids: torch.Tensor, attention: torch.Tensor, max_new_tokens: int, eos: int,
           temperature: float = 1.0, cache=None) -> list[list[int]]:
    """The completion of each left-padded row of input_ids (B, W), cut after its EOS; temperature 0: greedy.

    `cache`: the keys and values of every prompt column but the last (shared_prefill), else none. A row that samples
    EOS leaves the batch (its cache rows dropped), so the decode's cost follows the rows still writing instead of the
    longest one. Each step draws one uniform per original row (torch's global generator) whether or not the row is
    still in the batch, so row r's t-th token always uses the same uniform: seeded runs reproduce, and two models
    sampled after the same seed share their random numbers row by row (common random numbers).
    """
    from transformers import DynamicCache

    rows = len(input_ids)
    positions = (attention.cumsum(-1) - 1).clamp_min(0)  # (B, W): as generate() numbers left-padded rows
    if cache is None:
        cache = DynamicCache(config=model.config)
        step_ids, step_positions = input_ids, positions
    else:
        step_ids, step_positions = input_ids[:, -1:], positions[:, -1:]
    alive = torch.arange(rows, device=input_ids.device)  # (alive,): the original row of each batch row
    tokens = [[] for _ in range(rows)]
    for t in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=attention, position_ids=step_positions, cache=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]  # (alive, V)
        if temperature:
            token = inverse_cdf(logits, temperature, torch.rand(rows, device=logits.device)[alive])  # (alive,)
        else:
            token = logits.argmax(-1)
        for row, tok in zip(alive.tolist(), token.tolist()):
            tokens[row].append(tok)
        going = token != eos
        if t == max_new_tokens - 1 or not going.any():
            break
        if not going.all():  # finished rows leave the batch
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, token, attention, positions = alive[keep], token[keep], attention[keep], positions[keep]
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], 1)
        positions = positions[:, -1:] + 1
        step_ids, step_positions = token[:, None], positions
    return tokens


class InverseCdfDraw:
    """A logits processor that draws each row's next token by `inverse_cdf`, for a greedy generate() to emit.

    Returns 0 at the drawn token and −inf elsewhere; uniforms from torch's global generator. The bf16 sampler's
    rollouts use it (rollout/sampler.py), where generate() also returns the raw logits their behaviour log-probs need.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        token = inverse_cdf(scores, self.temperature, torch.rand(len(scores), device=scores.device))
        return torch.full_like(scores, float("-inf")).scatter_(1, token[:, None], 0.0)


def draw_options(temperature: float) -> dict:
    """generate() options that sample at `temperature` through InverseCdfDraw (pure sampling: no top-k, top-p)."""
    from transformers import LogitsProcessorList

    return {"do_sample": False, "logits_processor": LogitsProcessorList([InverseCdfDraw(temperature)])}


def greedy_following(model, tokenizer, packed, cache, predicted: list[list[int]], max_new_tokens: int = 32) -> tuple[list, int]:
    """(greedy completion of each row of `packed`, how many rows needed decoding).

    `packed` ([prompt | reference] rows, rollout/scoring.py), `cache` the keys and values of the teacher-forced pass
    over it, `predicted` the argmax at each reference position. A row that leaves its reference at position j
    decodes on from prompt + reference[:j] + argmax_j with that cache: the reference's later columns are masked out
    (their keys never attended), so the prompt and the followed prefix are not run through the model again.
    """
    eos, p = tokenizer.eos_token_id, packed.prompt_width
    references = [packed.input_ids[i, p : p + n].tolist() for i, n in enumerate(packed.lengths)]
    done, pending = [None] * len(references), []
    for i, (reference, best) in enumerate(zip(references, predicted)):
        limit = min(len(reference), max_new_tokens)
        leaves = next((j for j in range(limit) if best[j] != reference[j]), None)
        if leaves is None:  # greedy decoding reproduces the reference (cut at max_new_tokens like generate)
            done[i] = reference[:limit]
        elif best[leaves] == eos or leaves + 1 >= max_new_tokens:
            done[i] = reference[:leaves] + [best[leaves]]
        else:
            pending.append((i, leaves))
    if pending:
        rows = torch.tensor([i for i, _ in pending], device=packed.input_ids.device)
        cache.batch_select_indices(rows)
        width = packed.input_ids.shape[1]
        ids = torch.cat([packed.input_ids[rows], torch.tensor([[predicted[i][j]] for i, j in pending], device=rows.device)], 1)
        mask = torch.cat([packed.attention_mask[rows], torch.ones(len(pending), 1, dtype=packed.attention_mask.dtype,
                                                                   device=rows.device)], 1)
        for r, (_, j) in enumerate(pending):
            mask[r, p + j : width] = 0  # the reference from where greedy left it: not attended
        rest = max_new_tokens - 1 - min(j for _, j in pending)
        with inference_weights(model):
            out = model.generate(input_ids=ids, attention_mask=mask, cache=cache, max_new_tokens=rest, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        for r, (i, j) in enumerate(pending):
            prefix = references[i][:j] + [predicted[i][j]]
            tail = cut_at_eos(out[r, width + 1 :].tolist(), eos, tokenizer.pad_token_id)
            done[i] = prefix + tail[: max_new_tokens - len(prefix)]
    return done, len(pending)


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
