"""Peak memory of `adapters-geo geometry` on a pair with 7B-sized matrices.

Run: make bench-geometry-memory   (or: python benchmarks/bench_geometry_memory.py)

Writes two bf16 checkpoints holding one layer's worth of Llama-2-7B-shaped matrices (q, k,
v, o: 4096×4096; gate, up: 11008×4096; down: 4096×11008 — or the `--modules` chosen),
the second one a small perturbation of the first, then runs the real command in a
subprocess and prints its wall time per matrix and its peak RSS. Streaming keeps the peak
near a few matrices whatever the model's size, so the figure bounds a whole 7B pair.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

SHAPES = {
    "self_attn.q_proj": (4096, 4096), "self_attn.k_proj": (4096, 4096), "self_attn.v_proj": (4096, 4096),
    "self_attn.o_proj": (4096, 4096), "mlp.gate_proj": (11008, 4096), "mlp.up_proj": (11008, 4096),
    "mlp.down_proj": (4096, 11008),
}
CONFIG = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008,
          "num_attention_heads": 32, "architectures": ["LlamaForCausalLM"]}


def write_pair(root: Path, modules: list[str]) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    base, tuned = {}, {}
    for module in modules:
        name = f"model.layers.0.{module}.weight"
        w = torch.randn(*SHAPES[module], generator=g) * 0.02
        base[name] = w.bfloat16()
        tuned[name] = (w + 2e-4 * torch.randn(*SHAPES[module], generator=g)).bfloat16()
    folders = []
    for label, tensors in (("base", base), ("tuned", tuned)):
        folder = root / label
        folder.mkdir()
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(CONFIG))
        folders.append(folder)
    return folders[0], folders[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=["self_attn.q_proj", "mlp.down_proj"], choices=list(SHAPES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, tuned = write_pair(root, args.modules)
        command = [sys.executable, "-m", "adapters_geo.cli", "geometry", str(base), str(tuned), "--out", str(root / "out")]
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**__import__("os").environ, "ADAPTERS_GEO_CACHE": str(root / "cache")})
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{len(args.modules)} matrices of Llama-2-7B shape ({', '.join(args.modules)}), cold SVD cache")
        print(f"wall time {seconds:.0f} s ({seconds / len(args.modules):.0f} s per matrix)")
        print(f"peak RSS of adapters-geo geometry: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
