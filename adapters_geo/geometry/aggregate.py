"""Aggregation of per-matrix diagnostics: per module type, per layer, per block, overall.

Fractions (sparsity, density, overlaps, principal energy) are weighted by parameter count;
angles, ratios and ranks are plain means. Every aggregate also carries min and max.
`spectral_drift` is a plain mean over matrices, as published.
"""

import math
import re

WEIGHTED = {"sparsity_bf16", "sparsity_abs", "update_density", "principal_overlap", "low_magnitude_overlap", "principal_energy"}
SKIP = {"params", "k", "overlap_random_baseline"}
ATTENTION = {"q", "k", "v", "o", "qkv", "query", "key", "value", "dense", "out"}


def module_type(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'q'; 'mlp.down_proj' -> 'down'."""
    module = name.removesuffix(".weight").rsplit(".", 1)[-1]
    return module.removesuffix("_proj")


def layer_index(name: str):
    match = re.search(r"\.(?:layers|h|blocks)\.(\d+)\.", name)
    return int(match.group(1)) if match else None


ALONG_LAYERS = 4  # metrics that need an SVD of W per matrix along a run: every matrix of about 4 evenly spaced layers


def layer_subset(names, count: int = ALONG_LAYERS) -> list[str]:
    """Every matrix of layers 0, s, 2s, … with s = ceil(layers / count) (all layers of a small model), and those outside layers."""
    layers = sorted({layer_index(n) for n in names if layer_index(n) is not None})
    chosen = set(layers[:: max(1, -(-len(layers) // count))])
    return [n for n in names if layer_index(n) is None or layer_index(n) in chosen]


def block(name: str) -> str:
    """'attention' or 'mlp' (by the parent module's name, else by module type)."""
    parts = name.split(".")
    if any("attn" in p or "attention" in p for p in parts):
        return "attention"
    if any("mlp" in p or "ffn" in p or "feed_forward" in p for p in parts):
        return "mlp"
    return "attention" if module_type(name) in ATTENTION else "mlp"


def summarize(rows: list[dict]) -> dict:
    """{metric: {mean, min, max}} over matrices (weighted mean for fractions)."""
    out = {}
    scalars = [key for key, value in rows[0].items() if key not in SKIP and isinstance(value, (int, float))]
    for key in scalars:
        pairs = [(row[key], row["params"]) for row in rows if row.get(key) is not None and not _isnan(row[key])]
        if not pairs:
            out[key] = {"mean": None, "min": None, "max": None}
            continue
        values = [v for v, _ in pairs]
        if key in WEIGHTED:
            mean = sum(v * w for v, w in pairs) / sum(w for _, w in pairs)
        else:
            mean = sum(values) / len(values)
        out[key] = {"mean": mean, "min": min(values), "max": max(values)}
    out["matrices"] = len(rows)
    return out


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def aggregate(matrices: dict[str, dict]) -> dict:
    """{"by_type", "by_layer", "by_block", "overall"} from {name: metrics}."""
    groups = {"by_type": {}, "by_layer": {}, "by_block": {}}
    for name, row in matrices.items():
        groups["by_type"].setdefault(module_type(name), []).append(row)
        layer = layer_index(name)
        if layer is not None:
            groups["by_layer"].setdefault(str(layer), []).append(row)
        groups["by_block"].setdefault(block(name), []).append(row)
    result = {kind: {key: summarize(rows) for key, rows in found.items()} for kind, found in groups.items()}
    result["by_layer"] = dict(sorted(result["by_layer"].items(), key=lambda item: int(item[0])))
    result["overall"] = summarize(list(matrices.values()))
    return result
