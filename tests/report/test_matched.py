"""Claim 1 in the report: endpoint metrics read at a matched update size, over seeds, on constructed curves.

Run: python -m pytest -q tests/report/test_matched.py
"""

import math

from adapters_geo.report.matched import interpolate, matched_section, matched_size


def test_interpolation_is_linear_in_log_size_and_nan_outside_the_tracked_range():
    points = [{"update_norm_rel": 1e-2, "m": 0.4}, {"update_norm_rel": 1e-3, "m": 0.2}, {"update_norm_rel": 0, "m": 9.0}]
    assert abs(interpolate(points, "m", 10**-2.5) - 0.3) < 1e-12  # halfway in log size
    assert interpolate(points, "m", 1e-3) == 0.2 and math.isnan(interpolate(points, "m", 2e-2))
    assert math.isnan(interpolate(points, "m", 5e-4))  # below the first tracked step: not extrapolated
    rows = [{"online": [{"update_norm_rel": 1e-3}, {"update_norm_rel": 4e-3}]}, {"online": [{"update_norm_rel": 2e-3}]}]
    assert matched_size(rows) == 2e-3  # the largest size both reach


def _curve(top: float, offset: float, noise: float) -> list[dict]:
    """Tracked points up to relative size `top`: metrics that depend on size alone, plus the method's offset (sparsity)
    and a seed's noise (both)."""
    sizes = [top * f for f in (0.05, 0.2, 0.5, 1.0)]
    return [{"update_norm_rel": s, "sparsity_bf16": 0.9 - 0.1 * math.log10(s / 1e-4) + offset + noise,
             "principal_energy": 0.1 + 0.05 * math.log10(s / 1e-4) + noise} for s in sizes]


def _row(run: str, method: str, top: float, offset: float, noise: float = 0.0, init="runs/sft_init/adapter") -> dict:
    curve = _curve(top, offset, noise)
    return {"run": run, "method": method, "adapter": "dense", "quant": "none", "init": init, "online": curve}


def test_methods_that_differ_only_in_how_far_they_moved_are_alike_at_the_matched_size():
    """SFT moves 10× further than OPD. At the end SFT would read 0.1 less sparse; at OPD's largest size the sparsity
    differs only by OPD's offset (+0.05 ± seed noise: above) and principal energy not at all (undecided)."""
    noise = (0.0, 0.004, -0.004)
    rows = [_row(f"opd_dense{s}", "opd", 1e-3, 0.05, e) for s, e in zip(("", "-seed1", "-seed2"), noise)]
    rows += [_row(f"sft_dense{s}", "sft", 1e-2, 0.0, -e) for s, e in zip(("", "-seed1", "-seed2"), noise)]
    rows += [_row("sft_init", "sft", 5e-2, 0.0, init=None), _row("other", "rlvr", 1e-4, 0.0, init="elsewhere")]
    text = "\n".join(matched_section(rows))
    assert "‖ΔW_t‖/‖W0‖ = 0.001 (the mean over all matrices)" in text  # OPD's top: sft_init and the other start left out
    assert "| metric | opd_dense (opd, n=3) | sft_dense (sft, n=3) | opd_dense − sft_dense |" in text
    assert "Left out (another start, or no tracked steps): sft_init, other." in text and "| sft_init |" not in text
    # sparsity at 1e-3: 0.9 − 0.1 = 0.8 for SFT, 0.85 for OPD; difference 0.05 ± t(≈4) · 0.0046 ≈ ± 0.013
    assert "| bf16 sparsity | 0.85 [" in text and "| 0.8 [" in text
    assert "- bf16 sparsity, opd_dense − sft_dense: 0.05 [" in text and ": higher for OPD" in text
    assert "- principal energy, opd_dense − sft_dense: " in text
    energy = next(line for line in text.splitlines() if line.startswith("- principal energy"))
    assert energy.endswith("undecided at this budget"), energy  # equal at equal size, though SFT ends 0.05 higher


def test_one_method_alone_gets_no_section():
    assert matched_section([_row("opd_dense", "opd", 1e-3, 0.0), _row("opd_dense-seed1", "opd", 1e-3, 0.0)]) == []
