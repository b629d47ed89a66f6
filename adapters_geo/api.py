"""The Python API: the command line's jobs as functions, each the same pipeline its command runs.

    import adapters_geo as ag
    summary = ag.train("examples/tiny_sft.yaml", "runs/tiny")            # = adapters-geo train CFG --out runs/tiny
    ag.geometry_of("tiny-llama", adapter="runs/tiny/adapter")["overall"]  # = adapters-geo geometry BASE --adapter ...
    ag.trajectory_of("runs/tiny", K=8)["early_step"]                     # = adapters-geo trajectory RUN --K 8
    ag.export_merged("runs/tiny", "out/merged", dtype="bfloat16")        # = adapters-geo export RUN --merged OUT
    ag.run_experiment("lock_opd", smoke=True)                            # = make experiment NAME=lock_opd SMOKE=1
    ag.write_report("runs/smoke")                                        # = make report

(The names say what they do rather than repeat the subpackages', since `adapters_geo.geometry`,
`adapters_geo.storage.snapshots` and `adapters_geo.report` are modules.)

Errors are AdaptersGeoError (one line naming the problem and the fix), as on the command line. The
building blocks below them (load_base, attach_adapter, merged_deltas, ...) are exported beside them.
"""

import json
from pathlib import Path
from typing import Any


def _as_yaml(overrides: dict[str, Any] | None) -> dict[str, str] | None:
    """{dotted key: YAML text}, as `--set` gives them: Python values written as JSON, which YAML 1.2 reads back."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()} if overrides else None


def train(config: str | Path | dict, out: str | Path, *, overrides: dict[str, Any] | None = None,
          resume: bool = False, analyse: bool = True, progress: bool = True) -> dict:
    """Train one run into the new folder `out` and analyse it; returns the summary (final_eval, seconds, ...).

    `config`: a run YAML file or the same sections as a dict; `overrides`: dotted keys as `--set` takes them, with
    Python or YAML-text values ({"train.lr": 1e-5, "train.schedule": "cosine"}). The folder is the one
    `adapters-geo train` writes (adapter/, geometry/, done.json with where the time went, ...).
    """
    from adapters_geo.config.run import load_run_config, run_config_from_dict
    from adapters_geo.storage.runfolder import refuse_inside_finished_run
    from adapters_geo.pipeline.runner import run

    refuse_inside_finished_run(Path(out), "out")
    overrides = _as_yaml(overrides)
    if isinstance(config, dict):
        loaded = run_config_from_dict(config, overrides=overrides)
    else:
        loaded = load_run_config(config, overrides)
    return run(loaded, out, resume=resume, progress=progress, analyse=analyse)


def run_experiment(name: str, *, smoke: bool = False, force: bool = False, seeds: int | None = None,
               overrides: dict[str, Any] | None = None, progress: bool = True) -> Path:
    """Run the named experiment of experiments/ and whatever it needs that has not run; returns its folder.

    `overrides` apply to NAME only, as `SET=` does ({"train.lr": 2e-5}); `seeds`: as `SEEDS=` for a lock experiment.
    """
    from adapters_geo.experiments import execute

    return execute.run_experiment(name, force=force, smoke=smoke, progress=progress, overrides=_as_yaml(overrides), seeds=seeds)


def geometry_of(base: str, tuned: str | None = None, *, adapter: str | Path | None = None, quant: str | None = None,
             out: str | Path | None = None, overwrite: bool = False, **settings: Any) -> dict:
    """Endpoint geometry of `tuned` (a checkpoint) or `adapter` (a saved adapter on `base`) against `base`.

    Writes geometry.json, summary.md and the figures to `out` (default runs/geometry/<name>) and returns
    geometry.json's content: {"meta", "matrices", "by_type", "by_layer", "by_block", "overall"}.
    `settings`: k, K, r, alpha, eta (geometry/suite.py's Settings).
    """
    from adapters_geo.pipeline.analysis import geometry_command
    from adapters_geo.geometry.suite import Settings

    folder = geometry_command(base, tuned, str(adapter) if adapter else None, quant, Settings(**settings), out, overwrite)
    return json.loads((Path(folder) / "geometry.json").read_text())


def trajectory_of(run: str | Path, *, K: int = 16, out: str | Path | None = None, overwrite: bool = False) -> dict:
    """Trajectory diagnostics (Sim_K, rank dynamics, locking step) of a run folder; returns trajectory.json's content.

    Written to `out`, by default RUN/trajectory_geometry, or RUN-trajectory-K<K> beside a finished run.
    """
    from adapters_geo.pipeline.analysis import write_run_trajectory

    folder = write_run_trajectory(run, K, out, overwrite)
    return json.loads((Path(folder) / "trajectory.json").read_text())


def export_merged(source: str | Path, out: str | Path, *, dtype: str = "float32") -> Path:
    """Write base + ΔW of a saved adapter (or a run's adapter/) as a plain transformers checkpoint in `out`."""
    from adapters_geo.adapters import export

    return export.export_merged(source, out, dtype=dtype)


def write_report(runs: str | Path = "runs") -> Path:
    """Write RUNS/report.md (verdicts, one row per finished run, plots) from the finished runs; returns its path."""
    from adapters_geo.report import runs as report_runs

    return report_runs.write_report(runs)
