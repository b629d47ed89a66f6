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
`model_null_test` is the run-level form the trajectory analysis writes: the mean of Sim_K(t, T) over a set of
matrices, and each null drawn with one block order for all of them (the order is the run's, not a matrix's), so
its p-value is a permutation test of the run.
"""

import torch

from adapters_geo.geometry.linalg import svdvals64, top_right_vectors
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


def _cover(spans: list[int], order: list[int], step: int) -> frozenset:
    """The blocks taken in `order` until they cover at least `step` training steps (their sum is the partial update)."""
    taken, covered = [], 0
    for i in order:
        if covered >= step:
            break
        taken, covered = taken + [i], covered + spans[i]
    return frozenset(taken)


def _summary(values: list[float], observed: float) -> dict:
    ranked = torch.tensor(values, dtype=torch.float64)
    low, high = torch.quantile(ranked, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    p = (1 + (ranked >= observed).sum().item()) / (1 + len(values))
    return {"mean": ranked.mean().item(), "low": low, "high": high, "p": p, "draws": len(values)}


def _rank(w: torch.Tensor) -> int:
    """Numerical rank (σ > 0 after svdvals64's floor of 1e-7 σ_max): past it a top-K basis is an arbitrary completion
    (a LoRA update's)."""
    return int((svdvals64(w) > 0).sum())


def model_null_test(snapshots: dict, step: int, names: list | None = None, k: int = K_DEFAULT, draws: int = 200,
                    walks: int | None = None, seed: int = 0) -> dict:
    """{"step", "K", "matrices", "observed", "shuffle", "random_walk"}: mean over `names` of Sim_K(step, T) and each null's
    {"mean", "low", "high", "p", "draws"}, from {step: {name: ΔW_t}}; "K_used": the smallest and largest per-matrix K.

    `draws` block orders for the shuffle null (each distinct set of leading blocks is decomposed once, so the cost is
    the number of distinct sets, a few dozen for 8 tracked steps); `walks` (default `draws`) random walks, each a
    fresh decomposition per matrix. K per matrix: min(k, rank of ΔW_T).
    """
    steps = sorted(snapshots)
    if not 0 < step < steps[-1]:
        raise ValueError(f"step {step} is not inside the trajectory (1 … {steps[-1] - 1})")
    names = list(snapshots[steps[-1]]) if names is None else list(names)
    walks = draws if walks is None else walks
    parts = {name: increments({t: snapshots[t][name] for t in steps}) for name in names}
    spans = parts[names[0]][0]
    finals = {name: snapshots[steps[-1]][name].to(torch.float64) for name in names}
    ks = {name: min(k, _rank(final)) for name, final in finals.items()}
    final_v = {name: top_right_vectors(finals[name], ks[name]) for name in names if ks[name]}
    used = list(final_v)  # a matrix the run never moved has no subspace to compare
    if not used:
        raise ValueError(f"none of the {len(names)} matrices moved by step {steps[-1]}")
    found = {}

    def mean_similarity(blocks_taken: frozenset) -> float:
        if blocks_taken not in found:
            sims = [subspace_similarity(top_right_vectors(sum(parts[n][1][i] for i in blocks_taken), ks[n]), final_v[n])
                    for n in used]
            found[blocks_taken] = sum(sims) / len(sims)
        return found[blocks_taken]

    generator = torch.Generator().manual_seed(seed)
    natural = list(range(len(spans)))
    observed = mean_similarity(_cover(spans, natural, step))
    shuffled = [mean_similarity(_cover(spans, torch.randperm(len(spans), generator=generator).tolist(), step))
                for _ in range(draws)]
    prefix = sorted(_cover(spans, natural, step))
    walked = []
    for _ in range(walks):
        sims = []
        for n in used:
            blocks = parts[n][1]
            walk = [b.norm() * d / d.norm() for b, d in
                    ((b, torch.randn(b.shape, generator=generator, dtype=torch.float64)) for b in blocks)]
            partial, total = sum(walk[i] for i in prefix), sum(walk)
            sims.append(_similarity(partial, total, ks[n]))
        walked.append(sum(sims) / len(sims))
    shuffle = _summary(shuffled, observed)
    shuffle["distinct"] = len(found)
    return {"step": step, "K": k, "K_used": [min(ks[n] for n in used), max(ks[n] for n in used)], "matrices": len(used),
            "observed": observed, "shuffle": shuffle,
            "random_walk": _summary(walked, observed)}


def _similarity(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return subspace_similarity(top_right_vectors(a, k), top_right_vectors(b, k))


def null_test(deltas: dict, step: int, k: int = K_DEFAULT, draws: int = 200, seed: int = 0) -> dict:
    """{"observed", "shuffle", "random_walk"} at `step` for one matrix from {step: ΔW_t}: model_null_test of it alone."""
    return model_null_test({t: {"matrix": d} for t, d in deltas.items()}, step, k=k, draws=draws, seed=seed)
