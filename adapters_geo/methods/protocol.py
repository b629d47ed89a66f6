"""What the loop needs from a method: a typed batch and five calls (the `Method` Protocol).

A method turns a step's examples into a `Batch` (rollouts, scores, rewards), computes
`loss(model, batch) -> (scalar loss, metrics)` (metrics may hold `loss_tokens`, the loss's
denominator, by which data-parallel processes weight their shares: training/parallel.py), may update its own state after each optimizer
step (e.g. stale policies), and saves / restores that state with the checkpoint.
"""

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Batch:
    """One step's sequences and what the loss needs about them (B sequences)."""

    step: int
    prompts: list  # B lists of prompt token ids (each prompt repeated for its G samples)
    completions: list  # B lists of completion token ids (EOS kept)
    rewards: torch.Tensor | None = None  # (B,) verifiable rewards (rlvr, mixes)
    teacher: object = None  # (B, L) teacher log-probs on the completion tokens, or ((B, L), (B, L, V)) for the full KL
    reference: torch.Tensor | None = None  # (B, L) log-probs under the initial policy (rlvr's optional KL)
    behaviour: torch.Tensor | None = None  # (B, L) log-probs under the policy that sampled (None: the current one)
    stream: int = 0  # the data-parallel rank whose share this is (0 alone): the loss's own random draws depend on it

    @property
    def completion_tokens(self) -> int:
        """Completion tokens in the batch (the throughput unit)."""
        return sum(len(c) for c in self.completions)


class Method(Protocol):
    name: str

    def batch(self, examples: list, step: int) -> Batch: ...

    def loss(self, model, batch: Batch) -> tuple[torch.Tensor, dict]: ...

    def after_update(self, model) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
