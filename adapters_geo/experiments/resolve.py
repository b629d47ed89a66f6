"""Resolving an experiment: validation, references, the SMOKE form, overrides and its identity hash.

A string `experiment:NAME` anywhere in the file stands for that experiment's run: its
`adapter/` folder where an adapter is expected (`init`, `method.teacher`), its run folder for
`source` (locking). `--set` overrides apply to the named experiment only, after the SMOKE form.
The hash covers the resolved file (overrides included), the hashes of its dependencies and the
SMOKE flag, so a changed config (or a changed dependency) is never silently reused.
"""

import copy
import hashlib
import json

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.experiments.registry import check_name, experiment_path, read_experiment
from adapters_geo.experiments.schema import Experiment
from adapters_geo.config.schema import validated
from adapters_geo.config.yamlfile import apply_overrides

REF = "experiment:"
# What a lock experiment's bases mean (continuation.basis). A change makes every earlier lock run another experiment,
# refused with the FORCE=1 fix rather than reused: on 2026-12-05 `final` became the increment after t0 (ΔW_T − ΔW_t0).
LOCK_DEFINITIONS = {"final": "increment_after_t0"}
# SMOKE=1: the same experiment on tiny-llama and a few steps (under 2 minutes on 2 CPU cores).
SMOKE = {
    "model": "tiny-llama",
    "quant": "none",
    "task": {"name": "arithmetic", "levels": [0], "train_size": 200, "test_size": 8},
    "train": {"steps": 10, "batch_size": 4, "lr": 3.0e-3, "checkpoint_every": 5},
    "method": {"group_size": 2, "max_new_tokens": 10},
}
SMOKE_STEPS = {"save_adapter_at": [2], "t0": 2, "track_steps": [1, 2, 4, 6, 8, 10]}
SMOKE_KEEP_TASK = ("pool", "pools", "solution_style")  # teacher, anchor and continuations stay on disjoint prompts in the SMOKE form too
# A task of another source keeps itself (its dataset, fields, splits) at SMOKE's sizes: the smoke run checks it end to end.
SMOKE_OTHER_TASK = {"train_size": 200, "test_size": 8}


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
            if key == "task" and section.get("name", "arithmetic") != "arithmetic":
                section.update(SMOKE_OTHER_TASK)
            elif key == "task":  # the tiny model uses the easy arithmetic task
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


def load_resolved(name: str, smoke: bool, overrides: dict | None = None) -> dict:
    """The experiment's validated mapping: its SMOKE form when asked (training experiments), then `overrides`."""
    data = read_experiment(name)
    if smoke and data.get("kind", "train") == "train":
        data = smoke_form(data)
    if overrides:
        data = apply_overrides(data, overrides)
    validated(Experiment, data, str(experiment_path(name)), overrides)
    return data


def dependency_order(name: str, smoke: bool, overrides: dict | None = None) -> list[str]:
    """NAME's chain, dependencies first, every file validated; a cycle or a bad reference is one line."""
    order = []

    def visit(current: str, chain: tuple) -> None:
        if current in chain:
            raise AdaptersGeoError(f"experiments depend on each other in a cycle: {' -> '.join(chain + (current,))}",
                                   "break the cycle: an experiment cannot use its own run, directly or through others")
        if current in order:
            return
        data = load_resolved(current, smoke, overrides if current == name else None)
        for dep in references(data):
            try:
                experiment_path(check_name(dep))
            except AdaptersGeoError as exc:
                raise AdaptersGeoError(f"{experiment_path(current)} refers to experiment:{dep}: {exc.problem}", exc.fix) from None
            visit(dep, chain + (current,))
        order.append(current)

    visit(name, ())
    return order


def experiment_hash(name: str, smoke: bool, overrides: dict | None = None) -> str:
    """Identity of NAME as it would run now (its file with overrides, its dependencies' hashes, smoke)."""
    dependency_order(name, smoke, overrides)  # no cycle below
    data = load_resolved(name, smoke, overrides)
    if data.get("kind") in ("lock", "claims"):  # more seeds add replicates, not another experiment: done.json lists them
        data = {k: v for k, v in data.items() if k != "seeds"}
    deps = {dep: experiment_hash(dep, smoke) for dep in references(data)}
    identity = {"data": data, "deps": deps, "smoke": smoke}
    if data.get("kind") == "lock":  # what its bases mean is part of what it measures
        identity["definitions"] = LOCK_DEFINITIONS
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
