"""Typed run configuration from YAML: unknown keys are errors naming the key and the file.

A run file has the sections
    model: smollm2-135m-instruct      # model spec (see README)
    quant: none                       # none | 8bit | 4bit
    adapter: {kind: dense, ...}       # DenseConfig / LoraConfig fields, or LockedSpec (a continuation)
    method: {name: sft, ...}          # MethodConfig fields
    task: {name: arithmetic, ...}     # TaskConfig fields
    train: {steps: 100, ...}          # TrainConfig fields
    init: null                        # a saved adapter folder to start from (same kind), or null
    system_prompt: null
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from adapters_geo.adapters import DenseConfig, LoraConfig
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.methods.config import MethodConfig
from adapters_geo.tasks import TaskConfig
from adapters_geo.training.config import TrainConfig
from adapters_geo.yamlfile import read_mapping, read_yaml  # noqa: F401  (read_yaml: this module's name for it)


@dataclass
class LockedSpec:
    """The frozen-basis adapter of a locking continuation, as a config names it (continuation.py builds it)."""

    source: str  # the unconstrained run folder it continues from t0
    basis: str = "early"  # early | random | final
    K: int = 16  # basis size per matrix
    t0: int | None = None  # the source's t0 (None: the source's recorded t0)
    seed: int = 0  # seed of the random basis
    kind = "locked"


ADAPTER_CONFIGS = {"dense": DenseConfig, "lora": LoraConfig, "locked": LockedSpec}


@dataclass
class RunConfig:
    model: str = "smollm2-135m-instruct"
    quant: str = "none"
    adapter: object = field(default_factory=DenseConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: str | None = None
    system_prompt: str | None = None

    def to_dict(self) -> dict:
        adapter = self.adapter
        if adapter.kind == "locked" and not isinstance(adapter, LockedSpec):  # tensors: record their provenance
            adapter_dict = {"kind": "locked", **adapter.extra}
        else:
            adapter_dict = {"kind": adapter.kind, **dataclasses.asdict(adapter)}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "adapter"}
        out = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in out.items()}
        return {"adapter": adapter_dict, **out}


def _build(cls, values, where: str):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise AdaptersGeoError(f"{where} must be a mapping, got {type(values).__name__}", f"write {where}: {{key: value}}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AdaptersGeoError(f"unknown key '{unknown[0]}' in {where}", f"use some of: {', '.join(sorted(known))}")
    return cls(**values)


def run_config_from_dict(data: dict, source: str = "<dict>") -> RunConfig:
    """A RunConfig from plain data (as read from YAML)."""
    if not isinstance(data, dict):
        raise AdaptersGeoError(f"{source} does not hold a mapping of sections", "see experiments/*.yaml for the format")
    top = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - top)
    if unknown:
        raise AdaptersGeoError(f"unknown key '{unknown[0]}' in {source}", f"use some of: {', '.join(sorted(top))}")
    adapter = dict(data.get("adapter") or {"kind": "dense"})
    kind = adapter.pop("kind", "dense")
    if kind not in ADAPTER_CONFIGS:
        raise AdaptersGeoError(f"unknown adapter kind '{kind}' in {source}", "use dense, lora or locked")
    return RunConfig(
        model=data.get("model", RunConfig.model),
        quant=data.get("quant", RunConfig.quant),
        adapter=_build(ADAPTER_CONFIGS[kind], adapter, f"{source}: adapter"),
        method=_build(MethodConfig, data.get("method"), f"{source}: method"),
        task=_build(TaskConfig, data.get("task"), f"{source}: task"),
        train=_build(TrainConfig, data.get("train"), f"{source}: train"),
        init=data.get("init"),
        system_prompt=data.get("system_prompt"),
    )


def load_run_config(path) -> RunConfig:
    """Read and validate a run YAML file."""
    path = Path(path)
    if not path.is_file():
        raise AdaptersGeoError(f"config file {path} does not exist", "check the path")
    return run_config_from_dict(read_mapping(path), str(path))

