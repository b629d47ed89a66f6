"""Training checkpoints: everything needed to continue a run to the result it would have reached.

Holds the adapter's trainable tensors, the optimizer and scheduler states, the step, the
states of the method (e.g. stale policies) and of the tracker (the run's start ΔW), and the
base fingerprint. Written atomically (`checkpoint/` appears complete or not at all), never with
non-finite weights; resuming on another base is refused. Read with `weights_only=True`: tensors,
numbers, strings and containers only, so a crafted state.pt cannot run code when it is loaded.
"""

import errno
import json
import pickle
import shutil
from pathlib import Path

import torch

from adapters_geo.adapters import trainable_named
from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError

STATE = "state.pt"
STEP = "step.json"  # the step alone, readable without loading the state


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, fingerprint: str, parts=None, also=None) -> None:
    """Write the state after `step` updates; `parts` {name: state dict} of the method, tracker, ...

    `also(tmp_folder)` writes more into the same atomic folder (e.g. the adapter itself).
    """
    params = {n: p.detach().cpu().clone() for n, p in trainable_named(model).items()}
    bad = next((n for n, p in params.items() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise AdaptersGeoError(f"refused to write the checkpoint of step {step}: {bad} holds non-finite values",
                               "lower train.lr (the update diverged); the previous checkpoint is kept")
    state = {
        "step": step,
        "fingerprint": fingerprint,
        "params": params,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "extra": parts or {},
    }
    with atomic_dir(Path(folder), overwrite=True) as tmp:
        try:
            torch.save(state, tmp / STATE)
        except RuntimeError as exc:
            raise short_write(exc, tmp / STATE) from None
        (tmp / STEP).write_text(json.dumps({"step": step}))
        if also is not None:
            also(tmp)


def short_write(exc: RuntimeError, path: Path) -> Exception:
    """torch's zip writer reports a write the disk cut short as `unexpected pos N vs M`, not as an OSError:
    on a full disk (measured on a 256 KiB tmpfs) that is ENOSPC, the one line every other full-disk write
    gives; anything else stays what it was."""
    full = shutil.disk_usage(path.parent).free < 2**26  # under 64 MiB left
    return OSError(errno.ENOSPC, "No space left on device", str(path)) if "unexpected pos" in str(exc) and full else exc


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / STATE).is_file()


def checkpoint_step(folder: Path) -> int | None:
    """The step a checkpoint holds (None: no checkpoint), without loading its tensors."""
    folder = Path(folder)
    if not has_checkpoint(folder):
        return None
    if (folder / STEP).is_file():
        try:
            step = json.loads((folder / STEP).read_text(encoding="utf-8"))["step"]
        except (ValueError, KeyError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            step = None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise AdaptersGeoError(f"{folder / STEP} does not hold a step number (damaged or edited)",
                                   "train into a new --out, or re-run the experiment with FORCE=1 (which archives this run)")
        return step
    return int(load_state(folder, mmap=True)["step"])  # written before step.json existed


def load_state(folder: Path, mmap: bool = False) -> dict:
    """state.pt as written, through the weights-only unpickler; one line when it holds anything else or is damaged."""
    path = Path(folder) / STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise AdaptersGeoError(
                f"checkpoint {path} holds objects other than tensors and plain values, and was not loaded (they could run code)",
                "if adapters_geo did not write it, delete it; otherwise train into a new --out") from None
        raise _damaged(path, exc) from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise _damaged(path, exc) from None
    if not isinstance(state, dict) or not {"step", "fingerprint", "params"} <= set(state):
        raise _damaged(path, "not a training state")
    return state


def _damaged(path: Path, why) -> AdaptersGeoError:
    why = why if isinstance(why, str) else type(why).__name__
    return AdaptersGeoError(f"checkpoint {path} is damaged ({why})",
                            "delete the checkpoint folder and train into a new --out (an interrupted write never leaves one)")


def _read(folder: Path, fingerprint: str) -> dict:
    state = load_state(folder)
    if state["fingerprint"] != fingerprint:
        raise AdaptersGeoError(
            f"checkpoint {folder} was written for base fingerprint {state['fingerprint']}, this base is {fingerprint}",
            "resume with the model the run was started with, or start a new run folder",
        )
    return state


def load_checkpoint(folder: Path, model, optimizer, scheduler, fingerprint: str) -> tuple[int, dict]:
    """Restore the training state into model / optimizer / scheduler; returns (step, parts)."""
    state = _read(folder, fingerprint)
    params = trainable_named(model)
    if set(params) != set(state["params"]):
        raise AdaptersGeoError(f"checkpoint {folder} holds other adapter parameters", "resume with the same adapter config")
    with torch.no_grad():
        for name, value in state["params"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], _parts(state["extra"])


def _parts(extra: dict) -> dict:
    """Checkpoints written before the method and tracker saved their own states kept them flat."""
    if "method" in extra or "tracker" in extra:
        return extra
    return {"method": {"history": extra["history"]} if "history" in extra else {},
            "tracker": {"start_deltas": extra.get("start_deltas")}}


def start_from(folder: Path, model, optimizer, scheduler, fingerprint: str, method) -> int:
    """Start a new run from another run's saved state (a locking arm from its source's t0); returns its step.

    Always taken: the step (data position, seeds), the schedule. Taken where they fit this run's
    adapter: the trainable tensors and the method's state (same parameter names: a dense
    continuation), the optimizer state (same parameter shapes in the same order: a dense
    continuation, or a locked adapter in projected mode, whose optimizer runs in ΔW's coordinates).
    A locked adapter in adapter mode starts a fresh optimizer on B.
    """
    state = _read(folder, fingerprint)
    params = trainable_named(model)
    same_names = set(params) == set(state["params"])
    if same_names:
        with torch.no_grad():
            for name, value in state["params"].items():
                params[name].copy_(value)
        method.load_state_dict(_parts(state["extra"])["method"])
    ours = [tuple(p.shape) for group in optimizer.param_groups for p in group["params"]]
    if ours == [tuple(v.shape) for v in state["params"].values()]:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"]


def resume(folder: Path, model, optimizer, scheduler, fingerprint: str, stateful: dict, allowed: bool, first_step: int) -> int:
    """The step to continue from: `first_step` for a fresh run, the checkpoint's step when resuming.

    `stateful` {name: object with load_state_dict} receives its part of the checkpoint.
    """
    if not has_checkpoint(folder):
        return first_step
    if not allowed:
        raise AdaptersGeoError(f"{Path(folder).parent} already holds a checkpoint", "resume it, or train into a new folder")
    step, parts = load_checkpoint(folder, model, optimizer, scheduler, fingerprint)
    for name, obj in stateful.items():
        if name in parts:
            obj.load_state_dict(parts[name])
    return step
