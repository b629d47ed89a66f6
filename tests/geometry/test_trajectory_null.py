"""The nulls of Sim_K(t, T) on synthetic trajectories: one whose order carries nothing, one that enters its channel first.

Run: python -m pytest -q tests/geometry/test_trajectory_null.py
"""

import torch

from adapters_geo.geometry.trajectory_null import increments, null_test
from tests.geometry.test_metrics import orthonormal

M, N, K, STEPS = 40, 60, 4, 40


def _noise(step: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(M, N, generator=torch.Generator().manual_seed(1000 + step), dtype=torch.float64)


def _cumulative(blocks: list) -> dict:
    deltas, total = {}, torch.zeros(M, N, dtype=torch.float64)
    for step, block in enumerate(blocks, start=1):
        total = total + block
        deltas[step] = total.clone()
    return deltas


def test_increments_are_the_differences_between_snapshots_from_zero():
    deltas = {2: torch.ones(3, 4), 5: 3 * torch.ones(3, 4), 6: 2 * torch.ones(3, 4)}
    spans, blocks = increments(deltas)
    assert spans == [2, 3, 1]
    assert [b[0, 0].item() for b in blocks] == [1.0, 2.0, -1.0]


def test_a_run_whose_order_carries_nothing_sits_inside_the_shuffle_null():
    """I.i.d. isotropic steps: the observed Sim_K at 20 % is one more draw of the shuffle null (inside its 95 % band),
    and the shuffle and random-walk nulls agree (the same kind of walk)."""
    deltas = _cumulative([_noise(s) for s in range(STEPS)])
    out = null_test(deltas, step=STEPS // 5, k=K, draws=200)
    assert out["shuffle"]["low"] <= out["observed"] <= out["shuffle"]["high"] and out["shuffle"]["p"] > 0.05, out
    assert abs(out["shuffle"]["mean"] - out["random_walk"]["mean"]) < 0.1, out
    assert out["random_walk"]["mean"] < 0.5  # a 20 % partial sum of an isotropic walk shares little with its end


def test_a_run_that_enters_its_channel_first_is_above_both_nulls():
    """The first 20 % of steps move inside one rank-K channel; the rest are zero-mean noise of the same norm, which
    mostly cancels in the end: the early sum is aligned with ΔW_T more than a random fifth of the moves is (p < 0.05)."""
    channel = orthonormal(M, K, seed=1) @ orthonormal(N, K, seed=2).T  # (M, N), rank K
    early = [channel * (3.0 / channel.norm()) for _ in range(STEPS // 5)]
    late = [_noise(s) * (3.0 / _noise(s).norm()) for s in range(STEPS - STEPS // 5)]
    out = null_test(_cumulative(early + late), step=STEPS // 5, k=K, draws=200)
    assert out["observed"] > 0.9, out
    assert out["shuffle"]["p"] < 0.05 and out["random_walk"]["p"] < 0.05, out  # above both nulls
    assert out["shuffle"]["mean"] < out["observed"] - 0.2, out
