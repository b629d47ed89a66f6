"""Claim 1 in the report: the endpoint metrics of SFT, OPD and RLVR read at one matched update size, over seeds.

A run's tracked steps give (‖ΔW_t‖/‖W0‖, metric) pairs, measured by the tracker on the exact ΔW_t (metrics.jsonl
"geometry/overall", geometry/online.py): bf16 and absolute sparsity and stable rank over every matrix, rotation and
principal energy over every matrix of about 4 evenly spaced layers. Runs from one start (the same `init`; a run
without tracked steps is left out and named) are read at the largest relative update size
all of them reach (the smallest of their largest tracked sizes), each metric interpolated linearly in log size
between the two tracked steps around it, so that a method does not look sparser only because it moved less (the
three methods' updates differ in norm by an order of magnitude at equal steps). Over the seeds of one experiment:
the mean with a Student-t 95 % interval; between OPD and each other method with the same adapter and base: Welch
intervals of the difference, read as above / below / "undecided at this budget".
"""

import math

import numpy as np

from adapters_geo.report.channel import experiment_of, mean_interval, reading, welch_interval

METRICS = (("sparsity_bf16", "bf16 sparsity"), ("sparsity_abs", "sparsity, abs(ΔW) ≤ 1e-5"),
           ("principal_energy", "principal energy"), ("rotation_right_max_deg", "rotation V max (°)"),
           ("stable_rank", "stable rank"))
SIZE = "update_norm_rel"


def interpolate(points: list[dict], key: str, size: float) -> float:
    """`key` at relative update size `size`, linear in log size between the tracked points around it; nan outside."""
    found = sorted((p[SIZE], p[key]) for p in points
                   if p.get(SIZE) and p.get(key) is not None and p[SIZE] > 0 and not math.isnan(p[key]))
    if not found or not found[0][0] <= size <= found[-1][0]:
        return math.nan
    x, y = zip(*found)
    return float(np.interp(math.log(size), np.log(x), y))


def matched_size(rows: list[dict]) -> float:
    """The largest relative update size every run's tracked curve reaches."""
    tops = [max((p[SIZE] for p in r["online"] if p.get(SIZE)), default=math.nan) for r in rows]
    return min(tops) if tops and not any(math.isnan(t) for t in tops) else math.nan


def _same_start(rows: list[dict]) -> list[dict]:
    """The runs of the start (init) shared by the most methods (a continuation's comparison), at least two methods."""
    buckets: dict = {}
    for r in rows:
        if r.get("init") and any(p.get(SIZE) for p in r["online"]):
            buckets.setdefault(r["init"], []).append(r)
    best = max(buckets.values(), key=lambda found: (len({r["method"] for r in found}), len(found)), default=[])
    return best if len({r["method"] for r in best}) >= 2 else []


def _cell(interval: dict) -> str:
    if math.isnan(interval["estimate"]):
        return "–"
    if math.isnan(interval["low"]):
        return f"{interval['estimate']:.3g}"
    return f"{interval['estimate']:.3g} [{interval['low']:.3g}, {interval['high']:.3g}]"


def _matched(rows: list[dict]):
    """(size, left out, {group: runs}, {(group, metric): values at size}, OPD-vs-other pairs); None without two methods."""
    chosen = _same_start(rows)
    if not chosen:
        return None
    left_out = [r["run"] for r in rows if r not in chosen]
    size = matched_size(chosen)
    groups: dict = {}
    for r in chosen:
        groups.setdefault((experiment_of(r["run"]), r["method"], r["adapter"], r["quant"]), []).append(r)
    values = {(group, key): [interpolate(r["online"], key, size) for r in found]
              for group, found in groups.items() for key, _ in METRICS}
    values = {k: [v for v in found if not math.isnan(v)] for k, found in values.items()}
    pairs = [(a, b) for a in groups for b in groups if a[1] == "opd" and b[1] != "opd" and a[2:] == b[2:]]
    return size, left_out, groups, values, pairs


def matched_differences(rows: list[dict]) -> dict:
    """{(OPD group, other group, metric): Welch interval of the difference at the matched size} (groups: (experiment,
    method, adapter, quant)); {} where no two methods share a start."""
    found = _matched(rows)
    if found is None:
        return {}
    _, _, _, values, pairs = found
    return {(a, b, key): welch_interval(values[(a, key)], values[(b, key)]) for a, b in pairs for key, _ in METRICS
            if values[(a, key)] and values[(b, key)]}


def matched_section(rows: list[dict]) -> list[str]:
    """Markdown lines: each metric per experiment at the matched size, and OPD's differences to the other methods."""
    found = _matched(rows)
    if found is None:
        return []
    size, left_out, groups, values, pairs = found
    differences = matched_differences(rows)
    lines = ["### Endpoint metrics at a matched update size (claim 1)", "",
             f"Runs from one start, read at ‖ΔW_t‖/‖W0‖ = {size:.3g} (the mean over all matrices): the largest size "
             "every run reaches, each metric interpolated in log size between tracked steps. Cells: mean over seeds "
             "with a Student-t 95% interval; differences: Welch 95% intervals."
             + (f" Left out (another start, or no tracked steps): {', '.join(left_out)}." if left_out else ""), "",
             "| metric | " + " | ".join(f"{g[0]} ({g[1]}, n={len(found)})" for g, found in groups.items())
             + "".join(f" | {a[0]} − {b[0]}" for a, b in pairs) + " |", "|---" * (1 + len(groups) + len(pairs)) + "|"]
    readings = []
    for key, label in METRICS:
        cells = [_cell(mean_interval(values[(g, key)]) if values[(g, key)] else {"estimate": math.nan})
                 for g in groups]
        cells += [_cell(differences[(a, b, key)]) if (a, b, key) in differences else "–" for a, b in pairs]
        readings += [f"- {label}, {a[0]} − {b[0]}: {_cell(differences[(a, b, key)])}: "
                     + reading(differences[(a, b, key)], f"higher for {a[1].upper()}", f"higher for {b[1].upper()}")
                     for a, b in pairs if (a, b, key) in differences]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""] + readings + [""]
