"""The cross-run report: runs/report.md with a table, trajectory plots and the locking bar chart.

Every number is read from the run folders (done.json, metrics.jsonl, geometry/geometry.json,
trajectory_geometry/trajectory.json); nothing is typed in.
"""

from pathlib import Path

from adapters_geo.atomic import atomic_write_text
from adapters_geo.report.plots import figure
from adapters_geo.runfolder import RunFolder

COLUMNS = [
    ("method", "method"), ("adapter", "adapter"), ("quant", "quant"), ("acc_before", "acc before"),
    ("acc_after", "acc after"), ("sparsity_bf16", "bf16 sparsity"), ("rotation", "rotation V max (°)"),
    ("spectral_drift", "spectral drift"), ("principal_energy", "principal energy"), ("stable_rank", "stable rank"),
    ("rank_at_90", "rank@90"), ("locking_step", "locking step"),
]


def train_row(folder: Path) -> dict | None:
    run = RunFolder(folder)
    config = run.config_dict()
    if config is None or not run.metrics_file.is_file() or run.done() is None:
        return None
    evals = run.evals()
    overall = (run.geometry() or {}).get("overall", {})
    trajectory = run.trajectory() or {}
    mean = lambda key: (overall.get(key) or {}).get("mean")
    method = config["method"]["name"] + (f" (mix α={config['method']['mix_alpha']})" if config["method"].get("mix_alpha") is not None else "")
    return {
        "run": folder.name, "method": method, "adapter": config["adapter"]["kind"], "quant": config["quant"],
        "acc_before": evals[0]["accuracy"] if evals else None, "acc_after": evals[-1]["accuracy"] if evals else None,
        "sparsity_bf16": mean("sparsity_bf16"), "rotation": mean("rotation_right_max_deg"),
        "spectral_drift": mean("spectral_drift"), "principal_energy": mean("principal_energy"),
        "stable_rank": mean("stable_rank"), "rank_at_90": mean("rank_at_90"),
        "locking_step": (trajectory.get("summary", {}).get("attention") or {}).get("locking_step"),
        "trajectory": trajectory.get("summary", {}).get("all", {}).get("steps", []),
    }


def lock_row(folder: Path) -> dict | None:
    run = RunFolder(folder)
    done, experiment = run.done(), run.experiment()
    if done is None or experiment is None or experiment["file"].get("kind") != "lock":
        return None
    source = RunFolder(done["source"])
    accuracy = {basis: result["accuracy"] for basis, result in done["final_eval"].items()}
    t0 = source.t0
    at_t0 = None  # every continuation evaluates its start, ΔW_t0, at t0 before its first step
    for basis in ("early", "random", "final"):
        first = next(iter(RunFolder(folder / basis).evals()), None)
        if first is not None:
            at_t0 = first["accuracy"]
            break
    return {"run": folder.name, "method": (source.config_dict() or {}).get("method", {}).get("name"), "K": done["K"],
            "accuracy": accuracy, "t0": t0, "acc_t0": at_t0}


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:.3g}"


TRAJECTORY_PANELS = [("sim_right", "subspace overlap with the final update, Sim_16(t, T)"),
                     ("effective_rank", "effective rank of ΔW_t"), ("stable_rank", "stable rank of ΔW_t"),
                     ("update_norm", "mean ‖ΔW_t‖_F")]


def plot_trajectories(rows: list, path: Path) -> None:
    with figure(path, 2, 2, size=(10, 6.4)) as (fig, axes):
        for ax, (key, title) in zip(axes.flat, TRAJECTORY_PANELS):
            for row in rows:
                points = [r for r in row["trajectory"] if r.get(key) is not None]
                ax.plot([r["step"] for r in points], [r[key] for r in points], marker="o", ms=3, label=row["run"])
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
        axes[0, 0].legend(fontsize=6)


def plot_locking(rows: list, path: Path) -> None:
    order = ["unconstrained", "early", "random", "final"]
    with figure(path, size=(2.2 + 2.2 * len(rows), 3.4)) as (fig, ax):
        width = 0.8 / len(order)
        for i, basis in enumerate(order):
            ax.bar([j + i * width for j in range(len(rows))], [row["accuracy"].get(basis, 0) for row in rows], width, label=basis)
        ax.set_xticks([j + 1.5 * width for j in range(len(rows))], [f"{row['run']}\n({row['method']})" for row in rows], fontsize=8)
        ax.set_ylabel("held-out accuracy")
        ax.set_title("subspace locking: continuation from t0", fontsize=9)
        ax.legend(fontsize=7)


def write_report(root) -> Path:
    """Write ROOT/report.md (+ report_trajectories.png, report_locking.png) from the finished runs."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    trains = [r for r in (train_row(f) for f in folders) if r]
    locks = [r for r in (lock_row(f) for f in folders) if r]
    lines = [f"# adapters_geo report ({root})", ""]
    lines += ["| run | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {r['run']} | " + " | ".join(_fmt(r[key]) for key, _ in COLUMNS) + " |" for r in trains]
    lines += ["", "Geometry: overall means over all target matrices, each run against its own start (OPD / RLVR from",
              "the SFT anchor, SFT from the base). Locking step: first tracked step from which the attention",
              "matrices' mean Sim_16(t, T) stays ≥ 0.9.", ""]
    if trains:
        plot_trajectories(trains, root / "report_trajectories.png")
        lines += ["![trajectories](report_trajectories.png)", ""]
    if locks:
        lines += ["## Subspace locking", "", "Held-out accuracy at the end of the budget, continuing from t0 unconstrained or locked.", "",
                  "| run | method | K | t0 | acc at t0 | unconstrained | early basis | random basis | final basis |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in locks:
            acc = r["accuracy"]
            lines.append(f"| {r['run']} | {r['method']} | {r['K']} | {_fmt(r['t0'])} | {_fmt(r['acc_t0'])} | " + " | ".join(
                _fmt(acc.get(b)) for b in ("unconstrained", "early", "random", "final")) + " |")
        lines += ["", "Continuations train ΔW = ΔW_t0 + B Vᵀ with Adam; with plain SGD this equals projected-gradient",
                  "training, with Adam it differs in the optimizer's coordinates.", "", "![locking](report_locking.png)", ""]
        plot_locking(locks, root / "report_locking.png")
    atomic_write_text(root / "report.md", "\n".join(lines))
    return root / "report.md"
