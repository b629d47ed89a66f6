"""Benchmark: the cost of one tracked step (Tracker.on_step) on SmolLM2-135M's shape, by snapshot format.

Run: python benchmarks/bench_tracked_step.py [--adapter dense|lora] [--repeats 3] [--along-layers 4]

Random weights of SmolLM2-135M's shape (benchmarks/random_models.py), a dense adapter holding a
random 1e-3 update on all 210 matrices (or a LoRA, r 8, with random factors), the default tracked steps of a 100-step run (2, 5: factors;
20 = t0: bf16; 100: a reference to the adapter a run saves anyway, as in a run). Prints, per format, the fastest of `repeats` tracked steps (total, and
its parts summed over the matrices: snapshot with its SVDs, online scalars on every matrix, rotation /
principal energy on the layer subset; on a CPU the matrices run on one worker per thread, so the parts
can add up to more than the wall time), the first tracked step apart (it also decomposes W_start for the subset), and
the default tracking's cost (8 factors + bf16 + final) per 100-step run.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base  # noqa: E402
from adapters_geo.training.tracker import Tracker  # noqa: E402
from benchmarks.bench_training import TrackingCosts  # noqa: E402
from benchmarks.random_models import random_model  # noqa: E402

STEPS = (2, 5, 20, 100)  # of default_steps(100): factors, factors, bf16 (t0), final (a reference to adapter/)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--adapter", default="dense", choices=["dense", "lora"])
    parser.add_argument("--along-layers", type=int, default=4, help="layers with rotation / principal energy (0: none)")
    args = parser.parse_args()
    model = attach_adapter(load_base(str(random_model())).model, DenseConfig() if args.adapter == "dense" else LoraConfig(r=8))
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        # built on the fresh adapter, as a run builds it: ΔW_start = 0, so the steps below measure the update itself
        tracker = Tracker(model, Path(tmp), total_steps=100, along_layers=args.along_layers, references={100: "adapter"})
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.copy_(1e-3 * torch.randn(p.shape, generator=generator))
        for repeat in range(args.repeats):
            for step in STEPS:
                costs = TrackingCosts()
                tracker.on_step(step, costs)
                row = {"total": costs.rows[0]["seconds"], **costs.rows[0]}
                key = "first" if repeat == 0 and step == STEPS[0] else row["format"]
                times.setdefault(key, []).append(row)
    parts = ("total", "snapshot_seconds", "geometry_seconds", "along_seconds")
    print(f"tracked step, SmolLM2-135M shape, {args.adapter}, {len(tracker.names)} matrices, along subset {len(tracker.along)} matrices; "
          f"torch threads {torch.get_num_threads()}")
    for key, rows in times.items():
        best = min(rows, key=lambda r: r["total"])
        print(f"{key:8s} " + "  ".join(f"{p.removesuffix('_seconds')} {best.get(p, 0.0):.2f} s" for p in parts))
    best = {key: min(r["total"] for r in rows) for key, rows in times.items()}
    print(f"default tracking per 100-step run: {8 * best['factors'] + best['bf16'] + best['adapter']:.1f} s")


if __name__ == "__main__":
    main()
