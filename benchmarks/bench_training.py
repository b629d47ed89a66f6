"""Benchmark: training throughput of SFT, OPD and RLVR against TRL, side by side, in one run.

Run: make bench   (or: python benchmarks/bench_training.py [--methods opd,rlvr] [--adapters dense,lora] ...)
Needs TRL for the comparison (`pip install -e ".[bench]"`); without it, --no-trl measures ours only.

For each method × adapter, both tools train the same student (random weights of SmolLM2-135M's
shape by default: speed depends on shapes, and a lent GPU cannot fetch weights) on the same
arithmetic prompts with the same sequences per step (SFT: 8 examples; OPD and RLVR: 2 prompts ×
4 samples), completion length (40 new tokens), sampling (temperature 1, no top-k / top-p),
precision (fp32 on the CPU, bf16 on CUDA), optimizer (AdamW, clip 1.0) and trainable weights.
OPD's teacher is a second random model of the same shape (another seed); TRL's OPD is its
DistillationTrainer (always on-policy; β = 1: reverse KL over the full vocabulary), compared with
ours in its default form (sampled-token policy gradient on the teacher's log-probs) and with
`full_vocab_kl` (the same objective as TRL's). RLVR's reward is a fixed pseudo-random coin per
completion text, so groups have reward variance and both sides do a full update every step.

Sampling precision: ours draws rollouts from a bf16 copy of the merged policy where the hardware
has fast bf16 kernels (rollout/sampler.py; AVX512-BF16 CPUs, CUDA); TRL samples in its training
precision (fp32 on the CPU, bf16 on CUDA). Where the two differ, ours also runs with an fp32
sampler ("ours, fp32 sampler") so the ratio at equal precision is printed too (a LoRA student on a plain base
then samples from a merged fp32 copy; TRL samples through peft's layers).

Reported per row: median step time over the timed steps (after warm-up), completion tokens/s
(SFT: sequences/s), the ratio ours / TRL of the mean per-step throughputs with a 95 % bootstrap
interval over the timed steps (pooled over `--repeats` runs of each side, alternating; a target is met
only where the whole interval clears it, "undecided at this budget" where it straddles it), and for ours the cost of trajectory tracking measured
in the same run: every tracked step of a 100-step run's default schedule (10 points: factors, bf16 at
t0, at the end a reference to the saved adapter, as in a run) run on the trained adapter, its median seconds per storage format, and their
sum over the 100 steps' training time (the timed training itself tracks nothing).
At the end it prints the targets (OPD and RLVR ≥ 1.5× TRL; tracking < 5% of a 100-step run) and
whether this run met them; `--runs runs` adds, for each finished run, evaluation and tracking + analysis
as shares of its wall time (from its done.json), against the ≤ 20% and < 25% targets; `--runs runs
--shares-only` prints only those (e.g. the lock_opd chain after `make experiment NAME=lock_opd`).
"""

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from random_models import random_model  # noqa: E402

from adapters_geo.adapters import DenseConfig, LoraConfig, attach_adapter  # noqa: E402
from adapters_geo.methods import Context, MethodConfig, build_method  # noqa: E402
from adapters_geo.pipeline.runner import train_into  # noqa: E402
from adapters_geo.training.config import TrainConfig  # noqa: E402
from adapters_geo.methods.teacher import load_teacher_for  # noqa: E402
from adapters_geo.models import load_base  # noqa: E402
from adapters_geo.rollout.sampler import sampler_dtype  # noqa: E402
from adapters_geo.tasks import TaskConfig, load_task  # noqa: E402


@dataclass
class Setting:
    adapter: str = "dense"
    prompts: int = 2  # prompts per step (sft: prompts × group examples)
    group: int = 4  # samples per prompt
    max_new_tokens: int = 40
    lr: float = 1e-5
    seed: int = 0
    warmup: int = 1  # untimed first steps
    steps: int = 4  # timed steps
    lora_r: int = 8
    lora_alpha: float = 16.0


def coin_reward(completion: str, answer) -> float:
    """A fixed pseudo-random 0/1 per completion text: reward variance in every group, no task skill needed."""
    return float(zlib.crc32(completion.strip().encode()) % 2)


