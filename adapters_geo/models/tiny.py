"""`tiny-llama`: a deterministic, randomly initialised llama-style model for tests.

Two layers, hidden size 64, a byte-level tokenizer (256 bytes + 3 ChatML specials) with
a chat template: a training step takes milliseconds on 2 CPU cores. Built from a
fixed seed by transformers' initialisers; the build checks the weights against a pinned
content hash, so a transformers or torch that initialises differently is one clear error,
not a test suite whose numbers quietly refer to other weights.
"""

import hashlib
from pathlib import Path

import torch

from adapters_geo.errors import AdaptersGeoError

TINY_NAME = "tiny-llama"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_SEED = 1234
TINY_VERSION = 3  # bump when the build changes: cached folders of another version are rebuilt
# weights_sha256 of the model build_tiny makes (torch 2.13.0, transformers 5.25.0; x86_64, 2026-12-04). torch's CPU
# normal_ takes a vectorised path on x86_64: another architecture may draw other bits and is refused here.
TINY_WEIGHTS_SHA256 = "7228e4962770824fa4382accf717e0e7723e88502de01e50f6e3a9030b3ce876"
# std of the random init: 0.2 lets the frozen tied embedding produce sharp logits, so the tiny
# model can fit its tasks (0.02, the llama default, caps the logit scale near 1).
INIT_RANGE = 0.2


def byte_tokenizer():
    """A ChatML byte-level tokenizer: every UTF-8 byte is one token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(vocab_size: int):
    """The llama config of `tiny-llama` (shapes chosen to be 4-bit block friendly)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=INIT_RANGE,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 3,
    )


def weights_sha256(model) -> str:
    """sha256 over every state-dict tensor in name order: its name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def build_tiny(folder: Path) -> None:
    """Write the tiny model and its tokenizer into `folder` (an empty folder); refuse weights other than the pinned ones."""
    import transformers
    from transformers import LlamaForCausalLM

    tokenizer = byte_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(tiny_config(len(tokenizer)))
    built = weights_sha256(model)
    if built != TINY_WEIGHTS_SHA256:
        raise AdaptersGeoError(
            f"{TINY_NAME} built with torch {torch.__version__} and transformers {transformers.__version__} has other "
            f"weights than the pinned build (sha256 {built[:16]}…, pinned {TINY_WEIGHTS_SHA256[:16]}…): the tests' "
            "numbers refer to the pinned weights",
            "install the locked versions (make setup); if the change is intended, pin the new hash in "
            "adapters_geo/models/tiny.py, bump TINY_VERSION and re-run make test",
        )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
