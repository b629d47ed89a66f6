"""Check the CUDA path: a bf16 base with an fp32 ΔW keeps updates that merging into bf16 would lose,
and gradient checkpointing trades time for memory without changing the step.

Run: python benchmarks/bench_cuda_path.py [--shape smollm2-1.7b]   (on a CUDA machine; on a CPU it runs
the same comparison with the base in bf16, slowly)

1. Small updates. Random weights of the shape, base in bf16 (the CUDA default, models/loader.py),
   the dense adapter's ΔW in fp32 (adapters/dense.py), 20 AdamW steps at lr 1e-6 on 8 sequences
   (each step moves an entry by about 1e-6, under bf16's resolution of W). Ours keeps every step
   in ΔW; the same steps added to the bf16 weights in place (a bf16-only trainer) mostly round away:
   printed are the share of entries left unchanged and the relative error of what was applied.
2. Gradient checkpointing (train.gradient_checkpointing): one SFT loss + backward on 8 sequences of
   the task, peak memory and time with and without, and the largest gradient difference.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from random_models import random_model  # noqa: E402

from adapters_geo.adapters import DenseConfig, attach_adapter, trainable_named  # noqa: E402
from adapters_geo.models import checkpoint_activations, load_base  # noqa: E402
from adapters_geo.rollout.prompts import chat_prompt, encode  # noqa: E402
from adapters_geo.rollout.scoring import completion_logprobs, pack  # noqa: E402
from adapters_geo.tasks import TaskConfig, load_task  # noqa: E402


def batch(tokenizer, device, n: int = 8):
    task = load_task(TaskConfig(train_size=64, test_size=1))
    examples = task.train[:n]
    prompts = encode(tokenizer, [chat_prompt(tokenizer, e.prompt) for e in examples])
    completions = [ids + [tokenizer.eos_token_id] for ids in encode(tokenizer, [e.solution for e in examples])]
    return pack(prompts, completions, tokenizer.pad_token_id, device)


def small_updates(folder, device: str, steps: int = 20, lr: float = 1e-6) -> dict:
    """`steps` AdamW steps at `lr` (per-entry steps ~lr, far under bf16's resolution of W) on a bf16 base:
    ΔW kept in fp32 (ours) against the same updates applied to the bf16 weights in place (a bf16-only trainer)."""
    base = load_base(str(folder), dtype="bfloat16", device=device)
    model = attach_adapter(base.model, DenseConfig())
    packed = batch(base.tokenizer, device)
    params = trainable_named(model)
    layers = {n: m for n, m in model.named_modules() if hasattr(m, "delta") and hasattr(m, "base_layer")}
    w0 = {n: layers[n.rsplit(".delta", 1)[0]].base_layer.weight.detach().clone() for n in params}
    in_place = {n: w.clone() for n, w in w0.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        before = {n: p.detach().clone() for n, p in params.items()}
        loss = -completion_logprobs(model, packed).float().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for n, p in params.items():
                in_place[n] = (in_place[n] + (p - before[n]).to(torch.bfloat16))  # bf16 + bf16, rounded to bf16
    delta_sq = kept_sq = err_sq = unchanged = total = 0.0
    for n, p in params.items():
        d = p.detach().float()
        applied = in_place[n].float() - w0[n].float()
        delta_sq += d.pow(2).sum().item()
        err_sq += (applied - d).pow(2).sum().item()
        unchanged += (in_place[n] == w0[n]).sum().item()
        total += d.numel()
    return {"steps": steps, "lr": lr, "delta_norm": delta_sq ** 0.5, "unchanged_share": unchanged / total,
            "in_place_relative_error": (err_sq / delta_sq) ** 0.5 if delta_sq else float("nan")}


def checkpointing(folder, device: str) -> dict:
    rows = {}
    grads = {}
    for on in (False, True):
        base = load_base(str(folder), device=device)
        if on:
            checkpoint_activations(base.model)
        model = attach_adapter(base.model, DenseConfig())
        model.train()
        packed = batch(base.tokenizer, device)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        loss = -completion_logprobs(model, packed).float().mean()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
        grads[on] = {n: p.grad.float().cpu() for n, p in trainable_named(model).items()}
        rows["on" if on else "off"] = {"seconds": seconds, "peak_mib": peak}
        del model, base, loss, packed  # the graph too: nothing of this pass may count in the next one's peak
        if device == "cuda":
            torch.cuda.empty_cache()
    scale = max(g.abs().max().item() for g in grads[False].values())
    rows["max_grad_difference_relative"] = max((grads[True][n] - grads[False][n]).abs().max().item() for n in grads[False]) / scale
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="smollm2-135m", choices=["smollm2-135m", "smollm2-1.7b"])
    parser.add_argument("--layers", type=int, default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = random_model(args.shape, seed=0, layers=args.layers)
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}; {args.shape}", flush=True)
    c = checkpointing(folder, device)  # first: a clean device for its peaks
    s = small_updates(folder, device)
    print(f"small updates, {s['steps']} AdamW steps at lr {s['lr']:g} on a bf16 base: ΔW kept in fp32 holds all of them "
          f"(‖ΔW‖ = {s['delta_norm']:.3g}); the same updates added to the bf16 weights in place leave "
          f"{s['unchanged_share']:.1%} of the entries unchanged, {s['in_place_relative_error']:.2f} relative error", flush=True)
    print(f"gradient checkpointing, SFT loss + backward on 8 sequences: off {c['off']['seconds']:.3f} s, "
          f"{c['off']['peak_mib']:.0f} MiB peak; on {c['on']['seconds']:.3f} s, {c['on']['peak_mib']:.0f} MiB peak; "
          f"largest gradient difference {c['max_grad_difference_relative']:.1e} of the largest gradient", flush=True)


if __name__ == "__main__":
    main()
