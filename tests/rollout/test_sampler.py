"""The low-precision sampler: the merged policy copied exactly, refreshed, and its own log-probs returned.

Run: python -m pytest -q tests/rollout/test_sampler.py
"""

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base, merged_deltas
from adapters_geo.models.quant import dequantized_weight
from adapters_geo.models.weights import base_linears
from adapters_geo.rollout.sampler import Sampler
from adapters_geo.rollout.sampling import sample
from adapters_geo.rollout.scoring import completion_logprobs, completion_mask, pack

PROMPTS = [[5, 6, 7, 8], [9, 10, 11]]


def trained(adapter, quant="none"):
    base = load_base("tiny-llama", quant)
    model = attach_adapter(base.model, adapter)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (p for p in model.parameters() if p.requires_grad):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model, base.tokenizer


def scored(model, tok, completions):
    packed = pack([p for p in PROMPTS for _ in range(3)], completions, tok.pad_token_id)
    with torch.no_grad():
        return completion_logprobs(model, packed), completion_mask(packed.lengths, packed.width)


@pytest.mark.parametrize("adapter", [DenseConfig(), LoraConfig(r=4)], ids=["dense", "lora"])
def test_an_fp32_sampler_samples_exactly_the_model(adapter):
    model, tok = trained(adapter)
    sampler = Sampler(model, torch.float32)
    torch.manual_seed(3)
    got, behaviour = sampler.sample(tok, PROMPTS, 3, 8, 1.0)
    torch.manual_seed(3)
    assert got == sample(model, tok, PROMPTS, 3, 8)
    logp, mask = scored(model, tok, got)
    assert ((behaviour[:, : logp.shape[1]] - logp).abs() * mask).max() < 1e-4


@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_a_bf16_sampler_holds_the_merged_weights_and_follows_updates(quant):
    model, tok = trained(DenseConfig(), quant)
    sampler = Sampler(model, torch.bfloat16)
    deltas = merged_deltas(model)
    for name, layer in base_linears(model).items():
        want = (dequantized_weight(layer) + deltas.get(name, 0)).to(torch.bfloat16)
        assert torch.equal(sampler.params[name], want), name
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(1.0)
    sampler.refresh(model)
    name = next(iter(deltas))
    assert torch.equal(sampler.params[name], (dequantized_weight(base_linears(model)[name]) + merged_deltas(model)[name]).bfloat16())


def test_bf16_samples_carry_their_own_log_probs_close_to_the_trained_policy():
    model, tok = trained(DenseConfig())
    torch.manual_seed(4)
    got, behaviour = Sampler(model, torch.bfloat16).sample(tok, PROMPTS, 3, 8, 1.0)
    logp, mask = scored(model, tok, got)
    gap = ((behaviour[:, : logp.shape[1]] - logp).abs() * mask).sum() / mask.sum()
    assert 0 < gap < 0.1


def test_a_lora_on_a_plain_base_samples_from_a_merged_copy_at_its_own_precision():
    # peft's layers decode two extra small matmuls per layer and token: an fp32 LoRA student draws its rollouts
    # from a merged fp32 copy instead (the same policy: no mismatch beyond rounding); a dense one from itself
    from adapters_geo.methods import Context, MethodConfig, build_method
    from adapters_geo.tasks import TaskConfig, load_task

    task = load_task(TaskConfig(levels=[0], train_size=20, test_size=2))
    kinds = {}
    for name, adapter in (("lora", LoraConfig(r=4)), ("dense", DenseConfig())):
        model, tok = trained(adapter)
        method = build_method(Context(model, tok, task, MethodConfig(name="rlvr", group_size=2, max_new_tokens=6,
                                                                     sampler="float32")))
        batch = method.batch(task.train[:2], step=1)
        kinds[name] = method.sampler
        if name == "lora":
            packed = pack(batch.prompts, batch.completions, tok.pad_token_id)
            with torch.no_grad():
                logp = completion_logprobs(model, packed)
            mask = completion_mask(packed.lengths, packed.width)
            assert ((batch.behaviour[:, : logp.shape[1]] - logp).abs() * mask).max() < 1e-4
    assert isinstance(kinds["lora"], Sampler) and kinds["lora"].dtype == torch.float32 and kinds["dense"] is False
