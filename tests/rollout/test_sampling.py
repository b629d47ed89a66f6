"""Sampling: the shared prompt prefill changes nothing but the cost.

Run: python -m pytest -q tests/rollout
"""

import pytest

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base
from adapters_geo.rollout import sampling


@pytest.mark.parametrize("adapter", [DenseConfig(), LoraConfig(r=4)], ids=["dense", "lora"])
def test_shared_prefill_gives_the_same_completions(adapter, monkeypatch):
    base = load_base("tiny-llama")
    model = attach_adapter(base.model, adapter)
    tok = base.tokenizer
    prompts = [tok("Tom has 23 apples.")["input_ids"], tok("A shop has 6 shelves with 9 shells on each.")["input_ids"]]
    shared = sampling.sample(model, tok, prompts, num_samples=3, max_new_tokens=12, temperature=0)
    calls = []
    monkeypatch.setattr(sampling, "shared_prefill", lambda *args: calls.append(1))
    separate = sampling.sample(model, tok, prompts, num_samples=3, max_new_tokens=12, temperature=0)
    assert calls and shared == separate  # greedy: identical tokens with and without the shared cache
    assert shared[0] == shared[1] == shared[2] and len(shared) == 6
