"""Per-token advantages of the on-policy methods, and the control knobs that reshape them.

OPD (on-policy distillation): per-token teacher gap r_t = log π_student(y_t) − log π_teacher(y_t)
on the sampled token, advantage A_t = −coef · r_t (discount 0: no credit to earlier tokens).
RLVR (GRPO): binary verifiable reward per sample, advantage (r − mean_group) / (std_group + ε)
broadcast to every token; groups whose rewards are all equal carry no signal and are skipped.
Mixing: A = α·A_OPD + (1 − α)·A_RLVR, raw, without re-normalisation.
Token selection: keep a ρ fraction of each sample's completion tokens, at random or those with
the largest |r_t| (where student and teacher disagree most, in either direction), and rescale
kept tokens by T / kept so the loss scale is unchanged.
"""

import math

import torch

GRPO_EPS = 1e-6


def opd_advantages(student_logp: torch.Tensor, teacher_logp: torch.Tensor, coef: float = 1.0) -> torch.Tensor:
    """(B, L) A_t = −coef · (log π_s − log π_t) on the sampled tokens (no gradient)."""
    return -coef * (student_logp - teacher_logp).detach()


def grpo_advantages(rewards: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage per sample (B,), keep (B,) = 1 where the group's rewards vary)."""
    grouped = rewards.view(-1, group)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True, unbiased=True) if group > 1 else torch.zeros_like(mean)
    keep = (std > 0).float().expand_as(grouped)
    advantage = torch.where(std > 0, (grouped - mean) / (std + GRPO_EPS), torch.zeros_like(grouped))
    return advantage.reshape(-1), keep.reshape(-1)


def mix(opd: torch.Tensor, rlvr: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·A_OPD + (1 − α)·A_RLVR (token level, raw)."""
    return alpha * opd + (1 - alpha) * rlvr


def token_selection(mask: torch.Tensor, fraction: float, mode: str = "random", gaps=None, generator=None) -> torch.Tensor:
    """(B, L) weights: kept tokens get T_i / kept_i, dropped tokens 0 (mask drawn per sample)."""
    if fraction >= 1.0:
        return mask.clone()
    if mode not in ("random", "top_gap"):
        raise ValueError(f"token_select must be random or top_gap, not {mode!r}")
    weights = torch.zeros_like(mask)
    for row in range(mask.shape[0]):
        length = int(mask[row].sum().item())
        if length == 0:
            continue
        kept = max(1, math.floor(fraction * length + 0.5))
        if mode == "random":
            chosen = torch.randperm(length, generator=generator)[:kept]
        else:
            chosen = torch.topk(gaps[row, :length].abs(), kept).indices
        weights[row, chosen] = length / kept
    return weights
