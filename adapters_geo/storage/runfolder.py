"""A run folder: every file a run writes, by name, and typed reads of them.

Every module that reads or writes a run goes through `RunFolder`, so the layout lives here only:

    config.json            the resolved RunConfig (t0 included)     meta.json        git hash, dirty flag, versions
    metrics.jsonl          one JSON line per logged group and step  tb/              TensorBoard events
    checkpoint/            the resumable training state              trajectory/      ΔW_t snapshots (storage/snapshots.py)
    t0_state/              the full training state at t0 (a locking test continues from it)
    evals/                 per-prompt held-out outcomes at each evaluation (step_NNNNNN.json)
    adapter/               the final adapter                         adapter_step_N/  the exact adapter at step N
    train_summary.json     the loop's summary                        geometry/        endpoint geometry (report/)
    trajectory_geometry/   trajectory diagnostics                    done.json        written last: the run is finished
    behaviour.json         behavioural movement KL(π_T ‖ π_start)
    experiment.json        which named experiment (and hash) made it
    tracker_state.pt       ΔW_start of a run tracked by integrations.AdaptersGeoCallback (read back on resume)
    .lock                  the pid of the process writing the run (storage/lockfile.py), while it runs
"""

import json
import os
import re
from pathlib import Path

from adapters_geo.storage.atomic import OLD, TMP, atomic_write_text
from adapters_geo.errors import AdaptersGeoError

