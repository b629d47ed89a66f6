"""The held-out outcome of each method, per prompt, with as little noise as the method allows.

Lower is better for all three; each is a per-prompt value, so two models evaluated on the same
prompts can be compared prompt by prompt (paired):
- `nll` (sft): NLL of the reference solution, mean per token,
  L(x) = −(1/T) Σ_t log π(y*_t | x, y*_<t). Teacher-forced: no sampling noise.
- `kl` (opd): reverse KL to the teacher over the full vocabulary on the reference solution's
  contexts, L(x) = (1/T) Σ_t KL(π_s(·|x, y*_<t) ‖ π_teacher(·|x, y*_<t)). Fixed contexts: no sampling noise.
- `neg_reward` (rlvr): minus the mean verifiable reward of S samples per prompt at temperature 1;
  every chunk of prompts is sampled with its own fixed seed, the same for every model evaluated
  (common random numbers), so differences between models are not differences of luck.
"""

import torch

from adapters_geo.rollout.prompts import HINT_TEMPLATE, chat_prompt, encode
from adapters_geo.rollout.sampling import greedy_following, sample
from adapters_geo.rollout.scoring import completion_logprobs, completion_mask, pack

KINDS = {"sft": "nll", "opd": "kl", "rlvr": "neg_reward"}
SAMPLE_SEED = 424_242  # base seed of the reward outcome's sampling (chunk i uses SAMPLE_SEED + i)
# The teacher's log-softmax on the fixed contexts is the same at every evaluation of every run that
# distils from it: computed once per process and kept (one teacher at a time; 256 prompts × ~30
# completion tokens × 49k vocabulary in fp32 is about 1.5 GB), it halves the cost of an OPD evaluation.
_TEACHER_CACHE: dict = {}


def outcome_kind(method: str) -> str:
    """The outcome that measures `method`'s objective (a mix of OPD and RLVR counts as OPD)."""
    return KINDS[method]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def solution_ids(tokenizer, examples, system_prompt, hint: bool = False):
    """(prompt ids, reference completion ids) per example; `hint`: the self-hint teacher's prompt."""
    texts = [HINT_TEMPLATE.format(prompt=e.prompt, solution=e.solution) if hint else e.prompt for e in examples]
    prompts = encode(tokenizer, [chat_prompt(tokenizer, t, system_prompt) for t in texts])
    completions = [ids + [tokenizer.eos_token_id] for ids in encode(tokenizer, [e.solution for e in examples])]
    return prompts, completions


def _follow(model, tokenizer, packed, logp_all, cache, greedy: list, max_new_tokens: int) -> None:
    """Append each row's greedy completion to `greedy`, decoded on from the pass's cache where it leaves the reference."""
    best = [row[:n] for row, n in zip(logp_all.argmax(-1).tolist(), packed.lengths)]
    greedy += greedy_following(model, tokenizer, packed, cache, best, max_new_tokens)[0]


def _cache(model, greedy):
    from transformers import DynamicCache

    return DynamicCache(config=model.config) if greedy is not None else None


@torch.no_grad()
def reference_nll(model, tokenizer, examples, batch: int = 16, system_prompt=None, greedy: list | None = None,
                  max_new_tokens: int = 48) -> torch.Tensor:
    """(N,) mean NLL per token of each reference solution.

    `greedy`: a list that receives each example's greedy completion (token ids, at most `max_new_tokens`), from
    this pass: greedy decoding follows the reference while the argmax equals it, and is decoded on from this
    pass's cache only where it leaves it (rollout/sampling.py's greedy_following).
    """
    prompts, completions = solution_ids(tokenizer, examples, system_prompt)
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start, chunk in _chunks(list(range(len(examples))), batch):
        packed = pack([prompts[i] for i in chunk], [completions[i] for i in chunk], tokenizer.pad_token_id, device)
        if greedy is None:
            logp = completion_logprobs(model, packed)
        else:
            cache = _cache(model, greedy)
            logp, logp_all = completion_logprobs(model, packed, full=True, cache=cache)
            _follow(model, tokenizer, packed, logp_all, cache, greedy, max_new_tokens)
        mask = completion_mask(packed.lengths, packed.width, device)
        out.append((-(logp * mask).sum(1) / mask.sum(1)).cpu().double())
    return torch.cat(out)


