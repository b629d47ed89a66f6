"""Disk: what a run will need before it starts, and what a finished run no longer needs.

Before a fresh run writes anything, its need is estimated from the adapter's trainable tensors
(fp32, 4 bytes per number): the final adapter, the checkpoint (the tensors and the optimizer's
moments: 2 per number for AdamW, 0.5 for 8-bit AdamW, none for SGD) twice over while a new one is
written beside the old, the t0 state when kept, and the trajectory's bf16 snapshot; a disk that
cannot hold it refuses the run in one line (needed, free, where).

A finished run keeps what its analysis and its dependants need (final adapter, t0 state, trajectory,
metrics, evaluations, geometry) and drops what only resuming needs: `checkpoint/`. done.json records
what was dropped (`dropped`), so a tool that would need it can say so. `adapters-geo clean-checkpoints`
(`make clean-checkpoints`) does the same for finished runs written before this; with `--t0-states` it also
drops the t0 states (a locking test on such a run then says so in one line, and how to get it back).
"""

import shutil
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.storage.runfolder import RunFolder

MOMENTS = {"adamw": 2.0, "adamw8bit": 0.5, "sgd": 0.0}  # optimizer numbers kept per trainable number
GiB = 2**30


def run_need(trainable: int, optimizer: str, save_t0_state: bool, tracked: bool) -> int:
    """Bytes a run writes at its peak, from its number of trainable numbers."""
    tensors = 4 * trainable
    checkpoint = tensors * (1 + MOMENTS.get(optimizer, 2.0))
    need = tensors + 2 * checkpoint  # the final adapter; an old and a new checkpoint during a write
    need += (checkpoint + tensors) if save_t0_state else 0  # the t0 state: its checkpoint and its adapter
    need += tensors // 2 if tracked else 0  # the trajectory's bf16 snapshot (factors and spectra are small)
    return int(need)


def check_space(folder: Path, need: int) -> None:
    """Refuse (one line) when the disk holding `folder` has less than `need` bytes free."""
    place = Path(folder)
    while not place.exists():
        place = place.parent
    free = shutil.disk_usage(place).free
    if free < need:
        raise AdaptersGeoError(
            f"not enough disk for the run in {folder}: it needs about {need / GiB:.2f} GiB (adapter, checkpoints, "
            f"t0 state, trajectory), {free / GiB:.2f} GiB are free on the disk of {place}",
            "free space (make clean-checkpoints drops what finished runs only kept for resuming), or use another --out",
        )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def drop_resume_state(folder, t0_state: bool = False) -> list[str]:
    """Remove what only resuming needs from a finished run (checkpoint/; with `t0_state` also t0_state/) and
    record it in done.json; returns what was dropped."""
    folder = RunFolder(folder)
    done = folder.done()
    if done is None:
        return []
    parts = [("checkpoint", folder.checkpoint)] + ([("t0_state", folder.t0_state)] if t0_state else [])
    dropped = [name for name, path in parts if path.exists()]
    if dropped:
        folder.write_json(folder.done_file, {**done, "dropped": sorted(set(done.get("dropped", [])) | set(dropped))})
        for name, path in parts:
            if path.exists():
                shutil.rmtree(path)
    return dropped


def clean_checkpoints(root, t0_states: bool = False) -> list[tuple[Path, int]]:
    """drop_resume_state for every finished run under `root` (locking arms included); [(folder, bytes freed)]."""
    freed = []
    for done in sorted(Path(root).rglob("done.json")):
        if ".archive" in done.parts:
            continue
        folder = RunFolder(done.parent)
        size = _size(folder.checkpoint) + (_size(folder.t0_state) if t0_states else 0)
        if drop_resume_state(folder, t0_states):
            freed.append((folder.path, size))
    return freed


def dropped_line(folder, what: str) -> AdaptersGeoError:
    """The one line a dependant gives when something a finished run dropped is needed again."""
    return AdaptersGeoError(f"{folder} dropped its {what} when it finished (done.json: dropped), and this needs it",
                            "re-run that experiment with FORCE=1 (the finished run is archived, not deleted)")

