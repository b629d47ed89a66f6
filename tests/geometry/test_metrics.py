"""Endpoint diagnostics against cases whose answer is known in closed form."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from adapters_geo.geometry.aggregate import aggregate, module_type
from adapters_geo.geometry.linalg import decompose64, factored_svd64, principal_angles, svd64, svdvals64
from adapters_geo.storage.svd_cache import SVDCache
from adapters_geo.geometry.rotation import curve_ks, rotation_deg, rotation_stats
from adapters_geo.geometry.sparsity import (
    bf16_changed,
    low_magnitude_mask,
    mask_overlap,
    principal_mask,
    sparsity_abs,
    sparsity_bf16,
)
from adapters_geo.geometry.spectrum import (
    effective_rank,
    hill_alpha,
    principal_energy,
    rank_at,
    spectral_drift,
    stable_rank,
    update_norms,
)
from adapters_geo.geometry.suite import Settings, matrix_metrics


def orthonormal(n, k, seed=0):
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def low_rank(m, n, values, seed=0):
    """U diag(values) Vᵀ with random orthonormal U, V."""
    s = torch.tensor(values, dtype=torch.float64)
    return orthonormal(m, len(values), seed) @ torch.diag(s) @ orthonormal(n, len(values), seed + 1).T


def test_rank_metrics_of_known_rank_update():
    s = svdvals64(low_rank(40, 30, [3.0, 2.0, 1.0]))
    assert stable_rank(s) == pytest.approx(14 / 9)
    assert rank_at(s, 0.9) == 2  # 9/14 = 0.64 < 0.9 <= 13/14
    p = np.array([3, 2, 1]) / 6
    assert effective_rank(s) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    flat = svdvals64(low_rank(40, 30, [1.0] * 5))
    assert stable_rank(flat) == pytest.approx(5) and effective_rank(flat) == pytest.approx(5, rel=1e-6)
    assert rank_at(flat, 0.9) == 5 and rank_at(flat, 0.5) == 3


def test_hill_alpha_closed_form():
    s = torch.tensor([math.e**2] * 9 + [1.0] + [0.5] * 5, dtype=torch.float64)
    assert hill_alpha(s, q=10) == pytest.approx(0.5)  # mean log(σᵢ/σ_q) = 2
    assert math.isnan(hill_alpha(s[:5], q=10))


def test_principal_energy_inside_and_orthogonal():
    m, n, k = 24, 16, 3
    u, s, v = svd64(torch.randn(m, n, dtype=torch.float64))
    inside = u[:, :k] @ torch.randn(k, k, dtype=torch.float64) @ v[:, :k].T
    outside = u[:, k:] @ torch.randn(n - k, n - k, dtype=torch.float64) @ v[:, k:].T
    share, ratio = principal_energy(inside, u[:, :k], v[:, :k])
    assert share == pytest.approx(1.0) and ratio == pytest.approx(m * n / k**2)
    assert principal_energy(outside, u[:, :k], v[:, :k])[0] == pytest.approx(0.0, abs=1e-12)


def test_bf16_changed_takes_the_equality_shortcut_only_where_it_equals_the_relative_test():
    # below η = 2⁻⁹ the η-relative test is exact bf16 inequality (the fast path the tracker uses on every
    # matrix); checked against the written formula on neighbours, zeros of both signs, sign flips, subnormals
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(4000, generator=g) * torch.logspace(-40, 3, 4000)
    nudged = [w0 * (1 + torch.randn(4000, generator=g) * 2.0**-e) for e in (4, 8, 9, 10, 20)]
    specials = torch.tensor([0.0, -0.0, 1e-39, -1e-39, 2e-39, 1.0, -1.0, 1.00390625])
    for w1 in nudged + [-w0, torch.zeros(4000)]:
        for eta in (1e-3, 2.0**-9.5, 1e-6):
            a, b = w0.bfloat16().float(), w1.bfloat16().float()
            formula = (b - a).abs() > eta * torch.maximum(a.abs(), b.abs())
            assert torch.equal(bf16_changed(w0, w1, eta), formula)
    pairs = torch.cartesian_prod(specials, specials)
    a, b = pairs[:, 0].bfloat16().float(), pairs[:, 1].bfloat16().float()
    assert torch.equal(bf16_changed(pairs[:, 0], pairs[:, 1]), (b - a).abs() > 1e-3 * torch.maximum(a.abs(), b.abs()))
    assert bf16_changed(w0, w0, 0.01).sum() == 0 and bf16_changed(w0, -w0, 0.01).sum() == (w0.bfloat16() != 0).sum()


def test_bf16_sparsity_and_masks_with_known_overlap():
    w0 = torch.linspace(1, 2, 100).reshape(10, 10)
    assert sparsity_bf16(w0, w0 + 1e-6) == 1.0  # below bf16 resolution
    changed_idx = torch.tensor([0, 1, 2, 3, 50, 51, 52, 53])  # 4 in the low half, 4 in the high half
    w1 = w0.clone().flatten()
    w1[changed_idx] *= 1.5
    w1 = w1.reshape(10, 10)
    changed = bf16_changed(w0, w1)
    assert changed.sum() == 8 and sparsity_bf16(w0, w1) == pytest.approx(0.92)
    low = low_magnitude_mask(w0, 0.5)
    assert low.flatten()[:50].all() and not low.flatten()[50:].any()
    assert mask_overlap(low, changed) == 0.5
    assert mask_overlap(low, torch.zeros_like(changed)) != mask_overlap(low, torch.zeros_like(changed))  # nan


def test_absolute_and_bf16_sparsity_read_the_same_update_differently():
    """|ΔW| ≤ 1e-5 leaves 3 of 4 entries unchanged. Against W0 = 1e-3 in bf16 (resolution 2⁻⁸ ≈ 0.4 % relative), the
    1e-5 and 2e-5 steps (1-2 % of the weight) are changes and 1e-6 (0.1 %) is not: 2 of 4 unchanged."""
    delta = torch.tensor([[0.0, 1e-6], [-1e-5, 2e-5]], dtype=torch.float64)
    assert sparsity_abs(delta) == 0.75 and sparsity_abs(delta, tol=1e-6) == 0.5
    w0 = torch.full((2, 2), 1e-3, dtype=torch.float64)
    assert sparsity_bf16(w0, w0 + delta) == 0.5
    settings = Settings(k=1, r=1)
    base = (w0 + torch.eye(2, dtype=torch.float64)).float()
    row = matrix_metrics(base, delta.float(), SVDCache(None).get("m", base, settings.reference_columns(base.shape)), settings)
    assert row["sparsity_abs"] == 0.75


def test_principal_mask_of_rank_one_weight():
    a = torch.tensor([4.0, 3.0, 0.1, 0.7], dtype=torch.float64)
    b = torch.tensor([1.0, 0.06, 2.0], dtype=torch.float64)  # 12 distinct |entries|
    w0 = torch.outer(a, b)
    u, s, v = svd64(w0)
    mask = principal_mask(u, s, v, r=1, alpha=0.5)
    assert torch.equal(mask, (w0.abs() >= torch.sort(w0.abs().flatten()).values[6]))


@pytest.mark.parametrize("degrees", [0.05, 0.5, 7.0, 30.0])
def test_rotation_recovers_a_known_plane_rotation(degrees):
    n, k = 12, 3
    w0 = torch.diag(torch.tensor([10.0, 9.0, 8.0] + [1.0 - 0.05 * i for i in range(n - 3)], dtype=torch.float64))
    theta = math.radians(degrees)
    rot = torch.eye(n, dtype=torch.float64)  # rotate e1 towards e6 (outside the top-3)
    rot[0, 0] = rot[5, 5] = math.cos(theta)
    rot[5, 0], rot[0, 5] = math.sin(theta), -math.sin(theta)
    w1 = rot @ w0
    u0, _, v0 = svd64(w0, k)
    u1, _, v1 = svd64(w1, k)
    left_max, left_mean = rotation_deg(u0, u1, k)
    assert left_max == pytest.approx(degrees, abs=0.01)
    assert left_mean == pytest.approx(degrees / 3, abs=0.01)
    assert rotation_deg(v0, v1, k)[0] == pytest.approx(0.0, abs=0.01)
    biggest, mean, curve = rotation_stats(u0, u1, k)
    assert (biggest, mean) == (left_max, left_mean) and curve[1] == pytest.approx(degrees, abs=0.01)


def test_principal_angles_match_scipy_on_random_cases():
    for seed in range(5):
        a, b = orthonormal(50, 6, seed), orthonormal(50, 6, seed + 10)
        near = torch.linalg.qr(a + 1e-5 * b)[0]
        for x, y in ((a, b), (a, near), (a, orthonormal(50, 4, seed + 20))):
            ours = torch.sort(principal_angles(x, y), descending=True).values.numpy()
            theirs = scipy.linalg.subspace_angles(x.numpy(), y.numpy())
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)


def test_svd64_matches_lapack():
    for shape in ((30, 50), (50, 30)):
        w = torch.randn(*shape, dtype=torch.float64)
        u, s, v = svd64(w, 5)
        u_ref, s_ref, vh_ref = torch.linalg.svd(w, full_matrices=False)
        torch.testing.assert_close(s, s_ref)
        assert principal_angles(u, u_ref[:, :5]).max() < 1e-8
        assert principal_angles(v, vh_ref[:5].T).max() < 1e-8


def test_factored_svd64_is_the_exact_svd_of_the_product():
    # closed form: L R = U diag(σ) Vᵀ with known σ, factors mixed by an invertible r × r matrix
    g = torch.Generator().manual_seed(3)
    m, n, sigma = 70, 40, torch.tensor([3.0, 2.0, 0.5, 1e-4], dtype=torch.float64)
    u = torch.linalg.qr(torch.randn(m, 4, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(n, 4, generator=g, dtype=torch.float64))[0]
    mix = torch.randn(4, 4, generator=g, dtype=torch.float64)
    left, right = u * sigma @ mix, torch.linalg.solve(mix, v.T)  # (m, 4), (4, n)
    fu, fs, fv = factored_svd64(left, right, 16)
    assert fs.shape == (n,) and torch.allclose(fs[:4], sigma, rtol=1e-10) and (fs[4:] == 0).all()
    assert fu.shape == (m, 16) and fv.shape == (n, 16)  # completed past the rank, as the Gram route gives
    torch.testing.assert_close(fu.T @ fu, torch.eye(16, dtype=torch.float64))
    torch.testing.assert_close(fv.T @ fv, torch.eye(16, dtype=torch.float64))
    assert principal_angles(fu[:, :4], u).max() < 1e-8 and principal_angles(fv[:, :4], v).max() < 1e-8
    torch.testing.assert_close((fu[:, :4] * fs[:4]) @ fv[:, :4].T, left @ right)
    _, gram_s, gram_v = decompose64((left @ right).float(), 3)  # the dense route agrees (fp32 input)
    torch.testing.assert_close(gram_s[:4], fs[:4].to(gram_s), rtol=1e-5, atol=1e-6)
    assert principal_angles(gram_v, fv[:, :3]).max() < 1e-3
    zero_u, zero_s, _ = factored_svd64(torch.zeros(m, 2), torch.randn(2, n))  # a fresh LoRA (B = 0)
    assert (zero_s == 0).all() and zero_u.shape == (m, n)


def test_rank_r_update_has_exactly_r_nonzero_singular_values():
    delta = low_rank(96, 64, [2.0, 1.0, 0.5, 1e-3]).float()
    s = svdvals64(delta)
    assert (s > 0).sum() == 4 and s[3] == pytest.approx(1e-3, rel=1e-3)


def test_spectral_drift_and_norms():
    w0 = torch.randn(20, 10, dtype=torch.float64)
    s0, s1 = svdvals64(w0), svdvals64(1.03 * w0)
    assert spectral_drift(s0, s1) == pytest.approx(0.03)
    norm, rel = update_norms(0.03 * w0, w0)
    assert norm == pytest.approx(0.03 * w0.norm().item()) and rel == pytest.approx(0.03)


def test_suite_on_an_update_in_the_base_top_subspace():
    """ΔW = ε U0ₖ Vₖ0ᵀ: no rotation, all energy principal, rank-k, full bf16 density."""
    w0 = low_rank(64, 48, [10.0 - 0.5 * i for i in range(16)] + [0.1] * 32)
    settings = Settings(k=4, r=8)
    ref = SVDCache(None).get("w", w0, settings.reference_columns(w0.shape))
    delta = 0.5 * ref.u[:, :4] @ ref.v[:, :4].T
    row = matrix_metrics(w0.float(), delta.float(), ref, settings)
    assert row["principal_energy"] == pytest.approx(1.0, abs=1e-5)
    assert row["rotation_left_max_deg"] < 0.01 and row["rotation_right_max_deg"] < 0.01
    assert row["rank_at_90"] == 4 and row["stable_rank"] == pytest.approx(4, rel=1e-4)
    assert row["spectral_drift"] > 0 and row["update_norm"] == pytest.approx(1.0, rel=1e-5)
    assert set(row["rotation_curve_right"]) == {1, 2, 4} and curve_ks(6) == [1, 2, 4, 6]


def test_svd_cache_reuses_stored_decomposition(tmp_path):
    w0 = torch.randn(20, 12)
    cache = SVDCache("model-none", root=tmp_path)
    first = cache.get("layer.weight", w0, 4)
    second = SVDCache("model-none", root=tmp_path).get("layer.weight", w0, 3)
    assert cache.misses == 1 and torch.equal(first.u[:, :3], second.u[:, :3])
    again = SVDCache("model-none", root=tmp_path)
    again.get("layer.weight", w0, 8)  # more columns than stored: recomputed
    assert again.misses == 1


def test_a_damaged_svd_cache_file_heals_by_recomputing(tmp_path):
    # a cache is recomputable: a truncated or emptied file is recomputed and rewritten, not a traceback
    w0 = torch.randn(20, 12)
    exact = SVDCache(None).get("layer.weight", w0, 4)
    SVDCache("model-none", root=tmp_path).get("layer.weight", w0, 4)
    (file,) = (tmp_path / "model-none").iterdir()
    for damage in (file.read_bytes()[: file.stat().st_size // 2], b"", b"\x00" * 64):
        file.write_bytes(damage)
        cache = SVDCache("model-none", root=tmp_path)
        healed = cache.get("layer.weight", w0, 4)
        assert cache.misses == 1 and torch.equal(healed.u, exact.u) and torch.equal(healed.s, exact.s)
        again = SVDCache("model-none", root=tmp_path)
        again.get("layer.weight", w0, 4)
        assert again.hits == 1  # rewritten whole


def test_aggregate_weights_fractions_by_parameter_count():
    rows = {
        "model.layers.0.self_attn.q_proj.weight": {"params": 100, "sparsity_bf16": 1.0, "stable_rank": 2.0},
        "model.layers.0.mlp.up_proj.weight": {"params": 300, "sparsity_bf16": 0.0, "stable_rank": 4.0},
        "model.layers.1.mlp.up_proj.weight": {"params": 300, "sparsity_bf16": 0.0, "stable_rank": 6.0},
    }
    out = aggregate(rows)
    assert out["overall"]["sparsity_bf16"]["mean"] == pytest.approx(100 / 700)
    assert out["overall"]["stable_rank"] == {"mean": 4.0, "min": 2.0, "max": 6.0}
    assert out["by_type"]["up"]["stable_rank"]["mean"] == 5.0 and set(out["by_layer"]) == {"0", "1"}
    assert out["by_block"]["attention"]["matrices"] == 1 and module_type("x.mlp.down_proj.weight") == "down"
