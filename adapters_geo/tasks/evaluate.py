"""Held-out greedy evaluation: pass@1 accuracy and mean reward on a task's test split.

An evaluation that scores the reference solutions anyway (tasks/outcome.py's nll and kl) gets the
greedy completions from that pass (its `greedy` list) and only scores them here (`rewards_of`).
"""

import torch

from adapters_geo.rollout.prompts import chat_prompt, encode
from adapters_geo.rollout.sampling import sample


def rewards_of(tokenizer, task, examples, completions: list[list[int]]) -> list[float]:
    """The task's reward of each example's completion (token ids)."""
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    return [task.score(text, e) for text, e in zip(texts, examples)]


@torch.no_grad()
def greedy_rewards(model, tokenizer, task, examples=None, max_new_tokens: int = 48, batch_size: int = 16,
                   system_prompt=None) -> list[float]:
    """The reward of each example's greedy completion."""
    examples = task.test if examples is None else examples
    rewards = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = encode(tokenizer, [chat_prompt(tokenizer, e.prompt, system_prompt) for e in chunk])
        rewards += rewards_of(tokenizer, task, chunk, sample(model, tokenizer, prompts, 1, max_new_tokens, temperature=0))
    return rewards


def summarize_rewards(rewards: list[float]) -> dict:
    """{"accuracy", "mean_reward", "examples"}: a sample is correct when its reward is ≥ 1."""
    count = max(len(rewards), 1)
    return {"accuracy": sum(r >= 1.0 for r in rewards) / count, "mean_reward": sum(rewards) / count, "examples": len(rewards)}


def evaluate(model, tokenizer, task, examples=None, max_new_tokens: int = 48, batch_size: int = 16,
             system_prompt=None) -> dict:
    """{"accuracy", "mean_reward", "examples"} of greedy completions."""
    return summarize_rewards(greedy_rewards(model, tokenizer, task, examples, max_new_tokens, batch_size, system_prompt))
