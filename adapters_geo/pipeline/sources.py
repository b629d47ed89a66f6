"""Where (W0, ΔW) pairs come from, one matrix at a time.

- `checkpoint_source(base, tuned)`: two full HF checkpoints; tensors are read one by one
  from their safetensors files (memory-mapped), so memory stays near a few matrices.
- `adapter_source(base, adapter_dir)`: a saved adapters_geo adapter or a peft LoRA folder
  on its base; ΔW comes from the adapter's factors, W0 from the base checkpoint, or, for a
  quantized base, from the dequantized layers of the loaded base.
Every source is checked (architecture, names, shapes, base identity) before anything is
computed, so a bad pair fails before any output exists.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.specs import fingerprint, resolve_spec
from adapters_geo.storage.runfolder import read_json

SKIP_WORDS = ("embed", "lm_head", "norm", "wte", "wpe")
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads")


DAMAGED_FIX = "save the checkpoint again with save_pretrained (or download it again)"


class CheckpointReader:
    """Tensor-by-tensor access to an HF folder's safetensors files."""

    def __init__(self, spec: str):
        self.spec = spec
        self.folder = resolve_spec(spec)
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise AdaptersGeoError(f"{self.folder} holds no .safetensors files", "save the model with save_pretrained")
        self.files = {}
        self.shapes = {}
        for file in files:
            with self._open(file) as handle:
                for key in handle.keys():
                    self.files[key] = file
                    self.shapes[key] = tuple(handle.get_slice(key).get_shape())
        self.config = read_json(self.folder / "config.json", DAMAGED_FIX)
        if not isinstance(self.config, dict):
            raise AdaptersGeoError(f"{self.folder / 'config.json'} does not hold a model config", DAMAGED_FIX)

    def _open(self, file: Path):
        try:
            return safe_open(str(file), framework="pt")
        except Exception as exc:  # safetensors' own error types: a truncated or changed file
            raise AdaptersGeoError(f"checkpoint file {file} cannot be read ({type(exc).__name__}): truncated or changed",
                                   DAMAGED_FIX) from None

    def get(self, name: str) -> torch.Tensor:
        with self._open(self.files[name]) as handle:
            try:
                return handle.get_tensor(name).float()
            except Exception as exc:  # a header that promises more bytes than the file holds
                raise AdaptersGeoError(f"checkpoint file {self.files[name]} cannot be read at {name} ({type(exc).__name__}): "
                                       "truncated or changed", DAMAGED_FIX) from None

    def targets(self) -> list[str]:
        """Names of the 2-D linear weights inside the blocks (no embeddings, head, norms)."""
        return [
            n for n, shape in self.shapes.items()
            if len(shape) == 2 and n.endswith(".weight") and not any(w in n for w in SKIP_WORDS)
        ]

    def architecture(self) -> dict:
        text = self.config.get("text_config", self.config)
        return {key: text.get(key) for key in ARCH_KEYS}


@dataclass
class Source:
    """A stream of (name, W0, ΔW) with what the report must say about it."""

    names: list
    pairs: object  # callable () -> iterator of (name, w0 fp32, delta fp32)
    meta: dict = field(default_factory=dict)
    cache_key: str | None = None


def checkpoint_source(base: str, tuned: str) -> Source:
    """ΔW = W_tuned − W_base for every shared linear weight, streamed from disk."""
    ref, new = CheckpointReader(base), CheckpointReader(tuned)
    if ref.architecture() != new.architecture():
        raise AdaptersGeoError(
            f"architectures differ: {base} is {ref.architecture()}, {tuned} is {new.architecture()}",
            "compare a fine-tuned checkpoint with the model it was tuned from",
        )
    names = ref.targets()
    for name in names:
        if name not in new.shapes or new.shapes[name] != ref.shapes[name]:
            got = new.shapes.get(name, "missing")
            raise AdaptersGeoError(
                f"{tuned} has {name} with shape {got}, {base} has {ref.shapes[name]}",
                "compare checkpoints of the same architecture",
            )
    if not names:
        raise AdaptersGeoError(f"{base} has no linear weights to compare", "pass a causal-LM checkpoint")

    def pairs():
        for name in names:
            w0 = ref.get(name)
            yield name, w0, new.get(name) - w0

    meta = {"reference": base, "tuned": tuned, "quant": "none", "adapter_kind": "full", "adapter_rank": None}
    return Source(names, pairs, meta, cache_key=f"{fingerprint(ref.folder)}-none")


