"""The TRL side of bench_training.py: SFTTrainer, DistillationTrainer (on-policy, β = 1), GRPOTrainer.

Each trainer is configured to do the same work as adapters_geo's run it is compared with: same
student and teacher folders, same prompts (chat template), same sequences per step, same
completion length, sampling at temperature 1 without top-k/top-p, fp32 on the CPU (bf16 on CUDA),
no gradient checkpointing, fused AdamW (the transformers default), gradient clipping 1.0, one optimizer step per generation.
The trainable weights are the same: `dense` trains the targeted linear weights (embeddings and
norms frozen, as adapters_geo's dense adapter), `lora` attaches the same peft LoRA.
Step time runs from on_step_begin to on_step_end (generation, teacher scoring, loss, backward,
optimizer step), measured by a callback; logging, saving and evaluation are off.
"""

import statistics
import time

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.lengths, self.started, self.trainer = [], [], None, None

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.started)
            lengths = self.trainer._metrics["train"].get("completions/mean_length") if self.trainer else None
            self.lengths.append(lengths[-1] if lengths else None)  # read before logging clears it

    return StepTimer()


def _student(folder, adapter: str, lora_r: int, lora_alpha: float):
    """(model, peft_config): dense trains the target linear weights in place; lora goes through peft."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if adapter == "lora":
        return model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    model.requires_grad_(False)
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS:
            module.weight.requires_grad_(True)
    return model, None


def _common(setting, out_dir, steps: int) -> dict:
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(out_dir), max_steps=steps, learning_rate=setting.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch_fused", seed=setting.seed,
        bf16=cuda, gradient_checkpointing=False, logging_steps=10**6, save_strategy="no", report_to="none",
        dataloader_num_workers=0, disable_tqdm=True, use_cpu=not cuda,
    )


def _conversation(prompts):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])


def run_trl(method: str, setting, student_folder, teacher_folder, tokenizer, prompts, solutions, reward, out_dir) -> dict:
    """Train `setting.steps` steps with TRL; returns per-step seconds and completion tokens per step."""
    steps = setting.warmup + setting.steps
    model, peft_config = _student(student_folder, setting.adapter, setting.lora_r, setting.lora_alpha)
    timer = _timer()
    sampling = dict(temperature=1.0, top_p=1.0, top_k=0, max_completion_length=setting.max_new_tokens)
    sequences = setting.prompts * setting.group
    if method == "sft":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": s}]}
                for p, s in zip(prompts, solutions)]
        config = SFTConfig(per_device_train_batch_size=sequences, packing=False, max_length=1024,
                           completion_only_loss=True, shuffle_dataset=False, **_common(setting, out_dir, steps))
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    elif method == "opd":
        from transformers import AutoModelForCausalLM
        from trl import DistillationConfig, DistillationTrainer

        teacher = AutoModelForCausalLM.from_pretrained(teacher_folder, dtype=model.dtype)
        config = DistillationConfig(per_device_train_batch_size=sequences, beta=1.0, disable_dropout=True,
                                    **sampling, **_common(setting, out_dir, steps))
        trainer = DistillationTrainer(model=model, teacher_model=teacher, args=config, train_dataset=_conversation(prompts),
                                      processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    else:
        from trl import GRPOConfig, GRPOTrainer

        def reward_fn(completions, **kwargs):
            return [reward(c[0]["content"] if isinstance(c, list) else c, None) for c in completions]

        config = GRPOConfig(per_device_train_batch_size=sequences, num_generations=setting.group, beta=0.0,
                            epsilon=0.2, epsilon_high=0.28, loss_type="dapo", num_iterations=1, disable_dropout=True,
                            **sampling, **_common(setting, out_dir, steps))
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=config, train_dataset=_conversation(prompts),
                              processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # TRL prints its metrics dict at the end; the table says enough
    timer.trainer = trainer
    trainer.train()
    timed = timer.seconds[setting.warmup:]
    lengths = timer.lengths[setting.warmup:]
    tokens = [length * sequences for length in lengths if length is not None]
    per_step = [length * sequences if method != "sft" and length is not None else sequences for length in lengths]
    return {"step_seconds": statistics.median(timed), "tokens_per_step": statistics.median(tokens) if tokens else None,
            "sequences_per_step": sequences, "steps": len(timed),
            "samples": [work / seconds for work, seconds in zip(per_step, timed)]}
