"""The locking section of the report: per method, retention of each arm with 95% intervals and a verdict.

Read from a finished `lock` experiment folder: each seed's arms and their per-prompt held-out
outcomes (evals/) at t0 (the frozen arm) and at T; stats.py gives gains, retentions and contrasts
with paired bootstrap intervals over prompts and seeds. Every sentence is built from an interval;
where an interval straddles its null value the sentence says "undecided at this budget".
"""

import math
from pathlib import Path

import torch

from adapters_geo.report.plots import figure, method_colour
from adapters_geo.runfolder import RunFolder
from adapters_geo.stats import contrast, decided, draw_indices, retention

ARM_ORDER = ("frozen", "unconstrained", "early", "random", "final")
OUTCOME_NAMES = {"kl": "reverse KL to the teacher (nats/token)", "nll": "NLL of reference solutions (nats/token)",
                 "neg_reward": "− mean reward of 4 samples"}


def _outcome_at(folder: Path, step: int):
    evals = RunFolder(folder).prompt_evals()
    return evals.get(step)


def lock_summary(folder: Path, draws: int = 2000) -> dict | None:
    """Per-arm retentions (with draws for contrasts), gains, accuracies and increments of a lock experiment."""
    run = RunFolder(folder)
    done, experiment = run.done(), run.experiment()
    if done is None or experiment is None or experiment["file"].get("kind") != "lock" or "seeds" not in done:
        return None
    seeds = sorted(done["seeds"], key=int)
    first_source = RunFolder(done["seeds"][seeds[0]]["source"])
    method = (first_source.config_dict() or {}).get("method", {}).get("name")
    losses, accuracy, kind = {}, {}, None
    for arm in ARM_ORDER:
        rows = []
        for s in seeds:
            arm_dir = Path(done["seeds"][s]["arms"].get(arm, {}).get("folder") or folder / f"seed_{s}" / arm)
            found = _outcome_at(arm_dir, done["t0"] if arm == "frozen" else done["steps"])
            if found is None:
                break
            kind = found["outcome_kind"]
            rows.append(torch.tensor(found["outcome"], dtype=torch.float64))
            if "greedy_reward" in found:
                accuracy.setdefault(arm, []).append(sum(r >= 1 for r in found["greedy_reward"]) / len(found["greedy_reward"]))
        if len(rows) == len(seeds):
            losses[arm] = torch.stack(rows)
    if "frozen" not in losses or "unconstrained" not in losses:
        return None
    indices = draw_indices(len(seeds), losses["frozen"].shape[1], draws)
    stats = retention(losses, indices=indices)
    increments = {arm: [done["seeds"][s]["arms"][arm].get("increment") for s in seeds] for arm in losses if arm != "frozen"}
    return {"run": folder.name, "method": method, "K": done["K"], "mode": done["mode"], "t0": done["t0"], "steps": done["steps"],
            "seeds": len(seeds), "prompts": losses["frozen"].shape[1], "kind": kind, "stats": stats,
            "mean_outcome": {arm: v.mean().item() for arm, v in losses.items()},
            "accuracy": {arm: sum(v) / len(v) for arm, v in accuracy.items()}, "increments": increments,
            "indices": indices, "losses": losses}


def _ci(value: dict, digits: int = 2) -> str:
    if value["low"] != value["low"]:
        return f"{value['estimate']:.{digits}f} [no interval]"
    return f"{value['estimate']:.{digits}f} [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"


def verdict(summary: dict) -> str:
    """One sentence per method from the intervals."""
    method, stats = (summary["method"] or "?").upper(), summary["stats"]
    gain = stats["gain"]["unconstrained"]
    if decided(gain) != "above":
        return (f"{method}: the unconstrained continuation did not clearly improve the held-out objective "
                f"(gain {_ci(gain, 3)}), so retention is undefined: undecided at this budget.")
    retained = stats["retention"]
    parts = [f"the {arm} subspace retains {_ci(retained[arm])} of the unconstrained gain"
             for arm in ("early", "random", "final") if arm in retained]
    sentence = f"{method}: " + ", ".join(parts) if parts else f"{method}: no locked arm"
    if "early" in retained and "random" in retained:
        diff = contrast(stats["draws"]["early"], stats["draws"]["random"],
                        retained["early"]["estimate"] - retained["random"]["estimate"])
        reading = {"above": "the early subspace keeps more than a random one",
                   "below": "a random subspace keeps more than the early one",
                   "undecided": "early vs random: undecided at this budget"}[decided(diff)]
        sentence += f"; early − random = {_ci(diff)}: {reading}"
    return sentence + "."


def method_contrast(a: dict, b: dict) -> str | None:
    """R_early of method a − method b, paired over their shared held-out prompts (same seeds and draws)."""
    if "early" not in a["stats"]["retention"] or "early" not in b["stats"]["retention"]:
        return None
    if a["prompts"] != b["prompts"] or a["seeds"] != b["seeds"]:
        return None
    shared = draw_indices(a["seeds"], a["prompts"])
    ra, rb = retention(a["losses"], indices=shared), retention(b["losses"], indices=shared)
    diff = contrast(ra["draws"]["early"], rb["draws"]["early"],
                    ra["retention"]["early"]["estimate"] - rb["retention"]["early"]["estimate"])
    reading = {"above": f"{a['method'].upper()} keeps more of its gain in its early subspace than {b['method'].upper()}",
               "below": f"{b['method'].upper()} keeps more of its gain in its early subspace than {a['method'].upper()}",
               "undecided": "undecided at this budget"}[decided(diff)]
    return f"R_early({a['method'].upper()}) − R_early({b['method'].upper()}) = {_ci(diff)}: {reading}."


