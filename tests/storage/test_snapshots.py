"""Trajectory storage: bounded formats, exact round trips where stored in full, exact spectra everywhere."""

import json

import pytest
import torch

from adapters_geo.geometry.spectrum import effective_rank, stable_rank
from adapters_geo.pipeline.analysis import run_trajectory
from adapters_geo.storage.snapshots import INDEX, TrajectoryWriter, default_steps, read_spectra, read_trajectory

NAME = "model.layers.0.self_attn.q_proj.weight"


def write_run(tmp_path, rank=4):
    """Full-rank ΔW_t = t·A + t²·B at steps 1..10, stored with top-`rank` factors where not in full."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(24, 40, generator=g), torch.randn(24, 40, generator=g)
    writer = TrajectoryWriter(tmp_path / "trajectory", 10, steps=list(range(1, 11)), rank=rank)
    truth = {}
    for step in range(1, 11):
        truth[step] = step * a + step**2 * 0.1 * b
        writer.save(step, {NAME: truth[step]})
    return writer, truth


def test_default_steps_are_dense_early_and_end_at_total():
    assert default_steps(100) == [2, 5, 10, 15, 20, 30, 45, 60, 80, 100]
    assert default_steps(20) == [1, 3, 9, 20]  # fewer points for a short run, still denser early
    assert default_steps(3) == [1, 3]


def test_formats_round_trip_and_spectra_are_exact(tmp_path):
    writer, truth = write_run(tmp_path)
    index = json.loads((tmp_path / "trajectory" / INDEX).read_text())
    assert index["10"]["format"] == "fp32" and index["2"]["format"] == "bf16" and index["5"]["format"] == "factors"
    snapshots, spectra = read_trajectory(tmp_path / "trajectory"), read_spectra(tmp_path / "trajectory")
    torch.testing.assert_close(snapshots[10][NAME], truth[10])
    torch.testing.assert_close(snapshots[2][NAME], truth[2], rtol=1e-2, atol=1e-2)  # bf16
    assert torch.linalg.matrix_rank(snapshots[5][NAME]) == 4  # only the top-4 factors are kept ...
    for step in range(1, 11):  # ... but every step's full spectrum is stored exactly
        torch.testing.assert_close(spectra[step][NAME], torch.linalg.svdvals(truth[step].double()).float())


def test_rank_dynamics_use_the_exact_spectrum_not_the_factors(tmp_path):
    _, truth = write_run(tmp_path)
    rows = {r["step"]: r for r in run_trajectory(tmp_path)["matrices"][NAME]["steps"]}
    exact = torch.linalg.svdvals(truth[5].double())
    assert abs(rows[5]["effective_rank"] - effective_rank(exact)) < 1e-4
    assert abs(rows[5]["stable_rank"] - stable_rank(exact)) < 1e-4
    assert abs(rows[5]["update_norm"] - truth[5].double().norm().item()) < 1e-3
    assert rows[5]["effective_rank"] > 4.5  # a top-4 reconstruction could never exceed 4


def test_older_trajectories_without_spectra_mark_factor_steps_unknown(tmp_path):
    write_run(tmp_path)
    path = tmp_path / "trajectory" / INDEX
    index = json.loads(path.read_text())
    for entry in index.values():
        entry.pop("spectrum")
    path.write_text(json.dumps(index))
    rows = {r["step"]: r for r in run_trajectory(tmp_path)["matrices"][NAME]["steps"]}
    assert rows[5]["effective_rank"] != rows[5]["effective_rank"]  # NaN: not knowable from top-4 factors
    assert rows[10]["effective_rank"] == rows[10]["effective_rank"] and rows[5]["sim_right"] > 0


def test_full_steps_keep_the_tracker_top_vectors_and_the_analysis_uses_them(tmp_path):
    # steps stored in full carry the top-K vectors computed while tracking; read back, they are those of ΔW_t,
    # and the trajectory analysis gives what it computes without them (it then decomposes the snapshots again)
    from adapters_geo.geometry.linalg import principal_angles, top_pair
    from adapters_geo.geometry.trajectory import model_trajectory
    from adapters_geo.storage.snapshots import read_parts

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(24, 40, generator=g), torch.randn(24, 40, generator=g)
    writer = TrajectoryWriter(tmp_path, 4, steps=[1, 2, 3, 4], rank=4, t0=2)
    truth = {t: t * a + t**2 * 0.3 * b for t in range(1, 5)}
    for t, delta in truth.items():
        writer.save(t, {NAME: delta}, k=3)
    snapshots, spectra, vectors = read_parts(tmp_path)
    assert set(vectors) == {1, 2, 3, 4} and all(list(found) == [NAME] for found in snapshots.values())  # no vector keys
    for t in (2, 4):  # bf16 (t0) and fp32 (final): stored vectors, exact for ΔW_t (not for its bf16 copy)
        u, v = top_pair(truth[t].double(), 3)
        assert principal_angles(vectors[t][NAME][1], v).max() < 1e-5 and principal_angles(vectors[t][NAME][0], u).max() < 1e-5
    with_vectors = model_trajectory(snapshots, 3, 2, spectra, vectors)
    without = model_trajectory(snapshots, 3, 2, spectra, {t: found for t, found in vectors.items() if t in (1, 3)})
    for got, want in zip(with_vectors["matrices"][NAME]["steps"], without["matrices"][NAME]["steps"]):
        assert abs(got["sim_right"] - want["sim_right"]) < 1e-2  # the recomputation sees t0's bf16 rounding


def test_a_truncated_snapshot_or_index_is_one_line_naming_the_file(tmp_path):
    from adapters_geo.errors import AdaptersGeoError
    from adapters_geo.storage.snapshots import read_step_spectra

    writer = TrajectoryWriter(tmp_path / "trajectory", 10, steps=[1, 2], rank=2)
    for step in (1, 2):
        writer.save(step, {"w": torch.randn(8, 6)})
    index = json.loads((tmp_path / "trajectory" / INDEX).read_text())
    snapshot = tmp_path / "trajectory" / index["2"]["file"]
    snapshot.write_bytes(snapshot.read_bytes()[:40])
    with pytest.raises(AdaptersGeoError, match=rf"trajectory snapshot {snapshot} cannot be read .*: truncated or changed — fix: re-run"):
        read_trajectory(tmp_path / "trajectory")
    with pytest.raises(AdaptersGeoError, match="cannot be read"):
        read_step_spectra(tmp_path / "trajectory", 2)
    (tmp_path / "trajectory" / INDEX).write_text('{"1": {"format": ')
    with pytest.raises(AdaptersGeoError, match=r"index.json is not valid JSON .*: truncated or edited — fix: re-run"):
        read_trajectory(tmp_path / "trajectory")


def test_a_snapshot_with_non_finite_values_is_refused_and_nothing_is_written(tmp_path):
    from adapters_geo.errors import AdaptersGeoError

    writer = TrajectoryWriter(tmp_path / "trajectory", 10, steps=[1, 2], rank=2)
    writer.save(1, {"w": torch.randn(8, 6)})
    before = sorted(p.name for p in (tmp_path / "trajectory").iterdir())
    with pytest.raises(AdaptersGeoError, match="snapshot of step 2: w:.* holds non-finite values — fix: the update diverged"):
        writer.write(2, {"w:us": torch.full((8, 2), float("inf")), "w:v": torch.randn(6, 2)})
    assert sorted(p.name for p in (tmp_path / "trajectory").iterdir()) == before
