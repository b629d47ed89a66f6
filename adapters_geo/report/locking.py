"""The locking section of the report: per method, retention of each arm with 95% intervals and a verdict.

Read from a finished `lock` experiment folder: each seed's arms and their per-prompt held-out
outcomes (evals/) at t0 (the frozen arm) and at T; locking/stats.py gives gains, retentions and contrasts
with paired bootstrap intervals over prompts and seeds. Every sentence is built from an interval;
where an interval straddles its null value the sentence says "undecided at this budget". Each method's
line reads the early arm against the experiment's margins (stats.margin_reading: preserves / degrades /
undecided / no gain to retain), names its budget (model, task, steps, seeds, prompts, mode) and, for the
methods the paper makes a claim about (OPD's early subspace preserves its gain, SFT's degrades it), says
whether this run supports it, contradicts it, or leaves it undecided at this budget.
"""

import math
from pathlib import Path

import torch

from adapters_geo.report.plots import figure, method_colour
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.locking.stats import DEGRADES, PRESERVES, contrast, decided, draw_indices, margin_reading, retention
from adapters_geo.tasks import label as task_label

ARM_ORDER = ("frozen", "unconstrained", "early", "random", "final", "principal", "cross")
OLD_FINAL = "final (ΔW_T − ΔW_init, the definition before 2026-12-05)"  # a final arm whose config lacks final_of
CLAIMS = {"opd": "preserves", "sft": "degrades"}  # claim 3 of 2606.07082, per method: what locking does to its gain
OUTCOME_SHORT = {"kl": "KL to the teacher", "nll": "reference NLL", "neg_reward": "−reward", "sampled": "sampled accuracy",
                 "greedy": "greedy accuracy"}
OUTCOME_NAMES = {"sampled": "− mean reward of k temperature-1 samples per prompt (the common outcome, common random numbers)",
                 "kl": "reverse KL to the teacher (nats/token)", "nll": "NLL of reference solutions (nats/token)",
                 "neg_reward": "− mean reward of 4 samples", "greedy": "− greedy accuracy"}


def _outcome_at(folder: Path, step: int):
    evals = RunFolder(folder).prompt_evals()
    return evals.get(step)


def _arm_dir(folder: Path, done: dict, seed: str, arm: str) -> Path:
    return Path(done["seeds"][seed]["arms"].get(arm, {}).get("folder") or folder / f"seed_{seed}" / arm)


