"""SFT: next-token loss on reference solutions (or teacher-generated ones), prompt masked.

loss = −(1/N) Σ_t log π(y_t | prompt, y_<t) over the N completion tokens of the batch.
"""

from adapters_geo.methods.losses import nll
from adapters_geo.methods.protocol import Batch
from adapters_geo.rollout.prompts import chat_prompt, encode
from adapters_geo.rollout.sampling import sample
from adapters_geo.rollout.scoring import completion_logprobs, completion_mask, pack


class SFT:
    name = "sft"

    def __init__(self, ctx):
        self.ctx = ctx

    def after_update(self, model) -> None:
        """SFT keeps no state between updates."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""

    def batch(self, examples: list, step: int) -> Batch:
        tok = self.ctx.tokenizer
        prompts = encode(tok, [chat_prompt(tok, e.prompt, self.ctx.system_prompt) for e in examples])
        if self.ctx.config.sft_source == "teacher":
            teacher = self.ctx.teacher
            completions = sample(teacher.model, tok, prompts, 1, self.ctx.config.max_new_tokens, temperature=0)
        else:
            completions = [ids + [tok.eos_token_id] for ids in encode(tok, [e.solution for e in examples])]
        return Batch(step, prompts, completions)

    def loss(self, model, batch: Batch):
        device = next(model.parameters()).device
        packed = pack(batch.prompts, batch.completions, self.ctx.tokenizer.pad_token_id, device)
        logp = completion_logprobs(model, packed)
        mask = completion_mask(packed.lengths, packed.width, device)
        loss = nll(logp, mask)
        return loss, {"loss": loss.item(), "loss_tokens": float(mask.sum())}
