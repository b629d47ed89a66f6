"""Running a named experiment and, first, whatever it depends on.

Kinds: `train` (one run: the RunConfig sections) and `lock` (the subspace-locking test:
`source: experiment:RUN`, `K`, `bases`). Every file of the chain is validated before anything
trains. A run folder is finished when it holds done.json with the hash of the config that
produced it. Finished + same hash: reused. Finished + other hash: refused unless FORCE (then
archived to runs/.archive/, never deleted). Unfinished with a checkpoint: resumed. A folder
holding only experiment.json (nothing trained) starts afresh.
"""

import os
import shutil
import time
from pathlib import Path

from adapters_geo.config import run_config_from_dict
from adapters_geo.continuation import ARMS
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.experiments.lock import lock_steps, run_lock
from adapters_geo.experiments.registry import experiment_path
from adapters_geo.experiments.resolve import dependency_order, experiment_hash, load_resolved, references, substitute
from adapters_geo.experiments.schema import META_KEYS
from adapters_geo.runfolder import RunFolder
from adapters_geo.runner import run

RUNS_ENV = "ADAPTERS_GEO_RUNS"


def runs_root(smoke: bool = False) -> Path:
    root = Path(os.environ.get(RUNS_ENV) or "runs")
    return root / "smoke" if smoke else root


def _archive(folder: Path, old_hash: str) -> Path:
    target = folder.parent / ".archive" / f"{folder.name}-{old_hash}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(target))
    return target


def _state(folder: Path, wanted: str, force: bool, name: str) -> str:
    """'reuse', 'resume' or 'fresh' for this run folder (archiving it first when forced)."""
    run_folder = RunFolder(folder)
    done, started = run_folder.done(), run_folder.experiment()
    found = done["hash"] if done else (started["hash"] if started else None)
    if found is None:
        if folder.exists() and any(folder.iterdir()):
            if not force:
                raise AdaptersGeoError(f"{folder} holds files that no experiment run wrote", "move them away, or FORCE=1 to archive them")
            _archive(folder, "unknown")
        return "fresh"
    if found == wanted and not force:
        return "reuse" if done else "resume"
    if not done and [p.name for p in folder.iterdir()] == [run_folder.experiment_file.name]:
        return "fresh"  # started, but nothing trained (it failed first): nothing to keep
    if not force:
        raise AdaptersGeoError(
            f"experiment '{name}' in {folder} was run with another config (hash {found}, now {wanted}); its results are kept",
            f"re-run with FORCE=1 (the old run moves to {folder.parent / '.archive'})",
        )
    print(f"{name}: archived the previous run to {_archive(folder, found)}", flush=True)
    return "fresh"


def _steps(data: dict, smoke: bool) -> str:
    """'N steps' for a training experiment, 'B × N steps' for a locking test (from t0 to the end)."""
    if data.get("kind") == "lock":
        return lock_steps(load_resolved(references(data)[0], smoke), data.get("bases", ARMS))
    return f"{data.get('train', {}).get('steps', '?')} steps"


def plan(name: str, smoke: bool = False, force: bool = False, overrides: dict | None = None) -> list[str]:
    """What `run_experiment(name)` will train, dependencies first: ['teacher (80 steps)', ...]."""
    todo = []
    for current in dependency_order(name, smoke, overrides):
        sets = overrides if current == name else None
        done = RunFolder(runs_root(smoke) / current).done()
        finished = done is not None and done.get("hash") == experiment_hash(current, smoke, sets)
        if not finished or (force and current == name):
            todo.append(f"{current} ({_steps(load_resolved(current, smoke, sets), smoke)})")
    return todo


def run_experiment(name: str, force: bool = False, smoke: bool = False, progress: bool = True,
                   overrides: dict | None = None) -> Path:
    """Run NAME (and its missing dependencies, without `overrides`); returns its run folder."""
    order = dependency_order(name, smoke, overrides)  # every file of the chain valid, no cycle: before anything trains
    if progress:
        todo = plan(name, smoke, force, overrides)
        print(f"{name}: " + (f"to run: {', '.join(todo)}; each run shows its ETA" if todo else "nothing to run"), flush=True)
    for current in order:
        folder = _run_one(current, force and current == name, smoke, progress, overrides if current == name else None)
    from adapters_geo.report.runs import write_report

    print(f"report: {write_report(runs_root(smoke))}", flush=True)
    return folder


def _run_one(name: str, force: bool, smoke: bool, progress: bool, overrides: dict | None) -> Path:
    """One experiment of the chain, its dependencies already finished."""
    data = load_resolved(name, smoke, overrides)
    root = runs_root(smoke)
    wanted = experiment_hash(name, smoke, overrides)
    folder = root / name
    state = _state(folder, wanted, force, name)
    if state == "reuse":
        print(f"{name}: finished and up to date (hash {wanted}), reused", flush=True)
        return folder
    paths = {dep: {"init": str(RunFolder(root / dep).adapter), "teacher": str(RunFolder(root / dep).adapter),
                   "source": str(root / dep)} for dep in references(data)}
    resolved = substitute(data, paths)
    config = None
    if data.get("kind") != "lock":
        config = run_config_from_dict({k: v for k, v in resolved.items() if k not in META_KEYS}, str(experiment_path(name)))
    run_folder = RunFolder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run_folder.write_json(run_folder.experiment_file, {"name": name, "hash": wanted, "smoke": smoke, "file": data,
                                                       "set": overrides or {}})
    print(f"{name}: {'resuming' if state == 'resume' else 'running'} in {folder}", flush=True)
    if config is None:
        summary = run_lock(resolved, folder, progress, name)
        run_folder.write_json(run_folder.done_file, {"hash": wanted, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **summary})
    else:
        run(config, folder, resume=True, progress=progress, identity=wanted, label=name)
    return folder