def lock_summary(folder: Path, draws: int = 2000) -> dict | None:
    """Per-arm retentions (with draws for contrasts), gains, accuracies and increments of a lock experiment.

    The verdict's outcome is the common one (−mean reward of k samples, train.eval_samples) where every arm has it,
    as the paper judges by task accuracy; else the method's own (tasks/outcome.py). The other is kept beside it.
    """
    run = RunFolder(folder)
    done, experiment = run.done(), run.experiment()
    if done is None or experiment is None or experiment["file"].get("kind") != "lock" or "seeds" not in done:
        return None
    seeds = sorted(done["seeds"], key=int)
    first_source = RunFolder(done["seeds"][seeds[0]]["source"])
    method = (first_source.config_dict() or {}).get("method", {}).get("name")
    losses, beside, accuracy, kind = {}, {"sampled": {}, "nll": {}, "greedy": {}}, {}, None
    for arm in ARM_ORDER:
        rows, found_beside = [], {name: [] for name in beside}
        for s in seeds:
            arm_dir = _arm_dir(folder, done, s, arm)
            found = _outcome_at(arm_dir, done["t0"] if arm == "frozen" else done["steps"])
            if found is None:
                break
            kind = found["outcome_kind"]
            rows.append(torch.tensor(found["outcome"], dtype=torch.float64))
            for name, key, sign in (("sampled", "sampled_reward", -1), ("nll", "reference_nll", 1), ("greedy", "greedy_reward", -1)):
                if found.get(key) is not None:  # as a loss: lower is better
                    found_beside[name].append(sign * torch.tensor(found[key], dtype=torch.float64))
            if "greedy_reward" in found:
                accuracy.setdefault(arm, []).append(sum(r >= 1 for r in found["greedy_reward"]) / len(found["greedy_reward"]))
        if len(rows) == len(seeds):
            losses[arm] = torch.stack(rows)
            for name, values in found_beside.items():
                if len(values) == len(seeds):
                    beside[name][arm] = torch.stack(values)
    if "frozen" not in losses or "unconstrained" not in losses:
        return None
    indices = draw_indices(len(seeds), losses["frozen"].shape[1], draws)
    outcomes = {kind: losses}
    if set(beside["sampled"]) == set(losses):  # every arm has the common outcome: the verdict uses it
        outcomes = {"sampled": beside["sampled"], kind: losses}
    for name in ("nll", "greedy"):  # the other outcomes every arm has, shown beside the verdict's (issue 22 part 2)
        if name not in outcomes and set(beside[name]) == set(losses):
            outcomes[name] = beside[name]
    kind, losses = next(iter(outcomes.items()))
    stats = retention(losses, indices=indices)
    other = [{"kind": k, "stats": retention(v, indices=indices)} for k, v in list(outcomes.items())[1:]]
    declared = experiment["file"]
    margins = {"preserves": float(declared.get("preserves", PRESERVES)), "degrades": float(declared.get("degrades", DEGRADES))}
    config = first_source.config_dict() or {}
    task = config.get("task", {})
    budget = (f"{config.get('model', '?')}, {task_label(task)}, {done['steps'] - done['t0']} steps "
              f"from t0 = {done['t0']}, {len(seeds)} seed(s) × {losses['frozen'].shape[1]} prompts, mode {done['mode']}, "
              f"on {OUTCOME_SHORT.get(kind, kind)}")
    increments = {arm: [done["seeds"][s]["arms"][arm].get("increment") for s in seeds] for arm in losses if arm != "frozen"}
    old_final = ["final"] if "final" in losses and any(  # an arm run before `final` meant the increment after t0
        "final_of" not in ((RunFolder(_arm_dir(folder, done, s, "final")).config_dict() or {}).get("adapter") or {})
        for s in seeds) else []
    return {"run": folder.name, "method": method, "K": done["K"], "mode": done["mode"], "t0": done["t0"], "steps": done["steps"],
            "seeds": len(seeds), "prompts": losses["frozen"].shape[1], "kind": kind, "stats": stats, "budget": budget,
            "margin": margin_reading(stats, "early", **margins) if "early" in losses else None, "other": other,
            "mean_outcome": {arm: v.mean().item() for arm, v in losses.items()},
            "accuracy": {arm: sum(v) / len(v) for arm, v in accuracy.items()}, "increments": increments,
            "indices": indices, "losses": losses, "old_final": old_final}


def _ci(value: dict, digits: int = 2) -> str:
    if value["low"] != value["low"]:
        return f"{value['estimate']:.{digits}f} [no interval]"
    return f"{value['estimate']:.{digits}f} [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"


def _reading(margin: dict) -> str:
    high, low = f"{margin['preserves']:g}", f"{margin['degrades']:g}"
    return {"preserves": f"preserves the gain (R ≥ {high} within the interval)",
            "degrades": f"degrades it (R ≤ {low} within the interval)",
            "between": f"keeps more than {low} and less than {high} of it within the interval: it neither preserves nor "
                       "degrades it",
            "above degrades": f"keeps more than {low} of it within the interval (it does not degrade it), while R ≥ "
                              f"{high} is not shown",
            "below preserves": f"keeps less than {high} of it within the interval (it does not preserve it), while R ≤ "
                               f"{low} is not shown",
            "undecided": f"neither preserves it (R ≥ {high}) nor degrades it (R ≤ {low}) within the interval: undecided "
                         "at this budget"}[margin["reading"]]


MIN_SEEDS = 3  # training seeds before the paper's claim gets supported / contradicted: with fewer the interval covers
#   prompts, not the training run, and a new seed has flipped the reading (docs/experiments.md, "Measured")


def claim_status(method: str, margin: dict, seeds: int = MIN_SEEDS) -> str | None:
    """supported / contradicted / undecided at this budget, for the paper's claim about `method` (None: it makes none),
    each claim read against its own margin: "preserves" holds when R ≥ preserves is shown and fails when R < preserves
    is; "degrades" holds when R ≤ degrades is shown and fails when R > degrades is."""
    claim = CLAIMS.get(method)
    if claim is None:
        return None
    if seeds < MIN_SEEDS or margin["reading"] == "no gain to retain":
        return "undecided at this budget"
    side = decided(margin["preserve" if claim == "preserves" else "degrade"])
    holds = "above" if claim == "preserves" else "below"
    return "supported" if side == holds else "undecided at this budget" if side == "undecided" else "contradicted"


