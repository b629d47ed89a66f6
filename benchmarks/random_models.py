"""Random-weight models of a real model's shape, for speed and memory measurements.

Throughput and memory depend on shapes, not on weights, and a machine without the model's
weights (a lent GPU that cannot reach any hub) can still build these. Weights are drawn from
a fixed seed; the tokenizer is the embedded SmolLM2 one (`make setup` converts it), so prompts
and completions tokenize exactly as in real runs. Random weights almost never sample EOS, so
every completion runs to max_new_tokens: both sides of a comparison generate equal lengths.
Where the embedded model is not installed (a lent GPU machine), `$ADAPTERS_GEO_BENCH_TOKENIZER`
names a folder holding only the tokenizer files. Shapes of a billion parameters or more are
built in bf16, on the GPU when there is one (an fp32 build on the CPU takes minutes and 7 GB).
"""

import json
import os
from pathlib import Path

import torch

from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.models.embedded import EMBEDDED_NAME
from adapters_geo.models.specs import resolve_spec
from adapters_geo.storage.paths import cache_root

# SmolLM2-135M's architecture (its config.json), so a folder can be built without the weights.
SMOLLM2_135M = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 8192, "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
    "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "hidden_act": "silu", "initializer_range": 0.02,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
# SmolLM2-1.7B's architecture: the 1.5B-class shape of the GPU measurements, with the same tokenizer.
SMOLLM2_1_7B = dict(SMOLLM2_135M, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                    num_attention_heads=32, num_key_value_heads=32, rope_parameters={"rope_type": "default", "rope_theta": 130000.0})
SHAPES = {"smollm2-135m": SMOLLM2_135M, "smollm2-1.7b": SMOLLM2_1_7B}
TOKENIZER_ENV = "ADAPTERS_GEO_BENCH_TOKENIZER"


def tokenizer_folder():
    """The tokenizer's source: $ADAPTERS_GEO_BENCH_TOKENIZER, else the embedded SmolLM2 folder."""
    return os.environ.get(TOKENIZER_ENV) or resolve_spec(EMBEDDED_NAME)


def random_model(shape: str = "smollm2-135m", seed: int = 0, layers: int | None = None) -> Path:
    """A local HF folder with random weights of `shape` (built once, cached); `layers` overrides depth."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    values = dict(SHAPES[shape], **({"num_hidden_layers": layers} if layers else {}))
    folder = cache_root() / "bench" / f"{shape}-random-s{seed}-l{values['num_hidden_layers']}"
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    big = shape != "smollm2-135m"
    device = "cuda" if big and torch.cuda.is_available() else "cpu"
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        config = LlamaConfig(**values, dtype="bfloat16" if big else "float32")
        model = LlamaForCausalLM(config).to(torch.bfloat16 if big else torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(folder, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "bench_model.json").write_text(json.dumps({"shape": shape, "seed": seed, "layers": values["num_hidden_layers"]}))
    return folder
