"""Scoring packed batches: the same log-probs as scoring each sequence alone, unpadded.

Run: python -m pytest -q tests/rollout
"""

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base
from adapters_geo.rollout.scoring import completion_logprobs, completion_mask, pack

PROMPT_LENGTHS, COMPLETION_LENGTHS = (5, 11, 8, 3), (4, 1, 7, 2)


def sequences(vocab: int):
    g = torch.Generator().manual_seed(0)
    draw = lambda n: torch.randint(3, vocab - 3, (n,), generator=g).tolist()
    return [draw(n) for n in PROMPT_LENGTHS], [draw(n) for n in COMPLETION_LENGTHS]


def alone(model, prompt, completion):
    """(len(completion),) log-probs and (len, V) log-softmax of one sequence scored by itself."""
    ids = torch.tensor([prompt + completion])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float(), -1)
    return logp.gather(-1, torch.tensor(completion)[:, None]).squeeze(-1), logp


@pytest.mark.parametrize("adapter", [DenseConfig(), LoraConfig(r=4)], ids=["dense", "lora"])
def test_packed_scores_equal_unpadded_scores(adapter):
    base = load_base("tiny-llama")
    model = attach_adapter(base.model, adapter)
    with torch.no_grad():
        for p in (p for p in model.parameters() if p.requires_grad):
            p.add_(0.05 * torch.randn_like(p))
    prompts, completions = sequences(len(base.tokenizer))
    packed = pack(prompts, completions, base.tokenizer.pad_token_id)
    with torch.no_grad():
        token_logp, logp_all = completion_logprobs(model, packed, full=True)
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            expected, expected_all = alone(model, prompt, completion)
            n = len(completion)
            torch.testing.assert_close(token_logp[row, :n], expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logp_all[row, :n], expected_all, atol=1e-5, rtol=1e-5)
            assert (token_logp[row, n:] == 0).all() and (logp_all[row, n:] == 0).all()  # zeros beyond the length
    assert token_logp.shape == (len(prompts), max(COMPLETION_LENGTHS))


def test_gradients_are_finite_under_left_padding():
    base = load_base("tiny-llama")
    model = attach_adapter(base.model, DenseConfig())
    prompts, completions = sequences(len(base.tokenizer))
    packed = pack(prompts, completions, base.tokenizer.pad_token_id)
    model.train()
    token_logp = completion_logprobs(model, packed)
    mask = completion_mask(packed.lengths, packed.width)
    (token_logp * mask).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
