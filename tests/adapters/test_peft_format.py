"""Format v2: LoRA folders are standard peft folders, every file is hashed, v1 folders still load.

Run: python -m pytest -q tests/adapters/test_peft_format.py
"""

import json

import peft
import pytest
import torch
from safetensors.torch import save_file

from adapters_geo import AdaptersGeoError, load_adapter, merged_deltas, save_adapter
from adapters_geo.adapters import KINDS
from adapters_geo.adapters.io import load_saved_deltas, read_adapter_meta
from adapters_geo.models.loader import base_info
from adapters_geo.models.weights import base_linears
from tests.adapters.test_kinds import adapted_model

X = torch.randint(0, 250, (2, 12), generator=torch.Generator().manual_seed(1))


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=X).logits


@pytest.mark.parametrize("quant", ["none", "8bit", "4bit"])
def test_lora_folder_loads_in_peft_with_identical_logits(tiny, tmp_path, quant):
    model, _ = adapted_model("lora", tiny, quant, steps=3)
    save_adapter(model, tmp_path / "ad")
    files = {p.name for p in (tmp_path / "ad").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "adapter.json"} <= files
    assert "adapter.safetensors" not in files
    loaded = peft.PeftModel.from_pretrained(tiny(quant).model, tmp_path / "ad")
    diff = (logits(loaded) - logits(model)).abs().max().item()
    print(f"peft.PeftModel.from_pretrained vs toolkit, quant={quant}: max |Δlogit| = {diff:.3g}")
    assert diff <= 1e-6


@pytest.mark.parametrize("kind", ["dense", "lora", "locked"])
def test_adapter_json_describes_v3_with_hashes(tiny, tmp_path, kind):
    model, _ = adapted_model(kind, tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    meta = read_adapter_meta(tmp_path / "ad")
    assert meta["version"] == 3 and meta["kind"] == kind and len(meta["meta_sha256"]) == 64 and meta["base"]["spec"] == "tiny-llama"
    assert meta["base"]["quant"] == "none" and len(meta["base"]["fingerprint"]) == 16 and len(meta["targets"]) == 14
    want = {"adapter_model.safetensors", "adapter_config.json"} if kind == "lora" else {"adapter.safetensors"}
    assert set(meta["sha256"]) == want and all(len(h) == 64 for h in meta["sha256"].values())


def write_v1(model, folder):
    """An old (format v1) folder, written by hand as the v1 code did: adapter.safetensors + adapter.json."""
    kind = next(name for name, module in KINDS.items() if module.is_attached(model))
    config, tensors = KINDS[kind].export(model)
    layers = base_linears(model)
    targets = dict.fromkeys(key.rsplit(":", 1)[0] for key in tensors)
    folder.mkdir()
    save_file(tensors, str(folder / "adapter.safetensors"))
    meta = {
        "format": "adapters_geo.adapter", "version": 1, "kind": kind, "config": config,
        "base": base_info(model).to_dict(),
        "targets": {n: [layers[n].out_features, layers[n].in_features] for n in targets},
    }
    (folder / "adapter.json").write_text(json.dumps(meta))
    return tensors


@pytest.mark.parametrize("kind, quant", [("lora", "none"), ("dense", "4bit"), ("locked2", "none")])
def test_v1_folders_still_load(tiny, tmp_path, kind, quant):
    model, _ = adapted_model(kind, tiny, quant, steps=2)
    tensors = write_v1(model, tmp_path / "old")
    suffixes = {key.rsplit(":", 1)[1] for key in tensors}
    assert suffixes == {"lora": {"lora_A", "lora_B"}, "dense": {"delta"}, "locked2": {"coef", "right", "left", "offset"}}[kind]
    assert read_adapter_meta(tmp_path / "old")["version"] == 1
    want = merged_deltas(model)
    loaded = load_adapter(tiny(quant).model, tmp_path / "old")
    assert all(torch.equal(want[n], d) for n, d in merged_deltas(loaded).items())
    from_files = dict(load_saved_deltas(tmp_path / "old")[1])
    assert from_files.keys() == want.keys()
    for name, delta in want.items():
        torch.testing.assert_close(from_files[name], delta, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(logits(loaded), logits(model))


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "zeroed":
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "zeroed", "empty"])
@pytest.mark.parametrize("kind, file", [("lora", "adapter_model.safetensors"), ("dense", "adapter.safetensors")])
def test_damaged_files_give_one_corrupt_line(tiny, tmp_path, kind, file, how):
    model, _ = adapted_model(kind, tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    damage(tmp_path / "ad" / file, how)
    for load in (lambda: load_adapter(tiny("none").model, tmp_path / "ad"), lambda: dict(load_saved_deltas(tmp_path / "ad")[1])):
        with pytest.raises(AdaptersGeoError) as info:
            load()
        message = str(info.value)
        assert message.startswith(f"adapter {tmp_path / 'ad'} is corrupt: {file}") and "\n" not in message
        assert "fix: re-save it with save_adapter, or re-run the training" in message


def test_edited_peft_config_is_corrupt_too(tiny, tmp_path):
    model, _ = adapted_model("lora", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    path = tmp_path / "ad" / "adapter_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "lora_alpha": 2 * config["lora_alpha"]}))
    with pytest.raises(AdaptersGeoError, match="is corrupt: adapter_config.json"):
        load_adapter(tiny("none").model, tmp_path / "ad")


@pytest.mark.parametrize("how", ["truncated", "zeroed", "empty"])
def test_damaged_v1_file_without_hash_is_one_line_too(tiny, tmp_path, how):
    model, _ = adapted_model("dense", tiny, "none", steps=1)
    write_v1(model, tmp_path / "old")
    damage(tmp_path / "old" / "adapter.safetensors", how)
    try:
        dict(load_saved_deltas(tmp_path / "old")[1])
    except AdaptersGeoError as exc:
        assert "is corrupt: adapter.safetensors cannot be read" in str(exc) and "\n" not in str(exc)
    else:  # zeroed bytes inside the tensor data are readable: v1 has no hash to tell
        assert how == "zeroed"
