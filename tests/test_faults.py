"""Nothing silently damages a run folder: refused runs write nothing, one writer at a time, checkpoints hold
tensors only and are never lost to a killed write, a diverged run stops at once, identical runs are identical,
the hub cannot hang, places that cannot be written are one line.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_faults.py   (tiny-llama, seconds each)
"""

import json
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from adapters_geo import atomic, runner
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.cli import main
from adapters_geo.config import run_config_from_dict
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.methods.sft import SFT
from adapters_geo.runfolder import RunFolder
from adapters_geo.training import checkpoint

RUN = {"model": "tiny-llama", "method": {"name": "sft", "max_new_tokens": 4},
       "task": {"levels": [0], "train_size": 20, "test_size": 2},
       "train": {"steps": 3, "batch_size": 2, "track_steps": [], "checkpoint_every": 1, "lr": 1e-3}}
DEAD_PID = 4194305  # above any Linux pid_max (2**22): no such process


def run_file(folder: Path, name: str = "run.yaml", **train) -> str:
    path = folder / name
    path.write_text(yaml.safe_dump({**RUN, "train": {**RUN["train"], **train}}))
    return str(path)


def train(config: str, out: Path, *flags) -> int:
    return main(["train", config, "--out", str(out), "--no-analysis", *flags])


def snapshot(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("adapters-geo: error:")]
    assert len(lines) == 1, err
    return lines[0]


def interrupt_at(monkeypatch, step: int, exc=KeyboardInterrupt):
    """SFT's loss raises `exc` at (0-based) batch step `step`, like a Ctrl-C in the middle of that step."""
    original = SFT.loss

    def loss(self, model, batch):
        if batch.step == step:
            raise exc
        return original(self, model, batch)

    monkeypatch.setattr(SFT, "loss", loss)
    return lambda: monkeypatch.setattr(SFT, "loss", original)


def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the folder was checked")

    monkeypatch.setattr(runner, "load_base", refuse)


def deltas(folder: Path) -> dict:
    return dict(load_saved_deltas(folder / "adapter")[1])


def train_rows(folder: Path) -> list[dict]:
    return RunFolder(folder).metrics("train")


def _locked_source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    config = run_config_from_dict({**RUN, "train": {**RUN["train"], "steps": 2, "t0": 1, "save_t0_state": True}})
    runner.run(config, source, progress=False, analyse=False)
    return source


# ---- 0. an atomic folder survives a kill at any point of its write


def test_recover_removes_unfinished_writes_and_restores_a_replaced_folder(tmp_path):
    target = tmp_path / "checkpoint"
    (tmp_path / ".checkpoint.tmp-abc").mkdir()
    (tmp_path / ".checkpoint.old-1").mkdir()
    (tmp_path / ".checkpoint.old-1" / "state.pt").write_text("previous")
    assert len(atomic.recover(target)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"] and (target / "state.pt").read_text() == "previous"
    (tmp_path / ".checkpoint.old-2").mkdir()  # the swap completed, the deletion did not
    assert atomic.recover(target) == ["removed .checkpoint.old-2, a replaced version of checkpoint"]
    assert atomic.recover(target) == [] and (target / "state.pt").read_text() == "previous"
