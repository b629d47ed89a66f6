"""Writing trajectory diagnostics: trajectory.json and a four-panel plot (the maths is geometry/trajectory.py).

Sim_K(t, T) (right and left), stable rank and update norm of ΔW_t against t, for attention and
MLP matrices separately and together.
"""

import json
from pathlib import Path

from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.report.geometry import json_safe
from adapters_geo.report.plots import figure


def plot_trajectory(result: dict, path: Path) -> None:
    k = result["K"]
    panels = [("sim_right", f"Sim_{k}(t, T), right singular vectors (0–1)"), ("sim_left", f"Sim_{k}(t, T), left (0–1)"),
              ("stable_rank", "stable rank of ΔW_t (dimensions)"), ("update_norm", "mean ‖ΔW_t‖_F (weight units)")]
    with figure(path, 1, len(panels), size=(4.4 * len(panels), 3.6)) as (fig, axes):
        for ax, (key, label) in zip(axes, panels):
            for index, (group, entry) in enumerate(result["summary"].items()):
                ax.plot([r["step"] for r in entry["steps"]], [r[key] for r in entry["steps"]], marker="o", ms=3,
                        color=f"C{index}", label=f"{group} matrices")
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel("training step")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, -0.02))
        fig.subplots_adjust(bottom=0.25)


def write_trajectory(result: dict, out: Path, overwrite: bool = False) -> Path:
    """Write trajectory.json + trajectory.png into `out` atomically."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "trajectory.json").write_text(json.dumps(json_safe(result), indent=1))
        plot_trajectory(result, tmp / "trajectory.png")
    return out
