"""The `claims` experiment kind: the seed paper's claims 1 and 2 (2606.07082) over finished training runs.

`sources: [experiment:NAME, ...]` (one training experiment per method, from one start), `seeds` (training seeds of
every source: SOURCE-seedS runs, the same a lock experiment on that source trains), `K`, and the null test's size
(`layers`, `draws`, `walks`). Nothing is trained here: every source run is already finished (the chain trains the
missing ones first). For every (seed, source) run it measures Sim_K(t0, T) against its shuffle and random-walk
nulls (pipeline/analysis.run_null, from the snapshots the run stored), and done.json keeps them per seed and source
beside each run's folder and method; a run the test cannot read (one trained before its exact snapshots were kept)
is named under "refused" with the reason, and its seed is measured again by the next run of the experiment.
report/matched.py (claim 1: the endpoint metrics at a matched update size)
and report/channel.py (claim 2: the null test over seeds, and OPD against the other methods) read it with the
runs' own tracked metrics.
"""

import time

from adapters_geo.errors import AdaptersGeoError, one_line
from adapters_geo.experiments.schema import ClaimsExperiment
from adapters_geo.pipeline.analysis import run_null
from adapters_geo.storage.runfolder import RunFolder


def run_claims(resolved: dict, runs: list[tuple[int, str, str]], progress: bool, name: str = "claims") -> dict:
    """done.json's content (without the hash) for the (training seed, source experiment, run folder) `runs`."""
    spec = ClaimsExperiment.model_validate(resolved)  # the file's values and the schema's defaults
    k, layers, draws, walks = spec.K, spec.layers, spec.draws, spec.walks
    by_seed: dict = {}
    for seed, source, folder in runs:
        start = time.perf_counter()
        method = (RunFolder(folder).config_dict() or {}).get("method", {}).get("name")
        entry = by_seed.setdefault(str(seed), {})[source] = {"folder": folder, "method": method}
        try:
            entry["null"] = null = run_null(folder, k, layers, draws, walks, seed=seed)  # each seed's own draws
        except AdaptersGeoError as exc:  # e.g. a run trained before its exact snapshots were kept: named, not fatal
            entry["refused"] = one_line(str(exc))
            if progress:
                print(f"{name}: seed {seed} {source}: no null test: {entry['refused']}", flush=True)
            continue
        if progress:
            print(f"{name}: seed {seed} {source}: Sim_{k}(t0 = {null['step']}, T) {null['observed']:.3f}, shuffle null "
                  f"{null['shuffle']['mean']:.3f} (p {null['shuffle']['p']:.3f}), {time.perf_counter() - start:.0f} s",
                  flush=True)
    complete = {s: found for s, found in by_seed.items() if all("null" in e for e in found.values())}
    # done.json's seeds are the measured ones (a later run re-measures the others); the refused ones are kept apart
    return {"seeds": complete, "refused": {s: found for s, found in by_seed.items() if s not in complete},
            "K": k, "layers": layers, "draws": draws, "walks": walks}
