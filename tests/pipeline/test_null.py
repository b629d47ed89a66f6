"""run_null on a trained tiny run: exact snapshots of the null's layers are kept, and a run without them is refused.

Run: python -m pytest -q tests/pipeline/test_null.py
"""

from pathlib import Path

import pytest
import torch

from adapters_geo import AdaptersGeoError
from adapters_geo.cli import main
from adapters_geo.experiments.claims import run_claims
from adapters_geo.pipeline.analysis import run_null
from adapters_geo.storage.snapshots import read_exact, read_index, read_parts

ROOT = Path(__file__).resolve().parents[2]


def _train(out: Path, *sets: str) -> Path:
    args = ["train", str(ROOT / "examples" / "tiny_sft.yaml"), "--out", str(out), "--no-analysis"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    return out


def test_the_null_reads_exact_snapshots_and_refuses_a_run_that_kept_only_factors(tmp_path):
    run = _train(tmp_path / "run", "train.track_rank=2")  # factors of rank 2: far from the exact ΔW_t
    index = read_index(run / "trajectory")
    factor_steps = [int(s) for s, e in index.items() if e["format"] == "factors"]
    assert factor_steps and min(factor_steps) < 4 < max(factor_steps)  # t0 = 4 between factor steps
    snapshots, _, _ = read_parts(run / "trajectory")
    name = next(iter(snapshots[max(snapshots)]))
    exact = read_exact(run / "trajectory", [name])
    step = factor_steps[-1]
    truncated = snapshots[step][name].double()
    rank = lambda m: torch.linalg.matrix_rank(m, rtol=1e-4)  # above fp32 and bf16 rounding
    assert rank(truncated) <= 2 < rank(exact[step][name])  # kept exact (bf16)
    found = run_null(run, k=4, draws=20, walks=3)
    assert found["step"] == 4 and found["matrices"] > 0 and found["shuffle"]["draws"] == 20

    bare = _train(tmp_path / "bare", "train.track_exact_layers=0")
    with pytest.raises(AdaptersGeoError, match="only as rank-32 factors"):
        run_null(bare)
    # in a claims experiment the refused run is named, and its seed left for the next run of it to measure
    spec = {"kind": "claims", "sources": ["experiment:a", "experiment:b"], "draws": 5, "walks": 2, "K": 4}
    done = run_claims(spec, [(0, "a", str(run)), (0, "b", str(bare)), (1, "a", str(run))], progress=False)
    assert set(done["seeds"]) == {"1"} and done["seeds"]["1"]["a"]["null"]["shuffle"]["draws"] == 5
    assert "only as rank-32 factors" in done["refused"]["0"]["b"]["refused"] and "null" in done["refused"]["0"]["a"]
