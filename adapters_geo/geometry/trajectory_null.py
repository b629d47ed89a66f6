"""Nulls for Sim_K(t, T): how alike a partial update and the final one are when the order of the steps carries nothing.

ΔW_t is a part of ΔW_T, so Sim_K(t, T) (geometry/trajectory.py) is high for any run whose steps share a direction,
in whatever order they came; "the update enters its channel early" needs a comparison (issue 24, claim 2). Two
nulls at one step t, from the snapshots {t_i: ΔW_{t_i}} (the last is T; the run starts at ΔW = 0):
- shuffle: the run's own increments d_i = ΔW_{t_i} − ΔW_{t_(i−1)} summed in a random order until they cover as many
  training steps as t (the first blocks whose step count reaches it): Sim_K of that sum to ΔW_T is what the same
  moves would give in any order;
- random walk: increments of the same Frobenius norms in isotropic random directions, Sim_K of the walk's partial
  sum to its own total: what a cumulative sum's self-overlap alone gives (about K/n for early t, 1 at T).
`null_test` returns the observed Sim_K(t, T) beside each null's mean, 2.5 / 97.5 percentiles and one-sided p-value
over draws, p = (1 + #{draws ≥ observed}) / (1 + draws) (a permutation test for the shuffle null): p < 0.05 says the
early update is more aligned with the end than that null explains. Right singular subspaces, K as in the
trajectory (default 16).
"""

import torch

from adapters_geo.geometry.linalg import top_right_vectors
from adapters_geo.geometry.trajectory import K_DEFAULT, subspace_similarity


def increments(deltas: dict) -> tuple[list[int], list[torch.Tensor]]:
    """(steps each block covers, (m, n) fp64 increments): block i is ΔW_{t_i} − ΔW_{t_(i−1)}, from ΔW_0 = 0."""
    steps = sorted(deltas)
    previous, spans, blocks = 0, [], []
    last = torch.zeros_like(deltas[steps[0]], dtype=torch.float64)
    for step in steps:
        current = deltas[step].to(torch.float64)
        spans.append(step - previous)
        blocks.append(current - last)
        previous, last = step, current
    return spans, blocks


def _partial(spans: list[int], blocks: list[torch.Tensor], order: list[int], step: int) -> torch.Tensor:
    """The sum of the blocks taken in `order` until they cover at least `step` training steps."""
    total, covered = torch.zeros_like(blocks[0]), 0
    for i in order:
        if covered >= step:
            break
        total, covered = total + blocks[i], covered + spans[i]
    return total


def _similarity(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return subspace_similarity(top_right_vectors(a, k), top_right_vectors(b, k))


def _summary(values: list[float], observed: float) -> dict:
    ranked = torch.tensor(values, dtype=torch.float64)
    low, high = torch.quantile(ranked, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    p = (1 + (ranked >= observed).sum().item()) / (1 + len(values))
    return {"mean": ranked.mean().item(), "low": low, "high": high, "p": p}


def null_test(deltas: dict, step: int, k: int = K_DEFAULT, draws: int = 200, seed: int = 0) -> dict:
    """{"observed", "shuffle", "random_walk"} at `step`: Sim_K(step, T), and each null's {"mean", "low", "high", "p"}."""
    steps = sorted(deltas)
    final = deltas[steps[-1]].to(torch.float64)
    k = min(k, min(final.shape))
    spans, blocks = increments(deltas)
    norms = [b.norm().item() for b in blocks]
    generator = torch.Generator().manual_seed(seed)
    shuffled, walked = [], []
    for _ in range(draws):
        order = torch.randperm(len(blocks), generator=generator).tolist()
        shuffled.append(_similarity(_partial(spans, blocks, order, step), final, k))
        directions = [torch.randn(final.shape, generator=generator, dtype=torch.float64) for _ in blocks]
        walk = [d * (norm / d.norm().item()) for d, norm in zip(directions, norms)]
        walked.append(_similarity(_partial(spans, walk, list(range(len(walk))), step), sum(walk), k))
    observed = _similarity(_partial(spans, blocks, list(range(len(blocks))), step), final, k)
    return {"step": step, "K": k, "observed": observed, "shuffle": _summary(shuffled, observed),
            "random_walk": _summary(walked, observed)}
