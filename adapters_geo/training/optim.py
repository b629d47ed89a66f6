"""Optimizers for adapter parameters (AdamW, bitsandbytes' 8-bit AdamW, plain SGD) and learning-rate schedules.

`adamw8bit` keeps Adam's two moments in 8 bits (blockwise quantized), cutting optimizer
memory for the dense adapter from 8 to about 2 bytes per parameter. Schedules are
transformers' (`get_scheduler`), after `warmup_steps` of linear warm-up from 0:
constant, cosine down to 10% of lr at the last step, linear down to 0.

`optimizer_for(model, ...)` also handles the locked adapter's `projected` mode: the optimizer
runs unchanged in ΔW's full coordinates and each step is projected onto span(V) afterwards
(LockedDelta.project_update). Written here rather than taken from a library because no
optimizer library restricts an update to a per-matrix subspace after its own step; keeping
the stock optimizer inside keeps its state dict identical to the unconstrained run's, so a
locked continuation can start from that state.
"""

import torch

from adapters_geo.errors import AdaptersGeoError


def _adamw(params, lr, weight_decay):
    # The fused kernel: one pass over each tensor instead of a dozen (4× faster on 2 CPU cores for
    # SmolLM2's 106M dense-adapter parameters: 0.07 s instead of 0.25–0.31 s per step); same update.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def _adamw8bit(params, lr, weight_decay):
    import bitsandbytes as bnb

    return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)


def _sgd(params, lr, weight_decay):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


OPTIMIZERS = {"adamw": _adamw, "adamw8bit": _adamw8bit, "sgd": _sgd}


def build_optimizer(params, name: str = "adamw", lr: float = 1e-4, weight_decay: float = 0.0):
    """An optimizer over `params` by name (adamw, adamw8bit, sgd)."""
    if name not in OPTIMIZERS:
        raise AdaptersGeoError(f"unknown optimizer '{name}'", f"use one of {', '.join(OPTIMIZERS)}")
    params = [p for p in params if p.requires_grad]  # a list of tensors, not a model: filtered here
    if not params:
        raise AdaptersGeoError("no trainable parameters", "attach an adapter before building the optimizer")
    return OPTIMIZERS[name](params, lr, weight_decay)


# name -> (transformers scheduler, its extra arguments)
SCHEDULES = {
    "constant": ("constant_with_warmup", {}),
    "cosine": ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
    "linear": ("linear", {}),
}


def build_scheduler(optimizer, name: str, warmup_steps: int, steps: int):
    """The LambdaLR of schedule `name` over `steps` updates (one scheduler step per update)."""
    from transformers import get_scheduler

    kind, kwargs = SCHEDULES[name]
    return get_scheduler(kind, optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps,
                         scheduler_specific_kwargs=kwargs or None)


def project_locked(optimizer, layers: list):
    """Make `optimizer.step()` project each locked layer's update onto span(V) right after the step (a layer with
    `before_step` is told first: a confined LoRA keeps its factors from before the step)."""
    base = type(optimizer)

    class Projected(base):
        def step(self, closure=None):
            for layer in self.locked_layers:
                if hasattr(layer, "before_step"):
                    layer.before_step()
            loss = super().step(closure)
            for layer in self.locked_layers:
                layer.project_update()
            return loss

    Projected.__name__ = Projected.__qualname__ = f"Projected{base.__name__}"
    optimizer.__class__ = Projected
    optimizer.locked_layers = layers
    return optimizer


def optimizer_for(model, name: str = "adamw", lr: float = 1e-4, weight_decay: float = 0.0):
    """The optimizer of `model`'s trainable parameters (projected for locked layers in projected mode)."""
    from adapters_geo.adapters.delta_linear import delta_layers
    from adapters_geo.adapters.locked import LockedDelta
    from adapters_geo.adapters.lora_locked import confined_layers

    optimizer = build_optimizer(model.parameters(), name, lr, weight_decay)
    projected = [m.delta for m in delta_layers(model).values() if isinstance(m.delta, LockedDelta) and m.delta.mode == "projected"]
    projected += confined_layers(model)  # a LoRA source's locked arm (adapters/lora_locked.py)
    return project_locked(optimizer, projected) if projected else optimizer
