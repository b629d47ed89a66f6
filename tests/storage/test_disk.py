"""Disk: a finished run drops what only resuming needs, a disk that cannot hold a run refuses it, a disk that
fills mid-write keeps the last good checkpoint, and a dependant of a dropped t0 state says how to get it back.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/storage/test_disk.py
"""

import errno
import json
from pathlib import Path

import pytest
import torch

from adapters_geo.storage import disk
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.cli import main
from adapters_geo.locking.continuation import arm_config
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.training import checkpoint
from tests.test_faults import error_line, run_file, train


def test_a_finished_run_drops_its_checkpoint_and_keeps_its_t0_state(tmp_path):
    config = run_file(tmp_path, steps=4, t0=2, save_t0_state=True)
    assert train(config, tmp_path / "run") == 0
    run = RunFolder(tmp_path / "run")
    assert not run.checkpoint.exists() and run.done()["dropped"] == ["checkpoint"]
    assert (run.t0_state / "state.pt").is_file() and (run.t0_state / "adapter" / "adapter.json").is_file()
    assert arm_config(run, "early", 4).train.start_state == str(run.t0_state)  # a locking test can still start


def test_clean_checkpoints_and_a_dropped_t0_state(tmp_path, capsys):
    config = run_file(tmp_path, steps=4, t0=2, save_t0_state=True)
    assert train(config, tmp_path / "runs" / "a") == 0
    run = RunFolder(tmp_path / "runs" / "a")
    run.checkpoint.mkdir()  # as a run written before finished runs dropped their checkpoint
    (run.checkpoint / "state.pt").write_bytes(b"x" * 1000)
    done = {k: v for k, v in run.done().items() if k != "dropped"}
    run.write_json(run.done_file, done)
    assert main(["clean-checkpoints", "--runs", str(tmp_path / "runs")]) == 0
    assert "1 finished run(s) cleaned" in capsys.readouterr().out
    assert not run.checkpoint.exists() and run.done()["dropped"] == ["checkpoint"] and run.t0_state.exists()
    assert main(["clean-checkpoints", "--runs", str(tmp_path / "runs"), "--t0-states"]) == 0
    assert run.done()["dropped"] == ["checkpoint", "t0_state"] and not run.t0_state.exists()
    with pytest.raises(AdaptersGeoError, match="dropped its t0 state .* re-run that experiment with FORCE=1"):
        arm_config(run, "early", 4)


def test_a_run_the_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    class Usage:
        free = 100 * 2**10  # 100 KiB: less than tiny-llama's few MiB

    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage())
    out = tmp_path / "run"
    assert train(run_file(tmp_path, save_t0_state=True), out) == 2
    line = error_line(capsys)
    assert "not enough disk for the run" in line and "GiB are free" in line and "fix:" in line
    assert not out.exists() or not any(p.name != ".lock" for p in out.iterdir())
    assert disk.run_need(1_000_000, "adamw", True, True) == 4e6 * (1 + 2 * 3 + 3 + 1 + 0.5)


def test_a_disk_full_during_a_checkpoint_write_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    config = run_file(tmp_path, steps=3)
    assert train(config, tmp_path / "whole") == 0
    original, calls = torch.save, []

    def full_disk(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint finds the disk full mid-write
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    out = tmp_path / "cut"
    assert train(config, out) == 2
    assert "no space left on the device" in error_line(capsys)
    assert json.loads((out / "checkpoint" / "step.json").read_text())["step"] == 1  # the last good one, intact
    assert not [p for p in out.iterdir() if p.name.startswith(".checkpoint.")]
    monkeypatch.setattr(checkpoint.torch, "save", original)
    assert train(config, out, "--resume") == 0
    whole, cut = (dict(load_saved_deltas(tmp_path / d / "adapter")[1]) for d in ("whole", "cut"))
    assert all(torch.equal(whole[n], cut[n]) for n in whole)
