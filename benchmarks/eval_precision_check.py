"""Does a bf16 held-out evaluation (train.eval_precision) give a finished lock experiment the same verdict, and what does it save?

    python benchmarks/eval_precision_check.py runs/lock_opd_rg [--dtype bfloat16] [--time-fp32 2]

For every seed and arm of the experiment, loads the arm's adapter (the frozen arm: its t0 start) on a fresh base and
runs the run's own evaluation (training/evaluation.HeldOut at the step the report reads: the method's outcome,
reference NLL, greedy accuracy, k samples per prompt with the run's seeds) with train.eval_precision = --dtype (the
samples drawn from the merged copy in that dtype; the teacher-forced passes stay fp32, so they must not change). Prints:
- per outcome, the largest per-prompt difference from the run's fp32 values (evals/step_N.json), absolute and
  relative to the outcome's spread over prompts, and how many greedy and sampled rewards changed;
- the report's verdict line (report/locking.py, the same bootstrap draws) from the fp32 files and from the
  re-evaluation, one under the other, so a reader sees whether the verdict changes;
- seconds: the re-evaluation per arm at --dtype; with `--time-fp32 N` the first N arms are also evaluated at fp32 in
  the same process (their values must equal the files: the check re-runs the run's own evaluation), so the ratio is
  measured side by side.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from adapters_geo.adapters.io import load_adapter
from adapters_geo.config.run import saved_run_config
from adapters_geo.methods.teacher import load_teacher_for, teacher_key
from adapters_geo.models.loader import load_base
from adapters_geo.pipeline.runner import held_out_kind
from adapters_geo.report import locking
from adapters_geo.rollout.sampler import DTYPES
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.tasks import load_task
from adapters_geo.training.evaluation import HeldOut

OUTCOMES = ("outcome", "reference_nll", "greedy_reward", "sampled_reward")


def refuse(message: str) -> None:
    """One line naming the problem and the fix, exit code 2 (as the toolkit's own commands)."""
    print(f"eval_precision_check: {message}", file=sys.stderr)
    sys.exit(2)


class Evaluator:
    """The end evaluation of one arm folder at a given dtype, as its run computed it (teacher loaded once)."""

    def __init__(self):
        self.teachers = {}

    def __call__(self, arm: Path, step: int, dtype: torch.dtype) -> tuple[dict, float]:
        """(per-prompt values, seconds) of the arm's evaluation at `step`, its samples drawn in `dtype`."""
        folder = RunFolder(arm)
        config = saved_run_config(json.loads(folder.config_file.read_text()), str(arm))
        base = load_base(config.model, config.quant)
        model = load_adapter(base.model, Path((folder.summary() or {})["adapter"]))
        teacher = teacher_id = None
        if config.method.needs_teacher():
            source = config.method.teacher
            if source not in self.teachers:
                loaded = load_teacher_for(source, config.method.teacher_quant, config.model, base.tokenizer)
                self.teachers[source] = (loaded.model, teacher_key(source, loaded))
            teacher, teacher_id = self.teachers[source]
        task, train = load_task(config.task), config.train
        examples = task.test[: train.eval_size] if train.eval_size else task.test
        with tempfile.TemporaryDirectory() as scratch:
            held = HeldOut(model, base.tokenizer, task, examples, held_out_kind(config.method.name, teacher is not None),
                           RunFolder(scratch), {step}, teacher, config.method.hinted(), config.method.max_new_tokens,
                           train.eval_batch, config.system_prompt, curve_size=train.curve_size, teacher_key=teacher_id,
                           common_samples=train.eval_samples, dtype=dtype)
            started = time.perf_counter()
            _, per_prompt = held.evaluate(step)
            return per_prompt, time.perf_counter() - started


def differences(then: dict, now: dict) -> dict:
    """{outcome: (largest |difference|, its share of the outcome's spread over prompts, values that differ)}."""
    out = {}
    for key in OUTCOMES:
        if then.get(key) is None or now.get(key) is None:
            continue
        a, b = torch.tensor(then[key], dtype=torch.float64), torch.tensor(now[key], dtype=torch.float64)
        gap = (a - b).abs()
        out[key] = (gap.max().item(), gap.max().item() / max(a.std().item(), 1e-12), int((gap > 0).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a finished lock experiment, e.g. runs/lock_opd_rg")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--time-fp32", type=int, default=0, help="arms also evaluated at fp32 in this process")
    args = parser.parse_args()
    done = RunFolder(args.folder).done()
    if done is None or "seeds" not in done:
        refuse(f"{args.folder} is not a finished lock experiment (no done.json with seeds) — fix: run it with make experiment")
    evaluate, replaced, worst, seconds = Evaluator(), {}, {}, {"fp32": [], args.dtype: [], "paired": []}
    for seed in sorted(done["seeds"], key=int):
        for arm in locking.ARM_ORDER:
            folder = locking._arm_dir(args.folder, done, seed, arm)
            step = done["t0"] if arm == "frozen" else done["steps"]
            then = locking._outcome_at(folder, step)
            if then is None:
                continue
            if len(seconds["fp32"]) < args.time_fp32:
                again, spent = evaluate(folder, step, torch.float32)
                same = all(again.get(k) == then.get(k) for k in OUTCOMES)
                seconds["fp32"].append(spent)
                print(f"  seed {seed} {arm}: fp32 again in {spent:.1f} s, {'equal to' if same else 'DIFFERENT from'} the run's")
            now, spent = evaluate(folder, step, DTYPES[args.dtype])
            if len(seconds[args.dtype]) < len(seconds["fp32"]):
                seconds["paired"].append(seconds["fp32"][-1] / spent)
            seconds[args.dtype].append(spent)
            replaced[(str(folder), step)] = {**then, **{k: now[k] for k in OUTCOMES if k in now}}
            for key, value in differences(then, now).items():
                worst[key] = max(worst.get(key, (0.0, 0.0, 0)), value)
            print(f"  seed {seed} {arm}: {args.dtype} in {spent:.1f} s; " + ", ".join(
                f"{k} max |Δ| {v[0]:.3g} ({v[1]:.1%} of its spread), {v[2]} differ" for k, v in differences(then, now).items()))
    before = locking.lock_summary(args.folder)
    read = locking._outcome_at  # the report's own statistics, read off the re-evaluated values instead of the files
    locking._outcome_at = lambda folder, step: replaced.get((str(folder), step)) or read(folder, step)
    try:
        after = locking.lock_summary(args.folder)
    finally:
        locking._outcome_at = read
    print("\nlargest per-prompt difference over every arm and seed (absolute, share of the spread, values differing in the worst arm):")
    for key, (gap, share, count) in worst.items():
        print(f"  {key}: {gap:.4g} ({share:.1%}), {count}")
    print(f"\nfp32 (the run's files):\n  {locking.verdict(before)}\n{args.dtype} (re-evaluated):\n  {locking.verdict(after)}")
    total = sum(seconds[args.dtype])
    print(f"\n{args.dtype} evaluation: {total:.0f} s for {len(seconds[args.dtype])} arm evaluations "
          f"({total / max(1, len(seconds[args.dtype])):.1f} s each)")
    if seconds["paired"]:
        ratios = torch.tensor(seconds["paired"])
        print(f"fp32 / {args.dtype} seconds, side by side on {len(ratios)} arm(s): "
              + ", ".join(f"{r:.2f}" for r in ratios.tolist()) + f" (mean {ratios.mean():.2f})")


if __name__ == "__main__":
    main()
