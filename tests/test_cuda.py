"""The CUDA path (marker `gpu`: skipped without CUDA, see conftest): on every quantization a dense and a
LoRA adapter train on a bf16 / 4-bit / 8-bit base on the GPU, ΔW stays fp32, and what the adapted layer
adds to the base layer's output is x ΔWᵀ (to the bf16 base's resolution).

Run, on a machine with a GPU: python -m pytest -q -rs -m gpu
"""

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base, merged_deltas
from adapters_geo.models.weights import adapted_linears, canonical_name
from tests.conftest import QUANTS, train_steps

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("kind", ["dense", "lora"])
def test_on_cuda_training_lowers_loss_and_the_fp32_delta_is_what_the_adapted_layer_adds(quant, kind):
    torch.manual_seed(0)
    base = load_base("tiny-llama", quant, device="cuda")
    model = attach_adapter(base.model, DenseConfig() if kind == "dense" else LoraConfig(r=4, alpha=8))
    assert next(model.parameters()).is_cuda
    losses = train_steps(model, 6)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.05, losses
    deltas = merged_deltas(model)
    layers = adapted_linears(model)
    wrappers = {canonical_name(p): m for p, m in model.named_modules() if hasattr(m, "base_layer")}
    assert len(deltas) == 14
    for name, delta in deltas.items():
        assert delta.dtype == torch.float32 and torch.isfinite(delta).all() and delta.abs().max() > 0
        x = torch.randn(7, delta.shape[1], device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            added = wrappers[name](x).float() - layers[name](x).float()
            plain = layers[name](x).float()
        expected = x.float() @ delta.to(x.device).T
        # bf16 outputs: each carries a rounding error of about 2^-8 of its size
        assert (added - expected).abs().max() <= 2**-6 * (plain.abs().max() + expected.abs().max()), name
