"""Which linear layers an adapter adapts.

`targets` is `all-linear` (every linear layer but the output head, as in peft) or a list
of module-name suffixes (`q_proj`, `self_attn.o_proj`) or full module paths.
"""

from typing import Annotated

from pydantic import Field
from torch import nn

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.weights import base_linears

# the type of an adapter config's `targets` field
Targets = Annotated[str | list[str], Field(description="all-linear, or a list of module-name suffixes such as [q_proj, v_proj]")]


def resolve_targets(model: nn.Module, targets) -> dict[str, str]:
    """{canonical weight name: module path} of the layers `targets` selects."""
    layers = base_linears(model)
    paths = {name: name.removesuffix(".weight") for name in layers}
    if targets == "all-linear":
        return paths
    if isinstance(targets, str):
        targets = [targets]
    chosen = {}
    for key in targets:
        hits = {n: p for n, p in paths.items() if p == key or p.endswith("." + key)}
        if not hits:
            suffixes = sorted({p.rsplit(".", 1)[-1] for p in paths.values()})
            raise AdaptersGeoError(
                f"target '{key}' matches no linear layer of this model",
                f"use all-linear or some of: {', '.join(suffixes)}",
            )
        chosen.update(hits)
    return dict(sorted(chosen.items(), key=lambda item: list(paths).index(item[0])))


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put `new` at dotted `path` inside `model`."""
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def check_rank(model: nn.Module, targets, key: str, rank: int) -> None:
    """Refuse a rank (LoRA r, locked K) above min(m, n) of a target matrix: one line with the largest allowed."""
    layers = base_linears(model)
    shapes = {name: (int(layers[name].out_features), int(layers[name].in_features)) for name in resolve_targets(model, targets)}
    name, (m, n) = min(shapes.items(), key=lambda item: min(item[1]))
    if rank > min(m, n):
        raise AdaptersGeoError(f"{key} = {rank} is larger than this model allows: {name.removesuffix('.weight')} is {m}×{n}",
                               f"set {key} to at most {min(m, n)}")
