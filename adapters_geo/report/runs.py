"""The cross-run report: runs/report.md with a table, trajectory plots, the methods at a
matched update size, the early-channel test and the locking bar chart.

Every number is read from the run folders (done.json, metrics.jsonl, geometry/geometry.json,
trajectory_geometry/trajectory.json); nothing is typed in.
"""

import sys
from pathlib import Path

from adapters_geo.storage.atomic import atomic_write_text
from adapters_geo.errors import AdaptersGeoError, one_line
from adapters_geo.report.channel import channel_section, experiment_of
from adapters_geo.report.claims import claims_table
from adapters_geo.report.locking import lock_section, lock_summary, verdicts
from adapters_geo.report.matched import matched_section
from adapters_geo.report.plots import figure, method_colour
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.tasks import label as task_label

COLUMNS = [
    ("method", "method"), ("task", "task"), ("adapter", "adapter"), ("quant", "quant"), ("acc_before", "acc before"),
    ("acc_after", "acc after"), ("sparsity_bf16", "bf16 sparsity"), ("rotation", "rotation V max (°)"),
    ("spectral_drift", "spectral drift"), ("principal_energy", "principal energy"), ("stable_rank", "stable rank"),
    ("rank_at_90", "rank@90"), ("update_norm_rel", "‖ΔW‖/‖W0‖"), ("movement_kl", "KL(π_T‖π_start)"),
    ("locking_step", "locking step"),
]


def train_row(folder: Path) -> dict | None:
    run = RunFolder(folder)
    config = run.config_dict()
    if config is None or not run.metrics_file.is_file() or run.done() is None:
        return None
    evals = [e for e in run.evals() if "accuracy" in e]
    overall = (run.geometry() or {}).get("overall", {})
    trajectory = run.trajectory() or {}
    mean = lambda key: (overall.get(key) or {}).get("mean")
    method = config["method"]["name"] + (f" (mix α={config['method']['mix_alpha']})" if config["method"].get("mix_alpha") is not None else "")
    return {
        "run": folder.name, "method": method, "task": task_label(config.get("task") or {}),
        "adapter": config["adapter"]["kind"], "quant": config["quant"], "init": config.get("init"),
        "acc_before": evals[0]["accuracy"] if evals else None, "acc_after": evals[-1]["accuracy"] if evals else None,
        "sparsity_bf16": mean("sparsity_bf16"), "rotation": mean("rotation_right_max_deg"),
        "spectral_drift": mean("spectral_drift"), "principal_energy": mean("principal_energy"),
        "stable_rank": mean("stable_rank"), "rank_at_90": mean("rank_at_90"), "update_norm_rel": mean("update_norm_rel"),
        "movement_kl": (run.behaviour() or {}).get("movement_kl"), "locking_step": _locking(trajectory),
        "trajectory": trajectory.get("summary", {}).get("all", {}).get("steps", []),
        "online": [r for r in run.metrics("geometry/overall")], "along": (trajectory.get("along") or {}).get("steps", []),
    }


def claims_lines(folder: Path) -> list[str]:
    """The report's section for a finished `claims` experiment: claims 1 and 2 over its source runs (found beside it,
    so a moved runs/ still reads), or one line per source run that is gone."""
    run = RunFolder(folder)
    done, experiment = run.done(), run.experiment()
    if done is None or experiment is None or experiment["file"].get("kind") != "claims":
        return []
    try:
        rows, missing, refused = [], [], []
        found = {**done.get("refused", {}), **done["seeds"]}
        for seed, by_source in sorted(found.items(), key=lambda item: int(item[0])):
            for source, entry in by_source.items():
                row = train_row(folder.parent / Path(entry["folder"]).name)
                rows += [{**row, "null": entry.get("null")}] if row is not None else []
                missing += [Path(entry["folder"]).name] if row is None else []
                refused += [f"{Path(entry['folder']).name} ({entry['refused']})"] if "refused" in entry else []
        tasks = ", ".join(dict.fromkeys(r["task"] for r in rows))  # the claims hold for this task (a table per task)
        title = f"{folder.name}: {', '.join(dict.fromkeys(experiment_of(r['run']) for r in rows))} on {tasks}, {len(found)} seed(s)"
        lines = [f"## The paper's claims 1 and 2 ({title})", ""]
        lines += [f"Source runs not found beside it (left out): {', '.join(missing)}.", ""] if missing else []
        lines += [f"No null test for: {'; '.join(refused)}.", ""] if refused else []
        return lines + claims_table(rows) + matched_section(rows) + channel_section(rows)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AdaptersGeoError(f"{run.done_file} is not a claims result ({type(exc).__name__}: {exc})",
                               "re-run the experiment (FORCE=1 archives this one)") from None


