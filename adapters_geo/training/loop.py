"""The one training loop: every method, same optimizer, schedule, data order, evaluation, checkpoints.

Per step: draw the step's examples (seeded by step), let the method build its batch (rollouts,
scores) and its loss, one optimizer update with gradient clipping, log, then let the tracker
record the update. All randomness is seeded by (seed, step), so a resumed run reaches exactly
the result of an uninterrupted run on the CPU. What is measured about the update lives in the
tracker (tracker.py); what a method does, in methods/; evaluation is passed in as a callable.
A non-finite loss or gradient stops the run before the optimizer steps (one line: the step, the
value, the learning rate): nothing of that step is applied or saved, the last checkpoint stays.
Under a data-parallel launch (parallel.py) each process trains on its share of the step's examples,
gradients are summed across processes, and only the main process tracks, logs and writes.
"""

import math
import random
import time
import warnings

import torch

from adapters_geo.adapters import trainable_parameters
from adapters_geo.adapters.io import save_adapter
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models import base_info
from adapters_geo.training.optim import build_scheduler, optimizer_for
from adapters_geo.training.precision import method_models, mixed_precision
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.training.checkpoint import checkpoint_step, has_checkpoint, resume as resume_from, save_checkpoint, start_from
from adapters_geo.training.config import TrainConfig
from adapters_geo.training.parallel import Parallel


def draw(pool: list, size: int, seed: int, step: int) -> list:
    """The examples of `step`: a seeded sample of the pool (same on resume and in every continuation)."""
    return random.Random(seed * 7919 + step).sample(pool, min(size, len(pool)))


def check_finite(step: int, loss: torch.Tensor, grad_norm: torch.Tensor, config: TrainConfig, updated: bool,
                 checkpoint) -> None:
    """One line when the loss or the gradient norm of `step` is not finite (before the optimizer steps).

    `updated`: this run had made an update before `step`; `checkpoint`: the run's checkpoint folder.
    """
    found = {"loss": float(loss.detach()), "gradient norm": float(grad_norm)}
    bad = ", ".join(f"{name} {value}" for name, value in found.items() if not math.isfinite(value))
    if not bad:
        return
    last = checkpoint_step(checkpoint)
    kept = f"the last checkpoint (step {last}) is intact" if last is not None else "no checkpoint was written"
    if updated:
        cause = f"train.lr = {config.lr:g} ({config.optimizer}) is too large, the updates diverged"
        fix = f"lower train.lr (e.g. to {config.lr / 10:g}) and train into a new --out"
    else:
        cause = f"the starting weights or the data (no update had been made, so not train.lr = {config.lr:g})"
        fix = "check the init adapter and the task data, then train into a new --out"
    raise AdaptersGeoError(f"step {step}: {bad} (not finite): training stopped before the optimizer step, {kept}; "
                           f"likely cause: {cause}", fix)


def optimizer_step(optimizer, scheduler, grad_norm: torch.Tensor) -> bool:
    """Step unless the batch carried no signal; the step-indexed schedule advances either way."""
    # A batch without signal (e.g. every GRPO group with equal rewards) is skipped, not stepped:
    # Adam would otherwise keep moving along its stale momentum, ~lr·sign(g_old) per coordinate.
    stepped = float(grad_norm) != 0.0
    if stepped:
        optimizer.step()
    with warnings.catch_warnings():  # a skipped step still advances the schedule, on purpose
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return stepped


