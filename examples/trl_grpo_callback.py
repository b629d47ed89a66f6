"""Record a TRL GRPOTrainer run into an adapters_geo run folder, then read its geometry.

    python examples/trl_grpo_callback.py --out runs/grpo_hf                      # SmolLM2-135M, dense adapter
    python examples/trl_grpo_callback.py --model tiny-llama --steps 3 --out /tmp/g   # seconds (tests/test_docs.py)

The reward is exact match on the embedded arithmetic task (tasks/rewards.py). The callback writes config.json,
metrics.jsonl, trajectory/, t0_state/adapter and adapter/ into --out; `adapters-geo trajectory OUT` and
`adapters_geo.pipeline.analysis.run_geometry(OUT)` then work on it as on a run of our own. Needs TRL (`pip install -e ".[bench]"`).
"""

import argparse

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

import adapters_geo as ag
from adapters_geo.integrations import AdaptersGeoCallback
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.tasks.rewards import exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    task = load_task(TaskConfig(levels=[0], train_size=64, test_size=2))
    answers = {e.prompt: e.answer for e in task.train}
    rows = [{"prompt": [{"role": "user", "content": e.prompt}], "question": e.prompt} for e in task.train]

    def correct(completions, question, **kwargs):  # TRL reward: one float per completion
        return [exact(c[0]["content"], answers[q]) for c, q in zip(completions, question)]

    base = ag.load_base(args.model)
    model = ag.attach_adapter(base.model, ag.DenseConfig())
    config = GRPOConfig(output_dir=f"{args.out}_hf", max_steps=args.steps, per_device_train_batch_size=4, num_generations=4,
                        max_completion_length=16, learning_rate=1e-5, beta=0.0, save_strategy="no", report_to="none",
                        logging_steps=1, use_cpu=True, bf16=False, disable_tqdm=True, seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=correct, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=base.tokenizer, callbacks=[AdaptersGeoCallback(args.out)])
    trainer.train()
    print(f"run folder: {args.out}; next: adapters-geo trajectory {args.out}")


if __name__ == "__main__":
    main()
