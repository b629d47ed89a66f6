"""The one training loop: every method, same optimizer, schedule, batches, evaluation, tracking.

Per step: draw the step's prompts (seeded by step), let the method build its batch (rollouts,
scores) and its loss, one optimizer update with gradient clipping, log. At the tracked steps
the cumulative ΔW is snapshotted (trajectory.py) and cheap geometry scalars are logged. All
randomness is seeded by (seed, step), so `resume=True` after an interruption reaches exactly
the result of an uninterrupted run on the CPU.
"""

import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from adapters_geo.adapters import merged_deltas
from adapters_geo.adapters.io import save_adapter
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from adapters_geo.geometry.aggregate import module_type
from adapters_geo.geometry.online import online_scalars
from adapters_geo.loggers import ConsoleLogger, JsonlLogger, Loggers, TensorBoardLogger
from adapters_geo.models import base_info
from adapters_geo.models.weights import LazyBaseWeights
from adapters_geo.optim import build_optimizer
from adapters_geo.tasks.evaluate import evaluate
from adapters_geo.trajectory import TrajectoryWriter


@dataclass
class TrainConfig:
    steps: int = 100  # optimizer updates
    batch_size: int = 8  # prompts per step (sft: examples; opd / rlvr: prompts × group_size samples)
    lr: float = 2e-5
    optimizer: str = "adamw"  # adamw | adamw8bit | sgd
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (to 10% of lr)
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max global gradient norm (0: off)
    seed: int = 0
    eval_every: int = 0  # evaluate every N steps (0: at the start and the end only)
    eval_size: int | None = None  # held-out examples per evaluation (None: the whole test split)
    eval_batch: int = 16
    track_steps: list | None = None  # steps whose ΔW is snapshotted (None: 10 points, denser early)
    track_rank: int = 32  # rank of the factor snapshots
    checkpoint_every: int = 25  # steps between checkpoints (the last step always checkpoints)
    save_adapter_at: list | None = None  # steps at which the exact adapter is saved to adapter_step_N/
    first_step: int = 0  # start at this step (a continuation sees the same data as the run it continues)


def lr_factor(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "cosine":
            progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def draw(pool: list, size: int, seed: int, step: int) -> list:
    """The prompts of `step`: a seeded sample of the pool (same on resume)."""
    return random.Random(seed * 7919 + step).sample(pool, min(size, len(pool)))


def train(model, tokenizer, method, task, config: TrainConfig, out: Path, resume: bool = False,
          max_new_tokens: int = 48, system_prompt=None, progress: bool = True) -> dict:
    """Train `model`'s adapter with `method`; writes the run into `out`; returns the final summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, config.optimizer, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    fingerprint = base_info(model).fingerprint
    initial = merged_deltas(model)
    names = list(initial)
    # ΔW at the run's start where non-zero (a run from an init adapter); zeros are not held.
    start_deltas = {n: d for n, d in initial.items() if d.abs().max() > 0}
    del initial
    step = config.first_step
    if has_checkpoint(out / "checkpoint"):
        if not resume:
            raise AdaptersGeoError(f"{out} already holds a checkpoint", "resume it, or train into a new folder")
        step, extra = load_checkpoint(out / "checkpoint", model, optimizer, scheduler, fingerprint)
        if extra.get("start_deltas") is not None:  # None: the run started from a zero adapter
            start_deltas = extra["start_deltas"]
        if getattr(method, "history", None) is not None and "history" in extra:
            method.history.load_state_dict(extra["history"])
    reference = LazyBaseWeights(model, names, start_deltas)  # W_start, one matrix at a time
    tracker = TrajectoryWriter(out / "trajectory", config.steps, config.track_steps, config.track_rank, start_deltas)
    log = Loggers([JsonlLogger(out / "metrics.jsonl"), TensorBoardLogger(out / "tb")]
                  + ([ConsoleLogger(config.steps, step, f"{method.name}")] if progress else []))
    eval_examples = task.test[: config.eval_size] if config.eval_size else task.test
    run_eval = lambda: evaluate(model, tokenizer, task, eval_examples, max_new_tokens, config.eval_batch, system_prompt)
    if step == config.first_step:
        log.scalars(step, run_eval(), "eval")
    while step < config.steps:
        torch.manual_seed(config.seed * 1_000_003 + step)
        started = time.perf_counter()
        batch = method.batch(draw(task.train, config.batch_size, config.seed, step), step)
        rollout_seconds = time.perf_counter() - started
        model.train()
        loss, metrics = method.loss(model, batch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else float("inf"))
        # A batch without signal (e.g. every GRPO group with equal rewards) is skipped, not stepped:
        # Adam would otherwise keep moving along its stale momentum, ~lr·sign(g_old) per coordinate.
        skipped = float(grad_norm) == 0.0
        if not skipped:
            optimizer.step()
        with warnings.catch_warnings():  # a skipped step still advances the step-indexed schedule, on purpose
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        method.after_update(model)
        step += 1
        seconds = time.perf_counter() - started
        metrics.update({"grad_norm": float(grad_norm), "skipped_update": float(skipped), "lr": scheduler.get_last_lr()[0], "step_seconds": seconds,
                        "tokens_per_s": metrics["completion_tokens"] / seconds, "generation_share": rollout_seconds / seconds})
        log.scalars(step, metrics)
        if tracker.due(step):
            _track(step, model, tracker, reference, log)
        if step in (config.save_adapter_at or []):
            save_adapter(model, out / f"adapter_step_{step}", overwrite=True)
        if config.eval_every and step % config.eval_every == 0 and step < config.steps:
            log.scalars(step, run_eval(), "eval")
        if step % config.checkpoint_every == 0 or step == config.steps:
            nonzero = any(d.abs().max() > 0 for d in tracker.start.values())
            extra = {"start_deltas": tracker.start if nonzero else None}
            if getattr(method, "history", None) is not None:
                extra["history"] = method.history.state_dict()
            save_checkpoint(out / "checkpoint", step, model, optimizer, scheduler, fingerprint, extra)
    final = run_eval()
    log.scalars(step, final, "eval")
    log.close()
    save_adapter(model, out / "adapter", overwrite=True)
    summary = {"final_eval": final, "steps": step, "trajectory_mb": tracker.disk_bytes() / 2**20, "config": asdict(config)}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _track(step, model, tracker, reference, log) -> None:
    """Snapshot ΔW_t and log the cheap geometry scalars and ΔW singular-value histograms.

    Logs its own cost (group "tracking"): snapshot_seconds (decompositions + writing the file)
    and geometry_seconds (the online scalars and histograms), so the overhead is visible per run.
    """
    started = time.perf_counter()
    deltas = merged_deltas(model)
    spectra = tracker.save(step, deltas)
    snapshot_seconds = time.perf_counter() - started
    relative = {n: d - tracker.start.get(n, 0) for n, d in deltas.items()}
    for group, values in online_scalars(reference, relative, spectra).items():
        log.scalars(step, values, f"geometry/{group}")
    by_type = {}
    for name, values in spectra.items():
        by_type.setdefault(module_type(name), []).append(values)
    for kind, values in by_type.items():
        log.histogram(step, f"delta_singular_values/{kind}", torch.cat(values))
    geometry_seconds = time.perf_counter() - started - snapshot_seconds
    log.scalars(step, {"snapshot_seconds": snapshot_seconds, "geometry_seconds": geometry_seconds,
                       "format": tracker.index[str(step)]["format"]}, "tracking")
