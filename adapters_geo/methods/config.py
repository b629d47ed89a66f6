"""MethodConfig: what a method does on each batch (every field documented), and the rules between fields."""

from typing import Literal

from pydantic import Field, model_validator

from adapters_geo.models.quant import Quant
from adapters_geo.config.schema import Section, rule

METHODS = ("sft", "opd", "rlvr")


class MethodConfig(Section):
    name: Literal[METHODS] = "sft"  # sft | opd | rlvr
    group_size: int = Field(4, ge=1)  # G completions sampled per prompt (opd, rlvr)
    temperature: float = Field(1.0, gt=0)  # sampling temperature of rollouts
    max_new_tokens: int = Field(48, ge=1)  # completion length cap (rollouts and evaluation)
    teacher: str | None = None  # model spec, saved adapter folder, or "self_hint" (opd, mix, sft_source=teacher)
    teacher_quant: Quant = "none"  # quantization of the teacher's base
    # the teacher reads the example's worked reference solution in its prompt (rollout/prompts.py HINT_TEMPLATE): a
    # privileged-information teacher of any source, e.g. the student's own start (self-distillation); self_hint is the
    # frozen base with it
    teacher_hint: bool = False
    opd_coef: float = Field(1.0, ge=0)  # A_t = −coef · (log π_s − log π_t)
    full_vocab_kl: bool = False  # opd: minimise the full-vocabulary reverse KL instead of the sampled-token PG
    eps_low: float = Field(0.2, ge=0, lt=1)  # ratio clip 1 − ε_low
    eps_high: float = Field(0.28, ge=0)  # ratio clip 1 + ε_high
    kl_coef: float = Field(0.0, ge=0)  # rlvr: weight of k3 KL to the initial policy (0: off)
    token_fraction: float = Field(1.0, gt=0, le=1)  # ρ: fraction of completion tokens kept in the loss
    token_select: Literal["random", "top_gap"] = "random"  # top_gap: largest |r_t|, r_t = log π_s − log π_t
    rollout_source: str = Field("student", pattern=r"^(student|teacher|stale:[0-9]+)$",
                                description="student, teacher (off-policy) or stale:N (the policy N updates old)")
    mix_alpha: float | None = Field(None, ge=0, le=1)  # A = α·A_OPD + (1 − α)·A_RLVR (needs a teacher and a reward)
    sft_source: Literal["reference", "teacher"] = "reference"  # sft: reference solutions, or greedy teacher completions
    # precision of the copy the student's rollouts are drawn from (rollout/sampler.py): auto = bf16 where the hardware is
    # fast at it (CUDA, AVX512-BF16 CPUs), else the model's; at the model's precision a dense adapter samples from the
    # model itself, a LoRA on an unquantized base from a merged copy; its log-probs are the ratio's behaviour policy
    sampler: Literal["auto", "float32", "bfloat16"] = "auto"

    @model_validator(mode="after")
    def _runnable(self):
        """The combinations that cannot run, each naming the field to change."""
        if self.needs_teacher() and not self.teacher:
            raise rule("teacher", f"{{key}} is missing: method '{self.name}' with these options needs a teacher",
                       "set {key} to a model spec, a saved adapter folder or self_hint")
        if self.teacher_hint and not self.needs_teacher():
            raise rule("teacher_hint", "{key} = true but this method has no teacher to give the hint to",
                       "remove {key}, or set method.teacher")
        if self.token_select == "top_gap" and self.token_fraction < 1 and not self.needs_teacher():
            raise rule("token_select", "{key} = 'top_gap' ranks tokens by the teacher gap but there is no teacher",
                       "use random, or method opd")
        if self.mix_alpha is not None and self.full_vocab_kl:
            raise rule("full_vocab_kl", "{key} = true cannot be mixed with RLVR advantages (mix_alpha mixes the "
                       "sampled-token policy gradient's advantages)", "set {key} to false for a mix")
        if self.name == "rlvr" and self.group_size < 2:
            raise rule("group_size", f"{{key}} = {self.group_size}: rlvr needs group_size ≥ 2 (advantages are "
                       "normalised within a group)", "set {key} to 4")
        return self

    def hinted(self) -> bool:
        """Whether the teacher reads the reference solution in its prompt (teacher_hint, or the self_hint teacher)."""
        return self.teacher_hint or self.teacher == "self_hint"

    def stale_lag(self) -> int:
        """N of rollout_source 'stale:N' (0 otherwise)."""
        return int(self.rollout_source.split(":", 1)[1]) if self.rollout_source.startswith("stale:") else 0

    def rollout_correction(self) -> str:
        """What corrects for rollouts not drawn from the current policy (recorded in the run)."""
        if self.rollout_source == "teacher":
            return "none: teacher samples, loss evaluated as if on-policy (off-policy distillation, no importance ratio)"
        if self.stale_lag():
            return f"clipped importance ratio pi_current / pi_behaviour, behaviour = the policy {self.stale_lag()} updates old"
        return "none needed: on-policy samples from the current policy (ratio 1)"

    def needs_teacher(self) -> bool:
        return self.name == "opd" or self.mix_alpha is not None or self.sft_source == "teacher" or (
            self.rollout_source == "teacher"
        )
