"""Retention and its paired bootstrap intervals, against closed-form and simulated cases.

Run: python -m pytest -q tests/locking/test_stats.py
"""

import math

import pytest
import torch

from adapters_geo.locking.stats import contrast, decided, draw_indices, linear_contrast, margin_reading, resampled_means, retention


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
    assert s.shape == (50, 3) and p.shape == (50, 10) and len(torch.unique(s)) == 3  # one prompt set per draw
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


def crossed(seeds, prompts, rep, gain=0.5, prompt_sd=1.0, seed_sd=0.0, noise=0.1):
    """Gain per (seed, prompt) of one arm: a prompt effect shared by every seed (the same held-out prompts), a seed
    effect and noise; the truth is `gain`, the mean over new prompts and seeds."""
    g = torch.Generator().manual_seed(rep)
    prompt = prompt_sd * torch.randn(1, prompts, generator=g)
    seed = seed_sd * torch.randn(seeds, 1, generator=g)
    return gain + prompt + seed + noise * torch.randn(seeds, prompts, generator=g)


def test_shared_prompt_draws_cover_the_truth_and_per_seed_draws_do_not():
    """With 4 seeds evaluated on the same prompts, drawing prompts once per draw covers the mean gain ≈ 95 % of
    the time; drawing them per seed (the old scheme) counts each prompt 4 times as if independent and under-covers."""
    seeds, prompts, reps, draws = 4, 48, 150, 400
    shared = per_seed = 0
    for rep in range(reps):
        values = crossed(seeds, prompts, rep).double()
        s, p = draw_indices(seeds, prompts, draws, seed=rep)
        means = resampled_means(values, (s, p))
        g = torch.Generator().manual_seed(10_000 + rep)
        independent = torch.randint(0, prompts, (draws, seeds, prompts), generator=g)
        old = torch.gather(values[s], 2, independent).mean(dim=(1, 2))
        for draws_of, name in ((means, "shared"), (old, "per_seed")):
            low, high = torch.quantile(draws_of, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            if low <= 0.5 <= high:
                shared, per_seed = (shared + 1, per_seed) if name == "shared" else (shared, per_seed + 1)
    assert shared / reps >= 0.88, shared / reps
    assert per_seed / reps <= 0.80, per_seed / reps  # measured 0.63 (shared: 0.93): intervals half as wide as they should be


def test_linear_contrasts_and_margins_on_constructed_cases():
    def losses(early_gain, noise=0.0, free_gain=0.5, prompts=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        shared = torch.randn(1, prompts, generator=g)
        make = lambda gain: 1.0 - gain + shared + noise * torch.randn(1, prompts, generator=g)
        return {"frozen": make(0.0), "unconstrained": make(free_gain), "early": make(early_gain)}

    exact = retention(losses(0.45), draws=200)  # R = 0.9 exactly: C(0.9) = 0, C(0.8) = 0.05
    assert linear_contrast(exact, "early", 0.8) == pytest.approx({"estimate": 0.05, "low": 0.05, "high": 0.05})
    assert margin_reading(retention(losses(0.49), draws=300))["reading"] == "preserves"  # R = 0.98, no noise
    assert margin_reading(retention(losses(0.20), draws=300))["reading"] == "degrades"  # R = 0.4
    assert margin_reading(retention(losses(0.425, noise=0.5), draws=500))["reading"] == "undecided"  # R = 0.85, noisy
    assert margin_reading(retention(losses(0.425), draws=200))["reading"] == "between"  # R = 0.85 exactly: 0.8 < R < 0.9
    assert margin_reading(retention(losses(0.1, free_gain=0.0, noise=0.3), draws=500))["reading"] == "no gain to retain"
    flat = {arm: torch.zeros(1, 8) for arm in ("frozen", "unconstrained", "early")}  # an outcome nothing moved (greedy, tiny)
    assert math.isnan(retention(flat, draws=50)["retention"]["early"]["estimate"])  # no ratio, no ZeroDivisionError
    above = margin_reading(retention(losses(0.6), draws=300))  # R = 1.2 also preserves (R ≥ 0.9)
    assert above["reading"] == "preserves" and above["preserve"]["estimate"] == pytest.approx(0.6 - 0.45)
    # declared margins are used: R = 0.85 preserves at 0.8 / 0.7 and degrades at 0.95 / 0.9
    assert margin_reading(retention(losses(0.425), draws=200), preserves=0.8, degrades=0.7)["reading"] == "preserves"
    assert margin_reading(retention(losses(0.425), draws=200), preserves=0.95, degrades=0.9)["reading"] == "degrades"


def test_each_claim_is_read_against_its_own_margin():
    """OPD's claim (preserves: R ≥ 0.9) fails once R < 0.9 is shown; SFT's (degrades: R ≤ 0.8) once R > 0.8 is, even
    when the other margin is undecided (e.g. SFT at R = 0.93 [0.87, 1.00]: it does not degrade, R ≥ 0.9 not shown)."""
    from adapters_geo.report.locking import claim_status

    side = lambda low, high: {"estimate": (low + high) / 2, "low": low, "high": high}
    margin = lambda keep, lose, reading="undecided": {"reading": reading, "preserve": keep, "degrade": lose}
    sft_like = margin(side(-0.006, 0.019), side(0.013, 0.038), "above degrades")
    assert claim_status("sft", sft_like) == "contradicted" and claim_status("opd", sft_like) == "undecided at this budget"
    below = margin(side(-0.03, -0.01), side(-0.01, 0.02), "below preserves")
    assert claim_status("opd", below) == "contradicted" and claim_status("sft", below) == "undecided at this budget"
    assert claim_status("opd", margin(side(0.01, 0.02), side(0.05, 0.06), "preserves")) == "supported"
    assert claim_status("sft", margin(side(-0.05, -0.04), side(-0.02, -0.01), "degrades")) == "supported"
    assert claim_status("sft", sft_like, seeds=2) == "undecided at this budget"  # fewer than 3 training seeds
    assert claim_status("rlvr", sft_like) is None  # the paper makes no locking claim about RLVR
    no_gain = margin(side(0.013, 0.038), side(0.013, 0.038), "no gain to retain")
    assert claim_status("sft", no_gain) == "undecided at this budget"
