"""Benchmark: what tracking adds to a run's wall time, measured inline and off the training thread (train.track_background).

Run: python benchmarks/bench_background_tracking.py [--method sft] [--adapter dense] [--steps 12] [--every 2] [--repeats 2]

Three arms, alternating within each repeat, each a whole short run of adapters_geo's loop (random weights of
SmolLM2-135M's shape, the bench's settings: benchmarks/bench_training.py) differing only in tracking: none, inline,
background, every `--every` steps (denser than a default run's 10 points per 100 steps, so the difference is
large enough to read). Printed per repeat: wall time of train_into, the training steps' own seconds, what the
training thread spent on tracking (inline: all of it; background: copying ΔW and waiting for the previous step),
and the worker's seconds; then each arm's overhead over the untracked run. Where the model trains on an
accelerator the worker uses CPU cores that would idle; on a CPU it competes with training for the same cores.
"""

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_training import Setting, build_run, coin_reward, quiet  # noqa: E402
from random_models import random_model  # noqa: E402

from adapters_geo.pipeline.runner import train_into  # noqa: E402
from adapters_geo.tasks import TaskConfig, load_task  # noqa: E402
from adapters_geo.training.config import TrainConfig  # noqa: E402

ARMS = ("none", "inline", "background")


def one_run(arm: str, args, student, task) -> dict:
    """Wall time and tracking seconds of one run of `arm`."""
    model, tokenizer, runner, batch = build_run(args.method, Setting(adapter=args.adapter), student, student, task)
    track = [] if arm == "none" else list(range(args.every, args.steps + 1, args.every))
    config = TrainConfig(steps=args.steps, batch_size=batch, lr=1e-5, eval_size=1, eval_every=0, eval_at_start=False,
                         eval_batch=1, checkpoint_every=10**6, track_steps=track, track_background=arm == "background")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        train_into(Path(folder), model, tokenizer, runner, task, config, progress=False)
        wall = time.perf_counter() - started
        rows = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    tracking = [r for r in rows if r["group"] == "tracking"]
    return {"wall": wall, "steps": sum(r["step_seconds"] for r in rows if r["group"] == "train"),
            "training_thread": sum(r["seconds"] for r in tracking),
            "worker": sum(r.get("background_seconds", 0.0) for r in tracking), "tracked": len(tracking)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="sft", choices=["sft", "opd", "rlvr"])
    parser.add_argument("--adapter", default="dense", choices=["dense", "lora"])
    parser.add_argument("--shape", default="smollm2-135m", choices=["smollm2-135m", "smollm2-1.7b"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--every", type=int, default=2, help="track every N steps")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if min(args.steps, args.every, args.repeats) < 1:
        parser.error("--steps, --every and --repeats must be at least 1")
    quiet()
    task = dataclasses.replace(load_task(TaskConfig(train_size=512, test_size=8)), reward=coin_reward)
    student = random_model(args.shape, seed=0)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device}; {args.method} {args.adapter}, {args.steps} steps, tracked every {args.every}")
    walls = {arm: [] for arm in ARMS}
    for repeat in range(args.repeats):
        for arm in ARMS:
            found = one_run(arm, args, student, task)
            walls[arm].append(found["wall"])
            print(f"repeat {repeat} {arm:10s} wall {found['wall']:7.1f} s  training steps {found['steps']:7.1f} s  "
                  f"tracking on the training thread {found['training_thread']:6.1f} s  worker {found['worker']:6.1f} s  "
                  f"({found['tracked']} tracked steps)", flush=True)
    for arm in ARMS[1:]:
        overheads = [w / n - 1 for w, n in zip(walls[arm], walls["none"])]
        print(f"{arm}: wall time over the untracked run {statistics.mean(overheads):+.0%} "
              f"(per repeat: {', '.join(f'{o:+.0%}' for o in overheads)})")


if __name__ == "__main__":
    main()
