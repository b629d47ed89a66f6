"""Overlap of two updates (geometry/overlap.py) on closed-form cases, and `adapters-geo overlap` on two tiny runs."""

import json
import math

import pytest
import torch

from adapters_geo.cli import main
from adapters_geo.geometry.overlap import matrix_overlap, random_level, update_cosine
from tests.geometry.test_metrics import orthonormal


def factored(u, s, v):
    return u @ torch.diag(s) @ v.T


def test_cosine_closed_forms():
    a = torch.randn(12, 9, generator=torch.Generator().manual_seed(0))
    assert update_cosine(a, 3 * a) == pytest.approx(1.0, abs=1e-12)
    assert update_cosine(a, -a) == pytest.approx(-1.0, abs=1e-12)
    b = torch.zeros_like(a)
    b[0, 0] = 1.0
    c = torch.zeros_like(a)
    c[1, 0] = 2.0
    assert update_cosine(b, c) == 0.0 and math.isnan(update_cosine(a, torch.zeros_like(a)))
    assert update_cosine(b + c, c) == pytest.approx(2 / math.sqrt(5), abs=1e-12)  # ⟨b + c, c⟩ = 4, norms √5 and 2


def test_subspace_overlap_is_one_for_a_shared_input_subspace_and_zero_for_orthogonal_ones():
    u, v = orthonormal(30, 8, seed=1), orthonormal(20, 8, seed=2)
    s = torch.tensor([8.0, 7, 6, 5, 4, 3, 2, 1], dtype=torch.float64)
    a = factored(u[:, :4], s[:4], v[:, :4])
    same_inputs = factored(u[:, 4:], s[4:], v[:, :4])  # other outputs, the same input directions: cosine 0, Sim_4 1
    row = matrix_overlap(a, same_inputs, k=4)
    assert row["cosine"] == pytest.approx(0.0, abs=1e-10) and row["sim_right"] == pytest.approx(1.0, abs=1e-10)
    other = factored(u[:, :4], s[:4], v[:, 4:])
    assert matrix_overlap(a, other, k=4)["sim_right"] == pytest.approx(0.0, abs=1e-10)
    half = factored(u[:, :4], s[:4], torch.cat([v[:, :2], v[:, 4:6]], 1))  # shares two of the four input directions
    assert matrix_overlap(a, half, k=4)["sim_right"] == pytest.approx(0.5, abs=1e-10)
    assert row["sim_random"] == random_level((30, 20), 4) == 4 / 20
    assert matrix_overlap(a, 2 * a, k=4)["norm_ratio"] == pytest.approx(0.5)


def test_overlap_command_on_two_tiny_runs(tmp_path, capsys):
    runs = {}
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        assert main(["train", "examples/tiny_sft.yaml", "--out", str(out), "--no-analysis",
                     "--set", "train.steps=4", "--set", f"train.seed={seed}"]) == 0
        runs[seed] = out
    capsys.readouterr()
    assert main(["overlap", str(runs[0]), str(runs[0]), "--K", "4"]) == 0
    table = capsys.readouterr().out
    assert "| overall | 1.0000 | 1.0000 |" in table  # a run against itself
    out = tmp_path / "overlap.json"
    assert main(["overlap", str(runs[0]), str(runs[1]), "--K", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["matrices"]) == 14 and set(result["by_type"]) == {"q", "k", "v", "o", "gate", "up", "down"}
    cosines = [row["cosine"] for row in result["matrices"].values()]
    assert all(-1 < c < 1 for c in cosines) and max(cosines) < 0.9999  # another seed: another update
    assert result["meta"]["K"] == 4 and result["overall"]["sim_random"]["mean"] > 0
