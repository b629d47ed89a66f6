"""How good an OPD teacher is on the held-out split, read as the student meets it: greedy accuracy of the
teacher on a run's own test prompts, with the worked-solution hint in its prompt where the run gives one.

    python benchmarks/teacher_accuracy.py --run runs/opd_dense            # the run's teacher, as it was configured
    python benchmarks/teacher_accuracy.py --run runs/opd_dense --no-hint  # the same weights without the hint

A hinted teacher (method.teacher_hint, or self_hint) reads the reference solution, so its accuracy says how
much of that solution its distribution carries to the student, not how well it solves the problem alone;
the pilot numbers of experiments/opd_dense.yaml were measured with this script.
"""

import argparse
import json
import time

import torch

from adapters_geo.methods.teacher import load_teacher_for
from adapters_geo.models import load_base
from adapters_geo.rollout.sampling import sample
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.tasks import load_task
from adapters_geo.tasks.evaluate import rewards_of, summarize_rewards
from adapters_geo.tasks.outcome import solution_ids


@torch.no_grad()
def teacher_accuracy(run: str, hint: bool | None = None, limit: int | None = None, batch: int = 32) -> dict:
    """{"accuracy", "mean_reward", "examples", "hint", "seconds"} of the run's teacher, greedy, on its test split."""
    config = RunFolder(run).config()
    method = config.method
    hint = method.hinted() if hint is None else hint
    student = load_base(config.model, config.quant)
    teacher = load_teacher_for(method.teacher, method.teacher_quant, config.model, student.tokenizer)
    task = load_task(config.task)
    examples = task.test[:limit] if limit else task.test
    tok, rewards, start = teacher.tokenizer, [], time.perf_counter()
    for first in range(0, len(examples), batch):
        chunk = examples[first : first + batch]
        prompts = solution_ids(tok, chunk, config.system_prompt, hint=hint)[0]
        rewards += rewards_of(tok, task, chunk, sample(teacher.model, tok, prompts, 1, method.max_new_tokens, temperature=0))
    return {**summarize_rewards(rewards), "hint": hint, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished or running run folder of an OPD experiment")
    parser.add_argument("--no-hint", action="store_true", help="the teacher's weights without the hint")
    parser.add_argument("--limit", type=int, help="the first N test prompts only")
    args = parser.parse_args()
    print(json.dumps(teacher_accuracy(args.run, False if args.no_hint else None, args.limit)))


if __name__ == "__main__":
    main()
