"""Trajectory diagnostics over cumulative updates ΔW_t = W_t − W0 (docs/geometry.md).

- subspace_similarity Sim_K(t, T) = ‖V_K(t)ᵀ V_K(T)‖²_F / K, V_K the top-K right singular
  vectors of ΔW (left version: U_K, ours), against the final checkpoint T.
- early_energy_capture(t0) = ‖ΔW_T V_K(t0)‖²_F / ‖ΔW_T‖²_F (ours): the share of the final
  update inside the early update's top-K right subspace (it counts ΔW_t0 itself).
- future_capture(t) = ‖(ΔW_T − ΔW_t) V_K(t)‖²_F / ‖ΔW_T − ΔW_t‖²_F (ours): the share of the
  update still to come inside ΔW_t's top-K right subspace, what the locking test bets on; a random
  K-dimensional subspace holds K/n of it on average. Undefined at T.
- locking_step = first t before T after which Sim_K(t, T) stays ≥ 0.9 (ours); None: not reached
  before T (Sim(T, T) = 1 always, so T itself does not count).
- rank dynamics: stable_rank, update_norm and hill_alpha of ΔW_t against t.
- endpoint metrics along the way (`endpoint_along`): rotation of W_t's top-k right singular
  subspace from W0's (max angle, degrees) and principal energy of ΔW_t, with ‖ΔW_t‖/‖W0‖, so
  methods can be compared at equal update size rather than at equal learning rate.
"""

import torch

from adapters_geo.geometry.linalg import svd64, svdvals64, top_pair, top_right_vectors
from adapters_geo.geometry.rotation import default_k, rotation_deg
from adapters_geo.geometry.spectrum import effective_rank, hill_alpha, principal_energy, stable_rank

K_DEFAULT = 16
LOCK_THRESHOLD = 0.9


def subspace_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖aᵀ b‖²_F / K for two (n, K) orthonormal bases."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return ((a.T @ b) ** 2).sum().item() / a.shape[1]


def top_vectors(delta: torch.Tensor, k: int, side: str = "right") -> torch.Tensor:
    """Top-k right (n, k) or left (m, k) singular vectors of ΔW."""
    return top_right_vectors(delta, k) if side == "right" else top_right_vectors(delta.T, k)


def early_energy_capture(delta_t0: torch.Tensor, delta_final: torch.Tensor, k: int = K_DEFAULT, v=None) -> float:
    v = top_vectors(delta_t0, k) if v is None else v.to(torch.float64)
    final = delta_final.to(torch.float64)
    total = (final**2).sum().item()
    return float("nan") if total == 0 else ((final @ v) ** 2).sum().item() / total


def future_capture(delta_t: torch.Tensor, delta_final: torch.Tensor, k: int = K_DEFAULT, v=None) -> tuple[float, float]:
    """(share of ‖ΔW_T − ΔW_t‖²_F inside ΔW_t's top-K right subspace, the random baseline K/n); `v`: that subspace if known."""
    rest = (delta_final.to(torch.float64) - delta_t.to(torch.float64))
    total = (rest**2).sum().item()
    k = min(k, min(delta_t.shape))
    if total == 0:
        return float("nan"), k / delta_t.shape[1]
    v = top_vectors(delta_t, k) if v is None else v.to(torch.float64)
    return ((rest @ v) ** 2).sum().item() / total, k / delta_t.shape[1]


def locking_step(steps: list, similarities: list, threshold: float = LOCK_THRESHOLD):
    """First step before T from which every later similarity is ≥ threshold; None: not reached before T."""
    locked_from = None
    for step, sim in zip(steps, similarities):
        if sim >= threshold:
            locked_from = step if locked_from is None else locked_from
        else:
            locked_from = None
    return None if locked_from is None or locked_from == steps[-1] else locked_from


def _rank_metrics(s) -> dict:
    """Rank dynamics of ΔW_t from its exact spectrum `s`; all NaN when `s` is None (unknown)."""
    if s is None:
        return {key: float("nan") for key in ("stable_rank", "effective_rank", "update_norm", "hill_alpha")}
    s = s.to(torch.float64)
    return {"stable_rank": stable_rank(s), "effective_rank": effective_rank(s),
            "update_norm": s.square().sum().sqrt().item(), "hill_alpha": hill_alpha(s)}


