"""Training checkpoints: everything needed to continue a run to the result it would have reached.

Holds the adapter's trainable tensors, the optimizer and scheduler states, the step, the
states of the method (e.g. stale policies) and of the tracker (the run's start ΔW), and the
base fingerprint. Written atomically (`checkpoint/` appears complete or not at all); resuming
on another base is refused.
"""

from pathlib import Path

import torch

from adapters_geo.adapters import trainable_named
from adapters_geo.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError

STATE = "state.pt"


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, fingerprint: str, parts=None) -> None:
    """Write the state after `step` updates; `parts` {name: state dict} of the method, tracker, ..."""
    state = {
        "step": step,
        "fingerprint": fingerprint,
        "params": {n: p.detach().cpu().clone() for n, p in trainable_named(model).items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "extra": parts or {},
    }
    with atomic_dir(Path(folder), overwrite=True) as tmp:
        torch.save(state, tmp / STATE)


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / STATE).is_file()


def load_checkpoint(folder: Path, model, optimizer, scheduler, fingerprint: str) -> tuple[int, dict]:
    """Restore the training state into model / optimizer / scheduler; returns (step, parts)."""
    state = torch.load(Path(folder) / STATE, map_location="cpu", weights_only=False)
    if state["fingerprint"] != fingerprint:
        raise AdaptersGeoError(
            f"checkpoint {folder} was written for base fingerprint {state['fingerprint']}, this base is {fingerprint}",
            "resume with the model the run was started with, or start a new run folder",
        )
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
