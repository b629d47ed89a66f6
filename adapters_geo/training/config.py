"""TrainConfig: how the one loop trains (steps, batch, optimizer, schedule, evaluation, tracking)."""

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from adapters_geo.training.optim import OPTIMIZERS, SCHEDULES
from adapters_geo.config.schema import Section, rule

T0_FRACTION = 0.2  # the locking test's early step, as a fraction of the run, when a config does not set it


def default_t0(steps: int) -> int:
    """round(0.2 · steps), at least 1: the early step of a run of `steps` updates."""
    return max(1, round(T0_FRACTION * steps))


class TrainConfig(Section):
    steps: int = Field(100, ge=1)  # optimizer updates
    batch_size: int = Field(8, ge=1)  # prompts per step (sft: examples; opd / rlvr: prompts × group_size samples)
    lr: float = Field(2e-5, gt=0)  # peak learning rate
    optimizer: Literal[tuple(OPTIMIZERS)] = "adamw"  # adamw | adamw8bit | sgd
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal[tuple(SCHEDULES)] = "constant"  # constant | cosine (to 10% of lr) | linear (to 0), after warmup
    warmup_steps: int = Field(0, ge=0)  # linear warm-up from 0 (at most steps)
    grad_clip: float = Field(1.0, ge=0)  # max global gradient norm (0: off)
    seed: int = Field(0, ge=0, lt=2**31)  # seeds derived from it (seed · 1e6 + step) stay within torch.manual_seed
    eval_every: int | None = Field(None, ge=0)  # evaluate every N steps (None: steps // 4, 3 curve points; 0: start and end only)
    curve_size: int | None = Field(64, ge=1)  # held-out prompts of the evaluations between start and end (None: all)
    eval_size: int | None = Field(None, ge=1)  # held-out examples per evaluation (None: the whole test split)
    eval_batch: int = Field(16, ge=1)
    eval_samples: int = Field(0, ge=0, le=64)  # k: at the first and last evaluation, also the mean reward of k temperature-1
    #   samples per held-out prompt (common random numbers), the outcome every method shares (0: off)
    track_steps: list[PositiveInt] | None = None  # steps whose ΔW is snapshotted (None: 10 points, denser early; []: none)
    track_rank: int = Field(32, ge=1)  # rank of the factor snapshots
    track_exact_layers: int = Field(2, ge=0)  # every matrix of this many evenly spaced layers also kept exact (bf16) at
    #   the steps stored as factors: the null test of Sim_K(t0, T) sums the run's increments in other orders, which
    #   rank-r truncations do not give (pipeline/analysis.run_null); 85 MB per run on SmolLM2-135M, dense (0: none)
    track_layers: int = Field(4, ge=0)  # evenly spaced layers whose matrices get rotation / principal energy at tracked
    #   steps (an SVD of W per matrix and step: about a fifth of a tracked step's cost at 4 of 30 layers; 0: none)
    track_background: bool = False  # measure tracked steps off the training thread, training on meanwhile (the same
    #   numbers up to rounding): for a model on an accelerator, whose CPU cores idle (not yet measured there); on a
    #   CPU it competes with training (measured: benchmarks/bench_background_tracking.py)
    checkpoint_every: int = Field(25, ge=1)  # steps between checkpoints (the last step always checkpoints)
    save_adapter_at: list[PositiveInt] | None = None  # steps at which the exact adapter is saved to adapter_step_N/
    first_step: int = Field(0, ge=0)  # start at this step (a continuation sees the same data as the run it continues)
    t0: int | None = Field(None, ge=1)  # the early step (locking t0, stored in full by the trajectory); None: see resolved_t0
    start_state: str | None = None  # a saved training state (another run's t0_state/) to start from: its step, schedule,
    #   method state, and the adapter / optimizer state where they fit this adapter (a locking arm's exact start)
    save_t0_state: bool = False  # keep the full training state at t0 in t0_state/ (what a locking test continues from)
    eval_at_start: bool = True  # evaluate before the first step (a locking arm's start is evaluated once, elsewhere)
    analyse: bool = True  # after training: endpoint and trajectory geometry, behavioural movement (false: e.g. a teacher)
    precision: Literal["fp32", "bf16-mixed"] = "fp32"  # bf16-mixed: the loss's forwards (student, teacher) under bf16
    #   autocast, the LM head's logits in fp32; ΔW, its gradient and the optimizer stay fp32 (training/precision.py);
    #   pays only with fast bf16 kernels (GPU, AVX512-BF16 / AMX CPUs: benchmarks/bench_precision.py)
    eval_precision: Literal["float32", "bfloat16", "auto"] = "float32"  # the held-out evaluation's temperature-1 samples
    #   drawn from a bf16 copy of the merged policy (rollout/sampler.py's, W0 + ΔW summed in fp32, then cast), as the
    #   rollouts are; NLL, KL and greedy decoding stay on the run's model (training/evaluation.py says why); auto: bf16
    #   where the hardware is fast at it. Measured: benchmarks/eval_precision_check.py (float32: not in a run's identity)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, same result
    #   (not part of a run's identity while off, so older runs keep their hashes)

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.warmup_steps > self.steps:
            raise rule("warmup_steps", f"{{key}} = {self.warmup_steps} is more than steps = {self.steps}",
                       f"set {{key}} to at most {self.steps}")
        return self

    def resolved_eval_every(self) -> int:
        """eval_every, decided once: the configured interval, else max(1, steps // 4) (about 4 evaluations per run)."""
        return self.eval_every if self.eval_every is not None else max(1, self.steps // 4)

    def resolved_t0(self) -> int:
        """t0, decided once: the configured step, else the first save_adapter_at step, else round(0.2 · steps)."""
        if self.t0 is not None:
            return self.t0
        return min(self.save_adapter_at) if self.save_adapter_at else default_t0(self.steps)
