"""Saving and loading adapters: exact round trip, and clear refusals on the wrong base."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapters_geo import AdaptersGeoError, load_adapter, load_base, merged_deltas, save_adapter
from adapters_geo.adapters.io import meta_digest
from tests.adapters.test_kinds import adapted_model


@pytest.mark.parametrize("kind, quant", [("dense", "none"), ("lora", "8bit"), ("locked", "4bit"), ("locked2", "none")])
def test_round_trip_gives_identical_deltas(tiny, tmp_path, kind, quant):
    model, _ = adapted_model(kind, tiny, quant, steps=3)
    save_adapter(model, tmp_path / "ad")
    loaded = load_adapter(tiny(quant).model, tmp_path / "ad")
    want, got = merged_deltas(model), merged_deltas(loaded)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    x = torch.randint(0, 250, (2, 10))
    model.eval(), loaded.eval()
    torch.testing.assert_close(model(input_ids=x).logits, loaded(input_ids=x).logits)


def other_base(tmp_path, scale=1.01):
    """A checkpoint with tiny-llama's shapes but other weights."""
    src = load_base("tiny-llama").info.folder
    folder = tmp_path / "other"
    folder.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"):
        path = __import__("pathlib").Path(src) / f
        if path.exists():
            (folder / f).write_bytes(path.read_bytes())
    tensors = load_file(f"{src}/model.safetensors")
    save_file({k: v * scale for k, v in tensors.items()}, str(folder / "model.safetensors"))
    return folder


