"""The one pipeline, from a RunConfig to a finished run folder: model → adapter → method → loop →
tracker → endpoint geometry → trajectory geometry → done.json.

`adapters-geo train` and `make experiment` both call `run`, so every run folder has the same
layout (storage/runfolder.py): config.json (resolved, t0 included), meta.json, metrics.jsonl, tb/,
checkpoint/, trajectory/, adapter/, train_summary.json, geometry/, trajectory_geometry/ and,
last, done.json with the run's identity hash. `run` first claims the folder (storage/claim.py): checked
before any model loads or any file is written, locked against a second writer for the whole run.
"""

import hashlib
import json
import subprocess
import time
from pathlib import Path

import torch

from adapters_geo.adapters import attach_adapter, trainable_parameters
from adapters_geo.adapters.io import load_adapter, meta_digest, read_adapter_meta, save_adapter
from adapters_geo.storage.claim import check, claim
from adapters_geo.config.run import LockedSpec, RunConfig, check_adapter_fits
from adapters_geo.storage.disk import check_space, drop_resume_state, run_need
from adapters_geo.training.loggers import ConsoleLogger, JsonlLogger, Loggers, TensorBoardLogger
from adapters_geo.methods import Context, build_method, validate
from adapters_geo.methods.teacher import load_teacher_for, teacher_key
from adapters_geo.models import checkpoint_activations, load_base
from adapters_geo.models.loader import pick_device
from adapters_geo.report.tensorboard import write_figures, write_header, write_session_end
from adapters_geo.rollout.sampler import sampler_dtype
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.tasks import load_task
from adapters_geo.tasks.outcome import outcome_kind
from adapters_geo.training.checkpoint import checkpoint_step
from adapters_geo.training.config import TrainConfig
from adapters_geo.training.evaluation import HeldOut
from adapters_geo.training.loop import train
from adapters_geo.training.parallel import Parallel, current
from adapters_geo.training.tracker import NoTracking, Tracker


