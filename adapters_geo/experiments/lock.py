"""The `lock` experiment kind: the subspace-locking test (GEOMETRY.md) on a finished source run.

`source: experiment:RUN` (a run that saved its adapter at t0), `K` (basis size, default 16),
`bases` (early, random, final), `seed` (of the random basis). Each basis is one continuation
run (continuation.py) through the same pipeline as every run, in FOLDER/<basis>/; the
unconstrained number is the source run's own final evaluation.
"""

from pathlib import Path

from adapters_geo.continuation import BASES, continuation_config
from adapters_geo.runfolder import RunFolder
from adapters_geo.runner import run


def run_lock(resolved: dict, folder: Path, progress: bool) -> dict:
    """Train every basis's continuation into FOLDER/<basis>; returns done.json's content."""
    source = Path(resolved["source"])
    k = int(resolved.get("K", 16))
    bases = resolved.get("bases", list(BASES))
    results = {}
    for basis in bases:
        config = continuation_config(source, basis, k, seed=int(resolved.get("seed", 0)))
        results[basis] = run(config, folder / basis, resume=True, progress=progress, analyse=False)["final_eval"]
    results["unconstrained"] = RunFolder(source).summary()["final_eval"]
    return {"final_eval": results, "source": str(source), "K": k}


def lock_steps(source: dict, bases) -> str:
    """'B × N steps' of a locking test whose source resolves to `source` (from t0 to the end)."""
    train = source.get("train", {})
    total = int(train.get("steps", 0))
    t0 = train.get("t0") or min(train.get("save_adapter_at") or [0])
    return f"{len(bases)} × {total - t0} steps"
