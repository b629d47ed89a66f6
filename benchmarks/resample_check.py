"""Does this checkout sample a finished run's common outcome as the run did? Its last k-sample evaluation, again.

    python benchmarks/resample_check.py runs/opd_dense      # a run with train.eval_samples = k > 0

Loads the run's base and final adapter, samples its held-out prompts k times with the working tree's code (the
same per-chunk seeds the run used: tasks/outcome.py's sampled_rewards) and compares each sample's reward with the
run's evals/step_T.json, so a change to decoding can be checked against results already reported: prints the
seconds taken, the mean sampled accuracy now and then, and how many prompts and samples differ.
Measured (2026-12-05, 2-core Xeon, alone): runs/opd_dense (sampled in the run through generate() with
torch.multinomial replaced by the inverse-CDF draw) re-sampled by rollout/sampling.py's decode loop: 91.5 s for
1 024 completions (the run's end evaluation: about 158 s of sampling); 0 of 1 024 samples differ.
"""

import json
import sys
import time
from pathlib import Path

import torch

from adapters_geo.adapters.io import load_adapter
from adapters_geo.config.run import saved_run_config
from adapters_geo.models.loader import load_base
from adapters_geo.tasks import load_task
from adapters_geo.tasks.outcome import sampled_rewards


def refuse(message: str) -> None:
    """One line naming the problem and the fix, exit code 2 (as the toolkit's own commands)."""
    print(f"resample_check: {message}", file=sys.stderr)
    sys.exit(2)


def resample(folder: Path) -> dict:
    """{"seconds", "now", "then", "prompts_differing", "samples_differing", "samples"} for the run in `folder`."""
    if not (folder / "config.json").is_file() or not (folder / "adapter").is_dir():
        refuse(f"{folder} is not a finished run folder (no config.json or adapter/) — fix: pass runs/NAME of a finished run")
    config = saved_run_config(json.loads((folder / "config.json").read_text()), str(folder))
    train = config.train
    saved = folder / "evals" / f"step_{train.steps:06d}.json"
    if not train.eval_samples or not saved.is_file():
        refuse(f"{folder} has no final evaluation with sampled rewards — fix: pick a run with train.eval_samples > 0")
    then = torch.tensor(json.loads(saved.read_text())["sampled_rewards"], dtype=torch.float64)  # (N, k)
    base = load_base(config.model, config.quant)
    model = load_adapter(base.model, folder / "adapter")
    task = load_task(config.task)
    examples = task.test[: train.eval_size] if train.eval_size else task.test
    start = time.perf_counter()
    now = sampled_rewards(model, base.tokenizer, examples, task.score, train.eval_samples,
                          config.method.max_new_tokens, train.eval_batch, config.system_prompt)
    return {"seconds": time.perf_counter() - start, "now": now.mean().item(), "then": then.mean().item(),
            "prompts_differing": int((now != then).any(1).sum()), "samples_differing": int((now != then).sum()),
            "samples": then.numel()}


def main() -> None:
    if len(sys.argv) != 2:
        refuse("usage: " + __doc__.splitlines()[2].strip())
    out = resample(Path(sys.argv[1]))
    print(f"{sys.argv[1]}: {out['samples']} samples in {out['seconds']:.1f} s; mean sampled accuracy now {out['now']:.4f}, "
          f"in the run {out['then']:.4f}; {out['prompts_differing']} prompts and {out['samples_differing']} samples differ")


if __name__ == "__main__":
    main()
