"""The three post-training methods as losses on a batch, and the one loop that runs them.

A method offers `batch(examples, step) -> batch`, `loss(model, batch) -> (loss, metrics)`
and `after_update(model)`; `loop.train` runs any of them identically.
- sft.py: next-token loss on reference (or teacher) solutions;
- policy.py: OPD and RLVR (GRPO) and their mixes, with advantages.py and losses.py.
"""

from dataclasses import dataclass

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.methods.config import METHODS, MethodConfig
from adapters_geo.methods.policy import PolicyGradient
from adapters_geo.methods.sft import SFT


@dataclass
class Context:
    """What a method works with."""

    model: object
    tokenizer: object
    task: object
    config: MethodConfig
    teacher: object = None  # a Base, when the method needs one
    reference: object = None  # a Base: the initial policy, for rlvr's optional KL
    system_prompt: str | None = None
    seed: int = 0


def validate(config: MethodConfig) -> None:
    """Refuse configurations that cannot run, naming the field and the fix."""
    fail = lambda problem, fix: (_ for _ in ()).throw(AdaptersGeoError(problem, fix))
    if config.name not in METHODS:
        fail(f"unknown method '{config.name}'", f"use one of {', '.join(METHODS)}")
    if config.needs_teacher() and not config.teacher:
        fail(f"method '{config.name}' with these options needs a teacher", "set method.teacher (a model, adapter folder or self_hint)")
    if not 0 < config.token_fraction <= 1:
        fail(f"token_fraction {config.token_fraction} is outside (0, 1]", "use a fraction such as 0.25")
    if config.token_select not in ("random", "top_gap"):
        fail(f"unknown token_select '{config.token_select}'", "use random or top_gap")
    if config.token_select == "top_gap" and config.token_fraction < 1 and not config.needs_teacher():
        fail("token_select top_gap ranks tokens by the teacher gap but there is no teacher", "use random, or method opd")
    source = config.rollout_source
    if source not in ("student", "teacher") and not (source.startswith("stale:") and source[6:].isdigit()):
        fail(f"unknown rollout_source '{source}'", "use student, teacher or stale:N")
    if config.mix_alpha is not None and not 0 <= config.mix_alpha <= 1:
        fail(f"mix_alpha {config.mix_alpha} is outside [0, 1]", "use a value such as 0.5")
    if config.name == "rlvr" and config.group_size < 2:
        fail("rlvr needs group_size ≥ 2 (advantages are normalised within a group)", "set method.group_size: 4")


def build_method(ctx: Context):
    validate(ctx.config)
    return SFT(ctx) if ctx.config.name == "sft" else PolicyGradient(ctx)


__all__ = ["Context", "MethodConfig", "build_method", "validate"]
