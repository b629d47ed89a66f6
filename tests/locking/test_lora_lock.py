"""The locked arm of a LoRA source (adapters/lora_locked.py): its first step is the unconstrained step projected, its
merged increment never leaves span(V), the early basis of a LoRA from zero holds nothing of B, and an arm continues
the source's own LoRA from its t0 state."""

import copy

import pytest
import torch

from adapters_geo import LoraConfig, attach_adapter, load_base
from adapters_geo.adapters import random_orthonormal_basis, top_singular_basis
from adapters_geo.adapters.lora import lora_layers, merged_deltas
from adapters_geo.adapters.lora_locked import confine
from adapters_geo.training.optim import optimizer_for

IDS = torch.tensor([[1, 5, 9, 14, 3, 7, 2, 11]])


def loss(model, seed: int) -> torch.Tensor:
    weights = torch.randn(model.config.vocab_size, generator=torch.Generator().manual_seed(seed))
    return (model(IDS).logits.float() @ weights).mean()


def trained_lora(steps: int = 4, r: int = 4):
    """A tiny LoRA after `steps` AdamW steps (B no longer zero) and its optimizer state: a source at t0."""
    torch.manual_seed(0)
    model = attach_adapter(load_base("tiny-llama").model, LoraConfig(r=r, alpha=8))
    optimizer = optimizer_for(model, "adamw", lr=1e-2)
    for step in range(steps):
        loss(model, step).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer.state_dict()


def continued(model, state, right=None, mode="projected"):
    """A copy of the t0 model with the t0 optimizer state, confined to `right` when given."""
    model = copy.deepcopy(model)
    if right is not None:
        confine(model, right, mode)
    optimizer = optimizer_for(model, "adamw", lr=1e-2)
    optimizer.load_state_dict(copy.deepcopy(state))  # load_state_dict shares the tensors, which a step updates in place
    return model, optimizer


def factors(model) -> dict:
    return {n: (l.lora_A["default"].weight.detach().clone(), l.lora_B["default"].weight.detach().clone())
            for n, l in lora_layers(model).items()}


def step(model, optimizer, seed: int = 100):
    loss(model, seed).backward()
    optimizer.step()
    optimizer.zero_grad()


def test_the_first_locked_step_is_the_unconstrained_step_projected():
    source, state = trained_lora()
    right = random_orthonormal_basis({n: tuple(d.shape) for n, d in merged_deltas(source).items()}, 8, seed=3)
    free, locked = continued(source, state), continued(source, state, right)
    start = factors(source)
    step(*free)
    step(*locked)
    held = 0
    for name, layer in lora_layers(locked[0]).items():
        (a0, b0), (a1, b1) = start[name], factors(free[0])[name]
        v = right[name]
        outside = a0 - a0 @ v @ v.T
        u, s, _ = torch.linalg.svd(outside.double(), full_matrices=False)
        q = u[:, s > 1e-3 * torch.linalg.matrix_norm(a0.double(), ord=2)].float()
        held += q.shape[1]
        expected_a = a0 + (a1 - a0) @ v @ v.T
        expected_b = b0 + (b1 - b0) - ((b1 - b0) @ q) @ q.T
        torch.testing.assert_close(layer.lora_A["default"].weight.detach(), expected_a, rtol=0, atol=1e-6)
        torch.testing.assert_close(layer.lora_B["default"].weight.detach(), expected_b, rtol=0, atol=1e-6)
    assert held > 0  # a random basis holds B in some directions: the B projection was exercised


def test_a_locked_lora_s_merged_increment_stays_in_span_v():
    source, state = trained_lora()
    at_t0 = merged_deltas(source)
    right = random_orthonormal_basis({n: tuple(d.shape) for n, d in at_t0.items()}, 8, seed=4)
    model, optimizer = continued(source, state, right)
    for seed in range(5):
        step(model, optimizer, 200 + seed)
    moved = total = 0.0
    for name, delta in merged_deltas(model).items():
        increment = (delta - at_t0[name]).double()
        v = right[name].double()
        moved += (increment - increment @ v @ v.T).square().sum().item()
        total += increment.square().sum().item()
    assert total > 0 and moved <= 1e-8 * total
    free, free_optimizer = continued(source, state)
    step(free, free_optimizer, 200)
    outside = sum((d - at_t0[n] - (d - at_t0[n]) @ right[n] @ right[n].T).square().sum().item()
                  for n, d in merged_deltas(free).items())
    assert outside > 1e3 * moved  # the unconstrained LoRA does leave span(V)


def test_the_early_basis_of_a_lora_from_zero_holds_nothing_of_b():
    source, _ = trained_lora(r=4)
    early = top_singular_basis(merged_deltas(source), 4)  # K = r: span(V) = the rows of A_t0
    held = confine(copy.deepcopy(source), early)
    assert held and max(held.values()) == 0.0
    random = random_orthonormal_basis({n: tuple(d.shape) for n, d in merged_deltas(source).items()}, 4, seed=1)
    assert min(confine(copy.deepcopy(source), random).values()) == 1.0  # a random span(V) misses A_t0's rows: all of B held


def test_gradient_mode_projects_the_factors_gradients_and_adapter_mode_is_refused():
    from adapters_geo import AdaptersGeoError

    source, _ = trained_lora()
    right = random_orthonormal_basis({n: tuple(d.shape) for n, d in merged_deltas(source).items()}, 8, seed=5)
    model = copy.deepcopy(source)
    confine(model, right, "gradient")
    loss(model, 7).backward()
    for name, layer in lora_layers(model).items():
        grad, v = layer.lora_A["default"].weight.grad, right[name]
        torch.testing.assert_close(grad, grad @ v @ v.T, rtol=0, atol=1e-6)
    with pytest.raises(AdaptersGeoError, match="locking mode 'adapter' is not available for a LoRA source"):
        confine(copy.deepcopy(source), right, "adapter")


def test_an_arm_of_a_lora_source_continues_its_lora_confined(tmp_path):
    from adapters_geo import AdaptersGeoError
    from adapters_geo.adapters.lora_locked import confined_layers
    from adapters_geo.cli import main
    from adapters_geo.locking.continuation import arm_config
    from adapters_geo.pipeline.runner import build_model

    config = tmp_path / "lora.yaml"
    config.write_text("model: tiny-llama\nadapter: {kind: lora, r: 4, alpha: 8}\nmethod: {name: sft, max_new_tokens: 4}\n"
                      "task: {levels: [0], train_size: 20, test_size: 2}\n"
                      "train: {steps: 4, batch_size: 2, lr: 1e-2, t0: 2, save_t0_state: true, eval_every: 0}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "source"), "--no-analysis"]) == 0
    early, _ = build_model(arm_config(tmp_path / "source", "early", k=4))
    free, _ = build_model(arm_config(tmp_path / "source", "unconstrained", k=4))
    assert lora_layers(early) and len(confined_layers(early)) == len(lora_layers(early)) and not confined_layers(free)
    for (name, a), (_, b) in zip(factors(early).items(), factors(free).items()):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # both arms start from the source's t0 LoRA
    assert max(layer.held for layer in confined_layers(early)) == 0.0  # the early basis spans A_t0's rows
    with pytest.raises(AdaptersGeoError, match="locking mode 'adapter' re-parametrises a dense update"):
        arm_config(tmp_path / "source", "early", k=4, mode="adapter")
