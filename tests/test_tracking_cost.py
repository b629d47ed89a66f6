"""Tracking logs its own cost; the loop reads base weights lazily instead of holding a copy.

Run: python -m pytest -q tests/test_tracking_cost.py
"""

import json

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.geometry.linalg import svdvals64
from adapters_geo.trajectory import read_step_spectra
from adapters_geo.methods import Context, MethodConfig, build_method
from adapters_geo.runner import train_into
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
