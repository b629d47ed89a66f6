"""Writing a geometry result: geometry.json, summary.md and PNG plots (no maths here).

Everything is written into a temporary folder and renamed into place at the end, so an
interrupted or failed analysis never leaves output that looks complete.
"""

import json
import math
from pathlib import Path

from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.geometry.aggregate import layer_index, module_type
from adapters_geo.report.plots import figure

HEADLINE = [
    ("sparsity_bf16", "bf16 sparsity"),
    ("rotation_right_max_deg", "rotation V (max °)"),
    ("rotation_left_max_deg", "rotation U (max °)"),
    ("spectral_drift", "spectral drift"),
    ("principal_overlap", "principal overlap"),
    ("low_magnitude_overlap", "low-magnitude overlap"),
    ("principal_energy", "principal energy"),
    ("stable_rank", "stable rank"),
    ("effective_rank", "effective rank"),
    ("rank_at_90", "rank@90"),
    ("hill_alpha", "Hill α"),
    ("update_norm_rel", "‖ΔW‖/‖W0‖"),
]
META_KEYS = ["reference", "tuned", "quant", "adapter_kind", "adapter_rank", "k", "K", "r", "alpha", "eta"]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"


def summary_markdown(result: dict) -> str:
    """A Markdown page: settings, the overall table, per module type and per block."""
    meta = result["meta"]
    lines = ["# Geometry of the update", ""]
    lines += [f"- **{key}**: {meta.get(key) if meta.get(key) is not None else 'per matrix (min(m, n) // 8)' if key == 'k' else '–'}" for key in META_KEYS]
    lines += [f"- **matrices**: {result['overall']['matrices']}, analysed in {meta['seconds']:.1f} s", ""]
    lines += ["## Overall", "", "| metric | mean | min | max |", "| --- | --- | --- | --- |"]
    for key, label in HEADLINE:
        row = result["overall"].get(key, {})
        lines.append(f"| {label} | {_fmt(row.get('mean'))} | {_fmt(row.get('min'))} | {_fmt(row.get('max'))} |")
    for group, title in (("by_type", "By module type"), ("by_block", "Attention and MLP")):
        keys = list(result[group])
        lines += ["", f"## {title} (means)", "", "| metric | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for key, label in HEADLINE:
            lines.append(f"| {label} | " + " | ".join(_fmt(result[group][g][key]["mean"]) for g in keys) + " |")
    lines += ["", "Fractions are weighted by parameter count; angles, ratios and ranks are plain means.", ""]
    return "\n".join(lines)


def plot_heatmaps(result: dict, path: Path) -> None:
    """One heat map per headline metric: module type (rows) × layer (columns)."""
    names = list(result["matrices"])
    types = list(dict.fromkeys(module_type(n) for n in names))
    layers = sorted({layer_index(n) for n in names if layer_index(n) is not None})
    if not layers:
        return
    cols = 3
    rows = math.ceil(len(HEADLINE) / cols)
    size = (5 * cols, 0.45 * len(types) * rows + 1.5 * rows)
    with figure(path, rows, cols, size=size, squeeze=False) as (fig, axes):
        _heatmap_panels(fig, axes, result, types, layers)


def _heatmap_panels(fig, axes, result: dict, types: list, layers: list) -> None:
    import numpy as np

    for ax, (key, label) in zip(axes.flat, HEADLINE):
        grid = np.full((len(types), len(layers)), np.nan)
        for name, row in result["matrices"].items():
            if layer_index(name) is not None and row.get(key) is not None:
                grid[types.index(module_type(name)), layers.index(layer_index(name))] = row[key]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_yticks(range(len(types)), types, fontsize=7)
        ax.set_ylabel("module type", fontsize=7)
        ax.set_xlabel("layer", fontsize=7)
        step = max(1, len(layers) // 10)
        ax.set_xticks(range(0, len(layers), step), [str(layers[i]) for i in range(0, len(layers), step)], fontsize=6)
        fig.colorbar(image, ax=ax, fraction=0.046).set_label(label, fontsize=6)
    for ax in list(axes.flat)[len(HEADLINE):]:
        ax.axis("off")


def plot_spectra(result: dict, path: Path, top: int = 4) -> None:
    """Singular values of W0, W1 and ΔW for the `top` matrices with the largest relative update."""
    chosen = sorted(result["matrices"], key=lambda n: -result["matrices"][n]["update_norm_rel"])[:top]
    with figure(path, 1, len(chosen), size=(4.5 * len(chosen), 3.5), squeeze=False) as (fig, axes):
        for ax, name in zip(axes.flat, chosen):
            spectra = result["spectra"][name]
            for index, (key, style) in enumerate((("w0", "-"), ("w1", "--"), ("delta", "-"))):
                ax.semilogy(spectra[key].clamp_min(1e-12).numpy(), style, color=f"C{index}",
                            label={"w0": "W0 (reference)", "w1": "W1 = W0 + ΔW", "delta": "ΔW"}[key])
            ax.set_title(name.removesuffix(".weight").replace("model.", ""), fontsize=8)
            ax.set_xlabel("singular value index (descending)")
            ax.set_ylabel("singular value (log scale)")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.02))
        fig.subplots_adjust(bottom=0.22)


def json_safe(value):
    """NaN -> null, tuple -> list, recursively (strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_result(result: dict, out: Path, overwrite: bool = False) -> Path:
    """Write geometry.json, summary.md, heatmaps.png and spectra.png into `out` atomically."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        public = json_safe({key: value for key, value in result.items() if key != "spectra"})
        (tmp / "geometry.json").write_text(json.dumps(public, indent=1, allow_nan=False))
        (tmp / "summary.md").write_text(summary_markdown(result))
        plot_heatmaps(result, tmp / "heatmaps.png")
        plot_spectra(result, tmp / "spectra.png")
    return out
