"""Held-out evaluation during a run: the method's outcome per prompt, greedy accuracy at the ends.

At every evaluation the outcome of tasks/outcome.py (sft: reference NLL, opd: full-vocabulary
reverse KL to the teacher, rlvr: −mean reward of S samples) is computed per held-out prompt;
at the run's first and last step on every held-out prompt, with greedy accuracy and, for opd and rlvr, the
reference NLL beside it (opd: from the KL's own pass; rlvr: one teacher-forced pass that greedy decoding follows); between them
(the curves) on the first `curve_size` prompts only. Greedy accuracy reuses the outcome's
teacher-forced pass over the reference solutions (nll, kl): greedy decoding follows the reference
while the model's argmax equals it and is decoded on from that pass's cache where it leaves it.
With `common_samples` k > 0, the first and last evaluations also give every method's common outcome: the mean
reward of k temperature-1 samples per prompt, each chunk of prompts sampled with its own fixed seed for every
model (common random numbers, tasks/outcome.py's sampled_rewards; the training RNG is left untouched), saved per
prompt as "sampled_reward" (each sample's reward in "sampled_rewards", N × k, for choosing k afterwards) and logged
as "sampled_accuracy".
The mean goes to the loggers (group "eval"); the per-prompt values go to evals/step_NNNNNN.json, so two runs evaluated on
the same prompts can be compared prompt by prompt (paired bootstrap, locking/stats.py).
With `dtype` (train.eval_precision, e.g. bfloat16), the temperature-1 samples (the common outcome, RLVR's outcome) are
drawn from rollout/sampler.py's copy of the merged policy in that dtype, refreshed at each evaluation, as training's
rollouts are; the teacher-forced passes (NLL, KL) and greedy decoding stay on the run's model. Measured on
lock_opd_rg's seed-0 t0 state (256 prompts, 2-core Xeon with AMX): scoring on a bf16 copy too moved a prompt's KL by
up to 0.85 nats/token (twice the outcome's spread over prompts) and its NLL by up to 0.47, so scoring stays fp32.
With `start_cache` (pipeline/runner.py's start_eval_cache: runs that start from one saved adapter and score it alike),
the first evaluation is read from that file when an earlier run wrote it, else computed and written there.
"""

import json
import time

from adapters_geo.storage.atomic import atomic_write_text
from adapters_geo.tasks.evaluate import rewards_of, summarize_rewards
from adapters_geo.tasks.outcome import reference_kl, reference_nll, sampled_rewards


