"""Benchmark: the static geometry suite on SmolLM2-135M (210 matrices) vs a naive NumPy path.

Run: make bench-geometry   (or: python benchmarks/bench_geometry.py [--matrices N])

In one run, on the same synthetic update ΔW (dense noise plus a low-rank part, seeded):
- naive: per matrix, three full float64 NumPy SVDs (W0, W1, ΔW) and the same metrics;
- ours, cold: adapters_geo's suite with an empty reference-SVD cache;
- ours, warm: the same with the reference SVDs cached (the usual case: one base, many runs);
- SVDs only: the decompositions the warm suite needs (thin SVD of W1, spectrum of ΔW).
Prints seconds, the speed-up ratios, the suite's overhead over its SVDs, agreement of the
two implementations, and peak RSS.
"""

import argparse
import resource
import tempfile
import time

import numpy as np
import torch

from adapters_geo.geometry.linalg import svd64, svdvals64
from adapters_geo.storage.svd_cache import SVDCache
from adapters_geo.pipeline.sources import CheckpointReader
from adapters_geo.geometry.suite import Settings, matrix_metrics


def synthetic_update(w0: torch.Tensor, seed: int) -> torch.Tensor:
    """1e-3-relative dense noise plus a rank-8 part: an update with structure at every scale."""
    g = torch.Generator().manual_seed(seed)
    m, n = w0.shape
    scale = w0.norm() / (m * n) ** 0.5
    low = torch.randn(m, 8, generator=g) @ torch.randn(8, n, generator=g) / 8**0.5
    return scale * (1e-3 * torch.randn(m, n, generator=g) + 3e-3 * low)


def naive_metrics(w0: np.ndarray, delta: np.ndarray, s: Settings) -> dict:
    """The same endpoint metrics, straight from three full NumPy SVDs."""
    w1 = w0 + delta
    u0, s0, v0t = np.linalg.svd(w0, full_matrices=False)
    u1, s1, v1t = np.linalg.svd(w1, full_matrices=False)
    sd = np.linalg.svd(delta, compute_uv=False)
    k = s.k_for(w0.shape)
    angle = lambda a, b: np.degrees(np.arccos(np.clip(np.linalg.svd(a.T @ b, compute_uv=False), -1, 1)))
    rot_u, rot_v = angle(u0[:, :k], u1[:, :k]), angle(v0t[:k].T, v1t[:k].T)
    b0 = torch.from_numpy(w0).float().bfloat16().float().numpy()
    b1 = torch.from_numpy(w1).float().bfloat16().float().numpy()
    changed = np.abs(b1 - b0) > s.eta * np.maximum(np.abs(b0), np.abs(b1))
    recon = np.abs((u0[:, : s.r] * s0[: s.r]) @ v0t[: s.r])
    half = int(round(s.alpha * w0.size))
    princ = recon >= np.partition(recon.ravel(), w0.size - half)[w0.size - half]
    low = np.abs(w0) <= np.partition(np.abs(w0).ravel(), half - 1)[half - 1]
    p = sd / sd.sum()
    energy = np.cumsum(sd**2) / (sd**2).sum()
    inside = np.linalg.norm(u0[:, :k].T @ delta @ v0t[:k].T) ** 2 / np.linalg.norm(delta) ** 2
    return {
        "sparsity_bf16": 1 - changed.mean(),
        "rotation_left_max_deg": rot_u.max(),
        "rotation_right_max_deg": rot_v.max(),
        "spectral_drift": np.linalg.norm(s1 - s0) / np.linalg.norm(s0),
        "principal_overlap": (princ & changed).sum() / changed.sum(),
        "low_magnitude_overlap": (low & changed).sum() / changed.sum(),
        "principal_energy": inside,
        "stable_rank": (sd**2).sum() / sd[0] ** 2,
        "effective_rank": np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()),
        "rank_at_90": int(np.searchsorted(energy, 0.9) + 1),
        "hill_alpha": 1 / np.mean(np.log(sd[: s.q - 1] / sd[s.q - 1])),
        "update_norm_rel": np.linalg.norm(delta) / np.linalg.norm(w0),
    }


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--matrices", type=int, default=None, help="limit to the first N matrices")
    args = parser.parse_args()
    reader = CheckpointReader(args.model)
    names = reader.targets()[: args.matrices]
    pairs = [(n, reader.get(n)) for n in names]
    pairs = [(n, w, synthetic_update(w, i)) for i, (n, w) in enumerate(pairs)]
    settings = Settings()
    print(f"{len(pairs)} matrices of {args.model}, torch threads {torch.get_num_threads()}")

    naive_s, naive = timed(lambda: {n: naive_metrics(w.double().numpy(), d.double().numpy(), settings) for n, w, d in pairs})
    with tempfile.TemporaryDirectory() as root:
        def ours():
            cache = SVDCache("bench", root=__import__("pathlib").Path(root))
            return {n: matrix_metrics(w, d, cache.get(n, w, settings.reference_columns(w.shape)), settings) for n, w, d in pairs}

        cold_s, _ = timed(ours)
        warm_s, result = timed(ours)
    svd_s, _ = timed(lambda: [(svd64(w + d, settings.k_for(w.shape)), svdvals64(d)) for _, w, d in pairs])

    print(f"{'path':<38}{'seconds':>9}{'per matrix (ms)':>17}")
    for label, secs in (("naive NumPy (3 full SVDs / matrix)", naive_s), ("adapters_geo, cold SVD cache", cold_s),
                        ("adapters_geo, warm SVD cache", warm_s), ("  its SVDs alone (W1 thin, ΔW values)", svd_s)):
        print(f"{label:<38}{secs:>9.2f}{1000 * secs / len(pairs):>17.1f}")
    print(f"speed-up vs naive: cold {naive_s / cold_s:.2f}x, warm {naive_s / warm_s:.2f}x")
    print(f"warm suite / its SVDs: {warm_s / svd_s:.2f}x")
    worst = {}
    for name, row in naive.items():
        for key, value in row.items():
            ours_value = result[name][key]
            scale = max(abs(value), 1e-12)
            worst[key] = max(worst.get(key, 0.0), abs(ours_value - value) / scale)
    print("largest relative disagreement, ours vs naive: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
