"""Where metrics go: console progress bar, metrics.jsonl, TensorBoard — behind one small Protocol.

`Loggers` fans out to all of them, so the training loop never branches on what is enabled.
A resumed run drops what was logged after its checkpoint: metrics.jsonl is cut back (`keep`), and
TensorBoard purges its events from `purge_step` on, so no step appears twice.
"""

import json
import time
from pathlib import Path
from typing import Callable, Protocol

import torch
from tqdm import tqdm

from adapters_geo.storage.atomic import atomic_write_text
from adapters_geo.errors import AdaptersGeoError


class Logger(Protocol):
    def scalars(self, step: int, values: dict, prefix: str = "") -> None: ...
    def histogram(self, step: int, name: str, values) -> None: ...
    def close(self) -> None: ...


class JsonlLogger:
    def __init__(self, path: Path, keep: Callable[[dict], bool] | None = None):
        """Append to `path`; with `keep`, first rewrite it (atomically) with only the rows `keep(row)` accepts."""
        path = Path(path)
        if keep is not None and path.is_file():
            rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            parsed = [(line, _parsed(line)) for line in rows]  # None: a row cut short by a kill, dropped
            for number, (_, row) in enumerate(parsed, 1):  # a row without its step or group is damage
                if row is not None and not (isinstance(row.get("step"), int) and isinstance(row.get("group"), str)):
                    raise AdaptersGeoError(f"{path} row {number} has no step or group (edited or damaged)",
                                           "train into a new --out, or re-run the experiment with FORCE=1")
            kept = [line for line, row in parsed if row is not None and keep(row)]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.handle = open(path, "a", encoding="utf-8")

    def scalars(self, step, values, prefix=""):
        self.handle.write(json.dumps({"step": step, "group": prefix or "train", **values}) + "\n")
        self.handle.flush()

    def histogram(self, step, name, values):
        pass

    def close(self):
        self.handle.close()


def _parsed(line: str) -> dict | None:
    """The row of a line; None for a line cut short by a kill mid-write."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


class TensorBoardLogger:
    def __init__(self, folder: Path, purge_step: int | None = None):
        """Events into `folder`; `purge_step`: hide earlier events at steps ≥ it (a resumed run's replayed steps)."""
        from torch.utils.tensorboard import SummaryWriter

        after_existing_events(Path(folder))
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def scalars(self, step, values, prefix=""):
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix or 'train'}/{key}", value, step)

    def histogram(self, step, name, values):
        values = torch.as_tensor(values, dtype=torch.float64).flatten()
        # TensorBoard's default buckets end at ±1e20 and it refuses a histogram with nothing inside them:
        # a diverging run's spectra (inf, or 1e30 after one step at lr 1e30) are left out, the scalars still show them
        values = values[torch.isfinite(values) & (values.abs() < 1e20)]
        if values.numel():
            self.writer.add_histogram(name, values, step)

    def close(self):
        self.writer.close()


def after_existing_events(folder: Path) -> None:
    """Wait (at most a second) until a new events file in `folder` sorts after every one there.

    TensorBoard reads a folder's files in name order, `events.out.tfevents.<whole seconds>.<host>.<pid>...`:
    within one second the host and then the pid decide, and a resume whose pid sorts lower would be read
    before the events it purges. From the next whole second on, the new file is last. (A stamp in the future,
    from a clock set back, is not waited for beyond the second.)
    """
    stamps = [int(parts[3]) for parts in (f.name.split(".") for f in folder.glob("events.out.tfevents.*"))
              if len(parts) > 3 and parts[3].isdigit()]
    deadline = time.monotonic() + 1.1
    while stamps and int(time.time()) <= max(stamps) and time.monotonic() < deadline:
        time.sleep(max(max(stamps) + 1 - time.time(), 0.005))  # sleep's clock is not time.time's: check again


class ConsoleLogger:
    """A progress bar with ETA; the latest train metrics as its postfix, evaluations printed."""

    KEYS = ("loss", "reward", "teacher_gap", "accuracy")

    def __init__(self, total: int, initial: int, desc: str):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def scalars(self, step, values, prefix=""):
        if prefix == "eval":
            parts = [f"{values['outcome_kind']} {values['outcome']:.4g}"] if "outcome" in values else []
            parts += [f"accuracy {values['accuracy']:.3f}"] if "accuracy" in values else []
            self.bar.write(f"step {step}: held-out " + ", ".join(parts))
        elif not prefix:
            self.bar.n = step
            self.bar.set_postfix({k: f"{values[k]:.4g}" for k in self.KEYS if k in values}, refresh=True)

    def histogram(self, step, name, values):
        pass

    def close(self):
        self.bar.close()


class Loggers:
    def __init__(self, loggers: list):
        self.loggers = loggers

    def scalars(self, step, values, prefix=""):
        for logger in self.loggers:
            logger.scalars(step, values, prefix)

    def histogram(self, step, name, values):
        for logger in self.loggers:
            logger.histogram(step, name, values)

    def close(self):
        for logger in self.loggers:
            logger.close()
