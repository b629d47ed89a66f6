"""peft LoRA folders (adapter_config.json + adapter_model.safetensors), read exactly without peft.

For each adapted module X (its path in the base model, e.g. `model.layers.0.self_attn.q_proj`):
  r_X = rank_pattern[first key matching X] or r,   alpha_X = alpha_pattern[first key matching X] or lora_alpha,
  scaling_X = alpha_X / r_X  (alpha_X / √r_X with use_rslora),
  ΔW_X = scaling_X · B_X A_X in fp32 (transposed with fan_in_fan_out, as peft's get_delta_weight).
A pattern key k matches X as in peft 0.21 (`peft.utils.other.get_pattern_key`): the regex
`(.*\\.)?(k)$` matches X from its start; the first matching key in the dict's order wins.
Options under which the merged update is not this ΔW of the block linears are refused.
"""

import json
import re
from pathlib import Path

import torch

from adapters_geo.adapters.files import corrupt, read_tensors
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.weights import PEFT_PREFIX, canonical_name

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
OUTSIDE_WORDS = ("embed", "lm_head", "norm", "wte", "wpe")  # modules the geometry never measures
# Config fields (peft 0.21) whose forward or merge is not W0 + scaling · B A: why each is refused.
REFUSED = {
    "use_dora": "DoRA rescales every column of W0 + ΔW by a trained magnitude",
    "lora_bias": "lora_bias adds a trained bias that is not part of ΔW",
    "layer_replication": "layer_replication shares one base weight between several adapted layers",
    "target_parameters": "target_parameters adapts raw parameters (MoE experts), not linear layers",
    "alora_invocation_tokens": "activated LoRA applies its update only after the invocation tokens (no merged ΔW)",
    "use_qalora": "QALoRA pools the input before A, so ΔW is not B A",
    "use_bdlora": "BD-LoRA stores block-diagonal factors in its own layout",
    "arrow_config": "Arrow routes tokens between several adapters",
    "kasa_config": "KaSA inserts a trained diagonal between B and A and truncates the base",
    "monteclora_config": "MonteCLoRA samples its factors",
    "megatron_config": "Megatron parallel layers shard the factors",
}
# init_lora_weights values that also rewrite the base weights: the saved factors then apply to a residual base.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


def read_config(folder: Path) -> dict:
    """adapter_config.json of a peft folder, refused unless its ΔW is exactly scaling · B A."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AdaptersGeoError(f"{path} cannot be read ({type(exc).__name__})", "pass a folder saved by peft") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise AdaptersGeoError(
            f"{folder} is a {config.get('peft_type')} adapter, not LoRA", "pass a peft LoRA folder (peft_type LORA)"
        )
    for key, reason in REFUSED.items():
        if config.get(key):
            raise AdaptersGeoError(f"peft adapter {folder} sets {key}: {reason}", "measure a plain LoRA adapter")
    init = str(config.get("init_lora_weights", True)).lower()
    if init.startswith(BASE_REWRITING_INITS):
        raise AdaptersGeoError(
            f"peft adapter {folder} was initialised with {init}, which also rewrote the base weights",
            "save it with save_pretrained(path_initial_model_for_weight_conversion=...) so it applies to the base",
        )
    return config


def pattern_value(patterns: dict, module: str, default):
    """patterns[first key whose regex `(.*\\.)?(key)$` matches `module`], else `default` (peft's rule)."""
    for key, value in (patterns or {}).items():
        try:
            found = re.match(rf"(.*\.)?({key})$", module)
        except re.error as exc:
            raise AdaptersGeoError(f"the peft adapter's pattern key {key!r} is not a regular expression ({exc})",
                                   "correct it in adapter_config.json (rank_pattern / alpha_pattern)") from None
        if found:
            return value
    return default


def module_scaling(config: dict, module: str) -> tuple[int, float]:
    """(r, scaling) peft gives `module` under `config`."""
    r = pattern_value(config.get("rank_pattern"), module, config["r"])
    alpha = pattern_value(config.get("alpha_pattern"), module, config["lora_alpha"])
    return r, (alpha / r**0.5 if config.get("use_rslora") else alpha / r)


def split_key(key: str) -> tuple[str, str]:
    """(module path in the base model, rest) of a saved peft key."""
    key = key.removeprefix(PEFT_PREFIX)
    for part in (".lora_A.", ".lora_B."):
        if part in key:
            module, _, rest = key.partition(part)
            return module, part.strip(".") + "." + rest
    return key, ""


def check_tensors(folder, tensors: dict) -> dict[str, tuple[str, str]]:
    """{module path: (A key, B key)}; refuses trained tensors of measured layers that are not factors."""
    pairs = {}
    for key, value in tensors.items():
        module, rest = split_key(key)
        if rest == "lora_A.weight":
            if value.dim() != 2:
                raise AdaptersGeoError(f"peft adapter {folder} adapts {module}, not a linear layer", "adapt linear layers")
            b_key = key.replace(".lora_A.", ".lora_B.")
            if b_key not in tensors:
                raise corrupt(folder, f"{module} has lora_A but no lora_B")
            pairs[module] = (key, b_key)
        elif rest != "lora_B.weight" and not any(w in module for w in OUTSIDE_WORDS):
            raise AdaptersGeoError(
                f"peft adapter {folder} also trains {key} (modules_to_save, bias or a variant), "
                "which the LoRA factors do not hold",
                "measure an adapter that changes the block linears through LoRA alone",
            )
    return pairs


def lora_deltas(folder) -> tuple:
    """(iterator of (canonical weight name, fp32 ΔW), largest r) of a peft LoRA folder."""
    folder = Path(folder)
    config = read_config(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise AdaptersGeoError(f"{folder} has no {WEIGHTS_FILE}", "save the adapter with safe_serialization=True")
    tensors = read_tensors(folder, WEIGHTS_FILE)
    pairs = check_tensors(folder, tensors)
    scalings = {}
    for module, (a_key, b_key) in pairs.items():
        r, scalings[module] = module_scaling(config, module)
        if tensors[a_key].shape[0] != r or tensors[b_key].shape[1] != r:
            raise corrupt(folder, f"the factors of {module} do not have the rank r={r} its config gives")

    def deltas():
        for module, (a_key, b_key) in pairs.items():
            delta = (tensors[b_key].float() @ tensors[a_key].float()) * scalings[module]
            yield canonical_name(module), delta.T if config.get("fan_in_fan_out") else delta

    ranks = [module_scaling(config, m)[0] for m in pairs]
    return deltas(), max(ranks, default=config["r"])


def factors(tensors: dict) -> dict[str, torch.Tensor]:
    """peft keys (`base_model.model.X.lora_A.weight`) to the toolkit's (`X.weight:lora_A`)."""
    out = {}
    for key, value in tensors.items():
        module, rest = split_key(key)
        if rest in ("lora_A.weight", "lora_B.weight"):
            out[f"{canonical_name(module)}:{rest.removesuffix('.weight')}"] = value
    return out
