"""Save and load adapters: the tensor file(s) + `adapter.json`.

Format v2 (written now): a LoRA adapter is a standard peft folder (adapter_config.json +
adapter_model.safetensors, written by peft's save_pretrained, loadable by
`peft.PeftModel.from_pretrained`); dense and locked adapters, which peft has no format for,
keep `adapter.safetensors` with keys `name:delta`, `name:coef|right|left|offset`.
adapter.json records the format version, the adapter kind and its config, the base it was
trained on (spec, content fingerprint, quantization), every target's shape and the sha256
of every file the adapter relies on; format v3 (written now) adds `meta_sha256`, the sha256 of
adapter.json's own content without that field, so an edit of adapter.json (alpha, r, the record)
is refused too. Format v2 folders (no meta_sha256) and v1 folders (adapter.safetensors for every
kind, LoRA keys `name:lora_A|lora_B`, no hashes) still load.
Loading onto another base, another quantization or other shapes, or from damaged files, is
refused with a clear error; every tensor's shape is checked against the recorded targets before
any tensor is used (a (1, n) tensor would otherwise be broadcast into every row of a weight).
"""

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from adapters_geo.adapters import KINDS, adapter_kind, lora, peft_files
from adapters_geo.adapters.files import check_hashes, corrupt, hash_files, read_tensors
from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.loader import base_info
from adapters_geo.models.weights import base_linears

FORMAT = "adapters_geo.adapter"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
META_FILE = "adapter.json"
TENSOR_FILE = "adapter.safetensors"


