"""Benchmark: peak memory of a training step for each method × adapter × quantization.

Run: make bench-memory   (or: python benchmarks/bench_memory.py [--methods sft,opd] [--quants none,4bit])

Each combination trains 2 steps of adapters_geo's loop (the last one tracked: ΔW snapshot and spectra) in its own
subprocess, on random weights of SmolLM2-135M's shape (`--shape smollm2-1.7b`: SmolLM2-1.7B's) (OPD's teacher: a second random model,
quantized like the student), 2 prompts × 4 samples (SFT: 8 examples), 40 new tokens. Peak
memory is the subprocess's maximum RSS on the CPU, torch.cuda.max_memory_allocated on CUDA; the
baseline (Python + torch + transformers imported, nothing loaded) is printed so the model's
share can be read off.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def peak_mib() -> float:
    """This process's peak memory in MiB (CUDA: allocated by torch; CPU: max RSS)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, adapter: str, quant: str, layers, shape: str = "smollm2-135m") -> dict:
    """One measurement (runs inside the subprocess)."""
    import dataclasses

    sys.path.insert(0, str(HERE))
    from bench_training import Setting, build_run, coin_reward, quiet
    from random_models import random_model

    from adapters_geo.pipeline.runner import train_into
    from adapters_geo.training.config import TrainConfig
    from adapters_geo.tasks import TaskConfig, load_task

    quiet()
    student, teacher = random_model(shape, seed=0, layers=layers), random_model(shape, seed=1, layers=layers)
    setting = Setting(adapter=adapter)
    before = peak_mib()
    task = dataclasses.replace(load_task(TaskConfig(train_size=64, test_size=1)), reward=coin_reward)
    model, tokenizer, runner, batch = build_run(method, setting, student, teacher, task, quant)
    with tempfile.TemporaryDirectory() as tmp:
        train_into(Path(tmp), model, tokenizer, runner, task, TrainConfig(steps=2, batch_size=batch, eval_size=1, eval_every=0, eval_batch=1, track_steps=[2]),
                   max_new_tokens=setting.max_new_tokens, progress=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"method": method, "adapter": adapter, "quant": quant, "shape": shape, "peak_mib": peak_mib(),
            "baseline_mib": before, "trainable": trainable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="sft,opd,rlvr")
    parser.add_argument("--adapters", default="dense,lora")
    parser.add_argument("--quants", default="none,8bit,4bit")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers (quick checks)")
    parser.add_argument("--shape", default="smollm2-135m", choices=["smollm2-135m", "smollm2-1.7b"], help="random weights' shape")
    parser.add_argument("--budget-gib", type=float, default=None, help="also say whether each peak fits this many GiB")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "ADAPTER", "QUANT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args.layers, args.shape)), flush=True)
        return
    rows = []
    for quant in args.quants.split(","):
        for adapter in args.adapters.split(","):
            for method in args.methods.split(","):
                command = [sys.executable, __file__, "--child", method, adapter, quant]
                command += (["--layers", str(args.layers)] if args.layers else []) + ["--shape", args.shape]
                done = subprocess.run(command, capture_output=True, text=True)
                found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode or not found:
                    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"  {method} {adapter} {quant}: failed ({tail})", flush=True)
                    continue
                rows.append(json.loads(found[0][len("RESULT "):]))
                r = rows[-1]
                print(f"  {method:5s} {adapter:6s} {quant:5s} peak {r['peak_mib']:7.0f} MiB "
                      f"(baseline {r['baseline_mib']:.0f} MiB), {r['trainable'] / 1e6:.1f} M trainable"
                      + (f"; fits {args.budget_gib:g} GiB: {'yes' if r['peak_mib'] <= args.budget_gib * 1024 else 'NO'}"
                         if args.budget_gib else ""), flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def table(rows: list) -> str:
    """Markdown: peak MiB per method (columns) for each adapter × quantization (rows)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = {(r["adapter"], r["quant"], r["method"]): r["peak_mib"] for r in rows}
    lines = ["| adapter | quant | " + " | ".join(f"{m} peak MiB" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for adapter, quant in dict.fromkeys((r["adapter"], r["quant"]) for r in rows):
        values = [f"{cells[(adapter, quant, m)]:.0f}" if (adapter, quant, m) in cells else "–" for m in methods]
        lines.append(f"| {adapter} | {quant} | " + " | ".join(values) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
