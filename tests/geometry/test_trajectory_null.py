"""The nulls of Sim_K(t, T) on synthetic trajectories: one whose order carries nothing, one that enters its channel first.

Run: python -m pytest -q tests/geometry/test_trajectory_null.py
"""

import pytest
import torch

from adapters_geo.geometry.trajectory_null import increments, model_null_test, null_test
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


def _channel_first(seed: int) -> dict:
    channel = orthonormal(M, K, seed=seed) @ orthonormal(N, K, seed=seed + 1).T
    early = [channel * (3.0 / channel.norm()) for _ in range(STEPS // 5)]
    late = [_noise(100 * seed + s) * (3.0 / _noise(100 * seed + s).norm()) for s in range(STEPS - STEPS // 5)]
    return _cumulative(early + late)


def _every(deltas: dict, stride: int) -> dict:
    return {t: d for t, d in deltas.items() if t % stride == 0}


def test_the_run_level_test_averages_matrices_and_orders_their_blocks_together():
    """Three channel-first matrices: the observed value is the mean of the three single-matrix values (same K, same
    increments); the joint shuffle null sits below it with p < 0.05. (An i.i.d. matrix in the mean would pull the
    observed value down by more than the null's: averaging mixes what moves early with what does not.)"""
    runs = {"a": _channel_first(1), "b": _channel_first(5), "c": _channel_first(9)}
    snapshots = {t: {name: deltas[t] for name, deltas in runs.items()} for t in runs["a"]}
    out = model_null_test(snapshots, step=STEPS // 5, k=K, draws=100, walks=10)
    alone = [null_test(deltas, step=STEPS // 5, k=K, draws=1)["observed"] for deltas in runs.values()]
    assert abs(out["observed"] - sum(alone) / 3) < 1e-9 and out["matrices"] == 3, out
    assert out["shuffle"]["p"] < 0.05 and out["random_walk"]["p"] < 0.1, out
    assert out["shuffle"]["draws"] == 100 and out["shuffle"]["distinct"] <= 101  # the draws' sets and the observed one
    # snapshots every 4 steps: 10 blocks, 8 steps are covered by 2 of them, so only C(10, 2) = 45 distinct sets exist
    # (and a test this coarse cannot reject: 38 % of orders draw a channel block first)
    coarse = {t: d for t, d in snapshots.items() if t % 4 == 0}
    out = model_null_test(coarse, step=STEPS // 5, k=K, draws=100, walks=2)
    assert out["shuffle"]["distinct"] <= 45 and out["shuffle"]["p"] > 0.05, out  # (the observed set is one of the 45)


def test_the_run_level_test_skips_still_matrices_and_caps_k_at_the_update_rank():
    """A matrix the run never moved has no subspace (left out); a rank-2 update is compared on 2 directions, not 4
    (a LoRA-like update: beyond its rank a top-K basis is arbitrary), so a rank-2 channel reads Sim = 1."""
    u, v = orthonormal(M, 2, seed=3), orthonormal(N, 2, seed=4)
    low = {t: (t * u @ v.T) for t in (4, 8, 20, 40)}  # every step inside one rank-2 channel
    snapshots = {t: {"low": low[t], "still": torch.zeros(M, N, dtype=torch.float64)} for t in low}
    out = model_null_test(snapshots, step=8, k=K, draws=20, walks=5)
    assert out["matrices"] == 1 and abs(out["observed"] - 1.0) < 1e-9 and abs(out["shuffle"]["mean"] - 1.0) < 1e-9, out


def test_the_run_level_test_refuses_a_step_outside_the_trajectory():
    snapshots = {t: {"m": d} for t, d in _every(_cumulative([_noise(s) for s in range(8)]), 2).items()}
    for step in (0, 8, 9):
        with pytest.raises(ValueError, match="not inside the trajectory"):
            model_null_test(snapshots, step=step, k=K, draws=2)
