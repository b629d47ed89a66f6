"""OPD, RLVR and their mixes: one on-policy policy-gradient method, differing only in advantages.

Per step: sample G completions per prompt (from the student, the teacher, or a stale
student), score them (teacher log-probs for OPD, verifiable rewards for RLVR), then
minimise the clipped token-level policy-gradient loss (losses.py) with the advantages of
advantages.py. How this GRPO differs from the textbook one: no KL to a reference unless
kl_coef > 0, no entropy bonus, asymmetric clip (0.2 / 0.28), token-level aggregation, zero-variance
groups dropped from the loss. OPD uses the same loss with A_t = −coef·r_t, no KL, no entropy bonus.

The importance ratio ρ_t = π(y_t) / π_behaviour(y_t) uses the log-probs of the policy that drew the
samples: the current student (ρ = 1 at the one update per batch), the stale policy N updates old
(`rollout_source: stale:N`, scored when sampling), and, when the student's samples come from a
low-precision copy (`sampler`, rollout/sampler.py), that copy's own log-probs, so its mismatch with
the trained policy is corrected (logged as policy_mismatch, mean |log π_sampler − log π| per token).
Teacher-drawn rollouts get no correction (MethodConfig.rollout_correction says so in the run). A mix of OPD and RLVR logs each
component's gradient norm and the OPD share of their sum.
"""

import contextlib

import torch

from adapters_geo.adapters import adapter_kind
from adapters_geo.methods.advantages import grpo_advantages, mix, opd_advantages, token_selection
from adapters_geo.methods.history import PolicyHistory
from adapters_geo.methods.losses import clipped_pg, k3_kl, reverse_kl_full
from adapters_geo.methods.protocol import Batch
from adapters_geo.models.weights import base_linears
from adapters_geo.rollout.prompts import HINT_TEMPLATE, chat_prompt, encode
from adapters_geo.rollout.sampler import Sampler, sampler_dtype
from adapters_geo.rollout.sampling import sample
from adapters_geo.rollout.scoring import completion_logprobs, completion_mask, pack