def verdict(summary: dict) -> str:
    """One sentence per method from the intervals, naming its budget."""
    method, stats = (summary["method"] or "?").upper(), summary["stats"]
    head = f"{method}, {summary['run']} ({summary.get('budget', '')})"
    gain = stats["gain"]["unconstrained"]
    if decided(gain) != "above":
        return (f"{head}: the unconstrained continuation's gain, {_ci(gain, 3)}, is not clearly above 0: no gain to "
                "retain, undecided at this budget.")
    retained = stats["retention"]
    parts = []
    margin = summary.get("margin")
    if margin is not None:
        shown = {"preserves": ["preserve"], "degrades": ["degrade"]}.get(margin["reading"], ["preserve", "degrade"])
        contrasts = ", ".join(f"gain_early − {margin[which + 's']:g}·gain_unconstrained = {_ci(margin[which], 4)}" for which in shown)
        parts.append(f"the early subspace retains {_ci(retained['early'])} of the unconstrained gain ({contrasts}): "
                     f"it {_reading(margin)}")
    parts += [f"the {OLD_FINAL if arm in summary.get('old_final', ()) else arm} subspace retains "
              f"{_ci(retained[arm])}" for arm in ("random", "final", "principal", "cross") if arm in retained]
    sentence = f"{head}: " + "; ".join(parts) if parts else f"{head}: no locked arm"
    if "early" in retained and "random" in retained:
        diff = contrast(stats["draws"]["early"], stats["draws"]["random"],
                        retained["early"]["estimate"] - retained["random"]["estimate"])
        reading = {"above": "the early subspace keeps more than a random one",
                   "below": "a random subspace keeps more than the early one",
                   "undecided": "early vs random: undecided at this budget"}[decided(diff)]
        sentence += f"; early − random = {_ci(diff)}: {reading}"
    status = claim_status(summary["method"], margin, summary["seeds"]) if margin else None
    if status:
        sentence += (f". The paper's claim ({method}'s early subspace {CLAIMS[summary['method']]} its gain): "
                     f"**{status}** here")
        if summary["seeds"] < MIN_SEEDS and claim_status(summary["method"], margin) != "undecided at this budget":
            sentence += (f" ({summary['seeds']} training seed(s): the interval covers prompts, not the training run; "
                         f"it takes {MIN_SEEDS}, e.g. SEEDS={MIN_SEEDS})")
    return sentence + "."


def method_contrast(a: dict, b: dict) -> str | None:
    """R_early of method a − method b, paired over their shared held-out prompts (same seeds and draws)."""
    if "early" not in a["stats"]["retention"] or "early" not in b["stats"]["retention"]:
        return None
    if a["prompts"] != b["prompts"] or a["seeds"] != b["seeds"] or (a["kind"] == "sampled") != (b["kind"] == "sampled"):
        return None  # unpaired, or one judged on the common outcome and the other on its own
    shared = draw_indices(a["seeds"], a["prompts"])
    ra, rb = retention(a["losses"], indices=shared), retention(b["losses"], indices=shared)
    diff = contrast(ra["draws"]["early"], rb["draws"]["early"],
                    ra["retention"]["early"]["estimate"] - rb["retention"]["early"]["estimate"])
    reading = {"above": f"{a['method'].upper()} keeps more of its gain in its early subspace than {b['method'].upper()}",
               "below": f"{b['method'].upper()} keeps more of its gain in its early subspace than {a['method'].upper()}",
               "undecided": "undecided at this budget"}[decided(diff)]
    return f"R_early({a['method'].upper()}, {a['run']}) − R_early({b['method'].upper()}, {b['run']}) = {_ci(diff)}: {reading}."