def test_wrong_base_is_refused(tiny, tmp_path):
    model, _ = adapted_model("dense", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    other = load_base(str(other_base(tmp_path)))
    with pytest.raises(AdaptersGeoError, match=r"was trained on base 'tiny-llama'.*fix: load the base with load_base"):
        load_adapter(other.model, tmp_path / "ad")


def test_wrong_quantization_is_refused(tiny, tmp_path):
    model, _ = adapted_model("lora", tiny, "4bit", steps=1)
    save_adapter(model, tmp_path / "ad")
    with pytest.raises(AdaptersGeoError, match="quant=4bit base, this base is quant=none"):
        load_adapter(tiny("none").model, tmp_path / "ad")


def test_wrong_shapes_are_refused(tiny, tmp_path):
    model, _ = adapted_model("dense", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    meta_path = tmp_path / "ad" / "adapter.json"
    meta = json.loads(meta_path.read_text())
    meta["targets"]["model.layers.0.self_attn.q_proj.weight"] = [128, 64]
    meta["meta_sha256"] = meta_digest(meta)  # written so, consistently (an edit alone is refused: below)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AdaptersGeoError, match=r"targets model.layers.0.self_attn.q_proj.weight of shape \[128, 64\]"):
        load_adapter(tiny("none").model, tmp_path / "ad")


def test_save_never_overwrites_by_default(tiny, tmp_path):
    model, _ = adapted_model("dense", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    before = (tmp_path / "ad" / "adapter.safetensors").read_bytes()
    with pytest.raises(AdaptersGeoError, match="already exists"):
        save_adapter(model, tmp_path / "ad")
    assert (tmp_path / "ad" / "adapter.safetensors").read_bytes() == before


@pytest.mark.parametrize("content, message", [(None, "not a saved adapter"), ("{oops", "not valid JSON")])
def test_not_an_adapter_folder(tiny, tmp_path, content, message):
    if content is not None:
        (tmp_path / "adapter.json").write_text(content)
    with pytest.raises(AdaptersGeoError, match=message):
        load_adapter(tiny("none").model, tmp_path)


def test_a_missing_folder_and_a_chain_reference_name_their_fix(tiny, tmp_path):
    """`init: experiment:NAME` outside `make experiment`, or a run that was never trained, say what to run instead."""
    with pytest.raises(AdaptersGeoError, match=r"does not exist.*fix: pass a run's adapter folder"):
        load_adapter(tiny("none").model, tmp_path / "nope" / "adapter")
    with pytest.raises(AdaptersGeoError, match=r"fix: run `make experiment NAME=sft_init`, then pass --set "
                                               r"init=runs/sft_init/adapter"):
        load_adapter(tiny("none").model, "experiment:sft_init")


@pytest.mark.parametrize("kind", ["dense", "lora", "locked", "locked2"])
def test_deltas_from_saved_files_equal_merged_deltas(tiny, tmp_path, kind):
    from adapters_geo.adapters.io import load_saved_deltas

    model, _ = adapted_model(kind, tiny, "none", steps=2)
    save_adapter(model, tmp_path / "ad")
    meta, deltas = load_saved_deltas(tmp_path / "ad")
    from_files, from_model = dict(deltas), merged_deltas(model)
    assert meta["kind"] == kind.rstrip("2") and from_files.keys() == from_model.keys()
    for name, delta in from_model.items():
        torch.testing.assert_close(from_files[name], delta, rtol=1e-6, atol=1e-7)


def _edit_meta(folder, change, rehash: bool = False):
    path = folder / "adapter.json"
    meta = json.loads(path.read_text())
    changed = change(meta)
    meta = changed if isinstance(changed, list) else meta  # a change may replace the whole content
    if rehash and isinstance(meta, dict):
        meta["meta_sha256"] = meta_digest(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("change, rehash, message", [
    (lambda m: m["config"].update(alpha=2 * m["config"]["alpha"]), False, "adapter.json was changed after saving"),
    (lambda m: m.pop("meta_sha256"), False, "adapter.json was changed after saving"),
    (lambda m: m.update(sha256={}), True, "adapter.json has no sha256 record of its files"),
    (lambda m: m["sha256"].pop("adapter_model.safetensors"), True, "record does not cover adapter_model.safetensors"),
    (lambda m: m["config"].update(r=0), True, r"LoRA r = 0, alpha = 8\.0 \(an integer r ≥ 1"),
    (lambda m: [m], False, "adapter.json holds a list, not a mapping"),
])
def test_an_edited_adapter_json_is_refused_before_any_tensor_is_used(tiny, tmp_path, change, rehash, message):
    # doubling alpha in adapter.json would change the exported model with exit code 0; an emptied record would turn
    # the file hashes off; r = 0 would divide by zero; a list would be a traceback
    from adapters_geo.adapters.export import export_merged
    from adapters_geo.adapters.io import load_saved_deltas

    model, _ = adapted_model("lora", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    _edit_meta(tmp_path / "ad", change, rehash)
    for use in (lambda: load_adapter(tiny("none").model, tmp_path / "ad"), lambda: dict(load_saved_deltas(tmp_path / "ad")[1]),
                lambda: export_merged(tmp_path / "ad", tmp_path / "merged")):
        with pytest.raises(AdaptersGeoError, match=message):
            use()
    assert not (tmp_path / "merged").exists()


def test_a_tensor_of_another_shape_is_refused_not_broadcast(tiny, tmp_path):
    # a (1, n) ΔW with its hash record rewritten to match: copy_ / W + ΔW would broadcast it into every row
    from safetensors.torch import load_file, save_file

    from adapters_geo.adapters.files import sha256_file
    from adapters_geo.adapters.io import load_saved_deltas

    model, _ = adapted_model("dense", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    file = tmp_path / "ad" / "adapter.safetensors"
    tensors = load_file(str(file))
    key = "model.layers.0.self_attn.q_proj.weight:delta"
    tensors[key] = tensors[key][:1].contiguous()
    save_file(tensors, str(file))
    _edit_meta(tmp_path / "ad", lambda m: m["sha256"].update({"adapter.safetensors": sha256_file(file)}), rehash=True)
    for use in (lambda: load_adapter(tiny("none").model, tmp_path / "ad"), lambda: dict(load_saved_deltas(tmp_path / "ad")[1])):
        with pytest.raises(AdaptersGeoError, match=rf"{key} has shape \(1, 64\), its target .* needs \(64, 64\)"):
            use()
