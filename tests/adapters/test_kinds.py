"""Every adapter kind on every quantization: trains, and its merged ΔW is exact.

Checks, per kind × quant on tiny-llama: loss falls on a fixed batch; adapted(x) − base(x)
equals x ΔWᵀ; for quant=none, x (W0 + ΔW)ᵀ reproduces the adapted layer; LoRA ΔW has
rank ≤ r; locked ΔW − ΔW_t0 has rows in span(V) (and columns in span(U) two-sided).
"""

import pytest
import torch

from adapters_geo import (
    AdaptersGeoError,
    DenseConfig,
    LockedConfig,
    LoraConfig,
    adapter_kind,
    attach_adapter,
    base_weights,
    merged_deltas,
    random_orthonormal_basis,
    top_singular_basis,
)
from adapters_geo.models.weights import adapted_linears
from tests.conftest import QUANTS, fixed_batch, train_steps

K = 4


def early_update(tiny, quant):
    """A short dense run: the 'early update' ΔW_t0 the locked adapter starts from."""
    model = attach_adapter(tiny(quant).model, DenseConfig())
    train_steps(model, 3)
    return merged_deltas(model)


def make_config(kind, tiny, quant):
    if kind == "dense":
        return DenseConfig()
    if kind == "lora":
        return LoraConfig(r=K, alpha=8)
    early = early_update(tiny, quant)
    right = top_singular_basis(early, K)
    left = top_singular_basis(early, K, side="left") if kind == "locked2" else None
    return LockedConfig(right=right, offset=early, left=left)


def adapted_model(kind, tiny, quant, steps=6):
    model = attach_adapter(tiny(quant).model, make_config(kind, tiny, quant))
    losses = train_steps(model, steps)
    return model, losses


KINDS = ["dense", "lora", "locked", "locked2"]


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_training_lowers_loss_and_delta_is_exact(tiny, kind, quant):
    model, losses = adapted_model(kind, tiny, quant)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.05, losses
    assert adapter_kind(model) == kind.rstrip("2")
    deltas, weights = merged_deltas(model), base_weights(model)
    assert list(deltas) == list(weights) and len(deltas) == 14
    layers = adapted_linears(model)
    wrappers = {n: m for n, m in _wrappers(model).items()}
    for name, delta in deltas.items():
        assert delta.dtype == torch.float32 and delta.abs().max() > 0
        x = torch.randn(7, delta.shape[1])
        adapted, base = wrappers[name](x), layers[name](x)
        torch.testing.assert_close(adapted - base, x @ delta.T, rtol=1e-4, atol=1e-5)
        if quant == "none":
            torch.testing.assert_close(adapted, x @ (weights[name] + delta).T, rtol=1e-4, atol=1e-5)


def _wrappers(model):
    from adapters_geo.models.weights import canonical_name

    return {canonical_name(p): m for p, m in model.named_modules() if hasattr(m, "base_layer")}


@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_lora_delta_has_rank_at_most_r(tiny, quant):
    model, _ = adapted_model("lora", tiny, quant)
    for delta in merged_deltas(model).values():
        assert torch.linalg.matrix_rank(delta, rtol=1e-5).item() <= K  # ΔW is fp32: float32 tolerance


def test_dense_delta_is_not_low_rank(tiny):
    model, _ = adapted_model("dense", tiny, "none")
    ranks = [torch.linalg.matrix_rank(d, rtol=1e-5).item() for d in merged_deltas(model).values()]
    assert min(ranks) >= 8 * K  # dense updates are unconstrained: far above LoRA's r


@pytest.mark.parametrize("kind", ["locked", "locked2"])
def test_locked_update_stays_in_the_frozen_span(tiny, kind):
    model = attach_adapter(tiny("none").model, config := make_config(kind, tiny, "none"))
    train_steps(model, 6)
    for name, delta in merged_deltas(model).items():
        moved = (delta - config.offset[name]).double()
        v = config.right[name].double()
        assert moved.norm() > 1e-4
        assert (moved - moved @ v @ v.T).norm() < 1e-5 * moved.norm() + 1e-9
        if kind == "locked2":
            u = config.left[name].double()
            assert (moved - u @ u.T @ moved).norm() < 1e-5 * moved.norm() + 1e-9