def adapter_source(base: str, adapter: str, quant: str | None = None) -> Source:
    """ΔW from an adapter folder (ours or peft LoRA) on `base`."""
    folder = Path(adapter)
    if (folder / "adapter.json").is_file():
        from adapters_geo.adapters.io import load_saved_deltas

        saved, deltas = load_saved_deltas(folder)
        quant = saved["base"]["quant"]
        kind, r = saved["kind"], saved["config"].get("r", saved["config"].get("K"))
        _check_base(base, saved["base"]["fingerprint"], saved["base"]["spec"], folder)
    elif (folder / "adapter_config.json").is_file():
        deltas, r = _peft_deltas(folder)
        kind, quant = "lora", quant or "none"
    else:
        raise AdaptersGeoError(
            f"{folder} is neither an adapters_geo adapter (adapter.json) nor a peft LoRA folder (adapter_config.json)",
            "pass the folder written by save_adapter or by peft's save_pretrained",
        )
    deltas = dict(deltas)
    weights = _reference_weights(base, quant, list(deltas))
    for name, delta in deltas.items():
        if tuple(delta.shape) != weights.shape(name):
            raise AdaptersGeoError(
                f"adapter {folder} has {name} of shape {tuple(delta.shape)}, base {base} has {weights.shape(name)}",
                "use the adapter with the base it was trained on",
            )

    def pairs():
        for name, delta in deltas.items():
            yield name, weights.get(name), delta

    meta = {"reference": base, "tuned": str(folder), "quant": quant, "adapter_kind": kind, "adapter_rank": r}
    return Source(list(deltas), pairs, meta, cache_key=f"{fingerprint(resolve_spec(base))}-{quant}")


def _check_base(base: str, saved_fingerprint: str, saved_spec: str, folder: Path) -> None:
    if fingerprint(resolve_spec(base)) != saved_fingerprint:
        raise AdaptersGeoError(
            f"adapter {folder} was trained on '{saved_spec}', not on '{base}'",
            f"pass {saved_spec} as BASE",
        )


def _peft_deltas(folder: Path):
    """(iterator of (name, ΔW), largest r) from a peft LoRA folder, with peft's per-module scaling.

    rank_pattern, alpha_pattern and use_rslora are honoured as peft applies them; options whose
    merged update is not scaling · B A (DoRA, lora_bias, layer replication, trained
    modules_to_save of block linears, other peft types...) are refused (adapters/peft_files.py).
    """
    from adapters_geo.adapters.peft_files import lora_deltas

    return lora_deltas(folder)


class _QuantizedWeights:
    """W0 as the quantized base computes it (dequantized), by canonical name."""

    def __init__(self, base: str, quant: str):
        from adapters_geo.models import load_base
        from adapters_geo.models.weights import base_linears

        self.layers = base_linears(load_base(base, quant).model)

    def shape(self, name):
        layer = self.layers.get(name)
        return None if layer is None else (layer.out_features, layer.in_features)

    def get(self, name):
        from adapters_geo.models.quant import dequantized_weight

        return dequantized_weight(self.layers[name]).cpu()


class _CheckpointWeights:
    def __init__(self, base: str):
        self.reader = CheckpointReader(base)

    def shape(self, name):
        return self.reader.shapes.get(name)

    def get(self, name):
        return self.reader.get(name)


def _reference_weights(base: str, quant: str, names: list):
    weights = _CheckpointWeights(base) if quant == "none" else _QuantizedWeights(base, quant)
    missing = [n for n in names if weights.shape(n) is None]
    if missing:
        raise AdaptersGeoError(f"base {base} has no weight {missing[0]}", "use the adapter with the base it was trained on")
    return weights


def run_source(run_dir) -> Source:
    """ΔW = ΔW_final − ΔW_init of a training run, against W0 = its start (base + init).

    OPD and RLVR runs started from the SFT anchor are thus measured against the anchor, SFT
    runs from the base against the base, as in the published protocol.
    """
    run_dir, config, meta, final, start = _run_parts(run_dir)

    def pairs():
        for name, delta in final.items():
            offset = start.offsets.get(name)
            yield name, start[name], delta if offset is None else delta - offset

    quant, base = meta["base"]["quant"], meta["base"]["spec"]
    kind = config["adapter"]["kind"]
    rank = config["adapter"].get("r", config["adapter"].get("K"))
    reference = f"{base} + {config['init']}" if config.get("init") else base
    meta_out = {"reference": reference, "tuned": str(run_dir.path), "quant": quant, "adapter_kind": kind, "adapter_rank": rank}
    return Source(list(final), pairs, meta_out, cache_key=reference_key(config, meta))


def reference_key(config: dict, meta: dict) -> str | None:
    """The SVD cache key of a run's reference: its base's identity and quantization; None (no cache) from an init adapter."""
    return None if config.get("init") else f"{fingerprint(resolve_spec(meta['base']['spec']))}-{meta['base']['quant']}"


class StartWeights:
    """W_start of a run by name: the (dequantized) base weight plus the run's init adapter, one matrix at a time."""

    def __init__(self, weights, offsets: dict):
        self.weights, self.offsets = weights, offsets

    def __getitem__(self, name: str):
        w0 = self.weights.get(name)
        return w0 if name not in self.offsets else w0 + self.offsets[name]


def _run_parts(run_dir):
    from adapters_geo.adapters.io import load_saved_deltas
    from adapters_geo.storage.runfolder import RunFolder

    run_dir = RunFolder(run_dir)
    config = run_dir.config_dict()
    meta, final = load_saved_deltas(run_dir.adapter)
    final = dict(final)
    init = dict(load_saved_deltas(config["init"])[1]) if config.get("init") else {}
    weights = _reference_weights(meta["base"]["spec"], meta["base"]["quant"], list(final))
    return run_dir, config, meta, final, StartWeights(weights, init)


def run_start(run_dir) -> StartWeights:
    """The weights a run started from (what its trajectory ΔW_t is measured against)."""
    return _run_parts(run_dir)[4]
