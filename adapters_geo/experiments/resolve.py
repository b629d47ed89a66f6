"""Resolving an experiment: references, the SMOKE form, and its identity hash.

A string `experiment:NAME` anywhere in the file stands for that experiment's run: its
`adapter/` folder where an adapter is expected (`init`, `method.teacher`), its run folder for
`source` (locking). The hash covers the resolved file, the hashes of its dependencies and the
SMOKE flag, so a changed config (or a changed dependency) is never silently reused.
"""

import copy
import hashlib
import json

from adapters_geo.experiments.registry import read_experiment

REF = "experiment:"
# SMOKE=1: the same experiment on tiny-llama and a few steps (under 2 minutes on 2 CPU cores).
SMOKE = {
    "model": "tiny-llama",
    "quant": "none",
    "task": {"name": "arithmetic", "levels": [0], "train_size": 200, "test_size": 8},
    "train": {"steps": 10, "batch_size": 4, "lr": 3.0e-3, "eval_every": 0, "checkpoint_every": 5},
    "method": {"group_size": 2, "max_new_tokens": 10},
}
SMOKE_STEPS = {"save_adapter_at": [2], "t0": 2, "track_steps": [1, 2, 4, 6, 8, 10]}
SMOKE_KEEP_TASK = ("pool", "pools")  # teacher, anchor and continuations stay on disjoint prompts in the SMOKE form too


def references(data) -> list[str]:
    """Names of the experiments `data` refers to, in order of appearance."""
    found = []
    if isinstance(data, dict):
        for value in data.values():
            found += references(value)
    elif isinstance(data, list):
        for value in data:
            found += references(value)
    elif isinstance(data, str) and data.startswith(REF):
        found.append(data[len(REF):])
    return list(dict.fromkeys(found))


def smoke_form(data: dict) -> dict:
    """The experiment with SMOKE overrides merged in (sections merged key by key)."""
    out = copy.deepcopy(data)
    for key, value in SMOKE.items():
        if isinstance(value, dict):
            section = dict(out.get(key) or {})
            if key == "task":  # the tiny model uses the easy arithmetic task only
                section = {**value, **{k: section[k] for k in SMOKE_KEEP_TASK if k in section}}
            else:
                section.update(value)
            out[key] = section
        else:
            out[key] = value
    train = out["train"]
    for key, value in SMOKE_STEPS.items():
        if key in train or key == "track_steps":
            train[key] = value
    if out.get("method", {}).get("name") == "sft":
        out["method"].pop("group_size", None)
    return out


def substitute(data, paths: dict):
    """Replace every `experiment:NAME` with the path `paths[NAME]` gives for its context."""
    if isinstance(data, dict):
        return {k: (paths[v[len(REF):]][k] if isinstance(v, str) and v.startswith(REF) else substitute(v, paths))
                for k, v in data.items()}
    if isinstance(data, list):
        return [substitute(v, paths) for v in data]
    return data


KINDS = ("train", "lock")


def load_resolved(name: str, smoke: bool) -> dict:
    """The experiment's mapping, in its SMOKE form when asked (training experiments only)."""
    from adapters_geo.errors import AdaptersGeoError

    data = read_experiment(name)
    kind = data.get("kind", "train")
    if kind not in KINDS:
        raise AdaptersGeoError(f"experiment '{name}' has unknown kind '{kind}'", f"use one of {', '.join(KINDS)}")
    return smoke_form(data) if smoke and kind == "train" else data


def experiment_hash(name: str, smoke: bool, seen=()) -> str:
    """Identity of NAME as it would run now (its file, its dependencies' hashes, smoke)."""
    if name in seen:
        from adapters_geo.errors import AdaptersGeoError

        raise AdaptersGeoError(f"experiments depend on each other in a cycle: {' -> '.join(seen + (name,))}", "break the cycle")
    data = load_resolved(name, smoke)
    deps = {dep: experiment_hash(dep, smoke, seen + (name,)) for dep in references(data)}
    blob = json.dumps({"data": data, "deps": deps, "smoke": smoke}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
