"""Intervals for the locking test: retention with paired bootstrap over prompts (and over seeds).

Per arm a, seed s and held-out prompt i the outcome L_a[s, i] (lower is better; tasks/outcome.py);
the frozen arm is the start, L_t0. With means over seeds and prompts,
    gain_a = mean L_t0 − mean L_a,          R_a = gain_a / gain_unconstrained   (retention).
95% intervals: percentile bootstrap. Each draw resamples seeds with replacement and, within each
drawn seed, prompts with replacement; every arm is evaluated on the same draw (paired), so
contrasts such as R_early − R_random, and R_OPD − R_SFT when two methods share their held-out
prompts, get their own interval from the same draws. A claim whose interval straddles its null
value is reported as undecided (report/runs.py writes the sentences).
"""

import torch

DRAWS = 2000
LEVEL = 0.95


def draw_indices(seeds: int, prompts: int, draws: int = DRAWS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(seed indices (D, S), prompt indices (D, S, N)): the bootstrap draws, shared by every arm."""
    generator = torch.Generator().manual_seed(seed)
    s = torch.randint(0, seeds, (draws, seeds), generator=generator) if seeds > 1 else torch.zeros(draws, 1, dtype=torch.long)
    p = torch.randint(0, prompts, (draws, seeds, prompts), generator=generator)
    return s, p


def resampled_means(values: torch.Tensor, indices) -> torch.Tensor:
    """(D,) mean of `values` (S, N) over each draw's seeds and prompts."""
    s, p = indices
    rows = values[s]  # (D, S, N): the drawn seeds' rows
    return torch.gather(rows, 2, p).mean(dim=(1, 2))


def interval(estimate: float, samples: torch.Tensor, level: float = LEVEL) -> dict:
    """{"estimate", "low", "high"}: the point estimate and the percentile interval of the draws."""
    finite = samples[torch.isfinite(samples)]
    if finite.numel() < 0.9 * samples.numel():  # the denominator crossed zero too often: no interval
        return {"estimate": estimate, "low": float("nan"), "high": float("nan")}
    q = torch.quantile(finite.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return {"estimate": estimate, "low": q[0].item(), "high": q[1].item()}


def retention(losses: dict, draws: int = DRAWS, seed: int = 0, indices=None) -> dict:
    """Gains and retentions with intervals, for {arm: (S, N) outcomes} holding 'frozen' and 'unconstrained'.

    Returns {"gain": {arm: interval}, "retention": {arm: interval}, "draws": {arm: (D,) retention draws}}.
    """
    start, free = losses["frozen"].double(), losses["unconstrained"].double()
    indices = indices or draw_indices(*start.shape, draws, seed)
    start_draws, free_draws = resampled_means(start, indices), resampled_means(free, indices)
    out = {"gain": {}, "retention": {}, "draws": {}}
    for arm, values in losses.items():
        values = values.double()
        arm_draws = resampled_means(values, indices)
        gain = (start.mean() - values.mean()).item()
        out["gain"][arm] = interval(gain, start_draws - arm_draws)
        ratio = (start_draws - arm_draws) / (start_draws - free_draws)
        out["draws"][arm] = ratio
        out["retention"][arm] = interval(gain / (start.mean() - free.mean()).item(), ratio)
    return out


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
