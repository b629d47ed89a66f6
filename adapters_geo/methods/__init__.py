"""The three post-training methods as losses on a batch, and the one loop that runs them.

A method offers `batch(examples, step) -> batch`, `loss(model, batch) -> (loss, metrics)`
and `after_update(model)`; `loop.train` runs any of them identically.
- sft.py: next-token loss on reference (or teacher) solutions;
- policy.py: OPD and RLVR (GRPO) and their mixes, with advantages.py and losses.py.
"""

from dataclasses import dataclass

from adapters_geo.methods.config import MethodConfig
from adapters_geo.methods.policy import PolicyGradient
from adapters_geo.methods.sft import SFT
from adapters_geo.config.schema import validated


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
    """Check a MethodConfig again (one changed after construction, e.g. by model_copy): one line naming the field."""
    validated(MethodConfig, config.model_dump(), "method config")


def build_method(ctx: Context):
    validate(ctx.config)
    return SFT(ctx) if ctx.config.name == "sft" else PolicyGradient(ctx)


__all__ = ["Context", "MethodConfig", "build_method", "validate"]
