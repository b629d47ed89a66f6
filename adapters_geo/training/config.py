"""TrainConfig: how the one loop trains (steps, batch, optimizer, schedule, evaluation, tracking)."""

from dataclasses import dataclass

from adapters_geo.runfolder import default_t0


@dataclass
class TrainConfig:
    steps: int = 100  # optimizer updates
    batch_size: int = 8  # prompts per step (sft: examples; opd / rlvr: prompts × group_size samples)
    lr: float = 2e-5
    optimizer: str = "adamw"  # adamw | adamw8bit | sgd
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (to 10% of lr) | linear (to 0), after warmup
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max global gradient norm (0: off)
    seed: int = 0
    eval_every: int = 0  # evaluate every N steps (0: at the start and the end only)
    eval_size: int | None = None  # held-out examples per evaluation (None: the whole test split)
    eval_batch: int = 16
    track_steps: list | None = None  # steps whose ΔW is snapshotted (None: 10 points, denser early; []: none)
    track_rank: int = 32  # rank of the factor snapshots
    checkpoint_every: int = 25  # steps between checkpoints (the last step always checkpoints)
    save_adapter_at: list | None = None  # steps at which the exact adapter is saved to adapter_step_N/
    first_step: int = 0  # start at this step (a continuation sees the same data as the run it continues)
    t0: int | None = None  # the early step (locking t0, stored in full by the trajectory); None: see resolved_t0

    def resolved_t0(self) -> int:
        """t0, decided once: the configured step, else the first save_adapter_at step, else round(0.2 · steps)."""
        if self.t0 is not None:
            return self.t0
        return min(self.save_adapter_at) if self.save_adapter_at else default_t0(self.steps)
