"""Claiming a run folder before a run writes into it, so that a refused run damages nothing.

`check(folder, config, resume)`, before any model loads and before any file is written:
- a new folder, or one holding nothing of a run (experiment.json at most): a fresh run;
- done.json: a finished run, never extended or rewritten in place;
- config.json: an unfinished run, continued only with --resume and only with the same resolved
  config (another one is refused, naming the differing dotted keys: `train.lr: 0.001 -> 0.05`);
- anything else (other files, a file where the folder should be): refused.
`claim(folder, config, resume)` holds the folder's lock (storage/lockfile.py) for the whole run, checks
again under it, and repairs interrupted atomic writes of every atomic folder (atomic.recover),
so a checkpoint left between two renames is restored rather than silently restarted from.
"""

import contextlib
import json
import sys
from pathlib import Path

from adapters_geo.storage.atomic import recover
from adapters_geo.errors import AdaptersGeoError, one_line
from adapters_geo.storage import lockfile
from adapters_geo.storage.runfolder import RunFolder

NOT_A_RUN = {"experiment.json", ".lock"}  # what a folder may hold and still start a fresh run


def _plain(data):
    """JSON's view of `data` (tuples as lists, keys as strings), as config.json holds it."""
    return json.loads(json.dumps(data, default=str))


def config_changes(old, new, prefix: str = "") -> list[str]:
    """['train.lr: 0.001 -> 0.05', ...]: every dotted key whose value differs between two config mappings."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in old:
            changes.append(f"{dotted}: (absent) -> {new[key]!r}")
        elif key not in new:
            changes.append(f"{dotted}: {old[key]!r} -> (absent)")
        else:
            changes += config_changes(old[key], new[key], dotted)
    return changes


def _saved(folder: RunFolder) -> dict:
    """config.json as the current version reads it (defaults of newer keys filled in), else as written."""
    try:
        return _plain(folder.config().to_dict())
    except (AdaptersGeoError, ValueError, TypeError):
        return folder.config_dict() or {}


def check(folder, config: dict, resume: bool) -> str:
    """'fresh' or 'resume' for a run of the resolved `config` (its to_dict()) into `folder`; one line otherwise."""
    folder = RunFolder(folder)
    path = folder.path
    if path.exists() and not path.is_dir():
        raise AdaptersGeoError(f"--out {path} is a file, not a run folder", "choose a new or empty folder for --out")
    if not path.exists():
        return "fresh"
    if folder.done_file.is_file():
        raise AdaptersGeoError(
            f"{path} holds a finished run (done.json): a finished run is never extended or rewritten in place",
            "use another --out (a named experiment re-runs with FORCE=1, which archives this one)")
    if not folder.config_file.is_file():
        other = sorted(p.name for p in path.iterdir() if p.name not in NOT_A_RUN)
        if other:
            shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
            raise AdaptersGeoError(f"{path} is not empty and holds no run ({shown})",
                                   "a new run needs a new or empty folder: choose another --out")
        return "fresh"
    if not resume:
        what = "already holds a checkpoint of an unfinished run" if folder.has_checkpoint() else "holds an unfinished run"
        raise AdaptersGeoError(f"{path} {what}", "continue it with --resume (same config), or train into a new --out")
    changes = config_changes(_saved(folder), _plain(config))
    if changes:
        shown = "; ".join(changes[:6]) + ("; ..." if len(changes) > 6 else "")
        raise AdaptersGeoError(f"{path} holds a run of another config, which --resume would not continue ({shown})",
                               "resume with the config in its config.json, or train the new config into another --out")
    return "resume"


@contextlib.contextmanager
def claim(folder, config: dict, resume: bool):
    """Hold `folder` for one run: checked, locked, interrupted writes repaired; yields 'fresh' or 'resume'."""
    folder = RunFolder(folder)
    if folder.path.is_dir():
        lockfile.check(folder.path)  # a live writer first: it explains whatever else the folder holds
    check(folder, config, resume)  # refused before the lock touches the folder
    with lockfile.locked(folder.path):
        state = check(folder, config, resume)  # again, now that no one else can write
        for target in folder.atomic_folders():
            for repaired in recover(target):
                print(one_line(f"adapters-geo: {folder.path}: {repaired}"), file=sys.stderr, flush=True)
        yield state
