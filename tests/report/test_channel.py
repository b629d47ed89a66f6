"""The early-channel section of the report (claim 2): closed-form intervals and the sentences they produce.

Run: python -m pytest -q tests/report/test_channel.py
"""

import math

import pytest

from adapters_geo.report.channel import channel_section, experiment_of, mean_interval, t975, welch_interval


def test_the_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 12, 30, 31, 45, 200):
        assert abs(t975(df) - stats.t.ppf(0.975, df)) < 1.5e-3, df
    assert t975(2.9) == t975(2)  # a fractional (Welch) df rounds down: the wider interval
    assert t975(0.5) == math.inf


def test_mean_interval_of_one_two_three():
    """Mean 2, sd 1, n 3: half-width t(2) / √3 = 4.303 / 1.732 = 2.484."""
    out = mean_interval([1.0, 2.0, 3.0])
    assert out["estimate"] == 2 and abs(out["high"] - 2 - 4.303 / math.sqrt(3)) < 1e-12 and out["n"] == 3
    assert math.isnan(mean_interval([0.4])["low"])


def test_welch_interval_in_closed_form():
    """a = (1, 3), b = (0, 0, 0): se² = 2/2 + 0 = 1, df = 1 (all variance in a): 2 ± 12.706."""
    out = welch_interval([1.0, 3.0], [0.0, 0.0, 0.0])
    assert out["estimate"] == 2 and abs(out["low"] - (2 - 12.706)) < 1e-12 and abs(out["high"] - (2 + 12.706)) < 1e-12
    same = welch_interval([1.0, 1.0], [0.5, 0.5])
    assert same["low"] == same["high"] == 0.5


def _null(observed: float, shuffle_mean: float) -> dict:
    band = {"mean": shuffle_mean, "low": shuffle_mean - 0.1, "high": shuffle_mean + 0.1, "p": 0.01, "draws": 200}
    return {"step": 8, "K": 16, "layers": 2, "observed": observed, "shuffle": band, "random_walk": {**band, "mean": 0.1}}


def test_the_section_reads_seeds_of_one_experiment_together_and_compares_methods():
    dense = {"adapter": "dense", "quant": "none"}
    rows = [{"run": f"opd_dense{s}", "method": "opd", "null": _null(o, 0.4), **dense}
            for s, o in zip(("", "-seed1", "-seed2"), (0.70, 0.72, 0.71))]
    rows += [{"run": f"sft_dense{s}", "method": "sft", "null": _null(o, 0.45), **dense}
             for s, o in zip(("", "-seed1", "-seed2"), (0.40, 0.60, 0.50))]
    rows += [{"run": "rlvr_dense", "method": "rlvr", "null": _null(0.3, 0.3), **dense},
             {"run": "sft_lora", "method": "sft", "null": _null(0.3, 0.3), "adapter": "lora", "quant": "none"},
             {"run": "old", "method": "sft", "null": None}]
    text = "\n".join(channel_section(rows))
    assert experiment_of("opd_dense-seed2") == "opd_dense" and experiment_of("opd_dense") == "opd_dense"
    assert "| opd_dense-seed1 | opd | 8 | 0.720 | 0.400 [0.300, 0.500] (200 draws) | 0.010 |" in text and "| old |" not in text
    # OPD: excess 0.31 ± 4.303 · 0.01 / √3 = [0.285, 0.335]: above the null
    assert "- opd_dense (opd, 3 seed(s)): Sim(t0, T) − shuffle-null mean = 0.310 [0.285, 0.335]: above the null" in text
    # SFT: excess 0.05 ± 4.303 · 0.1 / √3 = [-0.198, 0.298]: undecided
    assert "- sft_dense (sft, 3 seed(s)): Sim(t0, T) − shuffle-null mean = 0.050 [-0.198, 0.298]: undecided at this budget" in text
    assert "- rlvr_dense (rlvr, 1 seed(s)): Sim(t0, T) − shuffle-null mean = 0.000: one seed: no interval over seeds" in text
    assert "- opd_dense − sft_dense: Sim(t0, T) difference 0.210 [" in text and "- opd_dense − rlvr_dense" in text
    assert "- opd_dense − sft_lora" not in text  # methods are compared with the same adapter and base only
    assert channel_section([{"run": "a", "method": "sft", "null": None}]) == []
