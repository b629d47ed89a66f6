"""Merged export (base + ΔW as a plain checkpoint), the refused save_pretrained, `adapters-geo export / --version`.

Measured on CPU (tiny-llama, logits of magnitude ~6): quant=none 1e-5…2e-5 against the adapted
model's eval forward (0 for dense / locked under inference_weights, which merges the same way);
4bit 1e-5…2e-5; 8bit 0.22…0.26, which is bitsandbytes' own int8 activation quantization: the
plain base with the dequantized weights differs from the 8-bit base by as much (0.23).
Run: python -m pytest -q tests/adapters/test_export.py
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from adapters_geo import AdaptersGeoError, load_base, merged_deltas, save_adapter
from adapters_geo import __version__
from adapters_geo.adapters.delta_linear import inference_weights
from adapters_geo.adapters.export import export_merged
from adapters_geo.cli import main
from adapters_geo.models.quant import dequantized_weight
from adapters_geo.models.weights import base_linears
from tests.adapters.test_kinds import adapted_model
from tests.adapters.test_peft_format import logits

TOLERANCE = {"none": 5e-5, "4bit": 5e-5}  # max |Δlogit| allowed; 8bit is checked against its own noise floor


def exported(tiny, tmp_path, kind, quant):
    model, _ = adapted_model(kind, tiny, quant, steps=3)
    save_adapter(model, tmp_path / "ad")
    out = export_merged(tmp_path / "ad", tmp_path / "merged")
    return model, AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.parametrize("quant", ["none", "4bit"])
@pytest.mark.parametrize("kind", ["dense", "lora", "locked", "locked2"])
def test_merged_checkpoint_computes_like_the_adapted_model(tiny, tmp_path, kind, quant):
    model, merged = exported(tiny, tmp_path, kind, quant)
    assert merged.dtype == torch.float32 and not hasattr(merged.config, "quantization_config")
    diff = (logits(merged) - logits(model)).abs().max().item()
    print(f"export {kind} quant={quant}: max |Δlogit| = {diff:.3g}")
    assert diff <= TOLERANCE[quant]
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())
    if kind != "lora" and quant == "none":  # the toolkit's own merged forward: W0 + ΔW, one matmul
        with inference_weights(model), torch.no_grad():
            torch.testing.assert_close(merged(input_ids=torch.arange(12)[None]).logits,
                                       model(input_ids=torch.arange(12)[None]).logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["dense", "lora", "locked"])
def test_8bit_export_is_dequantized_base_plus_delta(tiny, tmp_path, kind):
    model, merged = exported(tiny, tmp_path, kind, "8bit")
    written = load_file(tmp_path / "merged" / "model.safetensors")
    quantized = base_linears(tiny("8bit").model)
    deltas = merged_deltas(model)
    for name, layer in quantized.items():
        want = dequantized_weight(layer) + deltas.get(name, 0)
        assert torch.equal(written[name], want), name
    plain = load_base("tiny-llama", "none").model
    with torch.no_grad():
        for name, layer in base_linears(plain).items():
            layer.weight.copy_(dequantized_weight(quantized[name]))
    floor = (logits(plain) - logits(tiny("8bit").model)).abs().max().item()  # int8 activation noise, no adapter
    diff = (logits(merged) - logits(model)).abs().max().item()
    update = (logits(model) - logits(tiny("8bit").model)).abs().max().item()
    print(f"export {kind} quant=8bit: max |Δlogit| = {diff:.3g}, base noise floor {floor:.3g}, update {update:.3g}")
    assert diff <= 1.5 * floor and update > 4 * diff


def test_run_folder_uses_its_adapter_and_cli_exports(tiny, tmp_path, capsys):
    model, _ = adapted_model("dense", tiny, "none", steps=2)
    save_adapter(model, tmp_path / "run" / "adapter")
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "run"), "--merged", str(tmp_path / "empty")]) == 0
    assert "wrote" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "empty")
    assert (logits(merged) - logits(model)).abs().max().item() <= TOLERANCE["none"]
    provenance = json.loads((tmp_path / "empty" / "adapters_geo_export.json").read_text())
    assert provenance["kind"] == "dense" and provenance["adapter"].endswith("run/adapter")
    assert (tmp_path / "empty" / "tokenizer.json").is_file()


def test_existing_output_is_refused(tiny, tmp_path, capsys):
    model, _ = adapted_model("lora", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "ad"), "--merged", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists and is not empty" in err and "fix:" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("kind", ["dense", "locked"])
def test_save_pretrained_of_dense_or_locked_is_refused(tiny, tmp_path, kind):
    model, _ = adapted_model(kind, tiny, "none", steps=1)
    with pytest.raises(AdaptersGeoError) as info:
        model.save_pretrained(tmp_path / "hf")
    message = str(info.value)
    assert f"{kind} adapter" in message and "export_merged" in message and "adapters-geo export" in message
    assert "\n" not in message and not (tmp_path / "hf").exists()
    tiny("none").model.save_pretrained(tmp_path / "plain")  # other instances keep their save_pretrained
    assert (tmp_path / "plain" / "config.json").is_file()


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"adapters-geo {__version__}"


def test_bf16_export_is_the_fp32_sum_rounded_once_and_names_the_base_portably(tiny, tmp_path, capsys):
    model, _ = adapted_model("dense", tiny, "none", steps=2)
    save_adapter(model, tmp_path / "ad")
    assert main(["export", str(tmp_path / "ad"), "--merged", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    assert "bfloat16 safetensors" in capsys.readouterr().out
    written = load_file(tmp_path / "bf16" / "model.safetensors")
    plain = base_linears(tiny("none").model)
    deltas = merged_deltas(model)
    for name, layer in plain.items():  # W0 + ΔW in fp32, then one cast (not W0 cast + ΔW cast)
        assert written[name].dtype == torch.bfloat16
        assert torch.equal(written[name], (layer.weight.float() + deltas[name]).to(torch.bfloat16)), name
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert merged.dtype == torch.bfloat16
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    provenance = json.loads((tmp_path / "bf16" / "adapters_geo_export.json").read_text())
    assert provenance["dtype"] == "bfloat16" and provenance["base_model_name_or_path"] == "tiny-llama"
    assert config.get("_name_or_path", "tiny-llama") == "tiny-llama"  # never the local cache folder
    assert ".cache" not in (tmp_path / "bf16" / "config.json").read_text()
    with pytest.raises(AdaptersGeoError, match="export dtype 'float16' is not supported"):
        export_merged(tmp_path / "ad", tmp_path / "f16", dtype="float16")


def test_portable_names(tmp_path):
    from adapters_geo.models.specs import portable_name

    assert portable_name("smollm2-135m-instruct") == "smollm2-135m-instruct"  # its GGUF-derived weights are not the hub's
    assert portable_name("tiny-llama") == "tiny-llama" and portable_name("org/name") == "org/name"
    snapshot = tmp_path / "hub" / "models--org--some-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert portable_name(str(snapshot)) == "org/some-model"  # a hub cache folder names its repo
    assert portable_name(str(tmp_path)) == str(tmp_path.resolve())  # a plain folder: nothing more portable


def test_a_peft_folder_names_its_base_portably(tiny, tmp_path):
    model, _ = adapted_model("lora", tiny, "none", steps=1)
    before = model.peft_config["default"].base_model_name_or_path
    save_adapter(model, tmp_path / "ad")
    assert json.loads((tmp_path / "ad" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
    assert model.peft_config["default"].base_model_name_or_path == before  # the live model is left as it was
