"""Running a named experiment and, first, whatever it depends on.

Kinds: `train` (one run: the RunConfig sections), `lock` (the subspace-locking test:
`source: experiment:RUN`, `K`, `bases`) and `claims` (the paper's claims 1 and 2 over `sources`).
Every file of the chain is validated before anything trains. A run folder is finished when it holds done.json with the hash of the config that
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
from adapters_geo.experiments.claims import run_claims
from adapters_geo.experiments.lock import lock_steps, run_lock
from adapters_geo.experiments.registry import experiment_path
from adapters_geo.experiments.resolve import REF, dependency_order, experiment_hash, load_resolved, references, substitute
from adapters_geo.experiments.schema import META_KEYS
from adapters_geo.storage.atomic import atomic_write_text
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
    """'N steps' for a training experiment, 'B × N steps' for a locking test (from t0 to the end), 'claims on N runs'."""
    if data.get("kind") == "claims":
        return f"claims on {len(seeded_sources(data, smoke))} runs"
    if data.get("kind") == "lock":
        return lock_steps(load_resolved(data["source"][len(REF):], smoke), data.get("bases", DEFAULT_ARMS), len(lock_seeds(data, smoke)),
                          data.get("unconstrained") == "rerun")
    return f"{data.get('train', {}).get('steps', '?')} steps"


def lock_seeds(data: dict, smoke: bool) -> list[int]:
    """The training seeds of a lock experiment: its `seeds`, else the one its source trains with."""
    if data.get("seeds"):
        return list(data["seeds"])
    return [_own_seed(data["source"][len(REF):], smoke)]


def _own_seed(source: str, smoke: bool) -> int:
    return int((load_resolved(source, smoke).get("train") or {}).get("seed", 0))


def seeded_sources(data: dict, smoke: bool) -> list[tuple[str, int, str]]:
    """(source experiment, training seed, run folder) of a lock or claims experiment: the folder is SOURCE for the
    source's own seed, SOURCE-seedS for another (a lock and a claims experiment on one source share them)."""
    kind = data.get("kind")
    names = [data["source"]] if kind == "lock" else list(data["sources"]) if kind == "claims" else []
    found = []
    for source in (name[len(REF):] for name in names):
        if kind == "claims":  # before anything trains: a source the claims cannot read would fail after the others
            source_data = load_resolved(source, smoke)
            if source_data.get("kind", "train") != "train" or (source_data.get("train") or {}).get("track_steps") == []:
                raise AdaptersGeoError(f"claims source experiment:{source} is not a training run that tracks its update",
                                       "list training experiments with tracking on (track_steps not [])")
        own = _own_seed(source, smoke)
        found += [(source, s, source if s == own else f"{source}-seed{s}") for s in (data.get("seeds") or [own])]
    return found


def experiment_seeds(data: dict, smoke: bool) -> list[int] | None:
    """The training seeds a lock or claims experiment covers (done.json lists the finished ones); None for a run."""
    if data.get("kind") not in ("lock", "claims"):
        return None
    return sorted({s for _, s, _ in seeded_sources(data, smoke)})


def chain(name: str, smoke: bool, overrides: dict | None = None,
          train_seeds: list[int] | None = None) -> list[tuple[str, dict | None, str]]:
    """(experiment, its overrides, its folder name) in running order: dependencies first, then for a lock or claims
    experiment the source runs of every extra training seed (`SOURCE-seedS`, train.seed overridden), then NAME.
    `train_seeds` (a training experiment run for several seeds): NAME-seedS for each but the first, before NAME,
    the folders a lock experiment on NAME would train (and so reuses)."""
    steps = []
    for current in dependency_order(name, smoke, overrides):
        sets = overrides if current == name else None
        data = load_resolved(current, smoke, sets)
        steps += [(source, {"train.seed": str(s)}, folder) for source, s, folder in seeded_sources(data, smoke)
                  if folder != source]  # (a lock's cross basis is another reference, at its own seed)
        if current == name and train_seeds:
            steps += [(name, {**(sets or {}), "train.seed": str(s)}, f"{name}-seed{s}") for s in train_seeds[1:]]
        steps.append((current, sets, current))
    return _unique(steps)


def _unique(steps: list) -> list:
    seen, out = set(), []
    for item in steps:
        if item[2] not in seen:
            seen.add(item[2])
            out.append(item)
    return out


