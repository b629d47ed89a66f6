"""The `claims` experiment kind: the seed paper's claims 1 and 2 (2606.07082) over finished training runs.

`sources: [experiment:NAME, ...]` (one training experiment per method, from one start), `seeds` (training seeds of
every source: SOURCE-seedS runs, the same a lock experiment on that source trains), `K`, and the null test's size
(`layers`, `draws`, `walks`). Nothing is trained here: every source run is already finished (the chain trains the
missing ones first). For every (seed, source) run it measures Sim_K(t0, T) against its shuffle and random-walk
nulls (pipeline/analysis.run_null, from the snapshots the run stored), and done.json keeps them per seed and source
beside each run's folder and method. report/matched.py (claim 1: the endpoint metrics at a matched update size)
and report/channel.py (claim 2: the null test over seeds, and OPD against the other methods) read it with the
runs' own tracked metrics.
"""

import time

from adapters_geo.pipeline.analysis import run_null
from adapters_geo.storage.runfolder import RunFolder


def run_claims(resolved: dict, runs: list[tuple[int, str, str]], progress: bool, name: str = "claims") -> dict:
    """done.json's content (without the hash) for the (training seed, source experiment, run folder) `runs`."""
    k, layers = int(resolved.get("K", 16)), int(resolved.get("layers", 2))
    draws, walks = int(resolved.get("draws", 200)), int(resolved.get("walks", 20))
    by_seed: dict = {}
    for seed, source, folder in runs:
        start = time.perf_counter()
        null = run_null(folder, k, layers, draws, walks)
        method = (RunFolder(folder).config_dict() or {}).get("method", {}).get("name")
        by_seed.setdefault(str(seed), {})[source] = {"folder": folder, "method": method, "null": null}
        if progress:
            print(f"{name}: seed {seed} {source}: Sim_{k}(t0 = {null['step']}, T) {null['observed']:.3f}, shuffle null "
                  f"{null['shuffle']['mean']:.3f} (p {null['shuffle']['p']:.3f}), {time.perf_counter() - start:.0f} s",
                  flush=True)
    return {"seeds": by_seed, "K": k, "layers": layers, "draws": draws, "walks": walks}
