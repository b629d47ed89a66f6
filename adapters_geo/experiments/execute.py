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

from adapters_geo.config.run import run_config_from_dict
from adapters_geo.locking.continuation import DEFAULT_ARMS
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.experiments.lock import lock_steps, run_lock
from adapters_geo.experiments.registry import experiment_path
from adapters_geo.experiments.resolve import REF, dependency_order, experiment_hash, load_resolved, references, substitute
from adapters_geo.experiments.schema import META_KEYS
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.pipeline.runner import run
from adapters_geo.training.parallel import Parallel, current

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
    try:
        done, started = run_folder.done(), run_folder.experiment()
    except AdaptersGeoError:  # damaged (truncated, edited): FORCE=1 archives it, as its error line says
        if not force:
            raise
        _archive(folder, "damaged")
        return "fresh"
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
        return lock_steps(load_resolved(data["source"][len(REF):], smoke), data.get("bases", DEFAULT_ARMS), len(lock_seeds(data, smoke)),
                          data.get("unconstrained") == "rerun")
    return f"{data.get('train', {}).get('steps', '?')} steps"


def lock_seeds(data: dict, smoke: bool) -> list[int]:
    """The training seeds of a lock experiment: its `seeds`, else the one its source trains with."""
    if data.get("seeds"):
        return list(data["seeds"])
    return [int((load_resolved(data["source"][len(REF):], smoke).get("train") or {}).get("seed", 0))]


def chain(name: str, smoke: bool, overrides: dict | None = None) -> list[tuple[str, dict | None, str]]:
    """(experiment, its overrides, its folder name) in running order: dependencies first, then for a lock
    experiment the source run of every extra training seed (`SOURCE-seedS`, train.seed overridden), then NAME."""
    steps = []
    for current in dependency_order(name, smoke, overrides):
        sets = overrides if current == name else None
        data = load_resolved(current, smoke, sets)
        if data.get("kind") == "lock":
            source = data["source"][len(REF):]  # (a cross basis is another reference)
            base = lock_seeds({**data, "seeds": None}, smoke)[0]
            steps += [(source, {"train.seed": str(s)}, f"{source}-seed{s}") for s in lock_seeds(data, smoke) if s != base]
        steps.append((current, sets, current))
    return _unique(steps)


def _unique(steps: list) -> list:
    seen, out = set(), []
    for item in steps:
        if item[2] not in seen:
            seen.add(item[2])
            out.append(item)
    return out


def plan(name: str, smoke: bool = False, force: bool = False, overrides: dict | None = None) -> list[str]:
    """What `run_experiment(name)` will train, dependencies first: ['teacher (80 steps)', ...]."""
    todo = []
    for current, sets, folder in chain(name, smoke, overrides):
        data = load_resolved(current, smoke, sets)
        try:
            done = RunFolder(runs_root(smoke) / folder).done()
        except AdaptersGeoError:  # damaged: not finished (running it says so, or FORCE=1 archives it)
            done = None
        finished = done is not None and done.get("hash") == experiment_hash(current, smoke, sets)
        if finished and data.get("kind") == "lock":
            finished = set(map(str, lock_seeds(data, smoke))) <= set(done.get("seeds", {}))
        if not finished or (force and current == name):
            todo.append(f"{folder} ({_steps(data, smoke)})")
    return todo


def seeds_override(name: str, count: int, smoke: bool) -> dict:
    """{"seeds": "[s, s+1, …]"}: `count` training seeds from the source's own, for a lock experiment."""
    data = load_resolved(name, smoke)
    if data.get("kind") != "lock":
        raise AdaptersGeoError(f"SEEDS={count}: '{name}' is not a lock experiment", "give SEEDS to a lock_* experiment")
    if count < 1:
        raise AdaptersGeoError(f"SEEDS={count} is not a number of seeds", "use SEEDS=1, 2, 3, ...")
    first = lock_seeds({**data, "seeds": None}, smoke)[0]
    return {"seeds": str(list(range(first, first + count)))}


def run_experiment(name: str, force: bool = False, smoke: bool = False, progress: bool = True,
                   overrides: dict | None = None, seeds: int | None = None) -> Path:
    """Run NAME (and its missing dependencies, without `overrides`); returns its run folder.

    `seeds` N: a lock experiment for N training seeds (its source re-trained per seed, arms per seed).
    """
    if seeds is not None:
        overrides = {**(overrides or {}), **seeds_override(name, seeds, smoke)}
    order = chain(name, smoke, overrides)  # every file of the chain valid, no cycle: before anything trains
    parallel = current()
    progress = progress and parallel.main  # under a data-parallel launch the main process speaks and writes
    if progress:
        todo = plan(name, smoke, force, overrides)
        print(f"{name}: " + (f"to run: {', '.join(todo)}; each run shows its ETA" if todo else "nothing to run"), flush=True)
    for step, sets, folder_name in order:
        folder = _run_one(step, force and step == name, smoke, progress, sets, folder_name, parallel)
    from adapters_geo.report.runs import write_report

    if parallel.main:
        print(f"report: {write_report(runs_root(smoke))}", flush=True)
    parallel.barrier()
    return folder


def _run_one(name: str, force: bool, smoke: bool, progress: bool, overrides: dict | None, folder_name: str | None = None,
             parallel: Parallel = Parallel()) -> Path:
    """One experiment of the chain into runs/FOLDER_NAME (default NAME), its dependencies already finished.

    Under a data-parallel launch the main process decides (reuse, resume, archive) and writes; the
    others follow its decision and train their shares (training/parallel.py).
    """
    data = load_resolved(name, smoke, overrides)
    root = runs_root(smoke)
    wanted = experiment_hash(name, smoke, overrides)
    folder = root / (folder_name or name)
    state = parallel.from_main(_state(folder, wanted, force, name) if parallel.main else None)
    seeds = lock_seeds(data, smoke) if data.get("kind") == "lock" else None
    if state == "reuse" and seeds and not set(map(str, seeds)) <= set((RunFolder(folder).done() or {}).get("seeds", {})):
        state = "resume"  # finished for fewer training seeds: the missing ones are added
    if state == "reuse":
        if parallel.main:
            print(f"{name}: finished and up to date (hash {wanted}), reused", flush=True)
        return folder
    paths = {dep: {"init": str(RunFolder(root / dep).adapter), "teacher": str(RunFolder(root / dep).adapter),
                   "source": str(root / dep), "cross": str(root / dep)} for dep in references(data)}
    resolved = substitute(data, paths)
    config = None
    if data.get("kind") != "lock":
        config = run_config_from_dict({k: v for k, v in resolved.items() if k not in META_KEYS}, str(experiment_path(name)))
    run_folder = RunFolder(folder)
    if parallel.main:
        folder.mkdir(parents=True, exist_ok=True)
        run_folder.write_json(run_folder.experiment_file, {"name": name, "hash": wanted, "smoke": smoke, "file": data,
                                                           "set": overrides or {}})
        print(f"{name}: {'resuming' if state == 'resume' else 'running'} in {folder}", flush=True)
    if config is None:
        source = data["source"][len(REF):]  # (a cross basis is another reference)
        sources = {s: str(root / (source if s == lock_seeds({**data, "seeds": None}, smoke)[0] else f"{source}-seed{s}"))
                   for s in seeds}
        summary = run_lock(resolved, folder, progress, name, sources, parallel.main)
        if parallel.main:
            run_folder.write_json(run_folder.done_file, {"hash": wanted, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **summary})
        parallel.barrier()
    else:
        run(config, folder, resume=True, progress=progress, identity=wanted, label=name, shared_evals=root / ".start_evals")
    return folder
