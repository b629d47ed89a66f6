"""This process's place in a data-parallel run (`accelerate launch`, DDP), or a lone process.

Every process draws the same examples for a step and keeps its share (every world-th one from its
rank on), samples and scores only those, and weights its loss by its share of the loss's
denominator (the `loss_tokens` a method reports; equal shares when it reports none). Gradients
are then summed over the processes, so the update is the one-process update on the whole batch,
up to the order of float additions:

    ∇ L = ∇ (Σ_r S_r) / Σ_r n_r = Σ_r (n_r / N) · ∇ (S_r / n_r),   N = Σ_r n_r

(S_r: the summed per-token loss of share r, n_r its token count). The sum is an explicit
all-reduce of the trainable gradients rather than a DistributedDataParallel wrapper: the loop
calls the model for sampling, scoring and the loss, and the adapter hooks (locked bases, ΔW
tracking) see the plain module. Only the main process tracks ΔW, evaluates, logs, checkpoints
and saves adapters; every process resumes from the same checkpoint folder, so several machines
need runs/ on a shared filesystem. Process groups come from accelerate's PartialState (gloo on
CPUs, NCCL on GPUs), which reads the variables `accelerate launch` (or torchrun) sets.
"""

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


PROCESS_TIMEOUT_HOURS = 6


@dataclass(frozen=True)
class Parallel:
    """Rank and world size; `Parallel()` is a lone process (every call below is then the identity)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, examples: list) -> list:
        """This process's examples of a step (every world-th one, from its rank on)."""
        return examples[self.rank :: self.world]

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")

    def total(self, value: float) -> float:
        """The sum of `value` over the processes."""
        if self.world == 1:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return float(tensor.item())

    def weighted_means(self, values: dict, weight: float) -> dict:
        """{key: Σ_r w_r v_r / Σ_r w_r} over the processes (every process passes the same keys), in one all-reduce."""
        if self.world == 1:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(weight)] + [float(weight) * float(values[k]) for k in keys], dtype=torch.float64,
                              device=self._device())
        dist.all_reduce(tensor)
        total = max(float(tensor[0]), 1e-12)
        return {k: float(tensor[i + 1]) / total for i, k in enumerate(keys)}

    def sum_gradients(self, params: list) -> None:
        """Replace every parameter's gradient by its sum over the processes (one flat all-reduce per dtype).

        A parameter no process gave a gradient keeps none (the optimizer skips it, as in a lone run: a zero
        gradient would still decay its Adam moments and apply weight decay); one that only some processes
        reached gets zeros from the others.
        """
        if self.world == 1:
            return
        reached = torch.tensor([float(p.grad is not None) for p in params], device=self._device())
        dist.all_reduce(reached)
        params = [p for p, n in zip(params, reached.tolist()) if n > 0]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype = {}
        for p in params:
            by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def from_main(self, value):
        """The main process's `value` (any picklable object), on every process."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def current() -> Parallel:
    """This process's Parallel: from the launcher's environment (WORLD_SIZE > 1), else a lone process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Parallel()
    from accelerate import PartialState

    # initialises the process group once: NCCL on GPUs; without one accelerate needs cpu=True to use gloo.
    # The other processes wait in a collective while the main one evaluates, analyses a run or writes the
    # report alone (minutes on a CPU): NCCL's default 10-minute timeout would kill them, so allow hours.
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(hours=PROCESS_TIMEOUT_HOURS))
    if torch.cuda.is_available():
        torch.cuda.set_device(state.local_process_index)
    return Parallel(state.process_index, state.num_processes)


def local_device_index() -> int:
    """This process's GPU under a launcher (LOCAL_RANK), 0 for a lone process."""
    return int(os.environ.get("LOCAL_RANK", "0"))
