"""The subspace-locking continuation on tiny-llama: bases, offsets, and the continued run."""

import json

import pytest
import torch

from adapters_geo import AdaptersGeoError
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.config import run_config_from_dict
from adapters_geo.continuation import continuation_config, locked_config
from adapters_geo.runner import run_training

K = 4


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 200, "test_size": 8},
        "method": {"name": "sft", "max_new_tokens": 10},
        "train": {"steps": 10, "batch_size": 8, "lr": 3e-3, "save_adapter_at": [2], "track_steps": [2, 5, 10]},
    })
    run_training(config, out, progress=False)
    return out


@pytest.mark.parametrize("basis", ["early", "random", "final"])
def test_continuation_stays_in_the_locked_subspace(source_run, tmp_path, basis):
    config = continuation_config(source_run, basis, K)
    assert config.train.first_step == 2 and config.adapter.extra["basis"] == basis
    summary = run_training(config, tmp_path / basis, progress=False)
    assert summary["steps"] == 10
    at_t0 = dict(load_saved_deltas(source_run / "adapter_step_2")[1])
    final = dict(load_saved_deltas(tmp_path / basis / "adapter")[1])
    for name, v in config.adapter.right.items():
        moved = (final[name] - at_t0[name]).double()
        assert moved.norm() > 0
        assert (moved - moved @ v.double() @ v.double().T).norm() < 1e-4 * moved.norm()
    saved = json.loads((tmp_path / basis / "config.json").read_text())
    assert saved["adapter"] == {"kind": "locked", "source": str(source_run), "basis": basis, "K": K, "t0": 2}
    rows = [json.loads(l) for l in open(tmp_path / basis / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["group"] == "train"] == list(range(3, 11))


def test_early_basis_is_the_top_of_the_early_update(source_run):
    config, t0 = locked_config(source_run, "early", K)
    early = dict(load_saved_deltas(source_run / f"adapter_step_{t0}")[1])
    for name, delta in early.items():
        v = config.right[name].double()
        captured = (delta.double() @ v).norm() ** 2 / delta.double().norm() ** 2
        s = torch.linalg.svdvals(delta.double())
        assert captured == pytest.approx(((s[:K] ** 2).sum() / (s**2).sum()).item(), rel=1e-6)
        torch.testing.assert_close(config.offset[name], delta)


def test_a_run_without_an_early_adapter_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AdaptersGeoError, match="saved no adapter at an early step"):
        locked_config(tmp_path)


def test_frozen_arm_evaluates_the_adapter_at_t0(source_run):
    from adapters_geo.experiments.lock import frozen_eval

    metrics = frozen_eval(source_run)
    assert metrics["examples"] == 8 and 0.0 <= metrics["accuracy"] <= 1.0
