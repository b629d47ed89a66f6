"""Loss-level checks on hand-built tensors: advantages, token selection, masking, mixing."""

import torch

from adapters_geo.methods.advantages import grpo_advantages, mix, opd_advantages, token_selection
from adapters_geo.methods.losses import clipped_pg, nll, reverse_kl_full


def test_opd_advantages_are_zero_when_teacher_equals_student():
    logp = torch.log_softmax(torch.randn(3, 5), -1)
    assert torch.equal(opd_advantages(logp, logp.clone()), torch.zeros(3, 5))
    assert torch.allclose(opd_advantages(logp, logp - 0.5, coef=2.0), torch.full((3, 5), -1.0))


def test_grpo_advantages_sum_to_zero_per_group_and_skip_flat_groups():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    advantage, keep = grpo_advantages(rewards, group=4)
    groups = advantage.view(3, 4)
    assert torch.allclose(groups.sum(1), torch.zeros(3), atol=1e-6)
    assert torch.equal(groups[1], torch.zeros(4)) and torch.equal(keep.view(3, 4)[1], torch.zeros(4))
    assert keep.view(3, 4)[0].eq(1).all() and (groups[0][[0, 3]] > 0).all() and (groups[0][[1, 2]] < 0).all()


def test_top_gap_keeps_exactly_the_largest_absolute_gaps_and_rescales():
    mask = torch.tensor([[1.0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    gaps = torch.tensor([[0.1, 0.9, -0.5, 0.4, 9.0, 9.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    weights = token_selection(mask, 0.5, "top_gap", gaps)
    assert torch.equal(weights[0], torch.tensor([0.0, 2, 2, 0, 0, 0]))  # |−0.5| > 0.4: negative gaps count; no padding
    assert torch.equal(weights[1], torch.tensor([0.0, 0, 0, 2, 2, 2]))
    assert torch.equal(weights.sum(1), mask.sum(1))  # loss scale unchanged


def test_random_selection_keeps_the_fraction_per_sample():
    mask = torch.ones(50, 8)
    weights = token_selection(mask, 0.25, "random", generator=torch.Generator().manual_seed(0))
    assert torch.equal((weights > 0).sum(1), torch.full((50,), 2))
    assert torch.equal(weights.sum(1), torch.full((50,), 8.0))
    assert len({tuple(row.nonzero().flatten().tolist()) for row in weights}) > 10  # drawn per sample


def test_masked_tokens_get_no_gradient():
    logp = torch.log_softmax(torch.randn(2, 6), -1).requires_grad_(True)
    weights = token_selection(torch.ones(2, 6), 0.5, "random", generator=torch.Generator().manual_seed(1))
    loss = clipped_pg(logp, logp.detach(), torch.randn(2, 6), weights, denominator=12)
    loss.backward()
    assert torch.equal(logp.grad == 0, weights == 0)


def test_pg_gradient_is_weighted_advantage_at_ratio_one():
    logp = torch.log_softmax(torch.randn(2, 4), -1).requires_grad_(True)
    adv = torch.randn(2, 4)
    clipped_pg(logp, logp.detach(), adv, torch.ones(2, 4), denominator=8).backward()
    assert torch.allclose(logp.grad, -adv / 8)


def test_clipping_stops_the_gradient_outside_the_trust_region():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.0, 1.0]])  # ratios e and 1/e
    clipped_pg(logp, old, torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), denominator=2).backward()
    assert torch.equal(logp.grad, torch.zeros(1, 2))


def test_mix_endpoints_and_full_vocab_kl():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(mix(a, b, 1.0), a) and torch.equal(mix(a, b, 0.0), b)
    s = torch.log_softmax(torch.randn(2, 3, 7), -1)
    assert torch.allclose(reverse_kl_full(s, s), torch.zeros(2, 3), atol=1e-7)
    assert (reverse_kl_full(s, torch.log_softmax(torch.randn(2, 3, 7), -1)) > 0).all()
    assert nll(torch.tensor([[-1.0, -3.0]]), torch.tensor([[1.0, 0.0]])) == 1.0


def test_top_gap_keeps_negative_gaps_as_often_as_positive_ones():
    """Selection by |r_t| keeps tokens of both signs (ranking by signed r_t kept almost only one sign)."""
    gaps = torch.cat([-torch.rand(1, 50), torch.rand(1, 50)], 1)
    weights = token_selection(torch.ones(1, 100), 0.5, "top_gap", gaps)
    kept = weights[0] > 0
    assert 15 < int(kept[:50].sum()) < 35 and 15 < int(kept[50:].sum()) < 35
