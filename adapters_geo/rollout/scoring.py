"""Scoring completions: log π(y_t | prompt, y_<t) of every completion token, in one forward.

Rows are packed as [left-padded prompt | right-padded completion], so every completion starts
at the same column P and the output head runs only on the L positions that predict completion
tokens (`logits_to_keep`): the prompt's logits and their log-softmax over the vocabulary are
never computed (prompts are usually longer than completions, and the head is a large share of
a small model). Position ids follow the attention mask, so a left-padded row sees the positions
it would see unpadded (RoPE models do not depend on it; absolute-position models do). Results
are laid out by completion index, (B, L) with L the longest completion and zeros beyond each
length, so the student's and the teacher's log-probs line up even when their prompts differ
(self-hint).
"""

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    """[left-padded prompt | right-padded completion] rows; completions start at column `prompt_width`."""

    input_ids: torch.Tensor  # (B, P + L)
    attention_mask: torch.Tensor  # (B, P + L)
    position_ids: torch.Tensor  # (B, P + L): 0 at each row's first real token
    prompt_width: int  # P, the longest prompt
    lengths: list  # completion lengths
    width: int  # L, the longest completion (≥ 1)


def pack(prompts: list[list[int]], completions: list[list[int]], pad: int, device="cpu") -> Packed:
    p = max(len(x) for x in prompts)
    lengths = [len(c) for c in completions]
    width = max(lengths + [1])
    ids = [[pad] * (p - len(x)) + x + c + [pad] * (width - len(c)) for x, c in zip(prompts, completions)]
    mask = [[0] * (p - len(x)) + [1] * (len(x) + len(c)) + [0] * (width - len(c)) for x, c in zip(prompts, completions)]
    mask = torch.tensor(mask, device=device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return Packed(torch.tensor(ids, device=device), mask, positions, p, lengths, width)


def completion_mask(lengths: list, width: int, device="cpu") -> torch.Tensor:
    """(B, L) float mask of real completion tokens."""
    index = torch.arange(width, device=device)
    return (index[None, :] < torch.tensor(lengths, device=device)[:, None]).float()


def completion_logprobs(model, packed: Packed, full: bool = False, cache=None):
    """(B, L) log-probs of the completion tokens; with full=True also (B, L, V) log-softmax.

    `cache`: a transformers Cache that receives the pass's keys and values (greedy_following decodes on from it).
    """
    logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask, position_ids=packed.position_ids,
                   logits_to_keep=packed.width + 1, cache=cache, use_cache=cache is not None).logits
    logp_all = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, L, V): column P-1+j predicts token j
    targets = packed.input_ids[:, packed.prompt_width:]  # (B, L)
    mask = completion_mask(packed.lengths, packed.width, logits.device)
    token_logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    return (token_logp, logp_all * mask[..., None]) if full else token_logp