def plan(name: str, smoke: bool = False, force: bool = False, overrides: dict | None = None,
         train_seeds: list[int] | None = None) -> list[str]:
    """What `run_experiment(name)` will train, dependencies first: ['teacher (80 steps)', ...]."""
    todo = []
    for current, sets, folder in chain(name, smoke, overrides, train_seeds):
        data = load_resolved(current, smoke, sets)
        try:
            done = RunFolder(runs_root(smoke) / folder).done()
        except AdaptersGeoError:  # damaged: not finished (running it says so, or FORCE=1 archives it)
            done = None
        finished = done is not None and done.get("hash") == experiment_hash(current, smoke, sets)
        if finished and experiment_seeds(data, smoke):
            finished = set(map(str, experiment_seeds(data, smoke))) <= set(done.get("seeds", {}))
        if not finished or (force and current == name):
            todo.append(f"{folder} ({_steps(data, smoke)})")
    return todo


def seeds_plan(name: str, count: int, smoke: bool, overrides: dict | None = None) -> tuple[dict, list[int] | None]:
    """SEEDS=count as (overrides, training seeds): a lock or claims experiment gets {"seeds": "[s, s+1, …]"} from its
    (first) source's own seed; a training experiment is trained `count` times, seeds s, s+1, … from its own train.seed."""
    if count < 1:
        raise AdaptersGeoError(f"SEEDS={count} is not a number of seeds", "use SEEDS=1, 2, 3, ...")
    data = load_resolved(name, smoke, overrides)
    if data.get("kind") not in ("lock", "claims"):
        first = int((data.get("train") or {}).get("seed", 0))
        return {}, list(range(first, first + count))
    first = seeded_sources({**data, "seeds": None}, smoke)[0][1]  # the (first) source's own seed
    return {"seeds": str(list(range(first, first + count)))}, None


def run_experiment(name: str, force: bool = False, smoke: bool = False, progress: bool = True,
                   overrides: dict | None = None, seeds: int | None = None) -> Path:
    """Run NAME (and its missing dependencies, without `overrides`); returns its run folder.

    `seeds` N: a lock experiment for N training seeds (its source re-trained per seed, arms per seed); a training
    experiment trained N times (NAME, NAME-seed1, …: the sources a lock on it would train).
    """
    train_seeds = None
    if seeds is not None:
        extra, train_seeds = seeds_plan(name, seeds, smoke, overrides)
        overrides = {**(overrides or {}), **extra} or None
    order = chain(name, smoke, overrides, train_seeds)  # every file of the chain valid, no cycle: before anything trains
    parallel = current()
    progress = progress and parallel.main  # under a data-parallel launch the main process speaks and writes
    if progress:
        todo = plan(name, smoke, force, overrides, train_seeds)
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
    seeds = experiment_seeds(data, smoke)
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
    if data.get("kind") not in ("lock", "claims"):
        config = run_config_from_dict({k: v for k, v in resolved.items() if k not in META_KEYS}, str(experiment_path(name)))
    run_folder = RunFolder(folder)
    if parallel.main:
        folder.mkdir(parents=True, exist_ok=True)
        run_folder.write_json(run_folder.experiment_file, {"name": name, "hash": wanted, "smoke": smoke, "file": data,
                                                           "set": overrides or {}})
        print(f"{name}: {'resuming' if state == 'resume' else 'running'} in {folder}", flush=True)
    if config is not None:
        run(config, folder, resume=True, progress=progress, identity=wanted, label=name, shared_evals=root / ".start_evals")
        return folder
    if data["kind"] == "claims":
        summary = run_claims(resolved, [(s, source, str(root / f)) for source, s, f in seeded_sources(data, smoke)], progress,
                             name) if parallel.main else {}  # measurement only: the main process does it
    else:
        sources = {s: str(root / f) for _, s, f in seeded_sources(data, smoke)}
        summary = run_lock(resolved, folder, progress, name, sources, parallel.main)
    if parallel.main:
        run_folder.write_json(run_folder.done_file, {"hash": wanted, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **summary})
        if data["kind"] == "claims":
            from adapters_geo.report.runs import claims_lines

            atomic_write_text(folder / "claims.md", "\n".join(claims_lines(folder)))  # the claims table alone
    parallel.barrier()
    return folder
