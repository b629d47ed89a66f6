"""Training checkpoints: everything needed to continue a run to the result it would have reached.

Holds the adapter's trainable tensors, the optimizer and scheduler states, the step, the
method's own state (e.g. stale policies) and the base fingerprint. Written atomically
(`checkpoint/` appears complete or not at all); resuming on another base is refused.
"""

from pathlib import Path

import torch

from adapters_geo.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError

STATE = "state.pt"


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, fingerprint: str, extra=None) -> None:
    state = {
        "step": step,
        "fingerprint": fingerprint,
        "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "extra": extra or {},
    }
    with atomic_dir(Path(folder), overwrite=True) as tmp:
        torch.save(state, tmp / STATE)


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / STATE).is_file()


def load_checkpoint(folder: Path, model, optimizer, scheduler, fingerprint: str) -> tuple[int, dict]:
    """Restore the training state into model / optimizer / scheduler; returns (step, extra)."""
    state = torch.load(Path(folder) / STATE, map_location="cpu", weights_only=False)
    if state["fingerprint"] != fingerprint:
        raise AdaptersGeoError(
            f"checkpoint {folder} was written for base fingerprint {state['fingerprint']}, this base is {fingerprint}",
            "resume with the model the run was started with, or start a new run folder",
        )
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state["params"]):
        raise AdaptersGeoError(f"checkpoint {folder} holds other adapter parameters", "resume with the same adapter config")
    with torch.no_grad():
        for name, value in state["params"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["extra"]
