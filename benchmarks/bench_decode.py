"""Which decode is fastest here? Variants of sampling from SmolLM2-135M's shape, side by side, in one run.

    python benchmarks/bench_decode.py                       # this machine (or --device cuda)
    python benchmarks/bench_decode.py --rows 8,64 --repeats 5 --variants generate,static,loop

The baseline, `generate`, is transformers' generate() sampling with its own draw (torch.multinomial) and dynamic KV
cache. What the toolkit ships (rollout/sampling.py):
- `draw`: the same generate() whose token is drawn by inverse CDF (InverseCdfDraw: one uniform per row instead of one
  exponential per vocabulary entry): training rollouts (rollout/sampler.py);
- `decode`: our own loop with that draw, a row leaving the batch once it has sampled EOS: evaluation (sample()).
The other variants:
- `static`: generate() with `cache_implementation="static"` (a preallocated cache: no per-token growth);
- `compiled`: `static` with the model's forward under torch.compile (the first call compiles; a warm-up call takes
  it, and its seconds are printed apart, since every process that samples pays them once);
- `loop`: our own decode loop over the model's forward with a dynamic cache and torch.multinomial, without
  generate()'s per-token bookkeeping (logits processors, stopping criteria, output dicts).
Each variant samples `rows` sequences (8: an OPD / RLVR step's 2 prompts × 4; 128: an evaluation chunk of
k-sample accuracy, 32 prompts × 4) of `--new` tokens after a ~50-token chat prompt, from the same weights in the
sampler's precision (bf16 where the hardware has fast bf16 kernels, else fp32; `--dtype` to force one). With random
weights of the shape (benchmarks/random_models.py, the default) no row ends early, so the variants do equal work;
`--weights embedded --adapter runs/sft_init/adapter` samples SmolLM2-135M's own weights, where rows end at EOS and
`decode` drops them. Rounds alternate the variants; printed: median ms per decoded token (all rows together) and each
variant's ratio to `generate` with a 95 % bootstrap interval over rounds (< 1: faster).

Measured (2026-12-05, Xeon 2-core, bf16, torch 2.13, transformers 5.25, nothing else running; 40 tokens, 3 rounds):
`python benchmarks/bench_decode.py --rows 8,64,256 --repeats 3 --variants generate,draw`
    8 rows:   generate 67.9 ms/token; draw 0.89 [0.86, 0.92]
    64 rows:  generate 203.5 ms/token; draw 0.72 [0.72, 0.72]
    256 rows: generate 823.6 ms/token; draw 0.76 [0.75, 0.76]
so `draw` ships: multinomial's draw was the largest cost of a decode step after the forward. With opd_dense's own
weights, rows ending at EOS (`--weights embedded --adapter runs/opd_dense/adapter --rows 128 --repeats 2 --variants
generate,draw,decode`): generate 642.4 ms/token; draw 0.70 [0.45, 1.22]; decode 0.38 [0.24, 0.67]. With multinomial in
every variant (the day before): `--rows 8,64 --variants generate,static,loop`
    8 rows:  generate 55.5 ms/token; static 1.00 [0.98, 1.04]; loop 0.99 [0.98, 1.01]
    64 rows: generate 173.6 ms/token; static 1.05 [0.99, 1.15]; loop 1.00 [0.99, 1.04]
`--rows 8 --variants generate,compiled`: compiled 0.83 [0.81, 0.84] of 56.4 ms/token, after a first call of 66.4 s.
So generate()'s bookkeeping costs nothing measurable here. Compiling saves 17 % of the decode (≈ 0.4 s of a 2.6 s
OPD step's sampling, ≈ 18 s of a 40-step run) but costs 66 s per process and shape (dynamic=False; prompt widths
vary by batch): a loss on every CPU run the toolkit makes, so it is not used.
CUDA rows are not measured (no device lent).
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from random_models import random_model  # noqa: E402

VARIANTS = ("generate", "draw", "decode", "static", "compiled", "loop")


def prompt_batch(tokenizer, rows: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of `rows` left-padded chat prompts, ~50 tokens each."""
    from adapters_geo.rollout.prompts import chat_prompt, encode
    from adapters_geo.rollout.sampling import left_pad
    from adapters_geo.tasks.arithmetic import generate

    problems = generate(max(rows // 4, 1), [2], seed=7)
    prompts = encode(tokenizer, [chat_prompt(tokenizer, e.prompt, None) for e in problems])
    prompts = [p for p in prompts for _ in range(rows // len(prompts))][:rows]
    return left_pad(prompts, tokenizer.pad_token_id, max(len(p) for p in prompts), device)


def decode_generate(model, ids, mask, new: int, pad: int, eos: int | None = None, **options) -> list:
    """transformers' generate(): torch.multinomial's draw; every row decoded until the longest ends."""
    ends = {"min_new_tokens": new} if eos is None else {"eos_token_id": eos}
    sampling = {} if "logits_processor" in options else {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, pad_token_id=pad, **sampling, **ends,
                         **options)
    from adapters_geo.rollout.sampling import cut_at_eos

    return [cut_at_eos(row, eos, pad) if eos is not None else row for row in out[:, ids.shape[1]:].tolist()]


def decode_ours(model, ids, mask, new: int, pad: int, eos: int | None = None) -> list:
    """rollout/sampling.py's decode: the inverse-CDF draw, finished rows leaving the batch (eos None: never)."""
    from adapters_geo.rollout.sampling import decode

    return decode(model, ids, mask, new, -1 if eos is None else eos, 1.0)


def decode_loop(model, ids, mask, new: int, pad: int, eos: int | None = None) -> list:
    """Plain temperature-1 sampling: one forward per token on a dynamic cache, positions from the mask."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    tokens = []
    for _ in range(new):
        token = torch.multinomial(torch.softmax(logits.float(), -1), 1)  # (B, 1)
        tokens.append(token)
        mask = torch.cat([mask, torch.ones_like(token)], 1)
        positions = positions[:, -1:] + 1
        logits = model(input_ids=token, attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True).logits[:, -1]
    return torch.cat(tokens, 1).tolist()


def runner(name: str, model, compiled, eos):
    if name == "generate":
        return lambda ids, mask, new, pad: decode_generate(model, ids, mask, new, pad, eos)
    if name == "draw":
        from adapters_geo.rollout.sampling import draw_options

        return lambda ids, mask, new, pad: decode_generate(model, ids, mask, new, pad, eos, **draw_options(1.0))
    if name == "decode":
        return lambda ids, mask, new, pad: decode_ours(model, ids, mask, new, pad, eos)
    if name == "static":
        return lambda ids, mask, new, pad: decode_generate(model, ids, mask, new, pad, eos, cache_implementation="static")
    if name == "compiled":
        return lambda ids, mask, new, pad: decode_generate(compiled, ids, mask, new, pad, eos, cache_implementation="static")
    if eos is not None:
        raise SystemExit("the `loop` variant decodes every row to the end: use it with random weights only")
    return lambda ids, mask, new, pad: decode_loop(model, ids, mask, new, pad)


def load(args, dtype, device):
    """(model, tokenizer, eos or None): random weights of SmolLM2-135M's shape, or its own with an adapter merged in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.weights == "random":
        folder = random_model("smollm2-135m")
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
        return model, AutoTokenizer.from_pretrained(folder), None
    from adapters_geo.adapters.io import load_adapter
    from adapters_geo.models.loader import load_base
    from adapters_geo.rollout.sampler import Sampler

    base = load_base("smollm2-135m-instruct", device=str(device))
    model = load_adapter(base.model, args.adapter) if args.adapter else base.model
    return Sampler(model, dtype).model, base.tokenizer, base.tokenizer.eos_token_id  # the merged copy rollouts use


def ratio_interval(ours: list[float], base: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of mean times with a 95 % bootstrap interval over rounds (paired by round)."""
    rng = random.Random(seed)
    n = len(ours)
    ratio = sum(ours) / sum(base)
    values = []
    for _ in range(draws):
        picks = [rng.randrange(n) for _ in range(n)]
        values.append(sum(ours[i] for i in picks) / sum(base[i] for i in picks))
    values.sort()
    return ratio, values[int(0.025 * draws)], values[int(0.975 * draws) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="8,64", help="sequences decoded together, comma-separated")
    parser.add_argument("--new", type=int, default=40, help="tokens decoded per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (variants alternate within a round)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", choices=["random", "embedded"], default="random",
                        help="embedded: SmolLM2-135M-Instruct's own weights, rows end at their EOS (the variants then "
                             "do each their own work: a row that ends early leaves `decode`'s batch)")
    parser.add_argument("--adapter", help="with --weights embedded: a run's adapter folder merged in (e.g. runs/sft_init/adapter)")
    args = parser.parse_args()
    from adapters_geo.rollout.sampler import sampler_dtype

    device = torch.device(args.device)
    dtype = sampler_dtype(args.dtype, device)
    model, tokenizer, eos = load(args, dtype, device)
    variants = args.variants.split(",")
    compiled = None
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {dtype}, torch {torch.__version__}, "
          f"{args.new} new tokens per row")
    for rows in (int(r) for r in args.rows.split(",")):
        ids, mask = prompt_batch(tokenizer, rows, device)
        runs = {name: runner(name, model, compiled, eos) for name in variants}
        if "compiled" in variants:
            import copy

            compiled = copy.copy(model)  # the same weights, its own (compiled) forward
            compiled.forward = torch.compile(model.forward, dynamic=False)
            runs["compiled"] = runner("compiled", model, compiled, eos)
        times = {name: [] for name in variants}
        with torch.no_grad():
            for name, run in runs.items():  # warm-up (and compile) outside the timed rounds
                start = time.perf_counter()
                out = run(ids, mask, args.new, tokenizer.pad_token_id)
                assert len(out) == rows and (eos is not None or {len(r) for r in out} == {args.new}), name
                if name == "compiled":
                    print(f"  compiled: first call (compiling) {time.perf_counter() - start:.1f} s")
            for _ in range(args.repeats):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run(ids, mask, args.new, tokenizer.pad_token_id)
                    times[name].append(time.perf_counter() - start)
        print(f"\n{rows} rows × {args.new} tokens, prompt width {ids.shape[1]}, {args.repeats} rounds"
              + (", rows end at EOS: ms per token = the call's time / max new tokens" if eos is not None else ""))
        print("| variant | ms per decoded token (median) | ratio to generate [95 % interval] |")
        print("|---|---|---|")
        for name in variants:
            per_token = 1000 * statistics.median(times[name]) / args.new
            if name == "generate" or "generate" not in times:
                print(f"| {name} | {per_token:.1f} | 1 |")
                continue
            ratio, low, high = ratio_interval(times[name], times["generate"])
            print(f"| {name} | {per_token:.1f} | {ratio:.2f} [{low:.2f}, {high:.2f}] |")


if __name__ == "__main__":
    main()
