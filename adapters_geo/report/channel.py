"""Claim 2 in the report: does a run's update enter its channel early? Sim_K(t0, T) against its nulls, per run and
over seeds.

Per run (a `claims` experiment's done.json, from pipeline/analysis.run_null): the mean Sim_K(t0, T) over a layer
subset beside the shuffle null (the run's own increments summed in random order) and the random-walk null
(geometry/trajectory_null.py), each with its 95 % band, permutation p-value and number of draws.
Over the seeds of one experiment (runs NAME, NAME-seed1, …): the excess over the shuffle null, observed − null
mean, averaged over seeds with a Student-t 95 % interval (n − 1 degrees of freedom: with 3 seeds t = 4.30, as
wide as three runs warrant); between two methods, the difference of their mean Sim_K(t0, T) with a Welch interval
(the paper's "OPD enters its channel earlier than SFT"). An interval that holds 0 reads "undecided at this budget";
one seed gives no interval over seeds and says so.
"""

import math
import re

# Student-t 0.975 quantiles for 1 … 30 degrees of freedom (scipy.stats.t.ppf(0.975, df), to 3 decimals; tested
# against scipy): written out because scipy is not a dependency of the toolkit.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.959964


def t975(df: float) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom; a fractional df (Welch) is rounded down
    (the wider interval); above 30 the Cornish-Fisher expansion (within 1e-3)."""
    if df < 1:
        return math.inf
    if df <= len(T975):
        return T975[int(df) - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values: list[float]) -> dict:
    """{"estimate", "low", "high", "n"}: the mean with its Student-t 95 % interval (nan bounds for n < 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"estimate": mean, "low": math.nan, "high": math.nan, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"estimate": mean, "low": mean - half, "high": mean + half, "n": n}


def welch_interval(a: list[float], b: list[float]) -> dict:
    """{"estimate", "low", "high"}: mean(a) − mean(b) with Welch's 95 % interval (nan bounds with fewer than 2 each)."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return {"estimate": ma - mb, "low": math.nan, "high": math.nan}
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"estimate": ma - mb, "low": ma - mb, "high": ma - mb}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"estimate": ma - mb, "low": ma - mb - t975(df) * se, "high": ma - mb + t975(df) * se}


def reading(interval: dict, above: str, below: str) -> str:
    """`above` / `below` when the 95 % interval excludes 0 on that side, else undecided (or: one seed, no interval)."""
    if math.isnan(interval["low"]):
        return "one seed: no interval over seeds"
    if interval["low"] > 0:
        return above
    if interval["high"] < 0:
        return below
    return "undecided at this budget"


def experiment_of(run: str) -> str:
    """The experiment a run belongs to: NAME for NAME and NAME-seedN."""
    return re.sub(r"-seed\d+$", "", run)


def _fmt(interval: dict) -> str:
    if math.isnan(interval["low"]):
        return f"{interval['estimate']:.3f}"
    return f"{interval['estimate']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _band(null: dict) -> str:
    return f"{null['mean']:.3f} [{null['low']:.3f}, {null['high']:.3f}] ({null.get('draws', '?')} draws)"


def _groups(rows: list[dict]) -> dict:
    """{(experiment, method, adapter, quant): [null results of its seeds]} of the rows that have one."""
    groups: dict = {}
    for r in rows:
        if r.get("null"):
            groups.setdefault((experiment_of(r["run"]), r["method"], r.get("adapter"), r.get("quant")), []).append(r["null"])
    return groups


def excess_intervals(rows: list[dict]) -> dict:
    """{group: Sim(t0, T) − shuffle-null mean, averaged over its seeds with a Student-t interval}."""
    return {g: mean_interval([n["observed"] - n["shuffle"]["mean"] for n in found]) for g, found in _groups(rows).items()}


def method_differences(rows: list[dict]) -> dict:
    """{(OPD group, other group): Welch interval of their Sim(t0, T)}, for groups of the same adapter and base."""
    groups = _groups(rows)
    return {(a, b): welch_interval([n["observed"] for n in groups[a]], [n["observed"] for n in groups[b]])
            for a in groups for b in groups if a[1] == "opd" and b[1] != "opd" and a[2:] == b[2:]}


def channel_section(rows: list[dict]) -> list[str]:
    """Markdown lines: the per-run table and the over-seed readings, from train rows carrying "null" (or none)."""
    rows = [r for r in rows if r.get("null")]
    if not rows:
        return []
    first = rows[0]["null"]
    lines = ["### Does the update enter its channel early? (claim 2)", "",
             f"Sim_{first['K']}(t0, T): the mean over every matrix of {first.get('layers', '?')} evenly spaced layers of how "
             "much ΔW_t0's top right singular subspace shares with ΔW_T's; shuffle null: the run's own increments between "
             "tracked steps summed in random order up to as many steps as t0; random walk: increments of the same norms in "
             "random directions. p: (1 + draws at or above the observed value) / (1 + draws).", "",
             "| run | method | t0 | Sim(t0, T) | shuffle null [95%] | p | random walk [95%] | p |", "|---" * 8 + "|"]
    for r in rows:
        n = r["null"]
        lines.append(f"| {r['run']} | {r['method']} | {n['step']} | {n['observed']:.3f} | {_band(n['shuffle'])} | "
                     f"{n['shuffle']['p']:.3f} | {_band(n['random_walk'])} | {n['random_walk']['p']:.3f} |")
    lines += [""]
    for (name, method, _, _), excess in excess_intervals(rows).items():
        lines.append(f"- {name} ({method}, {excess['n']} seed(s)): Sim(t0, T) − shuffle-null mean = {_fmt(excess)}: "
                     + reading(excess, "above the null (the early update is more aligned with the end than its own "
                                       "moves in another order)", "below the null"))
    for (a, b), difference in method_differences(rows).items():
        other = b[1].upper()
        lines.append(f"- {a[0]} − {b[0]}: Sim(t0, T) difference {_fmt(difference)}: "
                     + reading(difference, f"OPD's early update is closer to its end than {other}'s",
                               f"{other}'s early update is closer to its end than OPD's"))
    return lines + [""]