def lock_table(summary: dict) -> list[str]:
    """Markdown rows: every arm's outcome, gain, retention, accuracy and increment."""
    stats = summary["stats"]
    lines = [f"### {summary['run']} ({summary['method']}, K = {summary['K']}, mode {summary['mode']}, t0 = {summary['t0']} "
             f"of {summary['steps']} steps, {summary['seeds']} seed(s) × {summary['prompts']} held-out prompts)", "",
             f"Outcome: {OUTCOME_NAMES.get(summary['kind'], summary['kind'])}, lower is better.", "",
             "| arm | outcome at T | gain vs t0 [95% CI] | retention [95% CI] | greedy accuracy | ‖ΔW_T − ΔW_t0‖_F | share in span(V) (random K/n) |",
             "|---|---|---|---|---|---|---|"]
    for arm in ARM_ORDER:
        if arm not in summary["mean_outcome"]:
            continue
        inc = [i for i in summary["increments"].get(arm, []) if i]
        norm = math.sqrt(sum(i["increment_sq"] for i in inc) / len(inc)) if inc else None
        share = (f"{sum(i['inside_share'] for i in inc) / len(inc):.3f} ({sum(i['random_share'] for i in inc) / len(inc):.3f})"
                 if inc else "–")
        acc = summary["accuracy"].get(arm)
        lines.append(f"| {arm} | {summary['mean_outcome'][arm]:.4f} | {_ci(stats['gain'][arm], 4)} | {_ci(stats['retention'][arm])} | "
                     f"{'–' if acc is None else f'{acc:.3f}'} | {'–' if norm is None else f'{norm:.3g}'} | {share} |")
    return lines


def plot_retention(summaries: list, path: Path) -> None:
    """Retention of every arm per method, with 95% intervals, values printed, 0 (t0) and 1 (unconstrained) drawn."""
    arms = [a for a in ("early", "random", "final", "unconstrained")]
    with figure(path, size=(2.5 + 2.6 * len(summaries), 3.8)) as (fig, ax):
        width = 0.8 / len(arms)
        for j, summary in enumerate(summaries):
            for i, arm in enumerate(arms):
                value = summary["stats"]["retention"].get(arm)
                if value is None:
                    continue
                x = j + (i - (len(arms) - 1) / 2) * width
                low, high = value["low"], value["high"]
                err = [[value["estimate"] - low], [high - value["estimate"]]] if low == low else None
                ax.bar(x, value["estimate"], width * 0.9, color=f"C{i}", alpha=0.85, label=arm if j == 0 else None,
                       edgecolor=method_colour(summary["method"] or ""), linewidth=1.5)
                ax.errorbar(x, value["estimate"], yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
                ax.annotate(f"{value['estimate']:.2f}", (x, max(value["estimate"], high if high == high else 0)),
                            textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        ax.axhline(0.0, color="grey", lw=1, ls="--", label="t0 (frozen)")
        ax.axhline(1.0, color="black", lw=1, ls=":", label="unconstrained")
        ax.set_xticks(range(len(summaries)), [f"{s['run']}\n({s['method']}, {s['seeds']} seed(s))" for s in summaries], fontsize=8)
        ax.set_ylabel("retention R (1 = unconstrained, 0 = t0)")
        ax.set_title("subspace locking from t0, 95% paired bootstrap intervals", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def verdicts(summaries: list) -> list[str]:
    """The sentences the report opens with: one per method, then OPD against SFT when both ran."""
    lines = [verdict(s) for s in summaries]
    by_method = {s["method"]: s for s in summaries}
    if "opd" in by_method and "sft" in by_method:
        sentence = method_contrast(by_method["opd"], by_method["sft"])
        lines += [sentence] if sentence else []
    return lines


def lock_section(summaries: list, root: Path) -> list[str]:
    """The report's locking section (markdown lines) and its figure."""
    if not summaries:
        return []
    lines = ["## Subspace locking", ""]
    lines += ["Retention R = (L_t0 − L_arm) / (L_t0 − L_unconstrained) on the held-out outcome; 95% percentile intervals",
              "from a paired bootstrap over prompts (and seeds), 2000 draws. Every arm starts from the source's exact t0",
              "state (weights, optimizer and scheduler state, step) and sees the same batches; locked arms move only inside",
              "span(V) (mode `projected`: AdamW in ΔW's coordinates, each step projected). The unconstrained arm's share in",
              "span(V) is its future capture by the early subspace.", ""]
    for summary in summaries:
        lines += lock_table(summary) + [""]
    plot_retention(summaries, root / "report_locking.png")
    return lines + ["![locking](report_locking.png)", ""]
