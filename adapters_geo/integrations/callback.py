"""AdaptersGeoCallback: a transformers TrainerCallback that records ΔW_t as `adapters-geo train` does.

Add it to any HF Trainer or TRL trainer (Trainer, SFTTrainer, GRPOTrainer, DistillationTrainer, GKDTrainer,
...). OUT then has the toolkit's run-folder layout (storage/runfolder.py), so `adapters-geo trajectory OUT` and
analysis.run_trajectory read it unchanged:
    config.json       trainer class, TrainingArguments subset, base, adapter, tracked steps, t0 (train.t0)
    meta.json         git hash, dirty flag, package versions (trl and accelerate included)
    metrics.jsonl, tb/  the trainer's logs (group "train"; "eval_*" keys as group "hf_eval"), and at tracked
                      steps geometry/<overall | module type> and tracking, as training/tracker.Tracker logs them
    trajectory/       ΔW_t − ΔW_start at the tracked steps (Tracker: bounded formats, exact spectra)
    t0_state/adapter  the adapter at t0, the early basis of a locking test (no optimizer state: locking.py)
    adapter/          the final adapter;  train_summary.json  steps, trajectory size
    tracker_state.pt  ΔW_start, so a run resumed from an HF checkpoint measures from the same start
A step is the trainer's `state.global_step` after an optimizer update, as in the toolkit's loop; tracked
steps default to trajectory.default_steps(max_steps) plus t0 = round(0.2 · max_steps).

Models: any whose adapter the toolkit reads (adapters.merged_deltas). A peft LoRA model (PeftModel, also
one a TRL trainer builds from `peft_config`) whose base came from adapters_geo.load_base is saved with
save_adapter (a peft folder + adapter.json); a plain peft model (base from from_pretrained) through peft's
own save_pretrained (a standard peft folder without adapter.json: the trajectory geometry then skips its
endpoint metrics along the run, which need the base by spec). The toolkit's dense and locked adapters
(attach_adapter) need a base from load_base (a folder works: load_base(path)), else the run is refused
before its first step: save_adapter records the base's identity, and they have no peft form.

Multi-process (accelerate, torch.distributed): only the world's process zero tracks and writes; the model
is unwrapped from DDP / accelerate / torch.compile wrappers. Sharded parameters (FSDP, DeepSpeed ZeRO-3)
are refused on every process: no single process holds ΔW.
"""

import inspect
import io
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from adapters_geo.adapters import KINDS, adapter_kind
from adapters_geo.adapters.io import save_adapter
from adapters_geo.storage.atomic import atomic_dir, atomic_write_bytes
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.training.loggers import JsonlLogger, Loggers, TensorBoardLogger
from adapters_geo.models.loader import BaseInfo, base_info
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.training.config import default_t0
from adapters_geo.training.tracker import Tracker

# TrainingArguments fields recorded in config.json when the arguments have them (TRL configs add their own).
ARGUMENTS = (
    "max_steps", "num_train_epochs", "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
    "weight_decay", "max_grad_norm", "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "seed",
    "per_device_train_batch_size", "gradient_accumulation_steps", "world_size", "bf16", "fp16",
    "gradient_checkpointing", "max_length", "packing", "completion_only_loss", "assistant_only_loss",
    "num_generations", "max_completion_length", "temperature", "top_p", "top_k", "beta", "epsilon", "epsilon_high",
    "loss_type", "num_iterations", "steps_per_generation", "scale_rewards", "lmbda", "use_vllm",
)
EVAL_PREFIX = "eval_"


