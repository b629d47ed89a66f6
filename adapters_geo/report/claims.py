"""The claims table of a `claims` experiment: one row per statement of the seed paper (2606.07082) it measures, with
the measurement, its 95 % interval and a verdict.

Each row names the sign the paper predicts for one interval: OPD − SFT (or RLVR) at a matched update size for claim 1
(report/matched.py), OPD's excess of Sim_16(t0, T) over its shuffle null and OPD − SFT in Sim_16(t0, T) for claim 2
(report/channel.py). Verdict: **supported** when the interval lies on the predicted side of 0, **contradicted** when
it lies on the other, **undecided at this budget** when it holds 0 or rests on fewer than 3 seeds per method, and
"not measured" when the runs it needs are missing (no RLVR source, a null test refused). Claims 3 (locking) and 4
(controls) are read by the `lock` experiments' verdicts and are not rows here yet.
"""

import math

from adapters_geo.report.channel import excess_intervals, experiment_of, method_differences
from adapters_geo.report.matched import matched_differences

MIN_SEEDS = 3  # seeds per method before an interval decides (as the locking verdict's)
# (claim, the paper's statement, where the interval comes from, metric, the other method, the predicted sign)
ROWS = (
    ("1", "OPD's update touches fewer weights than SFT's (bf16 sparsity, at matched size)", "matched", "sparsity_bf16", "sft", 1),
    ("1", "the same with the absolute definition, abs(ΔW) ≤ 1e-5", "matched", "sparsity_abs", "sft", 1),
    ("1", "OPD avoids W0's principal directions more than SFT (principal energy lower)", "matched", "principal_energy", "sft", -1),
    ("1", "OPD's update is less sparse than RLVR's (bf16 sparsity lower)", "matched", "sparsity_bf16", "rlvr", -1),
    ("2", "OPD's update enters its channel early (Sim_16(t0, T) above its shuffle null)", "excess", None, None, 1),
    ("2", "... earlier than SFT's (Sim_16(t0, T) higher)", "channel", None, "sft", 1),
)


def verdict(interval: dict | None, sign: int, seeds: int) -> str:
    """supported / contradicted / undecided at this budget / not measured, for a predicted sign of `interval`."""
    if interval is None or math.isnan(interval["estimate"]):
        return "not measured"
    if seeds < MIN_SEEDS or math.isnan(interval["low"]):
        return "undecided at this budget"
    if interval["low"] > 0 or interval["high"] < 0:
        return "supported" if (interval["low"] > 0) == (sign > 0) else "contradicted"
    return "undecided at this budget"


def _seeds(rows: list[dict], method: str) -> int:
    """The fewest seeds any experiment of `method` has among `rows`."""
    counts: dict = {}
    for r in rows:
        if r["method"] == method:
            counts[experiment_of(r["run"])] = counts.get(experiment_of(r["run"]), 0) + 1
    return min(counts.values(), default=0)


def claims_table(rows: list[dict]) -> list[str]:
    """Markdown lines: the claims table over a claims experiment's rows (report rows with "null" where measured)."""
    matched, excess, channel = matched_differences(rows), excess_intervals(rows), method_differences(rows)
    lines = ["| claim | the paper says | measured | 95% interval | verdict |", "|---|---|---|---|---|"]
    for claim, text, source, key, other, sign in ROWS:
        if source == "matched":
            found = next((v for (a, b, k), v in matched.items() if k == key and b[1] == other), None)
            seeds = min(_seeds(rows, "opd"), _seeds(rows, other))
            label = f"OPD − {other.upper()}"
        elif source == "excess":
            found = next((v for g, v in excess.items() if g[1] == "opd"), None)
            seeds = found["n"] if found else 0
            label = "OPD − null mean"
        else:
            found = next((v for (a, b), v in channel.items() if b[1] == other), None)
            with_null = [r for r in rows if r.get("null")]
            seeds = min(_seeds(with_null, "opd"), _seeds(with_null, other))
            label = f"OPD − {other.upper()}"
        measured = "–" if found is None else f"{label} = {found['estimate']:.3g}"
        bounds = "–" if found is None or math.isnan(found["low"]) else f"[{found['low']:.3g}, {found['high']:.3g}]"
        lines.append(f"| {claim} | {text} | {measured} | {bounds} | **{verdict(found, sign, seeds)}** |")
    return lines + [""]