class PolicyGradient:
    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg = ctx.config
        self.name = self.cfg.name
        self.uses_teacher = self.name == "opd" or self.cfg.mix_alpha is not None
        self.uses_reward = self.name == "rlvr" or self.cfg.mix_alpha is not None
        self.history = PolicyHistory(self.cfg.stale_lag()) if self.cfg.stale_lag() else None
        self.sampler = None  # built at the first batch when the sampler's precision differs from the model's

    def after_update(self, model) -> None:
        if self.history is not None:
            self.history.record(model)

    def state_dict(self) -> dict:
        return {"history": self.history.state_dict()} if self.history is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.history is not None and "history" in state:
            self.history.load_state_dict(state["history"])

    def _prompts(self, examples):
        tok, system = self.ctx.tokenizer, self.ctx.system_prompt
        student = encode(tok, [chat_prompt(tok, e.prompt, system) for e in examples])
        if not self.cfg.hinted():
            return student, student
        hinted = [HINT_TEMPLATE.format(prompt=e.prompt, solution=e.solution) for e in examples]
        return student, encode(tok, [chat_prompt(tok, h, system) for h in hinted])

    def _rollouts(self, model, student_prompts, teacher_prompts):
        """(completions, behaviour log-probs (B, L) or None when the current student itself sampled)."""
        cfg, tok = self.cfg, self.ctx.tokenizer
        args = (cfg.group_size, cfg.max_new_tokens, cfg.temperature)
        if cfg.rollout_source == "teacher":
            return sample(self.ctx.teacher.model, tok, teacher_prompts, *args), None
        if self.history is not None and not self.history.snapshots:
            self.history.record(model)
        with self.history.policy(model) if self.history is not None else contextlib.nullcontext():
            if self._low_precision(model):
                self.sampler.refresh(model)
                return self.sampler.sample(tok, student_prompts, *args)
            completions = sample(model, tok, student_prompts, *args)
            stale = self.history is not None
            return completions, self._score(model, [p for p in student_prompts for _ in range(cfg.group_size)],
                                            completions, full=False) if stale else None

    def _low_precision(self, model) -> bool:
        """Whether rollouts come from a merged copy of the policy (rollout/sampler.py; built on first use): in a
        lower precision, or in the model's own for a LoRA on an unquantized base, whose peft layers decode two
        extra small matmuls per layer and token; the copy decodes plain linears, as vLLM-based trainers do, at the
        memory of one more copy of the base. Measured (RLVR rollouts of 2 prompts × 4 samples, 40 tokens, fp32,
        SmolLM2-135M's shape, 2-core CPU, 4 alternating pairs): 4.75–5.68 s from the copy, refreshed each time,
        against 5.00–6.41 s through peft; the copy was faster in every pair, by 0.57 s on average."""
        if self.sampler is None:
            dtype = sampler_dtype(self.cfg.sampler, next(model.parameters()).device)
            same = dtype == next(model.parameters()).dtype
            # only in fp32: a bf16 copy of W0 + ΔW would round away the LoRA's small early updates (delta_linear.py)
            plain_lora = (dtype == torch.float32 and adapter_kind(model) == "lora"
                          and all(type(m) is torch.nn.Linear for m in base_linears(model).values()))
            self.sampler = Sampler(model, dtype) if not same or plain_lora else False
        return self.sampler is not False


    def batch(self, examples: list, step: int) -> Batch:
        model, tok, group = self.ctx.model, self.ctx.tokenizer, self.cfg.group_size
        student_prompts, teacher_prompts = self._prompts(examples)
        completions, behaviour = self._rollouts(model, student_prompts, teacher_prompts)
        repeat = lambda items: [x for x in items for _ in range(group)]
        batch = Batch(step, repeat(student_prompts), completions, behaviour=behaviour)
        if self.uses_reward:
            texts = tok.batch_decode(completions, skip_special_tokens=True)
            rewards = [self.ctx.task.score(t, e) for t, e in zip(texts, repeat(examples))]
            batch.rewards = torch.tensor(rewards, dtype=torch.float32)
        if self.uses_teacher:
            batch.teacher = self._score(self.ctx.teacher.model, repeat(teacher_prompts), completions)
        if self.cfg.kl_coef:
            batch.reference = self._score(self.ctx.reference.model, batch.prompts, completions)
        return batch

    @torch.no_grad()
    def _score(self, model, prompts, completions, full=None):
        device = next(model.parameters()).device
        packed = pack(prompts, completions, self.ctx.tokenizer.pad_token_id, device)
        return completion_logprobs(model, packed, full=self.cfg.full_vocab_kl if full is None else full)

    def advantages(self, old_logp: torch.Tensor, mask: torch.Tensor, batch: Batch):
        """(A (B, L), per-sample keep (B,)) for this method and its mix."""
        ones = torch.ones(mask.shape[0], device=mask.device)
        teacher = batch.teacher
        teacher_logp = teacher[0] if isinstance(teacher, tuple) else teacher
        a_opd = opd_advantages(old_logp, teacher_logp, self.cfg.opd_coef) if self.uses_teacher else None
        if self.uses_reward:
            per_sample, keep = grpo_advantages(batch.rewards.to(mask.device), self.cfg.group_size)
            a_rlvr = per_sample[:, None] * mask
        alpha = self.cfg.mix_alpha
        if alpha is None:
            return (a_opd, ones) if self.name == "opd" else (a_rlvr, keep)
        return mix(a_opd, a_rlvr, alpha), (keep if alpha == 0 else ones)

    def loss(self, model, batch: Batch):
        device = next(model.parameters()).device
        packed = pack(batch.prompts, batch.completions, self.ctx.tokenizer.pad_token_id, device)
        scored = completion_logprobs(model, packed, full=self.cfg.full_vocab_kl)
        logp, logp_all = scored if self.cfg.full_vocab_kl else (scored, None)
        mask = completion_mask(packed.lengths, packed.width, device)
        old = logp.detach()  # the current student's log-probs: the advantages' r_t
        behaviour = batch.behaviour.to(device) if batch.behaviour is not None else old  # the ratio's denominator
        advantages, keep = self.advantages(old, mask, batch)
        token_mask = mask * keep[:, None]
        teacher = batch.teacher
        teacher_logp = teacher[0] if isinstance(teacher, tuple) else teacher
        gaps = (old - teacher_logp) if teacher_logp is not None else None
        # seeded by (seed, step) and, under data parallelism, by the share: processes draw independently (rank 0 = a lone run)
        generator = torch.Generator().manual_seed(1_000_003 * self.ctx.seed + batch.step + 7_919 * batch.stream)
        weights = token_selection(token_mask, self.cfg.token_fraction, self.cfg.token_select, gaps, generator)
        denominator = token_mask.sum().item()
        if self.cfg.full_vocab_kl:
            loss = (reverse_kl_full(logp_all, teacher[1]) * weights).sum() / max(denominator, 1.0)
        else:
            loss = clipped_pg(logp, behaviour, advantages, weights, denominator, self.cfg.eps_low, self.cfg.eps_high)
        if self.cfg.kl_coef:
            loss = loss + self.cfg.kl_coef * (k3_kl(logp, batch.reference) * token_mask).sum() / max(denominator, 1.0)
        metrics = {"loss": loss.item(), "completion_len": float(mask.sum(1).mean().item()), "kept_samples": float(keep.mean().item()),
                   "loss_tokens": float(denominator)}
        if gaps is not None:
            metrics["teacher_gap"] = float((gaps * mask).sum().item() / mask.sum().clamp_min(1).item())
        if batch.rewards is not None:
            metrics["reward"] = float(batch.rewards.mean().item())
        if batch.behaviour is not None:
            metrics["policy_mismatch"] = float(((old - behaviour).abs() * mask).sum().item() / mask.sum().clamp_min(1).item())
        if self.cfg.mix_alpha is not None and 0 < self.cfg.mix_alpha < 1 and not self.cfg.full_vocab_kl:
            metrics.update(self._mix_shares(model, logp, behaviour, old, mask, keep, batch, weights, denominator))
        return loss, metrics

    def _mix_shares(self, model, logp, behaviour, old, mask, keep, batch, weights, denominator) -> dict:
        """‖∇‖ of the OPD part α·A_OPD and of the RLVR part (1 − α)·A_RLVR of the mixed loss, and the OPD share."""
        from adapters_geo.adapters import trainable_parameters

        teacher = batch.teacher[0] if isinstance(batch.teacher, tuple) else batch.teacher
        alpha, params = self.cfg.mix_alpha, trainable_parameters(model)
        parts = {"opd": alpha * opd_advantages(old, teacher, self.cfg.opd_coef),
                 "rlvr": (1 - alpha) * grpo_advantages(batch.rewards.to(mask.device), self.cfg.group_size)[0][:, None] * mask}
        norms = {}
        for name, adv in parts.items():
            part = clipped_pg(logp, behaviour, adv, weights, denominator, self.cfg.eps_low, self.cfg.eps_high)
            grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
            norms[name] = torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)).item()
        total = norms["opd"] + norms["rlvr"]
        return {"grad_norm_opd": norms["opd"], "grad_norm_rlvr": norms["rlvr"],
                "grad_share_opd": norms["opd"] / total if total else float("nan")}