def lock_table(summary: dict) -> list[str]:
    """Markdown rows: every arm's outcome, gain, retention, accuracy and increment."""
    stats = summary["stats"]
    lines = [f"### {summary['run']} ({summary['method']}, K = {summary['K']}, mode {summary['mode']}, t0 = {summary['t0']} "
             f"of {summary['steps']} steps, {summary['seeds']} seed(s) × {summary['prompts']} held-out prompts)", "",
             f"Outcome: {OUTCOME_NAMES.get(summary['kind'], summary['kind'])}, lower is better. Budget: {summary.get('budget', '')}.",
             ""]
    margin = summary.get("margin")
    if margin is not None:
        lines += [f"Margins: the early arm preserves the gain when gain_early − {margin['preserves']:g}·gain_unconstrained is above 0 "
                  f"({_ci(margin['preserve'], 4)}), degrades it when gain_early − {margin['degrades']:g}·gain_unconstrained "
                  f"is below 0 ({_ci(margin['degrade'], 4)}): **{margin['reading']}**.", ""]
    others = summary.get("other") or []
    lines += ["| arm | outcome at T | gain vs t0 [95% CI] | retention [95% CI] | "
              + "".join(f"retention on {OUTCOME_SHORT.get(o['kind'], o['kind'])} | " for o in others)
              + "greedy accuracy | ‖ΔW_T − ΔW_t0‖_F | share in span(V) (random K/n) |",
              "|---|---|---|---|" + "---|" * len(others) + "---|---|---|"]
    no_gain = decided(stats["gain"]["unconstrained"]) != "above"  # then a ratio is not read
    for arm in ARM_ORDER:
        if arm not in summary["mean_outcome"]:
            continue
        inc = [i for i in summary["increments"].get(arm, []) if i]
        norm = math.sqrt(sum(i["increment_sq"] for i in inc) / len(inc)) if inc else None
        share = (f"{sum(i['inside_share'] for i in inc) / len(inc):.3f} ({sum(i['random_share'] for i in inc) / len(inc):.3f})"
                 if inc else "–")
        acc = summary["accuracy"].get(arm)
        retained = "no gain to retain" if no_gain else _ci(stats["retention"][arm])
        beside = "".join(f"{_ci(o['stats']['retention'][arm])} | " for o in others)
        label = OLD_FINAL if arm in summary.get("old_final", ()) else arm
        lines.append(f"| {label} | {summary['mean_outcome'][arm]:.4f} | {_ci(stats['gain'][arm], 4)} | {retained} | {beside}"
                     f"{'–' if acc is None else f'{acc:.3f}'} | {'–' if norm is None else f'{norm:.3g}'} | {share} |")
    return lines


def plot_retention(summaries: list, path: Path) -> None:
    """Retention of every arm per method, with 95% intervals, values printed, 0 (t0) and 1 (unconstrained) drawn."""
    arms = [a for a in ("early", "random", "final", "principal", "cross", "unconstrained")
            if any(a in summary["stats"]["retention"] for summary in summaries)]
    with figure(path, size=(2.5 + 2.6 * len(summaries), 3.8)) as (fig, ax):
        width, labelled = 0.8 / len(arms), set()  # each arm in the legend once, the first time it is drawn
        for j, summary in enumerate(summaries):
            for i, arm in enumerate(arms):
                value = summary["stats"]["retention"].get(arm)
                if value is None:
                    continue
                x = j + (i - (len(arms) - 1) / 2) * width
                low, high = value["low"], value["high"]
                err = [[value["estimate"] - low], [high - value["estimate"]]] if low == low else None
                ax.bar(x, value["estimate"], width * 0.9, color=f"C{i}", alpha=0.85, label=arm if arm not in labelled else None,
                       edgecolor=method_colour(summary["method"] or ""), linewidth=1.5)
                labelled.add(arm)
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
    same = lambda a, b: all(a[key] == b[key] for key in ("mode", "K", "t0", "steps"))  # one design, two methods
    for a in (s for s in summaries if s["method"] == "opd"):
        for b in (s for s in summaries if s["method"] == "sft" and same(a, s)):
            sentence = method_contrast(a, b)
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
              "span(V) is its future capture by the early subspace. The verdict reads the early arm against margins the",
              "experiment declares (default: preserves when R ≥ 0.9, degrades when R ≤ 0.8, each over the whole interval),",
              "tested on the linear contrast gain_early − c·gain_unconstrained (no ratio); prompts are drawn once per",
              "bootstrap draw and shared by every seed and arm.", ""]
    for summary in summaries:
        lines += lock_table(summary) + [""]
    plot_retention(summaries, root / "report_locking.png")
    return lines + ["![locking](report_locking.png)", ""]
