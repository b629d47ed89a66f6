"""Named experiments: YAML files in experiments/, run by `make experiment NAME=...`.

registry.py finds and reads them; resolve.py turns `experiment:NAME` references into run
folders, applies the SMOKE form and hashes the resolved config; execute.py runs missing
dependencies first, reuses finished ones whose hash matches, and never overwrites a finished
run unless forced (the old one is archived, not deleted). Kinds: `train` runs runner.run;
`lock` (lock.py) runs the subspace-locking continuations of a source run.
"""
