"""The subspace-locking arms on tiny-llama: one exact start, the same steps and batches, one difference.

Run: python -m pytest -q tests/test_locking.py
"""

import pytest
import torch

from adapters_geo import AdaptersGeoError
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.config.run import run_config_from_dict
from adapters_geo.locking.continuation import arm_config, basis, start_deltas
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.pipeline.runner import run_training

K = 4
T0 = 3


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 200, "test_size": 8},
        "method": {"name": "sft", "max_new_tokens": 10},
        "train": {"steps": 8, "batch_size": 8, "lr": 3e-3, "t0": T0, "save_t0_state": True, "track_steps": [3, 8]},
    })
    run_training(config, out, progress=False)
    return out


def deltas(folder) -> dict:
    return dict(load_saved_deltas(folder)[1])


def run_arm(source, tmp_path, arm, steps=None, **options):
    config = arm_config(source, arm, K, **options)
    if steps is not None:
        config = config.model_copy(update={"train": config.train.model_copy(update={"steps": steps})})
    folder = tmp_path / f"{arm}-{options.get('mode', 'projected')}-{steps}"
    run_training(config, folder, progress=False)
    return RunFolder(folder)


def test_unconstrained_arm_reproduces_the_source_run_exactly(source_run, tmp_path):
    """Same t0 state (weights, Adam moments, schedule, step), same batches: the same run, to the bit."""
    arm = run_arm(source_run, tmp_path, "unconstrained")
    source, again = deltas(RunFolder(source_run).adapter), deltas(arm.adapter)
    assert all(torch.equal(source[n], again[n]) for n in source)
    assert [r["step"] for r in arm.metrics("train")] == list(range(T0 + 1, 9))


def test_first_locked_step_is_the_unconstrained_step_projected(source_run, tmp_path):
    """From the same state and batch, the projected arm's first update is exactly U V Vᵀ of the unconstrained U."""
    at_t0 = deltas(RunFolder(source_run).t0_state / "adapter")
    free = deltas(run_arm(source_run, tmp_path, "unconstrained", steps=T0 + 1).adapter)
    locked = deltas(run_arm(source_run, tmp_path, "early", steps=T0 + 1).adapter)
    v = basis(str(source_run), "early", K)
    for name in at_t0:
        u = (free[name] - at_t0[name]).double()
        projected = u @ v[name].double() @ v[name].double().T
        assert u.norm() > 0
        torch.testing.assert_close((locked[name] - at_t0[name]).double(), projected, atol=1e-6 * u.abs().max().item(), rtol=1e-4)


@pytest.mark.parametrize("name", ["early", "random", "final", "principal"])
def test_locked_arms_never_leave_their_subspace(source_run, tmp_path, name):
    arm = run_arm(source_run, tmp_path, name)
    at_t0, final, v = deltas(RunFolder(source_run).t0_state / "adapter"), deltas(arm.adapter), basis(str(source_run), name, K)
    for matrix, delta in final.items():
        moved = (delta - at_t0[matrix]).double()
        assert moved.norm() > 0
        outside = moved - moved @ v[matrix].double() @ v[matrix].double().T
        assert outside.norm() < 1e-5 * moved.norm(), matrix
    # the final basis's definition is part of its identity (it changed: runs made before re-run, not reused)
    definition = {"final_of": "increment_after_t0"} if name == "final" else {}
    assert arm.config().to_dict()["adapter"] == arm.config_dict()["adapter"]  # config.json reads back (a resume compares them)
    assert arm.config_dict()["adapter"] == {"kind": "locked", "source": str(source_run), "basis": name, "K": K, "t0": T0,
                                            "seed": 0, "mode": "projected", **definition}


def test_gradient_mode_leaves_the_subspace_under_adam(source_run, tmp_path):
    """The published recipe projects the gradient, not the step: Adam's per-coordinate scaling leaves span(V)."""
    arm = run_arm(source_run, tmp_path, "early", mode="gradient")
    at_t0, final, v = deltas(RunFolder(source_run).t0_state / "adapter"), deltas(arm.adapter), basis(str(source_run), "early", K)
    shares = []
    for matrix, delta in final.items():
        moved = (delta - at_t0[matrix]).double()
        shares.append(((moved @ v[matrix].double()).norm() / moved.norm()).item())
    assert min(shares) < 0.99


def test_frozen_arm_keeps_the_t0_state_and_is_evaluated_once_at_t0(source_run, tmp_path):
    arm = run_arm(source_run, tmp_path, "frozen")
    assert not arm.adapter.exists()  # nothing trained: its adapter is the source's t0 adapter, not copied
    assert arm.summary()["adapter"] == str(RunFolder(source_run).t0_state / "adapter") and arm.summary()["steps"] == T0
    evals = arm.evals()
    assert [e["step"] for e in evals] == [T0] and "accuracy" in evals[0] and arm.metrics("train") == []


def test_early_basis_is_the_top_of_the_run_s_own_early_update(source_run):
    at_t0, start = start_deltas(source_run)
    v = basis(str(source_run), "early", K)
    for name, delta in at_t0.items():
        own = (delta - start[name]).double()
        captured = (own @ v[name].double()).norm() ** 2 / own.norm() ** 2
        s = torch.linalg.svdvals(own)
        assert captured.item() == pytest.approx(((s[:K] ** 2).sum() / (s**2).sum()).item(), rel=1e-6)


