"""The `lock` experiment kind: the subspace-locking test (docs/geometry.md) on finished source runs.

`source: experiment:RUN` (a run that kept its training state at t0), `K` (basis size, default 16),
`bases` (the arms: unconstrained, frozen, early, random, final, principal, cross; default the first
five), `cross` (experiment:NAME, the run whose early subspace the cross arm uses), `mode` (projected,
gradient, adapter; default projected), `seed` (of the random basis, plus the training seed: a fresh
draw per seed), `preserves` / `degrades` (the verdict's margins, report/locking.py). For every
training seed's source run, every arm is one run through the same pipeline as every run
(locking/continuation.py builds its config), in FOLDER/seed_<s>/<arm>/, starting from that source's exact t0
state over the same steps and batches. The unconstrained arm is the source run itself by default
(`unconstrained: source`): re-run from the t0 state it is the same computation to every digit
(tests/test_locking.py), so only `unconstrained: rerun` trains it again. done.json gathers, per seed
and arm, the final evaluation and how far the arm moved after t0 (‖ΔW_T − ΔW_t0‖² and its share
inside span(V); for the unconstrained arm inside the early basis: the future capture the locking
test bets on). report/locking.py turns the per-prompt outcomes into retentions with intervals.
"""

from pathlib import Path

from adapters_geo.locking.continuation import BASES, DEFAULT_ARMS, arm_config, basis, increment
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.pipeline.runner import config_hash, resolved as resolved_config, run


def arm_folder(folder: Path, seed: int, arm: str) -> Path:
    return Path(folder) / f"seed_{seed}" / arm


def run_lock(resolved: dict, folder: Path, progress: bool, name: str = "lock", sources: dict | None = None,
             main: bool = True) -> dict:
    """Train every arm of every seed's source; returns done.json's content (without the hash).

    `sources` {training seed: source run folder}; default: the one `source` of the file. `main`: False
    for the other processes of a data-parallel launch (they train their shares; the main one measures).
    """
    sources = sources or {RunFolder(resolved["source"]).config().train.seed: resolved["source"]}
    k, mode, seed = int(resolved.get("K", 16)), resolved.get("mode", "projected"), int(resolved.get("seed", 0))
    other = resolved.get("cross")  # the run folder whose early update is the cross arm's basis (all seeds share it)
    arms = ["frozen", "unconstrained"] + [a for a in (resolved.get("bases") or DEFAULT_ARMS) if a in BASES]  # retention needs both
    # the random basis: a fresh draw per training seed (the file's `seed` + the training seed; seed 0 draws as before)
    drawn = lambda s, arm: (seed + int(s)) % 2**31 if arm == "random" else seed
    configs = {(s, arm): arm_config(src, arm, k, mode, drawn(s, arm), other) for s, src in sources.items() for arm in arms}
    from_source = resolved.get("unconstrained", "source") == "source"
    by_seed = {}
    for (s, arm), config in configs.items():
        source, out = RunFolder(sources[s]), arm_folder(folder, s, arm)
        done = RunFolder(out).done()
        if arm == "unconstrained" and from_source:
            out, final_eval = source.path, source.done()["final_eval"]  # the source's own continuation from t0
        elif done is not None and done.get("hash") == config_hash(resolved_config(config)):
            final_eval = done["final_eval"]  # this seed's arm finished earlier (e.g. before more seeds were asked for)
        else:
            final_eval = run(config, out, resume=True, progress=progress, analyse=False, label=f"{name} seed {s} {arm}")["final_eval"]
        if not main:
            continue
        entry = by_seed.setdefault(str(s), {"source": str(source.path), "arms": {}})
        entry["arms"][arm] = {"final_eval": final_eval}
        if Path(out) == source.path:  # an arm living outside this folder (the source's own continuation) is named;
            entry["arms"][arm]["folder"] = str(out)  # the others stay relative, so an archived test reads its own arms
        if arm != "frozen":
            right = basis(str(source.path), arm if arm in BASES else "early", k, drawn(s, arm), other)
            entry["arms"][arm]["increment"] = increment(source, RunFolder(out).adapter, right)
    first = RunFolder(next(iter(sources.values())))
    return {"seeds": by_seed, "K": k, "mode": mode, "arms": arms, "t0": first.t0, "steps": first.config().train.steps,
            "unconstrained": "source" if from_source else "rerun"}


def lock_steps(source: dict, arms, seeds: int = 1, rerun: bool = False) -> str:
    """'A × N steps' of a locking test whose source resolves to `source` (trained arms, from t0 to the end)."""
    train = source.get("train", {})
    total = int(train.get("steps", 0))
    t0 = train.get("t0") or min(train.get("save_adapter_at") or [max(1, round(0.2 * total))])
    trained = ["unconstrained"] * rerun + [a for a in (arms or DEFAULT_ARMS) if a in BASES]
    return f"{seeds * len(trained)} × {total - t0} steps"