def build_run(method: str, setting: Setting, student, teacher, task, quant: str = "none", full_vocab: bool = False,
              sampler: str = "auto"):
    """(model, tokenizer, method object, prompts per step) for adapters_geo's loop; OPD's teacher quantized like the student."""
    base = load_base(str(student), quant)
    adapter = DenseConfig() if setting.adapter == "dense" else LoraConfig(r=setting.lora_r, alpha=setting.lora_alpha)
    model = attach_adapter(base.model, adapter)
    config = MethodConfig(name=method, group_size=setting.group, max_new_tokens=setting.max_new_tokens,
                          teacher=str(teacher) if method == "opd" else None, teacher_quant=quant, full_vocab_kl=full_vocab,
                          sampler=sampler)
    teacher_base = load_teacher_for(config.teacher, quant, str(student), base.tokenizer) if method == "opd" else None
    ctx = Context(model, base.tokenizer, task, config, teacher_base, None, None, setting.seed)
    batch = setting.prompts * (setting.group if method == "sft" else 1)
    return model, base.tokenizer, build_method(ctx), batch


def run_ours(method: str, setting: Setting, student, teacher, task, out: Path, full_vocab: bool = False,
             sampler: str = "auto", track: bool = False) -> dict:
    """Train with adapters_geo's loop; step time and tokens from its metrics.jsonl; with `track`, the tracking cost."""
    model, tokenizer, runner, batch = build_run(method, setting, student, teacher, task, full_vocab=full_vocab, sampler=sampler)
    tracker = tracker_for(model, out / "tracking") if track else None  # before training: ΔW_start = 0, as in a run
    steps = setting.warmup + setting.steps
    train_config = TrainConfig(steps=steps, batch_size=batch, lr=setting.lr, seed=setting.seed, eval_size=1, eval_every=0,
                               eval_batch=1, checkpoint_every=10**6, track_steps=[])
    train_into(out, model, tokenizer, runner, task, train_config, max_new_tokens=setting.max_new_tokens, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["group"] == "train" and r["step"] > setting.warmup]
    sequences = batch * (setting.group if method != "sft" else 1)
    return {
        "samples": [(r["completion_tokens"] if method != "sft" else sequences) / r["step_seconds"] for r in timed],
        "step_seconds": statistics.median(r["step_seconds"] for r in timed),
        "tokens_per_step": statistics.median(r["completion_tokens"] for r in timed) if method != "sft" else None,
        "sequences_per_step": batch * (setting.group if method != "sft" else 1),
        "generation_share": statistics.median(r["generation_share"] for r in timed),
        **(tracking_cost(tracker) if track else {}),
    }


class TrackingCosts:
    """A logger keeping the tracker's own cost rows."""

    def __init__(self):
        self.rows = []

    def scalars(self, step, values, prefix=""):
        if prefix == "tracking":
            self.rows.append(values)

    def histogram(self, step, name, values):
        pass


def tracker_for(model, folder: Path, total: int = 100):
    """A tracker with a `total`-step run's default schedule, built on the untrained adapter (ΔW_start = 0).

    As in a run (runner.train_into), the final step refers to the adapter the run saves anyway (format `adapter`)."""
    from adapters_geo.training.tracker import Tracker

    return Tracker(model, folder, total_steps=total, references={total: "adapter"})


def tracking_cost(tracker) -> dict:
    """Every tracked step of the tracker's schedule, run on the trained adapter and timed (wall).

    The steps all see the trained ΔW; as in a run, the first one also decomposes W_start for the layer subset,
    and the last one refers to the run's saved adapter (its spectra and top vectors are stored, not ΔW).
    """
    costs = TrackingCosts()
    for step in tracker.writer.steps:
        tracker.on_step(step, costs)
    by_format = {}
    for row in costs.rows:
        by_format.setdefault(row["format"], []).append(row["seconds"])
    return {"tracking": {fmt: statistics.median(v) for fmt, v in by_format.items()},
            "tracking_run_seconds": sum(row["seconds"] for row in costs.rows), "tracked_steps": len(costs.rows)}


def quiet() -> None:
    """No progress bars from datasets / transformers: the benchmark prints one line per run."""
    import transformers

    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # only TRL's side needs datasets
        pass
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def tracking_overhead(result: dict, steps: int = 100) -> float | None:
    """Time of the default tracking of a `steps`-step run (measured: tracking_cost) over the run's step time."""
    if "tracking_run_seconds" not in result:
        return None
    return result["tracking_run_seconds"] / (steps * result["step_seconds"])


