"""Shared fixtures: fresh tiny bases and a short training helper.

Run: make test   (or: python -m pytest -q tests/)
"""

import pytest
import torch

from adapters_geo import load_base

QUANTS = ["none", "8bit", "4bit"]


@pytest.fixture
def tiny():
    """Factory: a fresh, frozen tiny-llama base with the given quantization."""

    def make(quant: str = "none"):
        torch.manual_seed(0)
        return load_base("tiny-llama", quant)

    return make


def fixed_batch(vocab: int = 250, batch: int = 4, length: int = 24, seed: int = 0) -> torch.Tensor:
    """A fixed batch of random token ids, shape (B, T)."""
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def train_steps(model, steps: int, lr: float = 1e-2, optimizer: str = "adamw", project=None) -> list[float]:
    """Train on one fixed batch for `steps` steps; returns the losses.

    `project(name, param)` may rewrite a parameter's gradient before each step.
    """
    from adapters_geo.optim import build_optimizer

    ids = fixed_batch()
    opt = build_optimizer(model.parameters(), optimizer, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if project is not None:
            for name, param in model.named_parameters():
                if param.grad is not None:
                    project(name, param)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses
