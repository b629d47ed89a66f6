"""Scoring completions: log π(y_t | prompt, y_<t) of every completion token, in one forward.

Results are laid out by completion index, (B, L) with L the longest completion, so the
student's and the teacher's log-probs line up even when their prompts differ (self-hint).
"""

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    """Right-padded prompt+completion rows and where each completion sits."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    starts: list  # index of each row's first completion token
    lengths: list  # completion lengths
    width: int  # L, the longest completion


def pack(prompts: list[list[int]], completions: list[list[int]], pad: int, device="cpu") -> Packed:
    rows = [p + c for p, c in zip(prompts, completions)]
    total = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (total - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (total - len(r)) for r in rows], device=device)
    lengths = [len(c) for c in completions]
    return Packed(ids, mask, [len(p) for p in prompts], lengths, max(lengths + [1]))


def completion_mask(lengths: list, width: int, device="cpu") -> torch.Tensor:
    """(B, L) float mask of real completion tokens."""
    index = torch.arange(width, device=device)
    return (index[None, :] < torch.tensor(lengths, device=device)[:, None]).float()


def _gather_completion(values: torch.Tensor, packed: Packed) -> torch.Tensor:
    """(B, T-1, …) values at positions predicting completion tokens -> (B, L, …), zero padded."""
    rows = []
    for row, (start, length) in enumerate(zip(packed.starts, packed.lengths)):
        piece = values[row, start - 1 : start - 1 + length]
        pad_shape = (packed.width - length,) + tuple(piece.shape[1:])
        rows.append(torch.cat([piece, piece.new_zeros(pad_shape)]))
    return torch.stack(rows)


def completion_logprobs(model, packed: Packed, full: bool = False):
    """(B, L) log-probs of the completion tokens; with full=True also (B, L, V) log-softmax."""
    logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask).logits[:, :-1].float()
    logp_all = torch.log_softmax(logits, dim=-1)  # (B, T-1, V)
    targets = packed.input_ids[:, 1:]
    token_logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    picked = _gather_completion(token_logp, packed)
    return (picked, _gather_completion(logp_all, packed)) if full else picked
