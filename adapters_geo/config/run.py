"""Typed run configuration from YAML: every bad value is one line naming the file, the key and what is allowed.

A run file has the sections
    model: smollm2-135m-instruct      # model spec (see README)
    quant: none                       # none | 8bit | 4bit
    adapter: {kind: dense, ...}       # DenseConfig / LoraConfig fields, or LockedSpec (a continuation)
    method: {name: sft, ...}          # MethodConfig fields
    task: {name: arithmetic, ...}     # TaskConfig fields
    train: {steps: 100, ...}          # TrainConfig fields
    init: null                        # a saved adapter folder to start from (same kind), or null
    system_prompt: null
Values are validated by pydantic (config/schema.py); `--set train.lr=1e-5` overrides are applied to the
file's mapping first (config/yamlfile.py) and validated with it. Ranks that depend on the model's
shapes (adapter.r, adapter.K ≤ min(m, n)) are checked by `check_adapter_fits` once the base is loaded.
"""

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, WrapValidator, field_validator

from adapters_geo.adapters import DenseConfig, LockedConfig, LoraConfig
from adapters_geo.adapters.targets import check_rank
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.methods.config import MethodConfig
from adapters_geo.models.quant import Quant
from adapters_geo.config.schema import Section, validated
from adapters_geo.tasks import TaskConfig
from adapters_geo.training.config import TrainConfig
from adapters_geo.config.yamlfile import apply_overrides, read_mapping, read_yaml

Basis = Literal["early", "random", "final", "principal", "cross"]  # the locking test's bases (locking/continuation.py)


class LockedSpec(Section):
    """The frozen-basis adapter of a locking continuation, as a config names it (locking/continuation.py builds it)."""

    kind: Literal["locked"] = "locked"
    source: str  # the unconstrained run folder it continues from t0
    basis: Basis = "early"
    K: int = Field(16, ge=1)  # basis size per matrix (≤ min(m, n), checked once the base is loaded)
    t0: int | None = Field(None, ge=1)  # the source's t0 (None: the source's recorded t0)
    seed: int = Field(0, ge=0, lt=2**31)  # seed of the random basis
    mode: Literal["projected", "gradient", "adapter"] = "projected"  # how the arm trains (locking/continuation.py)
    basis_source: str | None = None  # basis `cross`: the other run folder whose early update spans V


ADAPTER_CONFIGS = {"dense": DenseConfig, "lora": LoraConfig, "locked": LockedSpec}


def _adapter_kind(value):
    return value.get("kind", "dense") if isinstance(value, dict) else getattr(value, "kind", None)


def _built_locked_passes(value, handler):
    # locking/continuation.py puts a built LockedConfig (tensors) in place of its spec: it passes as it is.
    return value if isinstance(value, LockedConfig) else handler(value)


Adapter = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in ADAPTER_CONFIGS.items())],
    Discriminator(_adapter_kind),  # `kind` picks the section's class; without it, dense
    WrapValidator(_built_locked_passes),
]


class RunConfig(Section):
    model: str = "smollm2-135m-instruct"  # model spec (README: Model specs)
    quant: Quant = "none"
    adapter: Adapter = Field(default_factory=DenseConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    init: str | None = None  # a saved adapter folder to start from (same kind)
    system_prompt: str | None = None  # the system message of every prompt (training and evaluation)

    @field_validator("adapter", "method", "task", "train", mode="before")
    @classmethod
    def _empty_section(cls, value):
        return {} if value is None else value  # `train:` with nothing under it: the defaults

    def to_dict(self) -> dict:
        adapter = self.adapter
        if isinstance(adapter, LockedConfig):  # tensors: record their provenance
            adapter_dict = {"kind": "locked", **adapter.extra}
        else:
            adapter_dict = adapter.model_dump()
            if adapter_dict.get("basis_source", "") is None:  # only a cross arm has one: every older arm's identity
                del adapter_dict["basis_source"]
            if adapter_dict.get("kind") == "locked" and adapter_dict.get("basis") == "final":
                # since 2026-12-05 the final basis spans the increment after t0 (continuation.basis), no longer
                # ΔW_T − ΔW_init: a final arm run before is another run, and is re-run rather than reused
                adapter_dict["final_of"] = "increment_after_t0"
        data = {"adapter": adapter_dict, **self.model_dump(exclude={"adapter"})}
        if not data["train"]["gradient_checkpointing"]:  # memory, not results: off is every older run's identity
            del data["train"]["gradient_checkpointing"]
        if not data["method"]["teacher_hint"]:  # off: every older run's identity
            del data["method"]["teacher_hint"]
        if data["train"]["precision"] == "fp32":  # the default: every older run's identity
            del data["train"]["precision"]
        if data["train"]["eval_precision"] == "float32":  # the default: every older run's identity
            del data["train"]["eval_precision"]
        if data["train"]["track_exact_layers"] == 2:  # what to keep, not results: the default is every older run's identity
            del data["train"]["track_exact_layers"]
        if not data["train"]["track_background"]:  # when to measure, not what: off is every older run's identity
            del data["train"]["track_background"]
        if not data["train"]["eval_samples"]:  # off: every older run's identity
            del data["train"]["eval_samples"]
        if data["task"]["solution_style"] == "steps":  # the default: every older run's identity
            del data["task"]["solution_style"]
        for key in ("dataset", "config"):  # reasoning_gym only: unset is every older run's identity
            if not data["task"][key]:
                del data["task"][key]
        return data


def run_config_from_dict(data: dict, source: str = "<dict>", overrides: dict | None = None) -> RunConfig:
    """A RunConfig from plain data (as read from YAML), with `--set` overrides {dotted key: YAML text} applied."""
    if overrides:
        data = apply_overrides(data, overrides)
    return validated(RunConfig, data, source, overrides)


def load_run_config(path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a run YAML file (and its overrides)."""
    path = Path(path)
    if not path.is_file():
        raise AdaptersGeoError(f"config file {path} does not exist", "check the path")
    return run_config_from_dict(read_mapping(path), str(path), overrides)


def saved_run_config(data: dict, source: str) -> RunConfig:
    """A run folder's config.json as a RunConfig; keys that older versions wrote and no longer read are dropped."""
    data = {**data, "task": {k: v for k, v in (data.get("task") or {}).items() if k != "system_prompt"}}
    if isinstance(data.get("adapter"), dict) and data["adapter"].get("kind") == "locked":  # to_dict's identity marker
        data["adapter"] = {k: v for k, v in data["adapter"].items() if k != "final_of"}
    return run_config_from_dict(data, source)


def check_adapter_fits(adapter, model) -> None:
    """adapter.r (lora) or K (locked) ≤ min(m, n) of every target matrix of `model` (a loaded base)."""
    if isinstance(adapter, LoraConfig):
        check_rank(model, adapter.targets, "adapter.r", adapter.r)
    elif isinstance(adapter, LockedSpec):
        check_rank(model, "all-linear", "adapter.K", adapter.K)
    elif isinstance(adapter, LockedConfig) and "K" in adapter.extra:
        check_rank(model, [name.removesuffix(".weight") for name in adapter.right], "K", adapter.extra["K"])


__all__ = ["ADAPTER_CONFIGS", "LockedSpec", "RunConfig", "check_adapter_fits", "load_run_config", "read_yaml",
           "run_config_from_dict", "saved_run_config"]