class AdaptersGeoCallback(TrainerCallback):
    """Track ΔW at the tracked steps of an HF / TRL trainer run and write a toolkit run folder into `out_dir`.

    Args:
        steps: the tracked steps (None: default_steps(max_steps); [] tracks none), t0 always added.
        rank: factors kept at the non-full snapshots (storage/snapshots.py).
        t0: the early step whose adapter is kept in t0_state/adapter (None: round(0.2 · max_steps)).
        tensorboard: also write TensorBoard events into OUT/tb.
    """

    def __init__(self, out_dir, steps=None, rank: int = 32, t0: int | None = None, tensorboard: bool = True):
        self.folder = RunFolder(out_dir)
        self.steps, self.rank, self.requested_t0, self.tensorboard = steps, rank, t0, tensorboard
        self.model = self.tracker = self.log = self.t0 = None

    # ---- trainer events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        trainer = calling_trainer()
        refuse_sharded(args, trainer)  # on every process, so that none waits for a process that stopped
        if not state.is_world_process_zero:
            return
        self.model = unwrap(model)
        loaded = loaded_by_load_base(self.model)
        kind = adapter_kind(self.model)
        if kind != "lora" and not loaded:
            raise AdaptersGeoError(
                f"this model carries the toolkit's {kind} adapter on a base not loaded by adapters_geo.load_base, "
                "so its adapter could not be saved", "load the base with adapters_geo.load_base(spec_or_folder)")
        self.t0 = self.requested_t0 if self.requested_t0 is not None else default_t0(state.max_steps)
        self.folder.path.mkdir(parents=True, exist_ok=True)
        self.tracker = Tracker(self.model, self.folder.trajectory_dir, state.max_steps, self.steps, self.rank, self.t0)
        self._start_or_resume(state.global_step)
        loggers = [JsonlLogger(self.folder.metrics_file)]
        self.log = Loggers(loggers + ([TensorBoardLogger(self.folder.tensorboard)] if self.tensorboard else []))
        self.folder.write_json(self.folder.config_file, self._config(args, state, kind, trainer))
        self.folder.write_json(self.folder.meta_file, run_meta())

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker is None:
            return
        step = state.global_step
        self.tracker.on_step(step, self.log)
        if step == self.t0:
            self.save(self.folder.t0_state / "adapter")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.log is None or not logs:
            return
        numbers = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        train = {k: v for k, v in numbers.items() if not k.startswith(EVAL_PREFIX)}
        evals = {k.removeprefix(EVAL_PREFIX): v for k, v in numbers.items() if k.startswith(EVAL_PREFIX)}
        for group, values in (("train", train), ("hf_eval", evals)):
            if values:
                self.log.scalars(state.global_step, values, group)

    def on_train_end(self, args, state, control, **kwargs):
        if self.tracker is None:
            return
        self.save(self.folder.adapter)
        summary = {"steps": state.global_step, "final_eval": None, "trajectory_mb": self.tracker.disk_bytes() / 2**20,
                   "tracked_steps": [int(s) for s in self.tracker.writer.index]}
        self.folder.write_json(self.folder.summary_file, summary)
        self.log.close()
        self.tracker = self.log = None

    # ---- helpers
    def save(self, folder: Path) -> None:
        """The adapter into `folder`: save_adapter for a load_base model, else peft's save_pretrained."""
        if loaded_by_load_base(self.model):
            save_adapter(self.model, folder, overwrite=True)
            return
        with atomic_dir(folder, overwrite=True) as tmp:  # a plain peft model (checked at the start)
            self.model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)

    def _start_or_resume(self, step: int) -> None:
        """A fresh run records ΔW_start in tracker_state.pt; a resumed one (step > 0) reads it back."""
        path = self.folder.tracker_state
        if step == 0:
            buffer = _torch_bytes(self.tracker.state_dict())
            atomic_write_bytes(path, buffer)
        elif path.is_file():
            device = next(self.model.parameters()).device  # ΔW_start where merged_deltas puts ΔW_t
            self.tracker.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        else:
            raise AdaptersGeoError(f"the trainer resumes at step {step} but {path} is missing, so ΔW_start is unknown",
                                   "resume with the out_dir the run started with, or start a new run")

    def _config(self, args, state, kind: str, trainer) -> dict:
        """config.json: what ran (the keys the toolkit's readers use: model, quant, adapter, init, train.t0)."""
        info = base_info_of(self.model)
        adapter = {"kind": kind, **KINDS[kind].export(self.model)[0]}
        train = {"steps": state.max_steps, "t0": self.t0, "tracked_steps": self.tracker.writer.steps,
                 "track_rank": self.rank, **arguments(args)}
        return {"source": "AdaptersGeoCallback",
                "trainer": type(trainer).__name__ if trainer is not None else None,
                "arguments_class": type(args).__name__,
                "model": info.spec if info else getattr(self.model.config, "_name_or_path", None),
                "quant": info.quant if info else None,
                "base": info.to_dict() if info else None,
                "adapter": adapter, "init": None, "train": train}


def _torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def unwrap(model):
    """The model itself under DDP / DataParallel / DeepSpeed / torch.compile wrappers."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_torch_compile=False)


def refuse_sharded(args, trainer) -> None:
    """One line when the trainer shards parameters (FSDP, ZeRO-3): no single process could read ΔW."""
    deepspeed = getattr(getattr(getattr(trainer, "accelerator", None), "state", None), "deepspeed_plugin", None)
    zero3 = deepspeed is not None and getattr(deepspeed, "zero_stage", None) == 3
    if getattr(args, "fsdp", None) or getattr(trainer, "is_fsdp_enabled", False) or zero3:
        raise AdaptersGeoError("AdaptersGeoCallback cannot read ΔW of parameters sharded by FSDP or DeepSpeed ZeRO-3",
                               "train with DDP (or ZeRO-1/2), which keeps every adapter parameter whole on each process")


def base_info_of(model) -> BaseInfo | None:
    """The BaseInfo load_base attached to the model (through any adapter wrapping), else None."""
    try:
        return base_info(model)
    except AdaptersGeoError:
        return None


def loaded_by_load_base(model) -> bool:
    return base_info_of(model) is not None


def calling_trainer():
    """The Trainer whose callback handler is running (found on the call stack), or None."""
    from transformers import Trainer

    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


def arguments(args) -> dict:
    """The ARGUMENTS fields `args` has, JSON-ready (non-finite floats as None)."""
    found = {}
    for name in ARGUMENTS:
        value = getattr(args, name, None)
        if hasattr(value, "value"):  # enums (lr_scheduler_type, optim)
            value = value.value
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if value is None or isinstance(value, (bool, int, float, str)):
            found[name] = value
    return found


def run_meta() -> dict:
    """runner.run_meta (git hash, dirty flag, versions) plus the trainer libraries' versions."""
    import importlib.metadata as md

    from adapters_geo.pipeline.runner import run_meta as toolkit_meta

    meta = toolkit_meta()
    for package in ("trl", "accelerate"):
        try:
            meta["versions"][package] = md.version(package)
        except md.PackageNotFoundError:
            meta["versions"][package] = None
    return meta