def test_locked_with_sgd_equals_projected_full_training(tiny):
    """ΔW_t0 + B Vᵀ trained by SGD == dense ΔW from ΔW_t0 with gradients g ← g V Vᵀ."""
    early = early_update(tiny, "none")
    right = random_orthonormal_basis({n: tuple(d.shape) for n, d in early.items()}, K, seed=3)
    locked = attach_adapter(tiny("none").model, LockedConfig(right=right, offset=early))
    train_steps(locked, 5, lr=0.5, optimizer="sgd")

    dense = attach_adapter(tiny("none").model, DenseConfig())
    with torch.no_grad():
        for name, layer in _wrappers(dense).items():
            layer.delta.weight.copy_(early[name])
    by_param = {f"{n.removesuffix('.weight')}.delta.weight": v for n, v in right.items()}

    def project(param_name, param):
        v = by_param[param_name]
        param.grad = param.grad @ v @ v.T

    train_steps(dense, 5, lr=0.5, optimizer="sgd", project=project)
    got, want = merged_deltas(locked), merged_deltas(dense)
    for name in want:
        assert (got[name] - early[name]).norm() > 1e-4
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_merged_deltas_are_snapshots_not_views(tiny, kind):
    model = attach_adapter(tiny("none").model, make_config(kind, tiny, "none"))
    before = merged_deltas(model)
    train_steps(model, 2)
    after = merged_deltas(model)
    assert all(not d.requires_grad for d in after.values())
    assert any((after[n] - before[n]).abs().max() > 0 for n in before)


def test_random_basis_is_orthonormal():
    bases = random_orthonormal_basis({"w": (32, 64)}, 8, seed=1)
    v = bases["w"]
    assert v.shape == (64, 8)
    torch.testing.assert_close(v.T @ v, torch.eye(8), atol=1e-6, rtol=0)


def test_dense_bf16_and_8bit_optimizer_train(tiny):
    model = attach_adapter(tiny("4bit").model, DenseConfig(dtype="bfloat16"))
    losses = train_steps(model, 6, optimizer="adamw8bit")
    assert losses[-1] < losses[0] - 0.05
    assert all(d.dtype == torch.float32 for d in merged_deltas(model).values())


def test_targets_subset_and_bad_target(tiny):
    model = attach_adapter(tiny("none").model, DenseConfig(targets=["q_proj", "v_proj"]))
    assert [n.split(".")[-2] for n in merged_deltas(model)] == ["q_proj", "v_proj"] * 2
    with pytest.raises(AdaptersGeoError, match="target 'qq_proj' matches no linear layer"):
        attach_adapter(tiny("none").model, LoraConfig(targets=["qq_proj"]))


@pytest.mark.parametrize("second", [DenseConfig(), LoraConfig()])
def test_attaching_twice_is_an_error(tiny, second):
    model = attach_adapter(tiny("none").model, LoraConfig())
    with pytest.raises(AdaptersGeoError, match="already carries an adapter"):
        attach_adapter(model, second)


def test_only_adapter_parameters_train(tiny):
    for config in (DenseConfig(), LoraConfig()):
        model = attach_adapter(tiny("none").model, config)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(("delta" in n or "lora_" in n) for n in trainable)


def test_a_bf16_base_keeps_fp32_updates_below_its_resolution_in_the_training_forward():
    # The CUDA default: base in bf16, the dense ΔW in fp32. An update of 1e-4 × rms(W) is far below
    # bf16's resolution of W (≈ 2^-8 relative), so W + ΔW rounded to bf16 is W again for almost every
    # entry; the training forward (gradients on) must still feel the update, through the fp32 ΔW path.
    from adapters_geo import load_base
    from adapters_geo.adapters import DenseConfig, attach_adapter, trainable_named

    torch.manual_seed(0)
    model = attach_adapter(load_base("tiny-llama", dtype="bfloat16").model, DenseConfig())
    x = fixed_batch()
    generator = torch.Generator().manual_seed(1)
    layers = {n: m for n, m in model.named_modules() if hasattr(m, "delta") and hasattr(m, "base_layer")}
    lost = total = 0
    with torch.no_grad():
        for name, p in trainable_named(model).items():
            w = layers[name.rsplit(".delta", 1)[0]].base_layer.weight
            p.copy_(torch.randn(p.shape, generator=generator) * 1e-4 * w.float().pow(2).mean().sqrt())
            lost += ((w.float() + p).to(torch.bfloat16) == w).sum().item()
            total += p.numel()
    assert lost / total > 0.9  # merged into bf16, the update would (almost) vanish
    logits = {}
    for grad in (True, False):  # the training forward and the inference one (base(x) + x·ΔWᵀ in fp32)
        with torch.set_grad_enabled(grad):
            moved = model(x).logits.float()
            saved = {n: p.detach().clone() for n, p in trainable_named(model).items()}
            with torch.no_grad():
                for p in trainable_named(model).values():
                    p.zero_()
            logits[grad] = moved - model(x).logits.float()  # the update's effect
            with torch.no_grad():
                for n, p in trainable_named(model).items():
                    p.copy_(saved[n])
    effect, reference = logits[True].detach(), logits[False]
    assert reference.norm() > 0
    assert ((effect - reference).norm() / reference.norm()).item() < 0.1  # before the fix (W0 + ΔW summed in bf16): 1.24
    assert next(iter(trainable_named(model).values())).dtype == torch.float32