def throughput(result: dict, method: str) -> float:
    """Completion tokens/s (opd, rlvr) or sequences/s (sft)."""
    per_step = result["sequences_per_step"] if method == "sft" else result["tokens_per_step"]
    return per_step / result["step_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="sft,opd,rlvr")
    parser.add_argument("--adapters", default="dense,lora")
    parser.add_argument("--weights", default="random", help="random (of --shape) or a model spec")
    parser.add_argument("--shape", default="smollm2-135m", choices=["smollm2-135m", "smollm2-1.7b"], help="random weights' shape")
    parser.add_argument("--runs", type=Path, default=None,
                        help="also report evaluation and tracking + analysis shares of the finished runs here")
    parser.add_argument("--shares-only", action="store_true", help="only the --runs shares (no training is timed)")
    parser.add_argument("--layers", type=int, default=None, help="random weights: fewer layers (quick checks)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--no-trl", action="store_true", help="measure adapters_geo only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--ours-only", action="store_true", help="only the plain `ours` row of each method × adapter")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of every row, ours and TRL alternating; the ratio's 95%% interval pools their steps")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.shares_only:
        print(targets([], args.runs or Path("runs")))
        return
    quiet()
    if not args.no_trl:
        try:
            import trl  # noqa: F401
        except ImportError:
            sys.exit('error: TRL is not installed; fix: pip install -e ".[bench]" (or run with --no-trl)')
    student = random_model(args.shape, seed=0, layers=args.layers) if args.weights == "random" else args.weights
    teacher = random_model(args.shape, seed=1, layers=args.layers) if args.weights == "random" else args.weights
    task = dataclasses.replace(load_task(TaskConfig(train_size=512, test_size=8)), reward=coin_reward)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device}; student {student}; {args.steps} timed steps after {args.warmup} warm-up")
    ours_sampler = sampler_dtype("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    trl_precision = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    print(f"sampling precision: ours {str(ours_sampler).removeprefix('torch.')}, TRL {str(trl_precision).removeprefix('torch.')}")
    results = []
    for adapter in args.adapters.split(","):
        for method in args.methods.split(","):
            setting = Setting(adapter=adapter, steps=args.steps, warmup=args.warmup, max_new_tokens=args.max_new_tokens)
            variants = [("ours", False, "auto")] + ([("ours full-vocab KL", True, "auto")] if method == "opd" else [])
            if args.ours_only:
                variants = variants[:1]
            elif method != "sft" and ours_sampler != trl_precision:
                variants.append(("ours, fp32 sampler", method == "opd", "float32"))  # equal precision (OPD: TRL's objective)
            rows = {}
            for repeat in range(args.repeats):  # alternating, so a drift of the machine's speed reaches both tools
                for label, full_vocab, sampler in variants:
                    with tempfile.TemporaryDirectory() as tmp:
                        ours = run_ours(method, setting, student, teacher, task, Path(tmp), full_vocab, sampler,
                                        track=label == "ours" and repeat == 0)
                    row = {"method": method, "adapter": adapter, "tool": label, **ours}
                    rows[label] = pooled(rows.get(label), row)
                    print(_line(row), flush=True)
                if not args.no_trl:
                    from trl_side import run_trl

                    from transformers import AutoTokenizer

                    tokenizer = AutoTokenizer.from_pretrained(student)
                    prompts = [e.prompt for e in task.train]
                    solutions = [e.solution for e in task.train]
                    with tempfile.TemporaryDirectory() as tmp:
                        theirs = run_trl(method, setting, student, teacher, tokenizer, prompts, solutions, coin_reward, Path(tmp))
                    row = {"method": method, "adapter": adapter, "tool": "trl", **theirs}
                    rows["trl"] = pooled(rows.get("trl"), row)
                    print(_line(row), flush=True)
            results.extend(rows.values())
    print()
    print(table(results))
    print()
    print(targets(results, args.runs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def targets(results: list, runs: Path | None) -> str:
    """The issue's targets, measured in this run: met or not, with the numbers."""
    lines = ["targets:"]
    trl = {(r["method"], r["adapter"]): r for r in results if r["tool"] == "trl"}
    for r in results:
        ref = trl.get((r["method"], r["adapter"]))
        if r["method"] in ("opd", "rlvr") and ref and r is not ref:
            ratio, low, high = ratio_interval(r["samples"], ref["samples"])
            lines.append(f"  {r['method']} {r['adapter']} {r['tool']}: {ratio:.2f}× TRL [{low:.2f}, {high:.2f}] "
                         f"(target ≥ 1.5×): {verdict(low, high)}")
    for r in results:
        overhead = tracking_overhead(r) if r["tool"] != "trl" and r.get("tracking") else None
        if overhead is not None and r["tool"] == "ours":
            lines.append(f"  tracking {r['method']} {r['adapter']}: {overhead:.1%} of a 100-step run (target < 5%): "
                         f"{'met' if overhead < 0.05 else 'NOT met'}")
    for name, share in run_shares(runs).items() if runs else []:
        if share is None:
            lines.append(f"  {name}: its done.json cannot be read (damaged): left out")
            continue
        lines.append(f"  {name}: evaluation {share['evaluation']:.1%} of its wall time (target ≤ 20%): "
                     f"{'met' if share['evaluation'] <= 0.20 else 'NOT met'}; tracking + analysis {share['tracking_analysis']:.1%} "
                     f"(target < 25%): {'met' if share['tracking_analysis'] < 0.25 else 'NOT met'}")
    return "\n".join(lines)


def pooled(previous: dict | None, result: dict) -> dict:
    """`result` with the per-step throughputs of an earlier repeat of the same row added (tracking from the first)."""
    if previous is None:
        return result
    return {**previous, "samples": previous["samples"] + result["samples"],
            "step_seconds": statistics.median([previous["step_seconds"], result["step_seconds"]])}


def ratio_interval(ours: list, theirs: list, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean throughput ratio ours / theirs, 95 % bootstrap interval) resampling each tool's timed steps."""
    a, b = torch.tensor(ours, dtype=torch.float64), torch.tensor(theirs, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    ia = torch.randint(len(a), (draws, len(a)), generator=g)
    ib = torch.randint(len(b), (draws, len(b)), generator=g)
    ratios = a[ia].mean(1) / b[ib].mean(1)
    low, high = torch.quantile(ratios, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return (a.mean() / b.mean()).item(), low, high


def verdict(low: float, high: float, target: float = 1.5) -> str:
    """met / NOT met / undecided for a ratio whose 95 % interval is [low, high]."""
    return "met" if low >= target else "NOT met" if high < target else "undecided at this budget"


def run_shares(runs: Path) -> dict:
    """{run: {"evaluation", "tracking_analysis"}}: shares of the total seconds of every finished run under `runs`
    (done.json's breakdown; archived runs and runs without a breakdown are left out)."""
    shares = {}
    for done in sorted(runs.rglob("done.json")):
        if ".archive" in done.relative_to(runs).parts:
            continue
        try:
            seconds = json.loads(done.read_text(encoding="utf-8")).get("seconds") or {}
        except (ValueError, AttributeError):  # damaged: said, not measured
            shares[str(done.parent.relative_to(runs))] = None
            continue
        total = seconds.get("total", 0.0)
        if total > 0:
            shares[str(done.parent.relative_to(runs))] = {
                "evaluation": seconds.get("evaluation", 0.0) / total,
                "tracking_analysis": (seconds.get("tracking", 0.0) + seconds.get("analysis", 0.0)) / total}
    return shares


def _line(r: dict) -> str:
    unit = "seq/s" if r["method"] == "sft" else "tok/s"
    return f"  {r['method']:5s} {r['adapter']:6s} {r['tool']:18s} {r['step_seconds']:7.2f} s/step {throughput(r, r['method']):8.1f} {unit}"


def table(results: list) -> str:
    """Markdown table: throughput of each tool, ratio to TRL, tracking overhead of ours."""
    lines = ["| method | adapter | tool | s/step | throughput | vs TRL | generation share | tracked step (factors / bf16 / final) | tracking overhead, 100 steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    trl = {(r["method"], r["adapter"]): r for r in results if r["tool"] == "trl"}
    for r in results:
        unit = "seq/s" if r["method"] == "sft" else "tok/s"
        ref = trl.get((r["method"], r["adapter"]))
        ratio = "{:.2f}× [{:.2f}, {:.2f}]".format(*ratio_interval(r["samples"], ref["samples"])) if ref and r is not ref else ""
        share = f"{r['generation_share']:.0%}" if r.get("generation_share") is not None and r["method"] != "sft" else ""
        t = r.get("tracking") or {}
        tracked = " / ".join(f"{t[k]:.2f}" for k in ("factors", "bf16", "adapter") if k in t) + (" s" if t else "")
        overhead = tracking_overhead(r) if t else None
        lines.append(f"| {r['method']} | {r['adapter']} | {r['tool']} | {r['step_seconds']:.2f} | "
                     f"{throughput(r, r['method']):.1f} {unit} | {ratio} | {share} | {tracked} | "
                     f"{f'{overhead:.1%}' if overhead is not None else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
