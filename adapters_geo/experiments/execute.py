"""Running a named experiment and, first, whatever it depends on.

Kinds: `train` (one run: the RunConfig sections) and `lock` (the subspace-locking test:
`source: experiment:RUN`, `K`, `bases`). A run folder is finished when it holds done.json with
the hash of the config that produced it. Finished + same hash: reused. Finished + other hash:
refused unless FORCE (then archived to runs/.archive/, never deleted). Unfinished with a
checkpoint: resumed.
"""

import os
import shutil
import time
from pathlib import Path

from adapters_geo.config import run_config_from_dict
from adapters_geo.continuation import ARMS
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.experiments.lock import lock_steps, run_lock
from adapters_geo.experiments.resolve import experiment_hash, load_resolved, references, substitute
from adapters_geo.runfolder import RunFolder
from adapters_geo.runner import run

RUNS_ENV = "ADAPTERS_GEO_RUNS"
META_KEYS = ("kind", "description")


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


def plan(name: str, smoke: bool = False, force: bool = False) -> list[str]:
    """What `run_experiment(name)` will train, dependencies first: ['teacher (80 steps)', ...]."""
    todo, seen = [], set()

    def visit(current: str, top: bool) -> None:
        if current in seen:
            return
        seen.add(current)
        data = load_resolved(current, smoke)
        for dep in references(data):
            visit(dep, False)
        done = RunFolder(runs_root(smoke) / current).done()
        finished = done is not None and done.get("hash") == experiment_hash(current, smoke)
        if not finished or (force and top):
            todo.append(f"{current} ({_steps(data, smoke)})")

    visit(name, True)
    return todo


def run_experiment(name: str, force: bool = False, smoke: bool = False, progress: bool = True, _top: bool = True) -> Path:
    """Run NAME (and its missing dependencies); returns its run folder."""
    if _top and progress:
        todo = plan(name, smoke, force)
        print(f"{name}: " + (f"to run: {', '.join(todo)}; each run shows its ETA" if todo else "nothing to run"), flush=True)
    data = load_resolved(name, smoke)
    for dep in references(data):
        run_experiment(dep, False, smoke, progress, _top=False)
    root = runs_root(smoke)
    wanted = experiment_hash(name, smoke)
    folder = root / name
    state = _state(folder, wanted, force and _top, name)
    if state == "reuse":
        print(f"{name}: finished and up to date (hash {wanted}), reused", flush=True)
        return folder
    run_folder = RunFolder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run_folder.write_json(run_folder.experiment_file, {"name": name, "hash": wanted, "smoke": smoke, "file": data})
    print(f"{name}: {'resuming' if state == 'resume' else 'running'} in {folder}", flush=True)
    paths = {dep: {"init": str(RunFolder(root / dep).adapter), "teacher": str(RunFolder(root / dep).adapter),
                   "source": str(root / dep)} for dep in references(data)}
    resolved = substitute(data, paths)
    if data.get("kind") == "lock":
        summary = run_lock(resolved, folder, progress, name)
        run_folder.write_json(run_folder.done_file, {"hash": wanted, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **summary})
    else:
        config = run_config_from_dict({k: v for k, v in resolved.items() if k not in META_KEYS}, str(run_folder.experiment_file))
        run(config, folder, resume=True, progress=progress, identity=wanted, label=name)
    if _top:
        from adapters_geo.report.runs import write_report

        print(f"report: {write_report(root)}", flush=True)
    return folder
