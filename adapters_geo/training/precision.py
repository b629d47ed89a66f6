"""Mixed-precision training (`train.precision: bf16-mixed`): the loss's forwards in bf16, the update in fp32.

Inside `mixed_precision`, torch autocast runs every matmul of the student's and the teacher's forwards in bf16
(backward follows the forward's dtypes); what stays fp32:
- ΔW, its gradient and the optimizer state: the adapter's parameters are fp32 leaves, autocast casts a copy;
- W0 + ΔW is never formed before the cast: DeltaLinear casts W0 and ΔW apart (adapters/delta_linear.py), as a
  bf16(W0 + ΔW) would round away every update under W0's bf16 resolution (issue 14's bf16-base bug);
- the logits: the LM head runs outside autocast on fp32 hidden states, so the per-token log-probs the losses
  and the KL read carry no bf16 rounding of logits of magnitude ~10-20 (2^-8 relative: ~0.05 nats);
- sampling (rollout/sampler.py, its own precision) and evaluation, which run outside this block.
Measured on SmolLM2-135M shapes (benchmarks/bench_precision.py, 2-core Xeon with AVX512-BF16 / AMX): a one-layer
training step at 512 rows 0.39-0.52x the fp32 time; on a CPU without fast bf16 kernels 2.4-7x slower.
"""

import contextlib

import torch


def method_models(method) -> list:
    """The frozen models a method's loss runs besides the student (teacher, reference), where it has them."""
    ctx = getattr(method, "ctx", None)
    return [base.model for base in (getattr(ctx, "teacher", None), getattr(ctx, "reference", None)) if base is not None]


def _fp32_head(model) -> list:
    """Hooks that run `model`'s output projection outside autocast, on fp32 inputs; returns the handles."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return []
    off = []

    def before(module, args):
        off.append(torch.autocast(args[0].device.type, enabled=False))
        off[-1].__enter__()
        return (args[0].float(), *args[1:])

    def after(module, args, output):
        off.pop().__exit__(None, None, None)
        return output

    return [head.register_forward_pre_hook(before), head.register_forward_hook(after)]


@contextlib.contextmanager
def mixed_precision(precision: str, models: list):
    """bf16 autocast over the block for "bf16-mixed" (LM heads in fp32); nothing for "fp32"."""
    if precision == "fp32":
        yield
        return
    device = next(models[0].parameters()).device.type
    hooks = [h for model in models for h in _fp32_head(model)]
    try:
        with torch.autocast(device, dtype=torch.bfloat16):
            yield
    finally:
        for hook in hooks:
            hook.remove()