class HeldOut:
    """evaluate(step) -> {"outcome", "outcome_kind", ...}: the callable the loop is given."""

    def __init__(self, model, tokenizer, task, examples: list, outcome: str, folder, accuracy_steps=(),
                 teacher=None, teacher_hint: bool = False, max_new_tokens: int = 48, batch: int = 16,
                 system_prompt=None, samples: int = 4, curve_size: int | None = None, teacher_key: str | None = None,
                 common_samples: int = 0, start_cache=None, dtype=None):
        self.model, self.tokenizer, self.task, self.examples = model, tokenizer, task, examples
        self.kind, self.folder, self.accuracy_steps = outcome, folder, set(accuracy_steps)
        self.teacher, self.teacher_hint = teacher, teacher_hint
        self.max_new_tokens, self.batch, self.system_prompt, self.samples = max_new_tokens, batch, system_prompt, samples
        self.curve_size, self.teacher_key, self.common_samples = curve_size, teacher_key, common_samples
        self.per_sample = None  # (N, S) rewards of the last neg_reward outcome
        self.start, self.start_cache = min(self.accuracy_steps, default=None), start_cache
        self.dtype, self.copy, self.stale = dtype, None, False  # the low-precision copy, built when first needed

    def sampler(self):
        """The model the evaluation's samples are drawn from: the run's own, or its merged copy in a `dtype` narrower
        than the model's (a bf16 model on CUDA samples itself), refreshed once per evaluation."""
        if self.dtype is None or self.dtype.itemsize >= next(self.model.parameters()).dtype.itemsize:
            return self.model
        from adapters_geo.rollout.sampler import Sampler

        if self.copy is None:
            self.copy = Sampler(self.model, self.dtype)
        elif self.stale:
            self.copy.refresh(self.model)
        self.stale = False
        return self.copy.model

    def outcome(self, examples: list, greedy: list | None = None, nll: list | None = None):
        """(N,) per-prompt outcome of the run's model on `examples` (samples: from `sampler()`); lower is better.

        `greedy` (nll, kl): receives each example's greedy completion, from the same pass (tasks/outcome.py);
        `nll` (kl): each example's reference NLL, from the same pass.
        """
        if self.kind == "nll":
            return reference_nll(self.model, self.tokenizer, examples, self.batch, self.system_prompt, greedy,
                                 self.max_new_tokens)
        if self.kind == "kl":
            return reference_kl(self.model, self.teacher, self.tokenizer, examples, max(1, self.batch // 2),
                                self.system_prompt, self.teacher_hint, self.teacher_key, greedy, self.max_new_tokens, nll)
        self.per_sample = sampled_rewards(self.sampler(), self.tokenizer, examples, self.task.score, self.samples,
                                          self.max_new_tokens, self.batch, self.system_prompt)
        return -self.per_sample.mean(1)

    def __call__(self, step: int) -> dict:
        started = time.perf_counter()
        shared = self.start_cache if step == self.start else None
        if shared is not None and shared.is_file():  # a run of the same start scored it: the same numbers
            saved = json.loads(shared.read_text())
            atomic_write_text(self.folder.evals_dir / f"step_{step:06d}.json", json.dumps(saved["per_prompt"]))
            return {**saved["record"], "eval_seconds": time.perf_counter() - started}
        record, per_prompt = self.evaluate(step)
        atomic_write_text(self.folder.evals_dir / f"step_{step:06d}.json", json.dumps(per_prompt))
        if shared is not None:
            shared.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(shared, json.dumps({"record": record, "per_prompt": per_prompt}))
        record["eval_seconds"] = time.perf_counter() - started
        return record

    def evaluate(self, step: int) -> tuple[dict, dict]:
        """(the logged means, the per-prompt values) at `step`."""
        was_training = self.model.training
        self.stale = True  # the model may have moved since the copy was last merged
        end = step in self.accuracy_steps
        examples = self.examples if end or not self.curve_size else self.examples[: self.curve_size]
        greedy = [] if end else None
        nll = [] if end and self.kind == "kl" else None
        values = self.outcome(examples, greedy if self.kind in ("nll", "kl") else None, nll)
        record = {"outcome": float(values.mean()), "outcome_kind": self.kind, "examples": len(examples)}
        per_prompt = {"step": step, "outcome_kind": self.kind, "outcome": values.tolist()}
        if end:
            if self.kind == "neg_reward":  # its reference NLL, and greedy decoding following that pass (as for nll)
                nll = reference_nll(self.model, self.tokenizer, self.examples, self.batch, self.system_prompt, greedy,
                                    self.max_new_tokens).tolist()
            if self.kind != "nll":
                per_prompt["reference_nll"] = nll  # every method's reference NLL beside its own outcome (issue 22)
            rewards = rewards_of(self.tokenizer, self.task, self.examples, greedy)
            record.update(summarize_rewards(rewards))
            per_prompt["greedy_reward"] = rewards
            if self.common_samples:
                each = (self.per_sample if self.kind == "neg_reward" and self.common_samples == self.samples else
                        sampled_rewards(self.sampler(), self.tokenizer, self.examples, self.task.score, self.common_samples,
                                        self.max_new_tokens, self.batch, self.system_prompt))
                sampled = each.mean(1)
                per_prompt["sampled_reward"] = sampled.tolist()
                per_prompt["sampled_rewards"] = each.tolist()
                record["sampled_accuracy"] = float(sampled.mean())
        self.model.train(was_training)
        return record, per_prompt