def _locking(trajectory: dict):
    """The attention matrices' locking step, or 'not before T' when the trajectory never locked before its end."""
    attention = trajectory.get("summary", {}).get("attention")
    if not attention:
        return None
    return attention.get("locking_step") if attention.get("locking_step") is not None else "not before T"


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:.3g}"


TRAJECTORY_PANELS = [("sim_right", "Sim_16(t, T): overlap with the final update's subspace (0–1)"),
                     ("effective_rank", "effective rank of ΔW_t (dimensions)"), ("stable_rank", "stable rank of ΔW_t (dimensions)"),
                     ("update_norm", "mean ‖ΔW_t‖_F (weight units)")]
STYLES = ("-", "--", ":", "-.")


def _style(rows: list) -> dict:
    """{run: (colour, line style)}: one colour per method (as in every figure), a line style per run of it."""
    seen, out = {}, {}
    for row in rows:
        index = seen[row["method"]] = seen.get(row["method"], -1) + 1
        out[row["run"]] = (method_colour(row["method"], len(seen)), STYLES[index % len(STYLES)])
    return out


def plot_trajectories(rows: list, path: Path) -> None:
    styles = _style(rows)
    with figure(path, 2, 2, size=(11, 6.8)) as (fig, axes):
        for ax, (key, label) in zip(axes.flat, TRAJECTORY_PANELS):
            for row in rows:
                points = [r for r in row["trajectory"] if r.get(key) is not None]
                colour, style = styles[row["run"]]
                ax.plot([r["step"] for r in points], [r[key] for r in points], style, color=colour, marker="o", ms=3,
                        label=f"{row['run']} ({row['method']})")
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel("training step")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, -0.01))
        fig.subplots_adjust(bottom=0.18)


MATCHED_PANELS = [("online", "sparsity_bf16", "bf16 sparsity (fraction unchanged)"),
                  ("along", "rotation_right_max_deg", "rotation of W0's top-k right subspace (max °)"),
                  ("along", "principal_energy", "principal energy (share of ‖ΔW‖²)"),
                  ("online", "stable_rank", "stable rank of ΔW_t (dimensions)")]


def plot_matched(rows: list, path: Path) -> None:
    """Every endpoint metric against ‖ΔW_t‖/‖W0‖ along each run's trajectory: methods read at equal update size."""
    styles = _style(rows)
    with figure(path, 2, 2, size=(11, 6.8)) as (fig, axes):
        for ax, (source, key, label) in zip(axes.flat, MATCHED_PANELS):
            for row in rows:
                points = [r for r in row[source] if r.get(key) is not None and r.get("update_norm_rel")]
                colour, style = styles[row["run"]]
                ax.plot([r["update_norm_rel"] for r in points], [r[key] for r in points], style, color=colour, marker="o",
                        ms=3, label=f"{row['run']} ({row['method']})")
            ax.set_xscale("log")
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel("relative update size ‖ΔW_t‖_F / ‖W0‖_F (mean over matrices)", fontsize=8)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, -0.01))
        fig.subplots_adjust(bottom=0.2)


def write_report(root) -> Path:
    """Write ROOT/report.md (+ report_trajectories.png, report_locking.png) from the finished runs."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    trains, locks, claims = [], [], []
    for folder in folders:  # a damaged run is left out with a warning line; the report of the others is written
        try:
            row, lock, claim = train_row(folder), lock_summary(folder), claims_lines(folder)
        except AdaptersGeoError as exc:
            print(one_line(f"adapters-geo: warning: {folder.name} left out of the report: {exc}"), file=sys.stderr)
            continue
        trains += [row] if row else []
        locks += [lock] if lock else []
        claims += claim
    lines = [f"# adapters_geo report ({root})", ""]
    if locks:
        lines += ["**Verdicts** (subspace locking, details below):", ""] + [f"- {line}" for line in verdicts(locks)] + [""]
    lines += ["| run | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {r['run']} | " + " | ".join(_fmt(r[key]) for key, _ in COLUMNS) + " |" for r in trains]
    lines += ["", "Geometry: overall means over all target matrices, each run against its own start (OPD / RLVR from",
              "the SFT anchor, SFT from the base). Locking step: first tracked step from which the attention",
              "matrices' mean Sim_16(t, T) stays ≥ 0.9.", ""]
    if trains:
        plot_trajectories(trains, root / "report_trajectories.png")
        lines += ["![trajectories](report_trajectories.png)", ""]
        plot_matched(trains, root / "report_matched.png")
        lines += ["Endpoint metrics along each run's trajectory against its relative update size (bf16 sparsity and stable",
                  "rank over all matrices at every tracked step; rotation and principal energy over every matrix of about",
                  "8 evenly spaced layers): compare methods at equal update size, not at equal learning rate.", "",
                  "![matched](report_matched.png)", ""]
    lines += claims
    lines += lock_section(locks, root)
    atomic_write_text(root / "report.md", "\n".join(lines))
    return root / "report.md"