def train(model, method, pool: list, config: TrainConfig, folder, tracker, evaluate, log, resume: bool = False,
          parallel: Parallel = Parallel()) -> int:
    """Train `model`'s adapter with `method` on `pool` up to config.steps; returns the last step.

    `evaluate(step)` -> held-out metrics (logged at the start, every eval_every steps, default steps // 4);
    `tracker.on_step(step, log)` records the update; checkpoints go to folder/checkpoint. `parallel`:
    this process's share of a data-parallel run (non-main processes get a no-op tracker, evaluate and log).
    """
    folder = RunFolder(folder)
    main = parallel.main
    params = trainable_parameters(model)
    optimizer = optimizer_for(model, config.optimizer, config.lr, config.weight_decay)
    scheduler = build_scheduler(optimizer, config.schedule, config.warmup_steps, config.steps)
    fingerprint = base_info(model).fingerprint
    stateful = {"method": method, "tracker": tracker}
    if config.start_state and not has_checkpoint(folder.checkpoint):
        step = start_from(config.start_state, model, optimizer, scheduler, fingerprint, method)
    else:
        step = resume_from(folder.checkpoint, model, optimizer, scheduler, fingerprint, stateful, resume, config.first_step)
    check_parallel(parallel, step, config)
    t0, eval_every = config.resolved_t0(), config.resolved_eval_every()
    if step == config.first_step and config.eval_at_start:
        log.scalars(step, evaluate(step), "eval")
    while step < config.steps:
        torch.manual_seed(config.seed * 1_000_003 + step + 7_919 * parallel.rank)  # rank 0: a lone run's stream
        started = time.perf_counter()
        batch = method.batch(parallel.share(draw(pool, config.batch_size, config.seed, step)), step)
        batch.stream = parallel.rank
        rollout_seconds = time.perf_counter() - started
        model.train()
        with mixed_precision(config.precision, [model, *method_models(method)]):
            loss, metrics = method.loss(model, batch)
        loss, metrics = weighted(loss, metrics, batch, parallel)
        loss.backward()
        parallel.sum_gradients(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
        check_finite(step + 1, loss, grad_norm, config, step > config.first_step, folder.checkpoint)
        stepped = optimizer_step(optimizer, scheduler, grad_norm)
        method.after_update(model)
        step += 1
        seconds = time.perf_counter() - started
        tokens = metrics.pop("completion_tokens_all", batch.completion_tokens)  # every process's, under data parallelism
        log.scalars(step, {**metrics, "completion_tokens": float(tokens), "grad_norm": float(grad_norm),
                           "skipped_update": float(not stepped), "lr": scheduler.get_last_lr()[0], "step_seconds": seconds,
                           "tokens_per_s": tokens / seconds, "generation_share": rollout_seconds / seconds})
        tracker.on_step(step, log)
        if main and step in (config.save_adapter_at or []):
            save_adapter(model, folder.adapter_at(step), overwrite=True)
        if main and step == t0 and config.save_t0_state:
            save_state(folder.t0_state, step, model, optimizer, scheduler, fingerprint, stateful)
        if eval_every and step % eval_every == 0 and step < config.steps:
            log.scalars(step, evaluate(step), "eval")
        if main and (step % config.checkpoint_every == 0 or step == config.steps):
            parts = {name: obj.state_dict() for name, obj in stateful.items()}
            save_checkpoint(folder.checkpoint, step, model, optimizer, scheduler, fingerprint, parts)
    return step


def check_parallel(parallel: Parallel, step: int, config: TrainConfig) -> None:
    """Every process starts at the main one's step, and each has examples to train on."""
    if parallel.world == 1:
        return
    if config.batch_size < parallel.world:
        raise AdaptersGeoError(f"train.batch_size = {config.batch_size} is smaller than the {parallel.world} processes: "
                               "some would have no examples", f"set train.batch_size to at least {parallel.world}, or launch fewer processes")
    main_step = parallel.from_main(step)
    if main_step != step:  # e.g. a checkpoint this process cannot see as the main one does (several machines, no shared runs/)
        raise AdaptersGeoError(f"process {parallel.rank} would start at step {step}, the main process at step {main_step}",
                               "put runs/ on a filesystem every process sees, then resume")


def weighted(loss: torch.Tensor, metrics: dict, batch, parallel: Parallel) -> tuple[torch.Tensor, dict]:
    """This process's loss weighted by its share n_r / N of the loss's denominator (parallel.py), and the
    step's metrics over every process: the whole step's loss and completion tokens, every other metric the
    mean of the processes' values weighted by their sequences (a per-sequence mean, as one process computes it).
    A lone process's loss and metrics are unchanged."""
    own = float(metrics.pop("loss_tokens", 1.0))
    if parallel.world == 1:
        return loss, metrics
    share = own / max(parallel.total(own), 1e-12)
    whole = parallel.total(float(loss.detach()) * share)
    rows = len(batch.prompts)
    means = parallel.weighted_means({k: v for k, v in metrics.items() if k != "loss"}, rows)
    return loss * share, {**means, "loss": whole, "completion_tokens_all": parallel.total(batch.completion_tokens)}


def save_state(path, step, model, optimizer, scheduler, fingerprint, stateful) -> None:
    """The full training state at `step` (checkpoint format) plus the adapter itself in path/adapter."""
    parts = {name: obj.state_dict() for name, obj in stateful.items()}
    save_checkpoint(path, step, model, optimizer, scheduler, fingerprint, parts, also=lambda tmp: save_adapter(model, tmp / "adapter"))

