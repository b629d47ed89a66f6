"""Trajectory diagnostics of a training run: read its snapshots, write trajectory.json and a plot.

Sim_K(t, T) (right and left), stable rank, update norm and Hill α of ΔW_t against t, for
attention and MLP matrices separately and together; locking step; early energy capture at the
full snapshot nearest 20% of training (the t0 of the locking test).
"""

import json
from pathlib import Path

from adapters_geo.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.geometry.report import _json_safe
from adapters_geo.geometry.trajectory import K_DEFAULT, model_trajectory
from adapters_geo.trajectory import INDEX, read_snapshots


def early_step(index: dict) -> int | None:
    """The bf16 full snapshot nearest 20% of the run (t0), if any."""
    steps = sorted(int(s) for s in index)
    full = [int(s) for s, entry in index.items() if entry["format"] == "bf16"]
    return min(full, key=lambda s: abs(s - 0.2 * steps[-1])) if full else None


def run_trajectory(run_dir, k: int = K_DEFAULT) -> dict:
    folder = Path(run_dir) / "trajectory"
    if not (folder / INDEX).is_file():
        raise AdaptersGeoError(f"{run_dir} has no trajectory ({folder / INDEX} is missing)", "pass a run folder written by adapters-geo train")
    index = json.loads((folder / INDEX).read_text())
    snapshots, spectra = read_snapshots(folder)
    if len(snapshots) < 2:
        raise AdaptersGeoError(f"{run_dir} has {len(snapshots)} tracked step(s)", "track at least two steps")
    result = model_trajectory(snapshots, k, early_step(index), spectra)
    result["early_step"] = early_step(index)
    return result


def plot_trajectory(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("sim_right", f"Sim_{result['K']}(t, T), right"), ("sim_left", f"Sim_{result['K']}(t, T), left"),
              ("stable_rank", "stable rank of ΔW_t"), ("update_norm", "mean ‖ΔW_t‖_F")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels):
        for group, entry in result["summary"].items():
            ax.plot([r["step"] for r in entry["steps"]], [r[key] for r in entry["steps"]], marker="o", ms=3, label=group)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_trajectory(run_dir, k: int = K_DEFAULT, out=None, overwrite: bool = False) -> Path:
    """Write trajectory.json + trajectory.png into `out` (default RUN_DIR/trajectory_geometry)."""
    result = run_trajectory(run_dir, k)
    out = Path(out or Path(run_dir) / "trajectory_geometry")
    if out.exists() and not overwrite:
        raise AdaptersGeoError(f"{out} already exists", "pass --overwrite or choose another --out")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "trajectory.json").write_text(json.dumps(_json_safe(result), indent=1))
        plot_trajectory(result, tmp / "trajectory.png")
    return out