def test_a_source_without_a_t0_state_is_refused_with_the_fix(tmp_path):
    (tmp_path / "config.json").write_text('{"train": {"t0": 2}}')
    with pytest.raises(AdaptersGeoError, match="kept no training state at t0") as err:
        arm_config(tmp_path, "early", K)
    assert "FORCE=1" in str(err.value)


def test_a_locked_arm_refers_to_the_source_s_t0_adapter_instead_of_copying_it(source_run, tmp_path):
    import json
    import shutil

    from safetensors import safe_open

    arm = run_arm(source_run, tmp_path, "early", steps=T0 + 1)
    with safe_open(str(arm.adapter / "adapter.safetensors"), "pt") as handle:
        assert not any(key.endswith(":offset") for key in handle.keys())
    meta = json.loads((arm.adapter / "adapter.json").read_text())
    assert meta["config"]["offset_from"]["folder"] == str((RunFolder(source_run).t0_state / "adapter").resolve())
    at_t0, moved = deltas(RunFolder(source_run).t0_state / "adapter"), deltas(arm.adapter)
    assert all((moved[n] - at_t0[n]).abs().max() < 1 for n in at_t0)  # offset applied on reading
    copy = tmp_path / "moved_source"
    shutil.copytree(source_run, copy)
    shutil.rmtree(RunFolder(source_run).t0_state / "adapter")
    try:
        with pytest.raises(AdaptersGeoError, match="takes its offset ΔW_t0 from .* which is missing"):
            deltas(arm.adapter)
    finally:
        shutil.copytree(copy / "t0_state" / "adapter", RunFolder(source_run).t0_state / "adapter")


def top_share(matrix: torch.Tensor, v: torch.Tensor) -> tuple[float, float]:
    """(share of ‖matrix‖² inside span(v), the best any K-dimensional right subspace can hold)."""
    matrix = matrix.double()
    s = torch.linalg.svdvals(matrix)
    return ((matrix @ v.double()).norm() ** 2 / matrix.norm() ** 2).item(), ((s[:K] ** 2).sum() / (s**2).sum()).item()


def test_final_basis_is_the_top_of_the_increment_after_t0(source_run):
    """docs/geometry.md: the final arm locks into the unconstrained continuation's own movement ΔW_T − ΔW_t0
    (not ΔW_T − ΔW_init)."""
    at_t0, _ = start_deltas(source_run)
    final = deltas(RunFolder(source_run).adapter)
    v = basis(str(source_run), "final", K)
    for name in at_t0:
        captured, best = top_share(final[name] - at_t0[name], v[name])
        assert captured == pytest.approx(best, rel=1e-6)


def test_principal_basis_is_the_top_of_the_weights_the_run_started_from(source_run):
    from adapters_geo import base_weights, load_base

    w0 = base_weights(load_base("tiny-llama").model)  # the source started from the base (no init adapter)
    v = basis(str(source_run), "principal", K)
    for name, vectors in v.items():
        captured, best = top_share(w0[name], vectors)
        assert captured == pytest.approx(best, rel=1e-6) and vectors.shape == (w0[name].shape[1], K)


def test_cross_basis_is_the_other_run_s_early_basis(source_run, tmp_path):
    other = tmp_path / "other"
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 200, "test_size": 8},
        "method": {"name": "sft", "max_new_tokens": 10},
        "train": {"steps": 5, "batch_size": 8, "lr": 3e-3, "seed": 1, "t0": T0, "save_t0_state": True, "track_steps": [3, 5]},
    })
    run_training(config, other, progress=False)
    cross, theirs = basis(str(source_run), "cross", K, other=str(other)), basis(str(other), "early", K)
    assert all(torch.equal(cross[n], theirs[n]) for n in theirs)
    assert not all(torch.allclose(cross[n], basis(str(source_run), "early", K)[n]) for n in theirs)
    spec = arm_config(source_run, "cross", K, other=str(other)).adapter
    assert spec.basis == "cross" and spec.basis_source == str(other)
    with pytest.raises(AdaptersGeoError, match="the cross basis needs another run's early update"):
        arm_config(source_run, "cross", K)


def test_a_cross_arm_without_its_run_and_unordered_margins_are_one_line_each():
    from adapters_geo.experiments.schema import Experiment
    from adapters_geo.config.schema import validated

    lock = {"kind": "lock", "source": "experiment:opd_dense"}
    assert validated(Experiment, {**lock, "bases": ["early", "cross"], "cross": "experiment:sft_dense"}, "x.yaml").cross
    with pytest.raises(AdaptersGeoError, match="bases hold cross but cross names no run"):
        validated(Experiment, {**lock, "bases": ["early", "cross"]}, "x.yaml")
    with pytest.raises(AdaptersGeoError, match="cross = experiment:sft_dense is set but bases hold no cross arm"):
        validated(Experiment, {**lock, "bases": ["early"], "cross": "experiment:sft_dense"}, "x.yaml")
    with pytest.raises(AdaptersGeoError, match="degrades = 0.9 is not below preserves = 0.85"):
        validated(Experiment, {**lock, "preserves": 0.85, "degrades": 0.9}, "x.yaml")
