"""Choosing k of the common outcome (train.eval_samples): the locking verdict's intervals with the first j of k samples.

    python benchmarks/eval_samples_pilot.py runs/lock_opd      # a lock experiment run with train.eval_samples = k

Every evaluation with eval_samples = k saves each sample's reward (evals/step_N.json, "sampled_rewards", N × k).
For j = 1, 2, 4, ... k this reads every arm's first j samples per prompt, computes the retentions with the report's
paired bootstrap over seeds and prompts (locking/stats.py), and prints each arm's retention with its 95 % interval
and the interval's width, so k is the smallest j whose interval is narrow enough to decide (the width falls as
√(between-prompt variance + within-prompt variance / j): past some j, more samples buy little). It also prints the
sampled accuracy of each arm at j = k, and the same retentions on the greedy accuracy and the method's own outcome.
"""

import argparse
import sys
from pathlib import Path

import torch

from adapters_geo.locking.stats import draw_indices, retention
from adapters_geo.report.locking import ARM_ORDER, _arm_dir
from adapters_geo.storage.runfolder import RunFolder


def arm_values(folder: Path) -> dict:
    """{arm: {"samples": (S, N, k), "greedy": (S, N), "own": (S, N)}} of a finished lock experiment."""
    run = RunFolder(folder)
    done = run.done()
    if done is None or "seeds" not in done:
        sys.exit(f"{folder} is not a finished lock experiment (no done.json with seeds)")
    seeds = sorted(done["seeds"], key=int)
    out = {}
    for arm in ARM_ORDER:
        rows = []
        for s in seeds:
            evals = RunFolder(_arm_dir(folder, done, s, arm)).prompt_evals()
            found = evals.get(done["t0"] if arm == "frozen" else done["steps"])
            if found is None or "sampled_rewards" not in found:
                break
            rows.append(found)
        if len(rows) == len(seeds):
            out[arm] = {"samples": torch.tensor([r["sampled_rewards"] for r in rows], dtype=torch.float64),
                        "greedy": torch.tensor([r["greedy_reward"] for r in rows], dtype=torch.float64),
                        "own": torch.tensor([r["outcome"] for r in rows], dtype=torch.float64)}
    if "frozen" not in out or "unconstrained" not in out:
        sys.exit(f"{folder}: the frozen and unconstrained arms need evaluations with sampled_rewards (train.eval_samples)")
    return out


def line(name: str, stats: dict) -> str:
    cells = []
    for arm, value in stats["retention"].items():
        if arm in ("frozen", "unconstrained"):
            continue
        cells.append(f"{arm} {value['estimate']:.2f} [{value['low']:.2f}, {value['high']:.2f}] "
                     f"(width {value['high'] - value['low']:.2f})")
    gain = stats["gain"]["unconstrained"]
    return f"| {name} | {gain['estimate']:.3f} [{gain['low']:.3f}, {gain['high']:.3f}] | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", help="a finished lock experiment folder, e.g. runs/lock_opd")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    values = arm_values(Path(args.lock))
    frozen = values["frozen"]["samples"]
    seeds, prompts, k = frozen.shape
    indices = draw_indices(seeds, prompts, args.draws)
    print(f"{args.lock}: {seeds} seed(s) × {prompts} prompts, k = {k}; retention of the unconstrained gain, 95 % intervals")
    print("| outcome | unconstrained gain | arms |\n|---|---|---|")
    j = 1
    while j <= k:
        losses = {arm: -v["samples"][:, :, :j].mean(2) for arm, v in values.items()}  # a loss: lower is better
        print(line(f"sampled, j = {j}", retention(losses, indices=indices)))
        j = j * 2 if j * 2 <= k or j == k else k
    print(line("greedy accuracy", retention({arm: -v["greedy"] for arm, v in values.items()}, indices=indices)))
    print(line("own outcome", retention({arm: v["own"] for arm, v in values.items()}, indices=indices)))
    print("sampled accuracy at j = k: " + ", ".join(f"{arm} {v['samples'].mean():.3f}" for arm, v in values.items()))


if __name__ == "__main__":
    main()