@torch.no_grad()
def reference_kl(model, teacher, tokenizer, examples, batch: int = 8, system_prompt=None, teacher_hint: bool = False,
                 teacher_key: str | None = None, greedy: list | None = None, max_new_tokens: int = 48,
                 nll: list | None = None):
    """(N,) mean per-token KL(π_model ‖ π_teacher) over the full vocabulary on each reference solution's contexts.

    `teacher_key`: an identity of the teacher; its log-softmax on these contexts is then computed once per process.
    `greedy`: as for reference_nll, the student's greedy completions from the same pass.
    `nll`: a list that receives each example's reference NLL (reference_nll's value), read off the same pass for free.
    """
    prompts, completions = solution_ids(tokenizer, examples, system_prompt)
    teacher_prompts = solution_ids(tokenizer, examples, system_prompt, hint=True)[0] if teacher_hint else prompts
    device = next(model.parameters()).device
    model.eval()
    cache = _teacher_rows(teacher_key, examples, teacher_hint, system_prompt)
    out = []
    for start, chunk in _chunks(list(range(len(examples))), batch):
        rows = [completions[i] for i in chunk]
        packed = pack([prompts[i] for i in chunk], rows, tokenizer.pad_token_id, device)
        kv = _cache(model, greedy)
        token_logp, student = completion_logprobs(model, packed, full=True, cache=kv)  # (B, L), (B, L, V)
        mask = completion_mask(packed.lengths, packed.width, device)
        if nll is not None:
            nll += (-(token_logp * mask).sum(1) / mask.sum(1)).tolist()
        if greedy is not None:
            _follow(model, tokenizer, packed, student, kv, greedy, max_new_tokens)
        if cache is not None and all(i in cache for i in chunk):
            taught = _stack([cache[i] for i in chunk], student.shape)
        else:
            packed_t = pack([teacher_prompts[i] for i in chunk], rows, tokenizer.pad_token_id, teacher_device(teacher))
            taught = completion_logprobs(teacher, packed_t, full=True)[1].to(device)
            if cache is not None:
                cache.update({i: taught[j, : len(rows[j])].clone() for j, i in enumerate(chunk)})
        kl = (student.exp() * (student - taught)).sum(-1)  # (B, L), zero beyond each length
        out.append(((kl * mask).sum(1) / mask.sum(1)).cpu().double())
    return torch.cat(out)


def _teacher_rows(key, examples, hint: bool, system_prompt):
    """The per-example cache of the teacher's log-softmax rows for `key` (None: no caching)."""
    if key is None:
        return None
    full_key = (key, hint, system_prompt, tuple(e.prompt for e in examples))
    if full_key not in _TEACHER_CACHE:
        _TEACHER_CACHE.clear()  # one teacher at a time
        _TEACHER_CACHE[full_key] = {}
    return _TEACHER_CACHE[full_key]


def _stack(rows: list, shape) -> torch.Tensor:
    """(B, L, V) from per-example (len_i, V) rows, zero-padded (the padding positions are masked)."""
    out = torch.zeros(shape, dtype=rows[0].dtype, device=rows[0].device)
    for j, row in enumerate(rows):
        out[j, : row.shape[0]] = row
    return out


def teacher_device(teacher) -> torch.device:
    return next(teacher.parameters()).device


@torch.no_grad()
def negative_reward(model, tokenizer, examples, score, samples: int = 4, max_new_tokens: int = 48, batch: int = 16,
                    system_prompt=None) -> torch.Tensor:
    """(N,) minus the mean reward of `samples` temperature-1 samples per prompt (fixed seeds per chunk)."""
    return -sampled_rewards(model, tokenizer, examples, score, samples, max_new_tokens, batch, system_prompt).mean(1)


def sampled_rewards(model, tokenizer, examples, score, samples: int = 4, max_new_tokens: int = 48, batch: int = 16,
                    system_prompt=None) -> torch.Tensor:
    """(N, samples) reward, score(completion, example) as Task.score, of each temperature-1 sample, prompt by
    prompt; chunk i of prompts sampled with seed SAMPLE_SEED + i for every model (common random numbers), the global
    RNG left as it was."""
    prompts = encode(tokenizer, [chat_prompt(tokenizer, e.prompt, system_prompt) for e in examples])
    out = []
    with torch.random.fork_rng():
        for index, (start, chunk) in enumerate(_chunks(list(range(len(examples))), batch)):
            torch.manual_seed(SAMPLE_SEED + index)
            completions = sample(model, tokenizer, [prompts[i] for i in chunk], samples, max_new_tokens, temperature=1.0)
            texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
            rewards = torch.tensor([score(t, examples[i]) for t, i in zip(texts, [i for i in chunk for _ in range(samples)])],
                                   dtype=torch.float64)
            out.append(rewards.view(len(chunk), samples))
    return torch.cat(out)