def run_meta() -> dict:
    """Provenance of a run: git hash and dirty flag of this checkout, package versions."""
    import importlib.metadata as md

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    versions = {}
    for package in ("adapters_geo", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return {"git": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain")), "versions": versions}


def config_hash(config: RunConfig) -> str:
    """A run's identity: the hash of its resolved config."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolved(config: RunConfig) -> RunConfig:
    """The config as it runs: t0 and the evaluation interval decided."""
    train = config.train.model_copy(update={"t0": config.train.resolved_t0(), "eval_every": config.train.resolved_eval_every()})
    return config.model_copy(update={"train": train})


def start_eval_cache(config: RunConfig, shared: Path | None, teacher_id: str | None) -> Path | None:
    """The file in `shared` (an experiment's runs/.start_evals) holding this run's step-0 evaluation for every run that
    starts from the same saved adapter and scores it the same way, on this code: the training seeds of a locking
    test's source start from one model, and the evaluation's sampling has its own seeds, so each seed would compute
    the same numbers again (about 3 min per OPD source on 2 CPU cores). None without `shared`, or when the start is
    not a saved adapter evaluated at step 0."""
    train = config.train
    if shared is None or not config.init or train.first_step != 0 or not train.eval_at_start \
            or isinstance(config.adapter, LockedSpec):
        return None
    code = run_meta()
    same = {"model": config.model, "quant": config.quant, "init": meta_digest(read_adapter_meta(config.init)),
            "task": config.to_dict()["task"], "outcome": held_out_kind(config.method.name, teacher_id is not None),
            "teacher": teacher_id, "hint": config.method.hinted(), "max_new_tokens": config.method.max_new_tokens,
            "system_prompt": config.system_prompt, "eval": [train.eval_batch, train.eval_size, train.eval_samples],
            "code": [code["git"], code["dirty"]]}
    dtype = eval_dtype(train, pick_device())  # the device load_base puts the model on
    if dtype is not None:  # the default adds nothing: the key of every earlier cache
        same["eval_dtype"] = str(dtype)
    key = hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return shared / f"{key}.json"


def eval_dtype(train: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype the held-out evaluation samples in (train.eval_precision); None: the model's own (float32, the default)."""
    return None if train.eval_precision == "float32" else sampler_dtype(train.eval_precision, device)


def build_model(config: RunConfig):
    """(model with its adapter, tokenizer) for `config`; the adapter's random initialisation is seeded by train.seed."""
    if config.init:
        read_adapter_meta(config.init)  # a missing or unresolved init fails before the base's weights load
    base = load_base(config.model, config.quant)
    check_adapter_fits(config.adapter, base.model)  # r / K against the shapes, before anything trains
    if config.train.gradient_checkpointing:  # active in train mode only (the loop's loss), not when sampling
        checkpoint_activations(base.model)
    with torch.random.fork_rng(devices=_devices(base.model)):  # the global stream is left as it was
        torch.manual_seed(config.train.seed * 1_000_003 - 1)  # "step -1": the loop seeds seed · 1_000_003 + step
        if isinstance(config.adapter, LockedSpec):
            from adapters_geo.locking.continuation import locked_model

            return locked_model(base.model, config.adapter), base.tokenizer
        if config.init:
            return load_adapter(base.model, config.init), base.tokenizer
        return attach_adapter(base.model, config.adapter), base.tokenizer


def _devices(model) -> list[int]:
    """The CUDA devices `model` lives on (their generators are forked too)."""
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def held_out_kind(method: str, has_teacher: bool) -> str:
    """What a run's held-out outcome is: tasks/outcome.py's kind for the method; OPD without a teacher model: NLL."""
    kind = outcome_kind(method)
    return "nll" if kind == "kl" and not has_teacher else kind


def run_hparams(config: RunConfig, name: str) -> dict:
    """The run's row in TensorBoard's HPARAMS tab (the columns of report/tensorboard.py's HPARAMS)."""
    from adapters_geo.locking.continuation import arm_of

    adapter, train = config.adapter, config.train
    locked = isinstance(adapter, LockedSpec)
    return {"run": name, "model": config.model, "method": config.method.name, "adapter": getattr(adapter, "kind", "locked"),
            "quant": config.quant, "arm": arm_of(config) or "-", "basis": adapter.basis if locked else "-",
            "mode": adapter.mode if locked else "-",
            "lr": train.lr, "seed": train.seed, "steps": train.steps, "batch_size": train.batch_size,
            "outcome_kind": held_out_kind(config.method.name, config.method.needs_teacher())}


def train_into(folder, model, tokenizer, method, task, config: TrainConfig, max_new_tokens: int = 48,
               system_prompt=None, resume: bool = False, progress: bool = True, teacher=None,
               teacher_hint: bool = False, label: str | None = None, teacher_id: str | None = None,
               init: str | None = None, hparams: dict | None = None, parallel: Parallel = Parallel(),
               start_cache: Path | None = None) -> dict:
    """Train an adapted model into `folder`: loggers, tracker, evaluation, loop, final adapter; returns the summary.

    `teacher` (a model) is what an OPD run's outcome (reverse KL) is measured against; without one, NLL.
    `init`: the saved adapter the model was built from (None: a fresh adapter, ΔW = 0 at the start).
    `hparams`: the run's TensorBoard HPARAMS row, written with config.json's text into the training events.
    `parallel`: a data-parallel process other than the main one trains its share and writes nothing.
    `start_cache`: the step-0 evaluation shared with runs of the same start (start_eval_cache), read or written.
    """
    folder = RunFolder(folder)
    if not parallel.main:
        step = train(model, method, task.train, config, folder.path, NoTracking(), lambda step: {}, Loggers([]), resume, parallel)
        return {"final_eval": {}, "steps": step, "trajectory_mb": 0.0, "adapter": str(folder.adapter), "config": config.model_dump()}
    folder.path.mkdir(parents=True, exist_ok=True)
    t0 = config.resolved_t0()
    references = {config.steps: "adapter"}  # kept anyway: the trajectory refers to them instead of copying them
    if config.save_t0_state and config.first_step < t0 <= config.steps:
        references[t0] = "t0_state/adapter"
    tracker = Tracker(model, folder.trajectory_dir, config.steps, config.track_steps, config.track_rank, t0,
                      config.track_layers, references, init, config.track_background, config.track_exact_layers)
    if tracker.start and init is None:  # a non-zero start nobody saved: store every snapshot itself
        tracker.writer.references = {}
    kept = last_kept_step(folder, config) if resume else None  # a resume drops what was logged after its checkpoint
    metrics = JsonlLogger(folder.metrics_file, kept_rows(kept, config.steps))  # first: damaged rows stop it before TensorBoard purges
    tensorboard = TensorBoardLogger(folder.tensorboard, None if kept is None else kept + 1)
    if hparams:
        write_header(tensorboard.writer, hparams, folder.config_file)
    log = Loggers([metrics, tensorboard]
                  + ([ConsoleLogger(config.steps, config.first_step, label or method.name)] if progress else []))
    examples = task.test[: config.eval_size] if config.eval_size else task.test
    kind = held_out_kind(method.name, teacher is not None)
    held_out = HeldOut(model, tokenizer, task, examples, kind, folder, {config.first_step, config.steps}, teacher,
                       teacher_hint, max_new_tokens, config.eval_batch, system_prompt, curve_size=config.curve_size,
                       teacher_key=teacher_id, common_samples=config.eval_samples, start_cache=start_cache,
                       dtype=eval_dtype(config, next(model.parameters()).device))
    try:
        step = train(model, method, task.train, config, folder.path, tracker, held_out, log, resume, parallel)
        tracker.flush()  # a tracked step measured in the background is logged before the loggers close
        final = held_out(step)
        log.scalars(step, final, "eval")
    finally:
        tracker.close()  # after a failure too: no worker writes into the folder once this returns
        log.close()
    untrained = step == config.first_step and init is not None  # e.g. the frozen arm: its adapter is the init's
    if not untrained:
        save_adapter(model, folder.adapter, overwrite=True)
    summary = {"final_eval": final, "steps": step, "trajectory_mb": tracker.disk_bytes() / 2**20,
               "adapter": str(init) if untrained else str(folder.adapter),
               "config": config.model_dump()}
    folder.write_json(folder.summary_file, summary)
    return summary


def last_kept_step(folder: RunFolder, config: TrainConfig) -> int | None:
    """The last step whose metrics a resumed run keeps: its checkpoint's (none: first_step − 1); None: nothing logged yet."""
    if not folder.metrics_file.is_file() and not folder.tensorboard.is_dir():
        return None
    step = checkpoint_step(folder.checkpoint)
    return step if step is not None else config.first_step - 1


def kept_rows(kept: int | None, steps: int):
    """Which metrics.jsonl rows a run resumed after step `kept` keeps (None: all, a fresh run)."""
    if kept is None:
        return None
    # Up to the checkpoint, less the final evaluation: it is logged after the last checkpoint, and again on resuming.
    return lambda row: row["step"] < kept or (row["step"] == kept and not (row["group"] == "eval" and kept == steps))


def run_training(config: RunConfig, out, resume: bool = False, progress: bool = True, label: str | None = None,
                 shared_evals: Path | None = None) -> dict:
    """Train one run into `out` (config.json, meta.json, the loop's outputs); returns the summary.

    `shared_evals`: a folder where runs from one saved start share their step-0 evaluation (start_eval_cache)."""
    validate(config.method)
    config = resolved(config)
    folder = RunFolder(out)
    parallel = current()
    if parallel.main:
        check(folder, config.to_dict(), resume)  # nothing loaded, nothing written before this
    task = load_task(config.task)
    model, tokenizer = build_model(config)
    if not resume and parallel.main:  # before anything is written: a disk that cannot hold the run refuses it
        trainable = sum(p.numel() for p in trainable_parameters(model))
        check_space(folder.path, run_need(trainable, config.train.optimizer, config.train.save_t0_state,
                                          config.train.track_steps != []))
    teacher = reference = None
    if config.method.needs_teacher():
        teacher = load_teacher_for(config.method.teacher, config.method.teacher_quant, config.model, tokenizer)
    if config.method.kl_coef:
        reference = load_base(config.model, config.quant)
    ctx = Context(model, tokenizer, task, config.method, teacher, reference, config.system_prompt, config.train.seed)
    if parallel.main:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_json(folder.config_file, config.to_dict())  # atomic: a kill never leaves half a config.json
        meta = {**run_meta(), "rollout_correction": config.method.rollout_correction() if config.method.name != "sft" else None,
                "processes": parallel.world}
        folder.write_json(folder.meta_file, meta)
    teacher_id = teacher_key(config.method.teacher, teacher) if teacher else None
    return train_into(folder, model, tokenizer, build_method(ctx), task, config.train, config.method.max_new_tokens,
                      config.system_prompt, resume, progress, teacher.model if teacher else None,
                      config.method.hinted(), label,
                      teacher_id, config.init, run_hparams(config, label or folder.path.name), parallel,
                      start_eval_cache(config, shared_evals, teacher_id))


def analyse_run(folder, progress: bool = True) -> None:
    """Endpoint geometry and behavioural movement against the run's start, trajectory diagnostics when ≥ 2 steps
    were tracked; their figures also go into the run's TensorBoard events."""
    from adapters_geo.pipeline.analysis import run_geometry, run_movement, write_run_trajectory

    folder = RunFolder(folder)
    run_geometry(folder, progress=progress)
    run_movement(folder)
    index = folder.trajectory_dir / "index.json"
    if index.is_file() and len(json.loads(index.read_text())) >= 2:
        write_run_trajectory(folder, overwrite=True)
    write_figures(folder.tensorboard, folder.path, (folder.summary() or {}).get("steps", 0))


def seconds(folder: RunFolder, training: float, analysis: float) -> dict:
    """Where this session's wall time went: evaluation and tracking (from metrics.jsonl), the rest of training, analysis.

    After a resume, `total` counts this session only while evaluation and tracking count every session's rows.
    """
    evaluation = sum(r.get("eval_seconds", 0.0) for r in folder.evals())
    # a tracked step's wall time (`seconds`; older runs logged only parts, which parallel workers now sum past it)
    tracking = sum(r["seconds"] if "seconds" in r else r.get("snapshot_seconds", 0.0) + r.get("geometry_seconds", 0.0)
                   for r in folder.metrics("tracking"))
    return {"total": training + analysis, "evaluation": evaluation, "tracking": tracking,
            "steps": max(0.0, training - evaluation - tracking), "analysis": analysis}


def run(config: RunConfig, out, resume: bool = False, progress: bool = True, analyse: bool = True,
        identity: str | None = None, label: str | None = None, shared_evals: Path | None = None) -> dict:
    """The whole pipeline into `out`: train, analyse, then done.json ({hash, finished, final_eval, seconds}).
    `shared_evals`: see run_training (make experiment passes runs/.start_evals).

    The folder is claimed first (storage/claim.py): a new or empty folder, or with `resume` an unfinished run of
    the same config; locked for the whole run.
    """
    validate(config.method)
    config = resolved(config)
    parallel = current()
    if not parallel.main:  # a data-parallel process other than the main one: trains its share, writes nothing
        parallel.barrier()  # until the main process has claimed the folder (and repaired an interrupted write)
        summary = run_training(config, out, resume, False, label, shared_evals)
        parallel.barrier()  # until the main process has analysed the run and written done.json
        return summary
    with claim(out, config.to_dict(), resume):
        parallel.barrier()
        started = time.perf_counter()
        summary = run_training(config, out, resume, progress, label, shared_evals)
        trained = time.perf_counter()
        if analyse and config.train.analyse:
            analyse_run(out, progress)
        folder = RunFolder(out)
        write_session_end(folder.tensorboard, summary["steps"])
        done = {"hash": identity or config_hash(config), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "final_eval": summary["final_eval"], "seconds": seconds(folder, trained - started, time.perf_counter() - trained)}
        folder.write_json(folder.done_file, done)
        drop_resume_state(folder)  # finished: what only resuming needs goes (done.json says so)
    parallel.barrier()
    return summary
