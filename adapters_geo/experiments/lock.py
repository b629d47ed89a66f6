"""The `lock` experiment kind: the subspace-locking test (GEOMETRY.md) on a finished source run.

`source: experiment:RUN` (a run that kept its training state at t0), `K` (basis size, default 16),
`bases` (the arms: unconstrained, frozen, early, random, final; default all), `mode` (projected,
gradient, adapter; default projected), `seed` (of the random basis). Every arm is one run through
the same pipeline as every run (continuation.py builds its config), in FOLDER/<arm>/, starting
from the source's exact t0 state over the same steps and batches. done.json gathers each arm's
final evaluation and how far it moved after t0 (‖ΔW_T − ΔW_t0‖² and its share inside span(V);
for the unconstrained arm inside the early basis: the future capture the locking test bets on).
"""

from pathlib import Path

from adapters_geo.continuation import ARMS, BASES, arm_config, basis, increment
from adapters_geo.runfolder import RunFolder
from adapters_geo.runner import run


def run_lock(resolved: dict, folder: Path, progress: bool, name: str = "lock") -> dict:
    """Train every arm into FOLDER/<arm>; returns done.json's content (without the hash)."""
    source = RunFolder(resolved["source"])
    k, mode, seed = int(resolved.get("K", 16)), resolved.get("mode", "projected"), int(resolved.get("seed", 0))
    arms = list(resolved.get("bases") or ARMS)
    configs = {arm: arm_config(source, arm, k, mode, seed) for arm in arms}  # every arm checked before any trains
    results = {}
    for arm, config in configs.items():
        summary = run(config, folder / arm, resume=True, progress=progress, analyse=False, label=f"{name} {arm}")
        results[arm] = {"final_eval": summary["final_eval"]}
        if arm != "frozen":
            right = basis(str(source.path), arm if arm in BASES else "early", k, seed)
            results[arm]["increment"] = increment(source, RunFolder(folder / arm).adapter, right)
    return {"arms": results, "source": str(source.path), "K": k, "mode": mode, "t0": source.t0, "steps": source.config().train.steps}


def lock_steps(source: dict, arms) -> str:
    """'A × N steps' of a locking test whose source resolves to `source` (trained arms, from t0 to the end)."""
    train = source.get("train", {})
    total = int(train.get("steps", 0))
    t0 = train.get("t0") or min(train.get("save_adapter_at") or [max(1, round(0.2 * total))])
    trained = [a for a in (arms or ARMS) if a != "frozen"]
    return f"{len(trained)} × {total - t0} steps"
