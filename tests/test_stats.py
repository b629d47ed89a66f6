"""Retention and its paired bootstrap intervals, against closed-form and simulated cases.

Run: python -m pytest -q tests/test_stats.py
"""

import pytest
import torch

from adapters_geo.stats import contrast, decided, draw_indices, retention


def arms(start=1.0, free=0.5, early=0.6, noise=0.0, seeds=1, prompts=64, seed=0):
    """Outcomes (S, N) per arm: a prompt effect shared by every arm, plus independent noise."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(seeds, prompts, generator=g)
    make = lambda mean: mean + shared + noise * torch.randn(seeds, prompts, generator=g)
    return {"frozen": make(start), "unconstrained": make(free), "early": make(early), "random": make(start)}


def test_without_noise_the_interval_is_the_estimate():
    losses = {k: torch.full((1, 16), v) for k, v in {"frozen": 1.0, "unconstrained": 0.5, "early": 0.6, "random": 1.0}.items()}
    out = retention(losses, draws=200)
    assert out["retention"]["early"] == pytest.approx({"estimate": 0.8, "low": 0.8, "high": 0.8})
    assert out["retention"]["unconstrained"]["estimate"] == pytest.approx(1.0)
    assert out["retention"]["frozen"]["estimate"] == 0.0 and out["gain"]["unconstrained"]["estimate"] == pytest.approx(0.5)


def test_the_shared_prompt_effect_cancels_because_arms_are_paired():
    """A large per-prompt spread shared by every arm widens each mean's interval, not the retention's."""
    out = retention(arms(noise=0.01), draws=500)
    early = out["retention"]["early"]
    assert early["estimate"] == pytest.approx(0.8, abs=0.01) and early["high"] - early["low"] < 0.02


def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    covered = 0
    for rep in range(100):
        out = retention(arms(noise=0.5, seed=rep, prompts=48), draws=400, seed=rep)
        covered += out["retention"]["early"]["low"] <= 0.8 <= out["retention"]["early"]["high"]
    assert 88 <= covered <= 100


def test_seeds_are_resampled_too():
    s, p = draw_indices(seeds=3, prompts=10, draws=50)
    assert s.shape == (50, 3) and p.shape == (50, 3, 10) and len(torch.unique(s)) == 3
    spread = arms(noise=0.2, seeds=3)
    spread["early"][1] += 0.3  # one seed far off: the interval over seeds must show it
    wide = retention(spread, draws=500)["retention"]["early"]
    narrow = retention(arms(noise=0.2, seeds=3), draws=500)["retention"]["early"]
    assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"])


def test_contrasts_and_verdicts():
    out = retention(arms(noise=0.2), draws=500)
    diff = contrast(out["draws"]["early"], out["draws"]["random"], 0.8)
    assert decided(diff) == "above" and decided(out["retention"]["random"]) == "undecided"
    assert decided({"low": -0.3, "high": -0.1}) == "below" and decided({"low": float("nan"), "high": 1}) == "undecided"
