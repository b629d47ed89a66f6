"""Learning-rate schedules through transformers.get_scheduler: constant and cosine keep the factors the loop
used before (cosine to 10% of lr), linear decays to 0; warm-up is transformers' (from 0).

Run: python -m pytest -q tests/training/test_schedule.py
"""

import math

import pytest
import torch

from adapters_geo.training.optim import build_scheduler


def factors(schedule: str, steps: int, warmup: int = 0) -> list[float]:
    """The lr factor of each step 0..steps-1, as the loop applies them (one scheduler step per update)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, warmup, steps)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def previous_factor(schedule: str, steps: int, step: int) -> float:
    """The loop's own lr_factor before transformers' schedulers (without warm-up)."""
    if schedule == "cosine":
        progress = step / max(1, steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("steps", [1, 10, 37])
def test_constant_and_cosine_keep_their_factors(schedule, steps):
    expected = [previous_factor(schedule, steps, s) for s in range(steps)]
    assert factors(schedule, steps) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_ends_near_a_tenth_and_linear_decays_to_zero():
    cosine, linear = factors("cosine", 100), factors("linear", 100)
    assert cosine[0] == 1.0 and cosine[-1] == pytest.approx(0.1, abs=1e-3)
    assert linear[0] == 1.0 and linear[50] == pytest.approx(0.5) and linear[-1] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(linear, linear[1:]))


def test_warmup_rises_linearly_from_zero():
    assert factors("constant", 6, warmup=4) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert factors("linear", 6, warmup=2)[:3] == pytest.approx([0.0, 0.5, 1.0])
