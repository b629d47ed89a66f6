"""Writing trajectory diagnostics: trajectory.json and a four-panel plot (the maths is geometry/trajectory.py).

Sim_K(t, T) (right and left), stable rank and update norm of ΔW_t against t, for attention and
MLP matrices separately and together.
"""

import json
from pathlib import Path

from adapters_geo.atomic import atomic_dir
from adapters_geo.report.geometry import json_safe
from adapters_geo.report.plots import figure


def plot_trajectory(result: dict, path: Path) -> None:
    panels = [("sim_right", f"Sim_{result['K']}(t, T), right"), ("sim_left", f"Sim_{result['K']}(t, T), left"),
              ("stable_rank", "stable rank of ΔW_t"), ("update_norm", "mean ‖ΔW_t‖_F")]
    with figure(path, 1, len(panels), size=(4.2 * len(panels), 3.4)) as (fig, axes):
        for ax, (key, title) in zip(axes, panels):
            for group, entry in result["summary"].items():
                ax.plot([r["step"] for r in entry["steps"]], [r[key] for r in entry["steps"]], marker="o", ms=3, label=group)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
        axes[0].legend(fontsize=7)


def write_trajectory(result: dict, out: Path, overwrite: bool = False) -> Path:
    """Write trajectory.json + trajectory.png into `out` atomically."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "trajectory.json").write_text(json.dumps(json_safe(result), indent=1))
        plot_trajectory(result, tmp / "trajectory.png")
    return out
