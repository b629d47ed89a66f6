"""Token-level losses shared by the methods.

- `nll`: mean negative log-likelihood over completion tokens (SFT).
- `clipped_pg`: importance-sampling policy gradient with an asymmetric clipped ratio,
  ρ_t = π(y_t)/π_old(y_t), objective min(ρ_t A_t, clip(ρ_t, 1−ε_low, 1+ε_high) A_t),
  summed over tokens with weights w_t and divided by the number of completion tokens
  (token-level aggregation). With one update per batch ρ_t = 1 and the gradient is
  Σ w_t A_t ∇log π(y_t) / N.
- `reverse_kl_full`: Σ_v π_s(v) (log π_s(v) − log π_t(v)) at every completion position.
"""

import torch


def nll(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return -(logp * mask).sum() / mask.sum().clamp_min(1)


def clipped_pg(logp, old_logp, advantages, weights, denominator, eps_low=0.2, eps_high=0.28) -> torch.Tensor:
    """−Σ w_t · min(ρ A, clip(ρ) A) / denominator; all (B, L) but denominator (scalar)."""
    ratio = torch.exp(logp - old_logp.detach())
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    objective = torch.minimum(ratio * advantages, clipped * advantages)
    return -(objective * weights).sum() / max(float(denominator), 1.0)


def reverse_kl_full(student_all: torch.Tensor, teacher_all: torch.Tensor) -> torch.Tensor:
    """(B, L) KL(π_s ‖ π_t) over the vocabulary at each position, from log-softmaxes."""
    return (student_all.exp() * (student_all - teacher_all.detach())).sum(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """(B, L) the k3 estimator of KL(π ‖ π_ref) on sampled tokens: e^{Δ} − Δ − 1, Δ = ref − logp."""
    delta = ref_logp.detach() - logp
    return torch.exp(delta) - delta - 1
