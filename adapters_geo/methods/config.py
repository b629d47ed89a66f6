"""MethodConfig: what a method does on each batch (every field documented)."""

from dataclasses import dataclass

METHODS = ("sft", "opd", "rlvr")


@dataclass
class MethodConfig:
    name: str = "sft"  # sft | opd | rlvr
    group_size: int = 4  # G completions sampled per prompt (opd, rlvr)
    temperature: float = 1.0  # sampling temperature of rollouts
    max_new_tokens: int = 48  # completion length cap (rollouts and evaluation)
    teacher: str | None = None  # model spec, saved adapter folder, or "self_hint" (opd, mix, sft_source=teacher)
    teacher_quant: str = "none"  # quantization of the teacher's base
    opd_coef: float = 1.0  # A_t = −coef · (log π_s − log π_t)
    full_vocab_kl: bool = False  # opd: minimise the full-vocabulary reverse KL instead of the sampled-token PG
    eps_low: float = 0.2  # ratio clip 1 − ε_low
    eps_high: float = 0.28  # ratio clip 1 + ε_high
    kl_coef: float = 0.0  # rlvr: weight of k3 KL to the initial policy (0: off)
    token_fraction: float = 1.0  # ρ: fraction of completion tokens kept in the loss
    token_select: str = "random"  # random | top_gap (largest |r_t|, r_t = log π_s − log π_t)
    rollout_source: str = "student"  # student | teacher (off-policy) | stale:N (policy N updates old)
    mix_alpha: float | None = None  # A = α·A_OPD + (1 − α)·A_RLVR (needs a teacher and a reward)
    sft_source: str = "reference"  # sft: reference solutions, or teacher (greedy teacher completions)

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
