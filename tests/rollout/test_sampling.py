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



def _following(model, tok, prompts, references, new, batch=3):
    """greedy_following after a teacher-forced pass over [prompt | reference], chunk by chunk as an outcome makes it."""
    import torch
    from transformers import DynamicCache

    from adapters_geo.rollout.scoring import completion_logprobs, pack

    out, count = [], 0
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            packed = pack(prompts[i : i + batch], references[i : i + batch], tok.pad_token_id)
            cache = DynamicCache(config=model.config)
            _, logp_all = completion_logprobs(model, packed, full=True, cache=cache)
            best = [row[:n] for row, n in zip(logp_all.argmax(-1).tolist(), packed.lengths)]
            done, decoded = sampling.greedy_following(model, tok, packed, cache, best, new)
            out, count = out + done, count + decoded
    return out, count


def test_greedy_following_a_reference_gives_greedy_decoding_tokens_and_decodes_only_where_it_leaves():
    """References equal to greedy's own output (nothing decoded), one token changed mid-way (decoded on from the
    pass's cache there), unrelated ones (decoded from the first token): every completion equals plain greedy
    decoding's, token for token, with max_new_tokens cuts; rows of a chunk leave at different positions."""
    import torch

    base = load_base("tiny-llama")
    model = attach_adapter(base.model, DenseConfig())
    with torch.no_grad():  # a perturbed update: greedy outputs of their own, not the base's
        g = torch.Generator().manual_seed(3)
        for p in (p for p in model.parameters() if p.requires_grad):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    tok = base.tokenizer
    texts = ["Tom has 23 apples.", "A shop has 6 shelves with 9 shells on each.", "What is 7 + 5?", "Count the legs.",
             "Sam gave away 4 of his 11 cards."]
    prompts = [tok(t)["input_ids"] for t in texts]
    for new in (12, 5):
        greedy = sampling.sample(model, tok, prompts, 1, new, temperature=0)
        assert all(len(g) >= 4 for g in greedy)  # long enough to change a token in the middle
        changed = [g[:k] + [(g[k] + 1) % tok.vocab_size] + g[k + 1 :] for k, g in zip([2, 3, 1, 2, 3], greedy)]
        unrelated = [[(7 * i + 11) % tok.vocab_size] * 6 for i in range(len(prompts))]
        mixed = [greedy[0], changed[1], unrelated[2], greedy[3], changed[4]]
        for references, decoded in ((greedy, 0), (changed, len(prompts)), (unrelated, None), (mixed, None)):
            out, count = _following(model, tok, prompts, references, new)
            assert out == greedy
            if decoded is not None:
                assert count == decoded
    # a reference longer than max_new_tokens that greedy follows: cut like generate, nothing decoded
    long = sampling.sample(model, tok, prompts, 1, 12, temperature=0)
    assert _following(model, tok, prompts, long, 5) == ([g[:5] for g in long], 0)


def test_the_inverse_cdf_draw_follows_softmax_at_its_temperature():
    """Closed form: 40 000 draws of a 6-token distribution at T = 2 land on softmax(s / 2) within 4 standard errors."""
    import torch

    torch.manual_seed(0)
    scores = torch.tensor([[2.0, 0.0, -1.0, 4.0, 1.0, -30.0]]).repeat(40_000, 1)
    drawn = sampling.inverse_cdf(scores, 2.0, torch.rand(len(scores)))
    freq = torch.bincount(drawn, minlength=6).double() / len(drawn)
    p = torch.softmax(scores[0].double() / 2.0, -1)
    se = (p * (1 - p) / len(drawn)).sqrt()
    assert ((freq - p).abs() <= 4 * se + 1e-12).all(), (freq, p)
    assert freq[5] == 0  # p ≈ 2e-8: never drawn in 40 000
    edges = sampling.inverse_cdf(scores[:2], 1.0, torch.tensor([0.0, 1.0 - 1e-7]))
    assert edges.tolist() == [0, 4]  # u = 0: the first token; u → 1: the last one with mass (not the −30 one)


