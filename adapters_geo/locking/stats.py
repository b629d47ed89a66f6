"""Intervals for the locking test: gains, retentions and margin contrasts, paired bootstrap over seeds and prompts.

Per arm a, seed s and held-out prompt i the outcome L_a[s, i] (lower is better; tasks/outcome.py);
the frozen arm is the start, L_t0. With means over seeds and prompts,
    gain_a = mean L_t0 − mean L_a,          R_a = gain_a / gain_unconstrained   (retention),
    C_a(c) = gain_a − c · gain_unconstrained                                     (linear contrast).
R_a ≥ c and C_a(c) ≥ 0 say the same where the unconstrained gain is positive, but C has no denominator
to cross zero, so the margin verdicts use C: "preserves" when C_a(PRESERVES)'s interval lies above 0,
"degrades" when C_a(DEGRADES)'s lies below 0, "undecided at this budget" otherwise; and when the
unconstrained gain's own interval reaches 0 there is "no gain to retain", and no ratio is read.
95% intervals: percentile bootstrap. Each draw resamples seeds with replacement and one set of prompt
indices, shared by every drawn seed and every arm: every seed is evaluated on the same held-out
prompts, so a prompt's effect recurs in every seed and must be drawn once, not once per seed (per-seed
draws would treat S evaluations of one prompt as S independent prompts and give intervals too narrow
by up to √S; tests/locking/test_stats.py measures the coverage of both). Contrasts such as R_early − R_random,
and R_OPD − R_SFT when two methods share their prompts and seeds, get their interval from the same draws.
"""

import torch

DRAWS = 2000
LEVEL = 0.95
PRESERVES = 0.9  # default margins of the locking verdict (an experiment file may declare its own): R ≥ 0.9 preserves,
DEGRADES = 0.8  # R ≤ 0.8 degrades, both read from the lower / upper end of the 95% interval


def draw_indices(seeds: int, prompts: int, draws: int = DRAWS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(seed indices (D, S), prompt indices (D, N)): the bootstrap draws, shared by every seed and arm."""
    generator = torch.Generator().manual_seed(seed)
    s = torch.randint(0, seeds, (draws, seeds), generator=generator) if seeds > 1 else torch.zeros(draws, 1, dtype=torch.long)
    p = torch.randint(0, prompts, (draws, prompts), generator=generator)
    return s, p


def resampled_means(values: torch.Tensor, indices) -> torch.Tensor:
    """(D,) mean of `values` (S, N) over each draw's seeds and its one set of prompts."""
    s, p = indices
    rows = values[s]  # (D, S, N): the drawn seeds' rows
    return torch.gather(rows, 2, p[:, None, :].expand(-1, rows.shape[1], -1)).mean(dim=(1, 2))


def interval(estimate: float, samples: torch.Tensor, level: float = LEVEL) -> dict:
    """{"estimate", "low", "high"}: the point estimate and the percentile interval of the draws."""
    finite = samples[torch.isfinite(samples)]
    if finite.numel() < 0.9 * samples.numel():  # the denominator crossed zero too often: no interval
        return {"estimate": estimate, "low": float("nan"), "high": float("nan")}
    q = torch.quantile(finite.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return {"estimate": estimate, "low": q[0].item(), "high": q[1].item()}


def retention(losses: dict, draws: int = DRAWS, seed: int = 0, indices=None) -> dict:
    """Gains and retentions with intervals, for {arm: (S, N) outcomes} holding 'frozen' and 'unconstrained'.

    Returns {"gain": {arm: interval}, "retention": {arm: interval}, "draws": {arm: (D,) retention draws},
    "gain_draws": {arm: (D,) gain draws}} (the draws for contrasts and margins).
    """
    start, free = losses["frozen"].double(), losses["unconstrained"].double()
    indices = indices or draw_indices(*start.shape, draws, seed)
    start_draws, free_draws = resampled_means(start, indices), resampled_means(free, indices)
    out = {"gain": {}, "retention": {}, "draws": {}, "gain_draws": {}}
    for arm, values in losses.items():
        values = values.double()
        arm_draws = resampled_means(values, indices)
        gain = (start.mean() - values.mean()).item()
        out["gain"][arm] = interval(gain, start_draws - arm_draws)
        out["gain_draws"][arm] = start_draws - arm_draws
        ratio = (start_draws - arm_draws) / (start_draws - free_draws)
        out["draws"][arm] = ratio
        free_gain = (start.mean() - free.mean()).item()  # 0 where the outcome cannot move (a tiny model's accuracy)
        out["retention"][arm] = interval(gain / free_gain if free_gain else float("nan"), ratio)
    return out


def linear_contrast(stats: dict, arm: str, c: float) -> dict:
    """gain_arm − c · gain_unconstrained with its interval, from `retention`'s draws."""
    estimate = stats["gain"][arm]["estimate"] - c * stats["gain"]["unconstrained"]["estimate"]
    return interval(estimate, stats["gain_draws"][arm] - c * stats["gain_draws"]["unconstrained"])


def margin_reading(stats: dict, arm: str = "early", preserves: float = PRESERVES, degrades: float = DEGRADES) -> dict:
    """Where the interval puts `arm`'s retention R against the two margins.

    {"reading": ..., "preserve": C(preserves), "degrade": C(degrades)}, C(c) = gain_arm − c·gain_unconstrained; the
    reading: "preserves" (R ≥ preserves shown), "degrades" (R ≤ degrades shown), "between" (degrades < R < preserves
    shown), "above degrades" (R > degrades shown, R ≥ preserves not), "below preserves" (R < preserves shown, R ≤
    degrades not), "undecided" (neither margin decided), or "no gain to retain".
    """
    keep, lose = linear_contrast(stats, arm, preserves), linear_contrast(stats, arm, degrades)
    above_low, below_high = decided(lose) == "above", decided(keep) == "below"
    if decided(stats["gain"]["unconstrained"]) != "above":
        reading = "no gain to retain"
    elif decided(keep) == "above":
        reading = "preserves"
    elif decided(lose) == "below":
        reading = "degrades"
    elif above_low and below_high:
        reading = "between"
    elif above_low or below_high:
        reading = "above degrades" if above_low else "below preserves"
    else:
        reading = "undecided"
    return {"reading": reading, "preserve": keep, "degrade": lose, "preserves": preserves, "degrades": degrades}


def contrast(a: torch.Tensor, b: torch.Tensor, estimate: float) -> dict:
    """Interval of a − b from paired draws (the same bootstrap draws for both)."""
    return interval(estimate, a - b)


def decided(result: dict, null: float = 0.0) -> str:
    """'above' / 'below' when the interval excludes `null`, else 'undecided'."""
    if result["low"] != result["low"]:  # NaN: no interval
        return "undecided"
    if result["low"] > null:
        return "above"
    return "below" if result["high"] < null else "undecided"