def read_text(path: Path, fix: str) -> str:
    """A file the toolkit wrote, as text; one line naming the file and `fix` when it is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AdaptersGeoError(f"{path} is not UTF-8 text (byte {exc.start}): damaged or replaced", fix) from None


def read_json(path: Path, fix: str):
    """A JSON file the toolkit wrote; one line naming the file and `fix` when it is damaged (truncated, edited)."""
    return _parse(read_text(path, fix), path, "", fix)


def _parse(text: str, path: Path, where: str, fix: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        place = where or f"line {exc.lineno}"
        raise AdaptersGeoError(f"{path} is not valid JSON ({place}: {exc.msg}): truncated or edited", fix) from None


def refuse_inside_finished_run(out: Path, what: str) -> None:
    """One line if `out` lies inside a finished run's folder (a parent holds done.json): a finished run is never
    changed by a later command, not even by request (--overwrite)."""
    for parent in Path(os.path.abspath(out)).parents:
        if (parent / "done.json").is_file():
            raise AdaptersGeoError(f"{what} {out} lies inside the finished run {parent}, which no command changes",
                                   "choose a folder outside it (a named experiment re-runs with FORCE=1, which archives the run)")


class RunFolder:
    """Paths and typed reads of one run folder."""

    def __init__(self, path):
        self.path = path.path if isinstance(path, RunFolder) else Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- paths
    config_file = property(lambda self: self.path / "config.json")
    meta_file = property(lambda self: self.path / "meta.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    tensorboard = property(lambda self: self.path / "tb")
    checkpoint = property(lambda self: self.path / "checkpoint")
    trajectory_dir = property(lambda self: self.path / "trajectory")
    adapter = property(lambda self: self.path / "adapter")
    summary_file = property(lambda self: self.path / "train_summary.json")
    geometry_dir = property(lambda self: self.path / "geometry")
    trajectory_geometry_dir = property(lambda self: self.path / "trajectory_geometry")
    done_file = property(lambda self: self.path / "done.json")
    experiment_file = property(lambda self: self.path / "experiment.json")
    evals_dir = property(lambda self: self.path / "evals")
    behaviour_file = property(lambda self: self.path / "behaviour.json")
    t0_state = property(lambda self: self.path / "t0_state")
    tracker_state = property(lambda self: self.path / "tracker_state.pt")
    lock_file = property(lambda self: self.path / ".lock")

    ATOMIC = ("checkpoint", "t0_state", "adapter", "geometry", "trajectory_geometry")  # folders written by atomic_dir

    def adapter_at(self, step: int) -> Path:
        """Folder of the exact adapter saved at `step`."""
        return self.path / f"adapter_step_{step}"

    def saved_adapter_steps(self) -> list[int]:
        return sorted(int(p.name.rsplit("_", 1)[1]) for p in self.path.glob("adapter_step_*") if p.is_dir())

    def atomic_folders(self) -> list[Path]:
        """Every folder of the run written by atomic_dir (adapter_step_N/ included), present or left half-written."""
        names = set(self.ATOMIC) | {p.name for p in self.path.glob("adapter_step_*")}
        hidden = re.compile(rf"^\.(adapter_step_\d+)(?:{re.escape(TMP)}|{re.escape(OLD)})")
        names |= {m.group(1) for p in self.path.glob(".adapter_step_*") if (m := hidden.match(p.name))}
        return [self.path / name for name in sorted(names)]

    def has_checkpoint(self) -> bool:
        """A checkpoint in any form: checkpoint/, or its previous version left by a killed write."""
        return self.checkpoint.is_dir() or any(self.path.glob(f".checkpoint{OLD}*"))

    # ---- reads
    def _json(self, path: Path):
        return read_json(path, f"re-run it (make experiment ... FORCE=1 archives this run), or remove {self.path}") if path.is_file() else None

    def config_dict(self) -> dict | None:
        """config.json as written (None when absent)."""
        return self._json(self.config_file)

    def config(self):
        """config.json as a RunConfig (locked continuations included)."""
        from adapters_geo.config.run import saved_run_config

        return saved_run_config(self.config_dict() or {}, str(self.config_file))

    def meta(self) -> dict | None:
        return self._json(self.meta_file)

    def summary(self) -> dict | None:
        return self._json(self.summary_file)

    def done(self) -> dict | None:
        """done.json: present only when the whole pipeline finished."""
        return self._json(self.done_file)

    def experiment(self) -> dict | None:
        return self._json(self.experiment_file)

    def behaviour(self) -> dict | None:
        """behaviour.json: how far the policy moved, KL(π_T ‖ π_start) on the held-out contexts."""
        return self._json(self.behaviour_file)

    def geometry(self) -> dict | None:
        return self._json(self.geometry_dir / "geometry.json")

    def trajectory(self) -> dict | None:
        """The trajectory diagnostics (trajectory_geometry/trajectory.json)."""
        return self._json(self.trajectory_geometry_dir / "trajectory.json")

    def metrics(self, group: str | None = None) -> list[dict]:
        """Rows of metrics.jsonl, optionally of one group ('train', 'eval', 'tracking', ...)."""
        if not self.metrics_file.is_file():
            return []
        rows = []
        for number, line in enumerate(read_text(self.metrics_file, "re-run it with FORCE=1").splitlines(), 1):
            if line.strip():
                row = _parse(line, self.metrics_file, f"line {number}", "re-run it with FORCE=1")
                if not isinstance(row, dict):
                    raise AdaptersGeoError(f"{self.metrics_file} line {number} is not a metrics row", "re-run it with FORCE=1")
                rows.append(row)
        return [r for r in rows if group is None or r.get("group") == group]

    def evals(self) -> list[dict]:
        """The held-out evaluations, in step order."""
        return self.metrics("eval")

    def prompt_evals(self) -> dict:
        """{step: {"outcome": [per prompt], "outcome_kind", "greedy_reward"?: [...]}} from evals/."""
        found = {}
        for path in sorted(self.evals_dir.glob("step_*.json")):
            found[int(path.stem.split("_")[1])] = json.loads(path.read_text())
        return found

    @property
    def t0(self) -> int | None:
        """The run's early step (the locking t0), as recorded in config.json when it was resolved.

        Runs written before t0 was recorded: the first saved adapter step, else None.
        """
        recorded = ((self.config_dict() or {}).get("train") or {}).get("t0")
        if recorded is not None:
            return int(recorded)
        saved = self.saved_adapter_steps()
        return saved[0] if saved else None

    # ---- writes
    def write_json(self, path: Path, data) -> None:
        atomic_write_text(path, json.dumps(data, indent=1))
