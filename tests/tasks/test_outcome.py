"""The held-out outcomes: closed-form checks on tiny-llama, the teacher cache, common random numbers.

Run: python -m pytest -q tests/tasks/test_outcome.py
"""

import pytest
import torch

from adapters_geo import DenseConfig, attach_adapter, load_base
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.tasks.outcome import negative_reward, reference_kl, reference_nll

TASK = TaskConfig(levels=[0], train_size=20, test_size=6)


def perturbed(scale=0.05, seed=0):
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (p for p in model.parameters() if p.requires_grad):
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def test_nll_is_the_mean_token_nll_of_the_reference_solution():
    base, task = load_base("tiny-llama"), load_task(TASK)
    tok = base.tokenizer
    example = task.test[0]
    from adapters_geo.rollout.prompts import chat_prompt

    prompt = tok(chat_prompt(tok, example.prompt), add_special_tokens=False)["input_ids"]
    answer = tok(example.solution, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logp = torch.log_softmax(base.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double(), -1)
    manual = -logp.gather(1, torch.tensor(answer)[:, None]).mean().item()
    assert reference_nll(base.model, tok, [example])[0].item() == pytest.approx(manual, rel=1e-5)


def test_kl_is_zero_to_itself_positive_otherwise_and_cached_exactly():
    base, task = load_base("tiny-llama"), load_task(TASK)
    assert reference_kl(base.model, base.model, base.tokenizer, task.test).abs().max() < 1e-6
    student = perturbed()
    plain = reference_kl(student, base.model, base.tokenizer, task.test, batch=4)
    first = reference_kl(student, base.model, base.tokenizer, task.test, batch=4, teacher_key="t")

    class Refuses(torch.nn.Module):  # the cached rows must be used: the teacher is never run again
        def parameters(self, recurse=True):
            return base.model.parameters()

        def forward(self, *args, **kwargs):
            raise AssertionError("teacher ran although its rows are cached")

    again = reference_kl(student, Refuses(), base.tokenizer, task.test, batch=4, teacher_key="t")
    assert (plain > 0).all() and torch.equal(plain, first) and torch.equal(first, again)


def test_the_kl_pass_gives_the_reference_nll_and_greedy_completions_of_its_own_passes():
    base, task = load_base("tiny-llama"), load_task(TASK)
    student = perturbed(seed=3)
    nll, greedy_kl, greedy_nll = [], [], []
    reference_kl(student, base.model, base.tokenizer, task.test, batch=4, nll=nll, greedy=greedy_kl, max_new_tokens=8)
    alone = reference_nll(student, base.tokenizer, task.test, batch=4, greedy=greedy_nll, max_new_tokens=8)
    assert nll == pytest.approx(alone.tolist(), rel=1e-5) and len(nll) == len(task.test)
    assert greedy_kl == greedy_nll


def test_reward_outcome_uses_common_random_numbers():
    base, task = load_base("tiny-llama"), load_task(TASK)
    reward = lambda text, answer: float(len(text) % 2)
    one = negative_reward(base.model, base.tokenizer, task.test, reward, samples=4, max_new_tokens=6)
    torch.manual_seed(123)  # the global stream does not matter, and is left as it was
    state = torch.get_rng_state()
    two = negative_reward(base.model, base.tokenizer, task.test, reward, samples=4, max_new_tokens=6)
    assert torch.equal(one, two) and torch.equal(state, torch.get_rng_state())
    assert ((one <= 0) & (one >= -1)).all()
