"""Tracking logs its own cost; the loop reads base weights lazily instead of holding a copy.

Run: python -m pytest -q tests/test_tracking_cost.py
"""

import json

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.geometry.linalg import svdvals64
from adapters_geo.storage.snapshots import read_step_spectra
from adapters_geo.methods import Context, MethodConfig, build_method
from adapters_geo.pipeline.runner import train_into
from adapters_geo.training.config import TrainConfig
from adapters_geo.models import base_weights
from adapters_geo.models.weights import LazyBaseWeights
from adapters_geo.tasks import TaskConfig, load_task


@pytest.mark.parametrize("background", [False, True])
def test_every_tracked_step_logs_its_cost(tmp_path, background):
    # in the background (track_background) too: every tracked step is measured, written and logged by the end
    base = load_base("tiny-llama")
    model = attach_adapter(base.model, DenseConfig())
    task = load_task(TaskConfig(levels=[0], train_size=50, test_size=2))
    method = build_method(Context(model, base.tokenizer, task, MethodConfig(name="sft")))
    config = TrainConfig(steps=5, batch_size=4, lr=1e-3, track_steps=[1, 3, 5], track_background=background, checkpoint_every=2)
    train_into(tmp_path, model, base.tokenizer, method, task, config, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    tracking = [r for r in rows if r["group"] == "tracking"]
    index = json.loads((tmp_path / "trajectory" / "index.json").read_text())
    assert sorted(r["step"] for r in tracking) == sorted(int(s) for s in index) == [1, 3, 5]
    assert all(r["snapshot_seconds"] > 0 and r["geometry_seconds"] >= 0 and r["along_seconds"] >= 0 for r in tracking)
    assert all(("background_seconds" in r) == background for r in tracking)
    geometry = {r["step"] for r in rows if r["group"] == "geometry/overall"}
    assert geometry == {1, 3, 5}
    assert {r["format"] for r in tracking} == {"factors", "bf16", "adapter"}  # the final step refers to adapter/
    # the endpoint analysis reuses the final step's stored spectra: they are those of the endpoint's ΔW
    known = read_step_spectra(tmp_path / "trajectory", 5)
    final = dict(load_saved_deltas(tmp_path / "adapter")[1])  # the run started from zero
    assert set(known) == set(final)
    for name, delta in final.items():
        torch.testing.assert_close(known[name].double(), svdvals64(delta), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_lazy_base_weights_equal_base_weights(quant):
    model = attach_adapter(load_base("tiny-llama", quant).model, LoraConfig(r=2))
    eager = base_weights(model)
    offsets = {name: torch.full_like(w, 0.5) for name, w in list(eager.items())[:2]}
    lazy = LazyBaseWeights(model, list(eager), offsets)
    assert list(lazy) == list(eager) and len(lazy) == len(eager)
    for name, weight in eager.items():
        torch.testing.assert_close(lazy[name], weight + offsets[name] if name in offsets else weight)


def test_a_run_tracked_in_the_background_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    # interrupted while tracked step 3 is in flight (after the checkpoint at step 2): the resumed run measures
    # step 3 again and logs every tracked step once, with the uninterrupted run's adapter and geometry
    from adapters_geo.adapters.io import load_saved_deltas
    from adapters_geo.config.run import run_config_from_dict
    from adapters_geo.methods.sft import SFT
    from adapters_geo.pipeline.runner import run_training
    from tests.conftest import interrupted_at

    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 60, "test_size": 2}, "method": {"name": "sft"},
        "train": {"steps": 5, "batch_size": 3, "lr": 1e-3, "checkpoint_every": 2, "track_steps": [1, 2, 3, 4, 5],
                  "track_background": True},
    })
    run_training(config, tmp_path / "whole", progress=False)
    with interrupted_at(monkeypatch, SFT, 3):  # step 4's loss: tracked step 3 was just handed to the worker
        run_training(config, tmp_path / "cut", progress=False)
    run_training(config, tmp_path / "cut", resume=True, progress=False)

    def geometry(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in rows if r["group"] == "tracking"]
        return steps, {r["step"]: r for r in rows if r["group"] == "geometry/overall"}

    whole, cut = geometry(tmp_path / "whole"), geometry(tmp_path / "cut")
    assert whole[0] == cut[0] == [1, 2, 3, 4, 5]  # each tracked step logged once, none lost to the interruption
    for step, row in whole[1].items():
        assert row.keys() == cut[1][step].keys()
        for key, value in row.items():  # numbers to rounding, everything else (group, names) exactly
            number = isinstance(value, float) and not isinstance(value, bool)
            assert value == (pytest.approx(cut[1][step][key], rel=1e-6, abs=1e-9) if number else cut[1][step][key]), key
    deltas = [dict(load_saved_deltas(tmp_path / name / "adapter")[1]) for name in ("whole", "cut")]
    assert all(torch.equal(deltas[0][n], deltas[1][n]) for n in deltas[0])
