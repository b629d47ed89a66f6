"""The `lock` experiment kind: the subspace-locking test (GEOMETRY.md) on a finished source run.

`source: experiment:RUN` (a run that saved its adapter at t0), `K` (basis size, default 16),
`bases` (early, random, final; also unconstrained and frozen), `seed` (of the random basis).
Each of early, random, final is one continuation run (continuation.py) through the same pipeline
as every run, in FOLDER/<basis>/. `unconstrained` is the source run's own final evaluation (always
reported); `frozen` (no update after t0, the floor) is the held-out evaluation of the adapter at t0.
"""

from pathlib import Path

from adapters_geo.adapters.io import load_adapter
from adapters_geo.continuation import BASES, continuation_config, source_t0
from adapters_geo.models import load_base
from adapters_geo.runfolder import RunFolder
from adapters_geo.runner import run
from adapters_geo.tasks import load_task
from adapters_geo.tasks.evaluate import evaluate


def run_lock(resolved: dict, folder: Path, progress: bool) -> dict:
    """Train every basis's continuation into FOLDER/<basis>; returns done.json's content."""
    source = Path(resolved["source"])
    k = int(resolved.get("K", 16))
    bases = resolved.get("bases", list(BASES))
    results = {}
    for basis in (b for b in bases if b in BASES):
        config = continuation_config(source, basis, k, seed=int(resolved.get("seed", 0)))
        results[basis] = run(config, folder / basis, resume=True, progress=progress, analyse=False)["final_eval"]
    if "frozen" in bases:
        results["frozen"] = frozen_eval(source)
    results["unconstrained"] = RunFolder(source).summary()["final_eval"]
    return {"final_eval": results, "source": str(source), "K": k}


def frozen_eval(source) -> dict:
    """Held-out metrics of the source run's adapter at t0, evaluated as the run evaluates."""
    folder = RunFolder(source)
    config = folder.config()
    base = load_base(config.model, config.quant)
    model = load_adapter(base.model, folder.adapter_at(source_t0(folder)))
    task = load_task(config.task)
    examples = task.test[: config.train.eval_size] if config.train.eval_size else task.test
    return evaluate(model, base.tokenizer, task, examples, config.method.max_new_tokens, config.train.eval_batch,
                    config.system_prompt)


def lock_steps(source: dict, bases) -> str:
    """'B × N steps' of a locking test whose source resolves to `source` (from t0 to the end)."""
    train = source.get("train", {})
    total = int(train.get("steps", 0))
    t0 = train.get("t0") or min(train.get("save_adapter_at") or [0])
    return f"{len([b for b in bases if b in BASES])} × {total - t0} steps"
