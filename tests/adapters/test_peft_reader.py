"""The peft LoRA reader behind `adapters-geo geometry BASE --adapter PEFT_DIR` equals peft's own merge.

Folders are built by peft itself (get_peft_model + save_pretrained, random A and B); the
reference ΔW is merge_and_unload() on the fp32 model minus the base weights.
Run: python -m pytest -q tests/adapters/test_peft_reader.py
"""

import peft
import pytest
import torch

from adapters_geo import AdaptersGeoError, base_weights, load_base
from adapters_geo.adapters.peft_files import lora_deltas, pattern_value
from adapters_geo.pipeline.sources import adapter_source

RANKS = {"model.layers.0.mlp.up_proj": 6, "up_proj": 8, "v_proj": 2, "proj": 16}  # "proj" matches no module
ALPHAS = {"q_proj": 64, r"layers\.1\.mlp\.down_proj": 3}


def peft_folder(tmp_path, merge=True, **options):
    """(folder, {name: ΔW} from peft's merge_and_unload, or None) of a random peft LoRA on tiny-llama."""
    torch.manual_seed(0)
    base = load_base("tiny-llama").model
    w0 = {name: w.clone() for name, w in base_weights(base).items()}  # fp32 weights are views: merging moves them
    settings = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "init_lora_weights": False} | options
    config = peft.LoraConfig(**settings)
    model = peft.get_peft_model(base, config)
    model.save_pretrained(tmp_path / "peft")
    if not merge:
        return tmp_path / "peft", None
    merged = model.merge_and_unload().state_dict()
    return tmp_path / "peft", {name: merged[name] - w for name, w in w0.items()}


@pytest.mark.parametrize("rslora", [False, True])
def test_patterns_and_rslora_match_peft_merge(tmp_path, rslora):
    folder, want = peft_folder(tmp_path, rank_pattern=RANKS, alpha_pattern=ALPHAS, use_rslora=rslora)
    deltas, r = lora_deltas(folder)
    got = dict(deltas)
    assert got.keys() == want.keys() and r == 8
    for name, delta in want.items():
        torch.testing.assert_close(got[name], delta, rtol=0, atol=2e-6)
    ranks = {n: torch.linalg.matrix_rank(d).item() for n, d in got.items()}
    assert ranks["model.layers.0.mlp.up_proj.weight"] == 6 and ranks["model.layers.1.mlp.up_proj.weight"] == 8
    assert ranks["model.layers.0.self_attn.v_proj.weight"] == 2 and ranks["model.layers.0.self_attn.o_proj.weight"] == 4
    source = adapter_source("tiny-llama", str(folder))  # the geometry command's path
    assert source.meta["adapter_rank"] == 8
    for name, _, delta in source.pairs():
        torch.testing.assert_close(delta, want[name], rtol=0, atol=2e-6)


def test_pattern_rule_is_peft_0_21():
    from peft.utils.other import get_pattern_key

    modules = ["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj",
               "model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj"]
    patterns = {**RANKS, **ALPHAS, "layers.1": 5, r"layers\.1\d*\.self_attn\.q_proj": 7}
    for module in modules:
        key = get_pattern_key(patterns.keys(), module)
        assert pattern_value(patterns, module, None) == patterns.get(key), module


def test_trainable_tokens_on_the_embedding_are_outside_and_accepted(tmp_path):
    folder, want = peft_folder(tmp_path, target_modules=["q_proj", "v_proj"], trainable_token_indices=[1, 2])
    got = dict(lora_deltas(folder)[0])
    assert len(got) == 4
    for name, delta in got.items():
        torch.testing.assert_close(delta, want[name], rtol=0, atol=2e-6)


@pytest.mark.parametrize("options, message", [
    ({"use_dora": True}, "sets use_dora: DoRA rescales"),
    ({"lora_bias": True}, "sets lora_bias"),
    ({"layer_replication": [[0, 2], [1, 2]]}, "sets layer_replication"),
    ({"target_modules": ["q_proj"], "modules_to_save": ["down_proj"]}, "also trains .*down_proj.weight"),
    ({"init_lora_weights": "pissa"}, "initialised with pissa, which also rewrote the base"),
])
def test_inexact_options_are_refused_in_one_line(tmp_path, options, message):
    folder, _ = peft_folder(tmp_path, merge=False, **options)
    with pytest.raises(AdaptersGeoError, match=message) as info:
        dict(lora_deltas(folder)[0])
    assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_other_peft_types_are_refused(tmp_path):
    torch.manual_seed(0)
    model = peft.get_peft_model(load_base("tiny-llama").model, peft.LoHaConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "loha")
    with pytest.raises(AdaptersGeoError, match="is a LOHA adapter, not LoRA"):
        lora_deltas(tmp_path / "loha")


def test_fan_in_fan_out_conv1d_base_is_transposed_like_peft(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=16))
    w0 = base.transformer.h[0].attn.c_attn.weight.detach().clone()  # Conv1D: (in, out)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    model = peft.get_peft_model(base, config)
    model.save_pretrained(tmp_path / "gpt2")
    want = model.merge_and_unload().transformer.h[0].attn.c_attn.weight - w0
    got = dict(lora_deltas(tmp_path / "gpt2")[0])
    assert list(got) == ["transformer.h.0.attn.c_attn.weight"]
    torch.testing.assert_close(got["transformer.h.0.attn.c_attn.weight"], want, rtol=0, atol=2e-6)


def test_a_pattern_key_that_is_no_regular_expression_is_one_line():
    from adapters_geo.adapters.peft_files import pattern_value

    assert pattern_value({"q_proj": 4}, "model.layers.0.self_attn.q_proj", 8) == 4
    with pytest.raises(AdaptersGeoError, match=r"pattern key 'q_proj\[' is not a regular expression .* — fix: correct it"):
        pattern_value({"q_proj[": 4}, "model.layers.0.self_attn.q_proj", 8)
