"""The locked arm's optimizer, against the unconstrained one: first-order progress, subspace, SGD equivalence.

With a gradient lying inside span(V) (the loss L(ΔW) = ⟨C, ΔW⟩ with C = A Vᵀ, so the first-order
decrease of a step is exact), the projected mode's first AdamW step lowers L by exactly what the
unconstrained step does, fresh or with Adam state carried over; plain Adam on B gets ≈ √(K/n) of
it (measured here at SmolLM2's n = 576, K = 16: 0.17 of it; √(16/576) = 0.167).

Run: python -m pytest -q tests/test_locking_optimizer.py
"""

import math

import pytest
import torch
from torch import nn

from adapters_geo.adapters import random_orthonormal_basis
from adapters_geo.adapters.delta_linear import DeltaLinear
from adapters_geo.adapters.dense import DenseDelta, project_gradients
from adapters_geo.adapters.locked import LockedDelta
from adapters_geo.training.optim import optimizer_for


class One(nn.Module):
    """A model with one adapted (m, n) linear layer."""

    def __init__(self, delta: nn.Module, m: int, n: int):
        super().__init__()
        base = nn.Linear(n, m, bias=False)
        base.requires_grad_(False)
        self.layer = DeltaLinear(base, delta)

    def delta(self) -> torch.Tensor:
        return self.layer.delta.delta_weight()


def build(kind: str, m: int, n: int, v: torch.Tensor, offset: torch.Tensor, optimizer: str = "adamw"):
    if kind in ("unconstrained", "gradient"):
        delta = DenseDelta((m, n), torch.float32)
        with torch.no_grad():
            delta.weight.copy_(offset)
    else:
        delta = LockedDelta((m, n), v, offset, mode=kind)
    model = One(delta, m, n)
    if kind == "gradient":
        project_gradients(model, {"layer.weight": v})
    return model, optimizer_for(model, optimizer, lr=1e-3)


def warm_state(m: int, n: int, offset: torch.Tensor, steps: int = 3) -> dict:
    """AdamW state after a few unconstrained steps on random full-rank gradients (not inside span(V))."""
    model, opt = build("unconstrained", m, n, None, offset)
    generator = torch.Generator().manual_seed(5)
    for _ in range(steps):
        (torch.randn(m, n, generator=generator) * model.delta()).sum().backward()
        opt.step()
        opt.zero_grad()
    return opt.state_dict()


def first_step_decrease(kind: str, m=64, n=576, k=16, warm=False) -> float:
    """Exact first-order decrease of L = ⟨C, ΔW⟩ (C inside span(V)) after one step from the same state."""
    generator = torch.Generator().manual_seed(0)
    v = random_orthonormal_basis({"w": (m, n)}, k, seed=1)["w"]
    c = torch.randn(m, k, generator=generator) @ v.T
    offset = 0.01 * torch.randn(m, n, generator=generator)
    model, opt = build(kind, m, n, v, offset)
    if warm and kind != "adapter":
        opt.load_state_dict(warm_state(m, n, offset))
    before = (c * model.delta()).sum()
    before.backward()
    opt.step()
    with torch.no_grad():
        return (before - (c * model.delta()).sum()).item()


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "state carried over"])
def test_projected_first_step_equals_the_unconstrained_one(warm):
    free, locked = first_step_decrease("unconstrained", warm=warm), first_step_decrease("projected", warm=warm)
    assert free > 0 and locked == pytest.approx(free, rel=1e-5)


def test_adam_on_b_makes_only_sqrt_k_over_n_of_the_progress():
    ratio = first_step_decrease("adapter") / first_step_decrease("unconstrained")
    assert ratio == pytest.approx(math.sqrt(16 / 576), rel=0.1), ratio
    small = first_step_decrease("adapter", m=32, n=64, k=4) / first_step_decrease("unconstrained", m=32, n=64, k=4)
    assert small == pytest.approx(math.sqrt(4 / 64), rel=0.2), small


def train_quadratic(kind: str, optimizer: str, steps: int = 5, m=24, n=40, k=3) -> tuple[torch.Tensor, torch.Tensor]:
    """(ΔW_T − ΔW_0, V) after `steps` steps on a quadratic loss whose gradient is NOT inside span(V)."""
    generator = torch.Generator().manual_seed(2)
    v = random_orthonormal_basis({"w": (m, n)}, k, seed=3)["w"]
    target, offset = torch.randn(m, n, generator=generator), 0.1 * torch.randn(m, n, generator=generator)
    model, opt = build(kind, m, n, v, offset, optimizer)
    for _ in range(steps):
        ((model.delta() - target) ** 2).sum().backward()
        opt.step()
        opt.zero_grad()
    return (model.delta() - offset).detach().double(), v.double()


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_projected_updates_never_leave_span_v(optimizer):
    moved, v = train_quadratic("projected", optimizer)
    assert moved.norm() > 0 and (moved - moved @ v @ v.T).norm() < 1e-5 * moved.norm()


def test_under_sgd_all_three_modes_are_projected_gradient_training():
    projected, _ = train_quadratic("projected", "sgd")
    for kind in ("adapter", "gradient"):
        other, _ = train_quadratic(kind, "sgd")
        torch.testing.assert_close(other, projected, rtol=1e-4, atol=1e-6)


def test_under_adam_the_gradient_mode_leaves_span_v():
    moved, v = train_quadratic("gradient", "adamw")
    assert (moved - moved @ v @ v.T).norm() > 0.1 * moved.norm()
