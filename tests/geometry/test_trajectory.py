"""Trajectory diagnostics on synthetic trajectories with known answers."""

import pytest
import torch

from adapters_geo.geometry.trajectory import (
    early_energy_capture,
    endpoint_along,
    future_capture,
    locking_step,
    matrix_trajectory,
    model_trajectory,
    subspace_similarity,
)
from tests.geometry.test_metrics import orthonormal


def test_subspace_similarity_extremes():
    v = orthonormal(40, 4)
    assert abs(subspace_similarity(v, v) - 1) < 1e-12
    assert abs(subspace_similarity(v[:, :2], torch.cat([v[:, 2:], v[:, 2:]], 1)[:, :2])) < 1e-12


def test_locking_step_is_first_step_after_which_it_stays_high():
    assert locking_step([1, 2, 3, 4, 5], [0.95, 0.5, 0.92, 0.97, 1.0]) == 3
    assert locking_step([1, 2, 3], [0.2, 0.95, 0.3]) is None
    assert locking_step([1, 2, 3], [0.2, 0.5, 1.0]) is None  # Sim(T, T) = 1 is not locking


def test_future_capture_counts_only_the_update_still_to_come():
    """ΔW_T = ΔW_t + R: the capture of R by ΔW_t's top-K subspace, not of ΔW_T (which holds ΔW_t itself)."""
    m, n, k = 30, 50, 3
    v = orthonormal(n, 2 * k, seed=7)
    u = orthonormal(m, k, seed=8)
    early = u @ v[:, :k].T * 5
    inside, outside = u @ v[:, :k].T, u @ v[:, k:].T
    assert abs(future_capture(early, early + inside, k)[0] - 1) < 1e-9
    assert future_capture(early, early + outside, k)[0] < 1e-9
    share, baseline = future_capture(early, early + inside + outside, k)
    assert abs(share - 0.5) < 1e-9 and baseline == k / n
    assert early_energy_capture(early, early + outside, k) > 0.9  # the old measure counts ΔW_t itself


def test_synthetic_trajectory_locks_at_the_known_step():
    """Before step 40 the update lives in a random subspace; from 40 on in the final one."""
    m, n, k = 48, 64, 4
    final_v = orthonormal(n, k, seed=1)
    left = orthonormal(m, k, seed=2)
    scales = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    deltas = {}
    for step in (10, 20, 30, 40, 50, 60, 70, 80):
        if step < 40:
            deltas[step] = left @ scales @ orthonormal(n, k, seed=100 + step).T
        else:
            noise = 1e-3 * torch.randn(m, n, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
            deltas[step] = (step / 80) * left @ scales @ final_v.T + noise
    out = matrix_trajectory(deltas, k)
    assert out["locking_step"] == 40
    sims = {row["step"]: row["sim_right"] for row in out["steps"]}
    assert sims[10] < 0.5 and sims[80] > 0.999
    assert all(abs(row["stable_rank"] - 30 / 16) < 0.05 for row in out["steps"][3:])
    assert early_energy_capture(deltas[40], deltas[80], k) > 0.99
    assert early_energy_capture(deltas[10], deltas[80], k) < 0.5


def test_model_trajectory_summarises_attention_and_mlp():
    m, n, k = 32, 48, 4
    v_final = orthonormal(n, k, seed=5)
    u = orthonormal(m, k, seed=6)
    snapshots = {}
    for step in (1, 2, 3, 4):
        locked = u @ v_final.T * step  # attention: in the final subspace from the start
        drifting = u @ (orthonormal(n, k, seed=50 + step) if step < 4 else v_final).T
        snapshots[step] = {
            "model.layers.0.self_attn.q_proj.weight": locked,
            "model.layers.0.mlp.up_proj.weight": drifting,
        }
    out = model_trajectory(snapshots, k, early_step=1)
    assert out["summary"]["attention"]["locking_step"] == 1
    assert out["summary"]["mlp"]["locking_step"] is None  # only T itself qualifies: not reached before T
    assert abs(out["summary"]["attention"]["early_energy_capture"] - 1) < 1e-9
    assert out["summary"]["mlp"]["early_energy_capture"] < 0.5
    assert [row["step"] for row in out["summary"]["all"]["steps"]] == [1, 2, 3, 4]


def test_endpoint_metrics_along_the_way_closed_form():
    """ΔW = c·u₁v₁ᵀ (W0's own top direction): no rotation, all energy principal, ‖ΔW‖/‖W0‖ = c/‖S‖."""
    m, n = 40, 32
    u, v = orthonormal(m, n, seed=11), orthonormal(n, n, seed=12)
    s = torch.linspace(10, 1, n, dtype=torch.float64)
    w0 = u @ torch.diag(s) @ v.T
    delta = 0.5 * u[:, :1] @ v[:, :1].T
    out = endpoint_along(w0, u, v, delta, k=4)
    assert out["rotation_right_max_deg"] < 1e-5 and abs(out["principal_energy"] - 1) < 1e-12
    assert abs(out["update_norm_rel"] - 0.5 / s.norm().item()) < 1e-12
    swap = 3.0 * u[:, :1] @ (v[:, 4:5] - v[:, :1]).T  # moves weight from the 1st right direction to the 5th
    assert endpoint_along(w0, u, v, swap, k=4)["rotation_right_max_deg"] > 1.0


def test_a_low_rank_update_is_compared_on_its_defined_directions_only():
    # past a rank-2 update's rank its singular vectors are an arbitrary completion (the same seeded one for every
    # step from the factors): comparing K = 16 columns would make two unrelated rank-2 updates look alike
    from adapters_geo.geometry.linalg import factored_svd64

    g = torch.Generator().manual_seed(5)
    factors = {t: (torch.randn(60, 2, generator=g, dtype=torch.float64), torch.randn(2, 40, generator=g, dtype=torch.float64))
               for t in (1, 2)}
    deltas = {t: left @ right for t, (left, right) in factors.items()}
    spectra, vectors = {}, {}
    for t, (left, right) in factors.items():
        u, s, v = factored_svd64(left, right, 16)
        spectra[t], vectors[t] = s, (u, v)
    found = matrix_trajectory(deltas, 16, spectra, vectors)
    direct = subspace_similarity(vectors[1][1][:, :2], vectors[2][1][:, :2])
    assert abs(found["steps"][0]["sim_right"] - direct) < 1e-12 and direct < 0.3  # unrelated: low, not inflated
    assert found["steps"][1]["sim_right"] == pytest.approx(1.0)
    assert found["steps"][0]["future_capture_random"] == pytest.approx(2 / 40)