def matrix_trajectory(deltas: dict, k: int = K_DEFAULT, spectra: dict | None = None, vectors: dict | None = None,
                      early_step=None) -> dict:
    """Trajectory diagnostics of one matrix from {step: ΔW_t} (the last step is T).

    `spectra` {step: σ or None}: exact singular values stored with a snapshot (used instead of
    the snapshot's, which may be a top-r reconstruction); None marks a step whose rank metrics
    cannot be known (NaN). Steps not in `spectra` use the snapshot's own spectrum.
    `vectors` {step: (U_r, V_r)}: the snapshot's own top singular vectors where already known
    (factor snapshots), used instead of decomposing it again; other steps are decomposed once.
    With `early_step`, also the early energy capture of the final update.
    """
    spectra, vectors = spectra or {}, dict(vectors or {})
    steps = sorted(deltas)
    final = deltas[steps[-1]]
    k = min(k, min(final.shape))
    exact = {t: spectra[t] if t in spectra else svdvals64(deltas[t]) for t in steps}

    def defined(step) -> int:
        """How many of the top-k directions of ΔW_step exist (σ > 0): past a low rank, singular vectors are an
        arbitrary completion and would make two unrelated rank-8 LoRA updates look 50 % alike; k if unknown."""
        s = exact[step]
        return k if s is None else min(k, int((s > 0).sum()))

    def top(step, side):
        if step not in vectors or vectors[step][1].shape[1] < k:
            vectors[step] = top_pair(deltas[step], k)
        return vectors[step][1 if side == "right" else 0][:, :k]

    final_right, final_left = top(steps[-1], "right"), top(steps[-1], "left")
    similarity = lambda a, b, kk: subspace_similarity(a[:, :kk], b[:, :kk]) if kk else float("nan")
    rows = []
    for step in steps:
        delta = deltas[step]
        right, own, common = top(step, "right"), defined(step), min(defined(step), defined(steps[-1]))
        capture, baseline = (future_capture(delta, final, own, right[:, :own]) if own else (float("nan"), float("nan"))) \
            if step != steps[-1] else (float("nan"), own / delta.shape[1])
        rows.append({
            "step": step,
            "sim_right": similarity(right, final_right, common),
            "sim_left": similarity(top(step, "left"), final_left, common),
            "future_capture": capture,
            "future_capture_random": baseline,
            **_rank_metrics(exact[step]),
        })
    out = {
        "steps": rows,
        "locking_step": locking_step(steps, [r["sim_right"] for r in rows]),
        "locking_step_left": locking_step(steps, [r["sim_left"] for r in rows]),
    }
    if early_step is not None:
        early = defined(early_step)
        out["early_energy_capture"] = (early_energy_capture(deltas[early_step], final, early, top(early_step, "right")[:, :early])
                                       if early else float("nan"))
    return out


def model_trajectory(snapshots: dict, k: int = K_DEFAULT, early_step=None, spectra: dict | None = None,
                     vectors: dict | None = None) -> dict:
    """Trajectory of a whole model from {step: {name: ΔW_t}}.

    Returns per-matrix results and, for "attention", "mlp" and "all" matrices, the mean of
    each per-step quantity, the locking step of the mean right-similarity curve and, when
    `early_step` is given, the mean early_energy_capture(early_step). `spectra`
    {step: {name: σ} or None}: exact stored spectra; `vectors` {step: {name: (U_r, V_r)}}: known top
    singular vectors of factor snapshots (see matrix_trajectory).
    """
    from adapters_geo.geometry.aggregate import block

    steps = sorted(snapshots)
    names = list(snapshots[steps[-1]])
    spectra = spectra or {}
    vectors = vectors or {}
    per_name = lambda name: {t: (None if spectra[t] is None else spectra[t][name]) for t in spectra if t in snapshots}
    known = lambda name: {t: found[name] for t, found in vectors.items() if name in found}
    matrices = {name: matrix_trajectory({t: snapshots[t][name] for t in steps}, k, per_name(name), known(name), early_step)
                for name in names}
    groups = {"attention": [], "mlp": [], "all": names}
    for name in names:
        groups[block(name)].append(name)
    summary = {}
    for group, members in groups.items():
        if not members:
            continue
        curve = []
        for index, step in enumerate(steps):
            rows = [matrices[name]["steps"][index] for name in members]
            keys = ("sim_right", "sim_left", "future_capture", "future_capture_random", "stable_rank", "effective_rank",
                    "update_norm", "hill_alpha")
            curve.append({"step": step, **{key: _mean([row[key] for row in rows]) for key in keys}})
        entry = {"steps": curve, "locking_step": locking_step(steps, [row["sim_right"] for row in curve])}
        if early_step is not None:
            entry["early_energy_capture"] = _mean([matrices[n]["early_energy_capture"] for n in members])
            at_t0 = next(row for row in curve if row["step"] == early_step)
            entry["early_future_capture"], entry["early_future_capture_random"] = (
                at_t0["future_capture"], at_t0["future_capture_random"])
        summary[group] = entry
    return {"K": k, "steps": steps, "matrices": matrices, "summary": summary}


def endpoint_along(w0: torch.Tensor, ref_u: torch.Tensor, ref_v: torch.Tensor, delta: torch.Tensor, k: int | None = None) -> dict:
    """Rotation (max right angle, degrees), principal energy and relative norm of one snapshot ΔW_t.

    ref_u, ref_v: W0's top singular vectors (at least k columns); k default min(m, n) // 8.
    """
    k = min(k or default_k(w0.shape), ref_v.shape[1], min(w0.shape))
    _, _, v1 = svd64(w0.double() + delta.double(), k)
    energy, _ = principal_energy(delta, ref_u[:, :k], ref_v[:, :k])
    rel = delta.double().norm().item() / max(w0.double().norm().item(), 1e-300)
    return {"rotation_right_max_deg": rotation_deg(ref_v, v1, k)[0], "principal_energy": energy, "update_norm_rel": rel}


def _mean(values: list) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return sum(values) / len(values) if values else float("nan")
