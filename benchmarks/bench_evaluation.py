"""Benchmark: what one held-out evaluation of the lock chain costs, part by part, at fp32 and with a bf16 copy.

Run: python benchmarks/bench_evaluation.py [--model smollm2-135m-instruct] [--adapter RUN/adapter] [--prompts 256]

The lock chain's held-out split (arithmetic level 2, 256 problems; experiments/sft_init.yaml) on SmolLM2-135M, or
on a run's saved adapter (`--adapter runs/sft_init/adapter`: the anchor the chain evaluates). Times, side by side
in one process (after one warm-up chunk each):
- greedy accuracy (tasks/evaluate.py: decode 40 tokens per prompt, batch 32): the fp32 model as the loop
  evaluates it today, and a bf16 copy of the merged policy (rollout/sampler.py, what OPD samples from);
- the outcomes per prompt: reference NLL (sft) and full-vocabulary reverse KL to a teacher (opd; the teacher here is
  the same model with a 1e-3 relative perturbation of every matrix, its rows cached as a run caches them) at fp32 and bf16.
Prints seconds, the bf16 / fp32 ratio, and what bf16 changes: greedy rewards that differ, accuracy both ways, and
the largest per-prompt difference of each outcome (absolute, and relative to the outcome's spread over prompts).
`--greedy-batches 32,64,128`: instead, fp32 greedy decoding at each batch size, and the rewards that change.

Measured 2026-12-04 on a 2-core AMD EPYC with AVX2 only (no AVX512-BF16: torch.cpu._is_avx512_bf16_supported() is
False, so rollout/sampler.py's fast_dtype picks fp32 here), torch 2.13.0, the base with a zero dense adapter, nothing
else running. `--prompts 64 --kl-prompts 32`: greedy 27.8 s fp32 vs 107.3 s bf16 (3.9× slower), reference NLL 10.2 vs
75.0 s (7.3×), KL 7.0 vs 42.3 s (6.1×); bf16 moved a prompt's NLL by up to 3.3e-2, 17 % of the NLL's spread over
prompts. Without bf16 instructions bf16 is emulated: this says nothing of the AVX512-BF16 Xeon where a bf16
matrix-vector product measured 3.2× faster (to be measured there). `--prompts 128 --greedy-batches 32,64,128`:
44.2 / 44.1 / 40.7 s, no reward changed: greedy decoding is not limited by the batch size (about 0.34 s per
prompt for 40 tokens).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters_geo import DenseConfig, attach_adapter, load_adapter, load_base  # noqa: E402
from adapters_geo.rollout.sampler import Sampler  # noqa: E402
from adapters_geo.tasks import TaskConfig, load_task  # noqa: E402
from adapters_geo.tasks.evaluate import greedy_rewards, summarize_rewards  # noqa: E402
from adapters_geo.rollout.sampling import sample  # noqa: E402
from adapters_geo.tasks.outcome import reference_kl, reference_nll, solution_ids  # noqa: E402


def timed(run):
    started = time.perf_counter()
    value = run()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--adapter", default=None, help="a saved adapter on --model (e.g. runs/sft_init/adapter)")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--kl-prompts", type=int, default=64, help="prompts of the KL outcome (a curve point's count)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--greedy-batches", default=None, help="e.g. 32,64,128: only fp32 greedy decoding, by batch size")
    parser.add_argument("--greedy-shortcut", action="store_true",
                        help="only: a final evaluation (NLL + greedy) decoding every prompt vs greedy following the reference")
    args = parser.parse_args()
    torch.manual_seed(0)
    base = load_base(args.model)
    model = load_adapter(base.model, args.adapter) if args.adapter else attach_adapter(base.model, DenseConfig())  # as a run evaluates
    tok = base.tokenizer
    task = load_task(TaskConfig(levels=[2], train_size=2000, test_size=args.prompts, pool=0, pools=3))
    examples = task.test
    teacher = load_base(args.model).model
    with torch.no_grad():
        for p in teacher.parameters():
            if p.dim() == 2:
                p.add_(1e-3 * p.std() * torch.randn_like(p))
    if args.greedy_shortcut:
        return greedy_shortcut(model, tok, task, examples, args)
    copy, build = timed(lambda: Sampler(model, torch.bfloat16))
    print(f"{args.model}{' + ' + args.adapter if args.adapter else ''}, {len(examples)} prompts, batch {args.batch}, "
          f"{torch.get_num_threads()} threads; bf16 copy built in {build:.1f} s", flush=True)

    if args.greedy_batches:  # fp32 greedy decoding by batch size: padding and GEMM shapes change, the policy does not
        sizes = [int(s) for s in args.greedy_batches.split(",")]
        first = None
        for size in sizes:
            greedy_rewards(model, tok, task, examples[:4], args.tokens, size)
            rewards, seconds = timed(lambda: greedy_rewards(model, tok, task, examples, args.tokens, size))
            first = first or (rewards, seconds)
            differ = sum(x != y for x, y in zip(first[0], rewards))
            print(f"greedy, fp32, batch {size:>4}: {seconds:7.1f} s ({seconds / first[1]:.2f}× batch {sizes[0]}); "
                  f"{differ} of {len(rewards)} rewards differ from batch {sizes[0]}'s", flush=True)
        return
    rows = []
    warm = examples[: args.batch]
    for name, fp32, bf16 in [
        ("greedy accuracy", lambda ex: greedy_rewards(model, tok, task, ex, args.tokens, args.batch),
         lambda ex: greedy_rewards(copy.model, tok, task, ex, args.tokens, args.batch)),
        ("reference NLL (sft)", lambda ex: reference_nll(model, tok, ex, args.batch),
         lambda ex: reference_nll(copy.model, tok, ex, args.batch)),
        (f"reverse KL (opd), {args.kl_prompts} prompts", lambda ex: reference_kl(model, teacher, tok, ex[: args.kl_prompts], args.batch // 2, teacher_key="t"),
         lambda ex: reference_kl(copy.model, teacher, tok, ex[: args.kl_prompts], args.batch // 2, teacher_key="t")),
    ]:
        fp32(warm[:4]), bf16(warm[:4])  # warm-up
        if name.startswith("reverse"):
            fp32(examples)  # the teacher's rows, cached as a run caches them
        a, ta = timed(lambda: fp32(examples))
        b, tb = timed(lambda: bf16(examples))
        if name == "greedy accuracy":
            differ = sum(x != y for x, y in zip(a, b))
            change = (f"{differ} of {len(a)} greedy rewards differ; accuracy {summarize_rewards(a)['accuracy']:.3f} (fp32) "
                      f"vs {summarize_rewards(b)['accuracy']:.3f} (bf16)")
        else:
            gap = (a - b).abs().max().item()
            change = f"largest per-prompt difference {gap:.2e} ({gap / a.std().item():.1%} of the spread over prompts; mean {a.mean():.4f} vs {b.mean():.4f})"
        if not rows:
            print(f"{'part':<34} {'fp32 s':>8} {'bf16 s':>8} {'bf16/fp32':>9}  what bf16 changes")
        rows.append(name)
        print(f"{name:<34} {ta:8.1f} {tb:8.1f} {tb / ta:9.2f}  {change}", flush=True)


def greedy_shortcut(model, tok, task, examples, args) -> None:
    """A final evaluation's NLL + greedy accuracy, two ways side by side: every prompt decoded from its start
    (sample, temperature 0) vs decoding only where the argmax leaves the reference (greedy_following)."""
    prompts, references = solution_ids(tok, examples, None)  # what the evaluation scores, and greedy decodes from
    reference_nll(model, tok, examples[:4], args.batch), sample(model, tok, prompts[:4], 1, 4, temperature=0)  # warm-up

    def plain():
        reference_nll(model, tok, examples, args.batch)
        return [c for i in range(0, len(prompts), args.batch)
                for c in sample(model, tok, prompts[i : i + args.batch], 1, args.tokens, temperature=0)], len(prompts)

    def following():
        greedy = []
        reference_nll(model, tok, examples, args.batch, greedy=greedy, max_new_tokens=args.tokens)
        followed = sum(1 for g, r in zip(greedy, references) if g == r[: args.tokens])
        return greedy, len(examples) - followed

    (a, decoded_a), ta = timed(plain)
    (b, decoded_b), tb = timed(following)
    rewards = [[task.score(t, e) for t, e in zip(tok.batch_decode(c, skip_special_tokens=True), examples)] for c in (a, b)]
    print(f"NLL + greedy, decode every prompt: {ta:7.1f} s ({decoded_a} prompts decoded)")
    print(f"NLL + greedy following the reference: {tb:7.1f} s ({decoded_b} prompts leave the reference; {tb / ta:.2f}× the time)")
    print(f"completions that differ: {sum(x != y for x, y in zip(a, b))} of {len(a)}; rewards that differ: "
          f"{sum(x != y for x, y in zip(*rewards))}; accuracy {summarize_rewards(rewards[0])['accuracy']:.3f} vs "
          f"{summarize_rewards(rewards[1])['accuracy']:.3f}", flush=True)


if __name__ == "__main__":
    main()