def test_temperature_sampling_draws_the_models_next_token_distribution():
    """sample() at T = 1 on a tiny model: the first sampled token's frequencies match the model's softmax (χ² test)."""
    import torch

    base = load_base("tiny-llama")
    tok = base.tokenizer
    prompt = tok("Tom has 23 apples.")["input_ids"]
    with torch.no_grad():
        p = torch.softmax(base.model(input_ids=torch.tensor([prompt])).logits[0, -1].double(), -1)
    torch.manual_seed(1)
    drawn = sampling.sample(base.model, tok, [prompt], num_samples=3000, max_new_tokens=1, temperature=1.0)
    first = [c[0] for c in drawn]
    counts = torch.bincount(torch.tensor(first), minlength=len(p)).double()
    top = p.argsort(descending=True)[:8]  # the 8 likeliest tokens, the rest pooled
    observed = torch.cat([counts[top], (counts.sum() - counts[top].sum()).view(1)])
    expected = torch.cat([p[top], (1 - p[top].sum()).view(1)]) * len(first)
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 26.1, chi2  # χ²(8) 99.9th percentile


def test_decode_drops_finished_rows_and_keeps_each_rows_random_numbers():
    """A row that samples EOS leaves the batch; every other row's tokens are those of a decode where no row ends,
    with or without the shared prompt cache; greedy decoding equals generate()'s."""
    import torch

    base = load_base("tiny-llama")
    tok = base.tokenizer
    prompts = [tok("Tom has 23 apples.")["input_ids"], tok("A shop has 6 shelves with 9 shells on each.")["input_ids"]]
    width = max(len(p) for p in prompts)
    ids, mask = sampling.left_pad([p for p in prompts for _ in range(4)], tok.pad_token_id, width, "cpu")
    torch.manual_seed(3)
    never = sampling.decode(base.model, ids, mask, 10, eos=-1)  # no row ends: all 8 rows decode 10 tokens
    common = torch.tensor([t for row in never for t in row]).bincount().argmax().item()  # a token some rows sample
    for cache in (None, "shared"):
        shared = sampling.shared_prefill(base.model, prompts, tok.pad_token_id, width, 4, "cpu") if cache else None
        torch.manual_seed(3)
        ended = sampling.decode(base.model, ids, mask, 10, eos=common, cache=shared)
        assert len({len(r) for r in ended}) > 2  # rows ended at different steps: the batch shrank with rows left in it
        for full, cut in zip(never, ended):
            stop = full.index(common) + 1 if common in full else 10
            assert cut == full[:stop], cache  # the same tokens up to its EOS: the same uniform per row and step
    greedy = sampling.sample(base.model, tok, prompts, 1, 10, temperature=0)
    out = base.model.generate(input_ids=ids[::4], attention_mask=mask[::4], max_new_tokens=10, do_sample=False,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    assert greedy == [sampling.cut_at_eos(r, tok.eos_token_id, tok.pad_token_id) for r in out[:, width:].tolist()]


def test_decode_samples_at_its_temperature_and_refuses_none():
    """Two tokens into a tiny model's completions at T = 0.5: the second token's frequencies after a fixed first token
    follow softmax(logits / 0.5) (χ² over the likeliest 8, the rest pooled); T ≤ 0 is refused by the draw."""
    import torch

    base = load_base("tiny-llama")
    tok = base.tokenizer
    prompt = tok("Tom has 23 apples.")["input_ids"]
    ids, mask = sampling.left_pad([prompt] * 3000, tok.pad_token_id, len(prompt), "cpu")
    torch.manual_seed(5)
    drawn = sampling.decode(base.model, ids, mask, 2, eos=-1, temperature=0.5)
    first = torch.tensor([row[0] for row in drawn]).bincount().argmax().item()
    second = [row[1] for row in drawn if row[0] == first]
    with torch.no_grad():
        logits = base.model(input_ids=torch.tensor([prompt + [first]])).logits[0, -1].double()
    p = torch.softmax(logits / 0.5, -1)
    counts = torch.bincount(torch.tensor(second), minlength=len(p)).double()
    top = p.argsort(descending=True)[:8]
    observed = torch.cat([counts[top], (counts.sum() - counts[top].sum()).view(1)])
    expected = torch.cat([p[top], (1 - p[top].sum()).clamp_min(1e-12).view(1)]) * len(second)
    keep = expected > 5  # χ² needs expected counts ≥ 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum().item()
    assert len(second) > 200 and chi2 < 26.1, (len(second), chi2)  # χ²(≤ 8) 99.9th percentile
    with pytest.raises(ValueError, match="temperature"):
        sampling.inverse_cdf(torch.zeros(1, 4), 0.0, torch.rand(1))
