"""Does bf16 make this machine faster? fp32 against bf16 on SmolLM2-135M's matrix shapes, side by side.

    python benchmarks/bench_precision.py              # this machine's CPU (or --device cuda)

For each shape (the MLP's 576 → 1536 and the attention's 576 → 576) and row count (8: one decode step of 8
sequences; 512: a training batch of 8 × 64 tokens) it times y = x Wᵀ in fp32, in bf16, and a training step of
one layer (forward + backward) in fp32 and under bf16 autocast (fp32 weights, as `bf16-mixed` training would run),
alternating the two precisions over `--repeats` rounds; it prints the medians and bf16's ratio (< 1: bf16 faster).
Mixed-precision training or evaluation pays only where the ratio is well below 1: on a CPU that means AVX512-BF16 or
AMX (lscpu's flags `avx512_bf16`, `amx_bf16`, printed first); elsewhere torch emulates bf16 and it is slower.
"""

import argparse
import statistics
import time

import torch

SHAPES = {"mlp 576→1536": (1536, 576), "attention 576→576": (576, 576)}


def timed(fn, inner: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return " ".join(wanted) or "none of avx2 / avx512f / avx512_bf16 / amx_bf16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inner", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; CPU flags: {cpu_flags()}")
    print(f"{'shape':<20}{'rows':>6}{'op':>16}{'fp32 ms':>10}{'bf16 ms':>10}{'bf16 / fp32':>13}")
    for label, (out_f, in_f) in SHAPES.items():
        for rows in (8, 512):
            w = torch.randn(out_f, in_f, device=device) * 0.02
            x = torch.randn(rows, in_f, device=device)
            wb, xb = w.bfloat16(), x.bfloat16()
            layer = torch.nn.Linear(in_f, out_f, bias=False, device=device)

            def train_step(autocast: bool):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    y = layer(x.requires_grad_(False))
                y.float().square().mean().backward()
                layer.weight.grad = None

            ops = {"matmul": (lambda: x @ w.T, lambda: xb @ wb.T),
                   "train step": (lambda: train_step(False), lambda: train_step(True))}
            for op, (fp32, bf16) in ops.items():
                times = {"fp32": [], "bf16": []}
                for _ in range(args.repeats):  # alternating, so drift hits both alike
                    times["fp32"].append(timed(fp32, args.inner))
                    times["bf16"].append(timed(bf16, args.inner))
                a, b = statistics.median(times["fp32"]), statistics.median(times["bf16"])
                print(f"{label:<20}{rows:>6}{op:>16}{a * 1e3:>10.3f}{b * 1e3:>10.3f}{b / a:>12.2f}×")


if __name__ == "__main__":
    main()