def save_adapter(model: nn.Module, folder, overwrite: bool = False) -> Path:
    """Write the attached adapter to `folder` atomically; returns the folder."""
    folder = Path(folder)
    kind = adapter_kind(model)
    config, tensors = KINDS[kind].export(model)
    targets = dict.fromkeys(key.rsplit(":", 1)[0] for key in tensors)
    layers = base_linears(model)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": config,
        "base": base_info(model).to_dict(),
        "targets": {name: [int(layers[name].out_features), int(layers[name].in_features)] for name in targets},
    }
    if folder.exists() and not overwrite:
        raise AdaptersGeoError(f"{folder} already exists", "choose a new folder or pass overwrite=True")
    bad = next((key for key, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise AdaptersGeoError(f"refused to save the adapter to {folder}: {bad} holds non-finite values",
                               "the update diverged: lower train.lr")
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        if kind == "lora":
            files = lora.save_peft(model, tmp)
        else:
            save_file(tensors, str(tmp / TENSOR_FILE))
            files = [TENSOR_FILE]
        meta["sha256"] = hash_files(tmp, files)
        meta["meta_sha256"] = meta_digest(meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def read_adapter_meta(folder) -> dict:
    """The adapter.json of a saved adapter, validated."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        text = str(folder)
        if text.startswith("experiment:"):  # `make experiment` resolves these; a bare `adapters-geo train` cannot
            name = text.split(":", 1)[1]
            raise AdaptersGeoError(f"{text} names a chain's run, which only `make experiment` resolves",
                                   f"run `make experiment NAME={name}`, then pass --set init=runs/{name}/adapter")
        if not Path(folder).exists():
            raise AdaptersGeoError(f"{folder} does not exist", "pass a run's adapter folder (runs/NAME/adapter)")
        raise AdaptersGeoError(f"{folder} is not a saved adapter (no {META_FILE})", "pass a folder written by save_adapter")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise corrupt(folder, f"{META_FILE} is not valid JSON ({getattr(exc, 'msg', 'not UTF-8')})") from None
    if not isinstance(meta, dict):
        raise corrupt(folder, f"{META_FILE} holds a {type(meta).__name__}, not a mapping")
    if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
        raise AdaptersGeoError(
            f"{path} is not an adapters_geo adapter of format version {' or '.join(map(str, READABLE_VERSIONS))}",
            "re-save it with this version",
        )
    if meta.get("kind") not in KINDS:
        raise AdaptersGeoError(f"{path} names unknown adapter kind {meta.get('kind')!r}", f"use one of {', '.join(KINDS)}")
    if meta["version"] >= 3 and meta.get("meta_sha256") != meta_digest(meta):
        raise corrupt(folder, f"{META_FILE} was changed after saving (its content no longer matches its meta_sha256)")
    record = meta.get("sha256")
    if meta["version"] >= 2 and not (isinstance(record, dict) and record and all(isinstance(h, str) for h in record.values())):
        raise corrupt(folder, f"{META_FILE} has no sha256 record of its files")
    tensor_file = peft_files.WEIGHTS_FILE if meta["version"] >= 2 and meta["kind"] == "lora" else TENSOR_FILE
    if meta["version"] >= 2 and tensor_file not in record:
        raise corrupt(folder, f"{META_FILE}'s sha256 record does not cover {tensor_file}")
    _check_fields(folder, meta)
    return meta


def meta_digest(meta: dict) -> str:
    """sha256 of adapter.json's content without its own `meta_sha256` (keys sorted, compact)."""
    content = {key: value for key, value in meta.items() if key != "meta_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_fields(folder, meta: dict) -> None:
    """The fields the loaders use have the types and ranges they assume (v1 / v2 folders carry no meta hash)."""
    targets, config = meta.get("targets"), meta.get("config")
    if not isinstance(targets, dict) or not targets or not all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(n, int) and n > 0 for n in s) for s in targets.values()):
        raise corrupt(folder, f"{META_FILE}'s targets are not {{name: [out, in]}} with positive sizes")
    if not isinstance(config, dict) or not isinstance(meta.get("base"), dict):
        raise corrupt(folder, f"{META_FILE} has no config or base mapping")
    if meta["kind"] == "lora":
        r, alpha = config.get("r"), config.get("alpha")
        if not (isinstance(r, int) and r >= 1 and isinstance(alpha, (int, float)) and 0 < alpha < float("inf")):
            raise corrupt(folder, f"{META_FILE} has LoRA r = {r!r}, alpha = {alpha!r} (an integer r ≥ 1 and a finite alpha > 0 expected)")


PARTS = {"dense": {"delta"}, "lora": {"lora_A", "lora_B"}, "locked": {"coef", "right", "left", "offset"}}


def check_shapes(folder, meta: dict, tensors: dict) -> None:
    """Every saved tensor belongs to a recorded target and has the shape that target's update needs."""
    for key, tensor in tensors.items():
        name, _, part = key.rpartition(":")
        if name not in meta["targets"] or part not in PARTS[meta["kind"]]:
            raise corrupt(folder, f"{key} is no part of a {meta['kind']} adapter's targets recorded in {META_FILE}")
        out, inp = meta["targets"][name]
        expected = _expected_shape(tensors, name, part, out, inp)
        if tuple(tensor.shape) != expected:
            raise corrupt(folder, f"{key} has shape {tuple(tensor.shape)}, its target {name} ({out} × {inp}) needs {expected}")


def _expected_shape(tensors: dict, name: str, part: str, out: int, inp: int) -> tuple:
    """The shape `name:part` must have, given the target's (out, in) and the other parts' ranks."""
    shape = lambda other: tuple(tensors[f"{name}:{other}"].shape) if f"{name}:{other}" in tensors else (None, None)
    if part in ("delta", "offset"):
        return (out, inp)
    if part == "lora_A":
        return (shape("lora_B")[-1], inp)
    if part == "lora_B":
        return (out, shape("lora_A")[0])
    k = shape("right")[-1]  # the locked bases' K
    return {"right": (inp, k), "left": (out, k), "coef": (k, k) if f"{name}:left" in tensors else (out, k)}[part]


def saved_tensors(folder, meta: dict) -> dict:
    """The adapter's tensors under the toolkit's keys (`name:part`), after checking the recorded hashes.

    A locked adapter whose offset ΔW_t0 is a reference (`config.offset_from`) gets it from that adapter.
    """
    check_hashes(folder, meta.get("sha256"))
    if meta["version"] >= 2 and meta["kind"] == "lora":
        tensors = peft_files.factors(read_tensors(folder, peft_files.WEIGHTS_FILE))
    else:
        tensors = read_tensors(folder, TENSOR_FILE)
        reference = (meta.get("config") or {}).get("offset_from")
        if meta["kind"] == "locked" and reference:
            tensors.update({f"{name}:offset": delta for name, delta in _referenced_offset(folder, reference).items()})
    check_shapes(folder, meta, tensors)
    return tensors


def _referenced_offset(folder, reference: dict) -> dict:
    """{name: ΔW_t0} from the adapter a locked adapter refers to, checked against the recorded adapter.json hash."""
    import hashlib

    source = Path(reference["folder"])
    meta_path = source / META_FILE
    if not meta_path.is_file():
        raise AdaptersGeoError(f"locked adapter {folder} takes its offset ΔW_t0 from {source}, which is missing",
                               "restore that run's t0 state, or re-run the source experiment with FORCE=1")
    if hashlib.sha256(meta_path.read_bytes()).hexdigest() != reference["adapter_json_sha256"]:
        raise AdaptersGeoError(f"locked adapter {folder} takes its offset from {source}, which has changed since",
                               "re-run the locking experiment with FORCE=1 (its source was re-trained)")
    return dict(load_saved_deltas(source)[1])


def check_compatible(model: nn.Module, meta: dict, folder) -> None:
    """Raise unless `model` is the base (and quantization, and shapes) the adapter was saved on."""
    info = base_info(model)
    saved = meta["base"]
    if saved["fingerprint"] != info.fingerprint:
        raise AdaptersGeoError(
            f"adapter {folder} was trained on base '{saved['spec']}' (fingerprint {saved['fingerprint']}), "
            f"not on '{info.spec}' (fingerprint {info.fingerprint})",
            f"load the base with load_base('{saved['spec']}')",
        )
    if saved["quant"] != info.quant:
        raise AdaptersGeoError(
            f"adapter {folder} was trained on a quant={saved['quant']} base, this base is quant={info.quant}",
            f"load the base with quant='{saved['quant']}'",
        )
    layers = base_linears(model)
    for name, shape in meta["targets"].items():
        if name not in layers or [layers[name].out_features, layers[name].in_features] != shape:
            raise AdaptersGeoError(
                f"adapter {folder} targets {name} of shape {shape}, which this base does not have",
                "load it onto the base it was saved with",
            )


def load_saved_deltas(folder):
    """(meta, iterator of (name, fp32 ΔW)) of a saved adapter, computed from its files alone."""
    meta = read_adapter_meta(folder)
    return meta, KINDS[meta["kind"]].saved_deltas(meta["config"], saved_tensors(folder, meta))


def load_adapter(model: nn.Module, folder) -> nn.Module:
    """Attach the adapter saved in `folder` to a fresh base; returns the model to use."""
    meta = read_adapter_meta(folder)
    check_compatible(model, meta, folder)
    tensors = saved_tensors(folder, meta)
    device = next(model.parameters()).device
    tensors = {key: value.to(device) for key, value in tensors.items()}
    return KINDS[meta["kind"]].restore(model, meta["config"], tensors)
