"""Older policies for `rollout_source: stale:N`: copies of the adapter's trainable tensors.

After each update the current trainable tensors are recorded; `policy(model)` temporarily
swaps in the ones from N updates ago (or the oldest kept), e.g. to sample rollouts.
"""

import contextlib
from collections import deque

import torch

from adapters_geo.adapters import trainable_named


class PolicyHistory:
    def __init__(self, lag: int):
        self.lag = lag
        self.snapshots = deque(maxlen=lag + 1)

    def record(self, model) -> None:
        self.snapshots.append({n: p.detach().clone() for n, p in trainable_named(model).items()})

    @contextlib.contextmanager
    def policy(self, model):
        """Inside the block, `model` computes with the policy from `lag` updates ago."""
        params = trainable_named(model)
        current = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for name, value in self.snapshots[0].items():
                params[name].copy_(value)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict:
        return {"snapshots": list(self.snapshots)}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = deque(state["snapshots"], maxlen=self.lag + 1)
