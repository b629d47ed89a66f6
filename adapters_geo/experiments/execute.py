"""Running a named experiment and, first, whatever it depends on.

Kinds: `train` (one run: the RunConfig sections) and `lock` (the subspace-locking test:
`source: experiment:RUN`, `K`, `bases`). A run folder is finished when it holds done.json with
the hash of the config that produced it. Finished + same hash: reused. Finished + other hash:
refused unless FORCE (then archived to runs/.archive/, never deleted). Unfinished with a
checkpoint: resumed.
"""

import json
import os
import shutil
import time
from pathlib import Path

from adapters_geo.config import run_config_from_dict
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.experiments.resolve import experiment_hash, load_resolved, references, substitute
from adapters_geo.locking import BASES, continuation_config

DONE = "done.json"
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
    done, resolved = folder / DONE, folder / "experiment.json"
    found = json.loads(done.read_text())["hash"] if done.is_file() else (
        json.loads(resolved.read_text())["hash"] if resolved.is_file() else None)
    if found is None:
        if folder.exists() and any(folder.iterdir()):
            if not force:
                raise AdaptersGeoError(f"{folder} holds files that no experiment run wrote", "move them away, or FORCE=1 to archive them")
            _archive(folder, "unknown")
        return "fresh"
    if found == wanted and not force:
        return "reuse" if done.is_file() else "resume"
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
        source = load_resolved(references(data)[0], smoke)
        total = int(source.get("train", {}).get("steps", 0))
        t0 = min(source.get("train", {}).get("save_adapter_at") or [0])
        return f"{len(data.get('bases', BASES))} × {total - t0} steps"
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
        done = runs_root(smoke) / current / DONE
        finished = done.is_file() and json.loads(done.read_text()).get("hash") == experiment_hash(current, smoke)
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
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.json").write_text(json.dumps({"name": name, "hash": wanted, "smoke": smoke, "file": data}, indent=1))
    print(f"{name}: {'resuming' if state == 'resume' else 'running'} in {folder}", flush=True)
    paths = {dep: {"init": str(root / dep / "adapter"), "teacher": str(root / dep / "adapter"), "source": str(root / dep)}
             for dep in references(data)}
    resolved = substitute(data, paths)
    summary = _run_lock(resolved, folder, progress) if data.get("kind") == "lock" else _run_train(resolved, folder, progress)
    (folder / DONE).write_text(json.dumps({"hash": wanted, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **summary}, indent=1))
    if _top:
        from adapters_geo.experiments.report import write_report

        print(f"report: {write_report(root)}", flush=True)
    return folder


def _run_train(resolved: dict, folder: Path, progress: bool) -> dict:
    from adapters_geo.geometry.analyse import analyse
    from adapters_geo.geometry.report import write_result
    from adapters_geo.geometry.sources import run_source
    from adapters_geo.geometry.suite import Settings
    from adapters_geo.geometry.trajectory_report import write_trajectory
    from adapters_geo.runner import run_training

    config = run_config_from_dict({k: v for k, v in resolved.items() if k not in META_KEYS}, str(folder / "experiment.json"))
    result = run_training(config, folder, resume=True, progress=progress)
    write_result(analyse(run_source(folder), Settings(), progress=progress), folder / "geometry", overwrite=True)
    write_trajectory(folder, out=folder / "trajectory_geometry", overwrite=True)
    return {"final_eval": result["final_eval"]}


def _run_lock(resolved: dict, folder: Path, progress: bool) -> dict:
    from adapters_geo.runner import run_training

    source = Path(resolved["source"])
    k = int(resolved.get("K", 16))
    bases = resolved.get("bases", list(BASES))
    results = {}
    for basis in bases:
        config = continuation_config(source, basis, k, seed=int(resolved.get("seed", 0)))
        results[basis] = run_training(config, folder / basis, resume=True, progress=progress)["final_eval"]
    results["unconstrained"] = json.loads((source / "train_summary.json").read_text())["final_eval"]
    return {"final_eval": results, "source": str(source), "K": k}
