"""From a RunConfig to a trained run folder: model → adapter → method → loop → outputs.

The folder holds config.json (as resolved), meta.json (git hash, dirty flag, versions),
metrics.jsonl, TensorBoard events (tb/), checkpoint/, trajectory/, adapter/ and
train_summary.json.
"""

import json
import subprocess
from pathlib import Path

from adapters_geo.adapters import attach_adapter
from adapters_geo.adapters.io import load_adapter
from adapters_geo.config import RunConfig
from adapters_geo.methods import Context, build_method, validate
from adapters_geo.methods.loop import train
from adapters_geo.methods.teacher import load_teacher_for
from adapters_geo.models import load_base
from adapters_geo.tasks import load_task


def run_meta() -> dict:
    """Provenance of a run: git hash and dirty flag of this checkout, package versions."""
    import importlib.metadata as md

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    versions = {}
    for package in ("adapters_geo", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return {"git": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain")), "versions": versions}


def run_training(config: RunConfig, out, resume: bool = False, progress: bool = True) -> dict:
    """Train one run into `out`; returns the loop's summary."""
    validate(config.method)
    out = Path(out)
    task = load_task(config.task)
    base = load_base(config.model, config.quant)
    model = load_adapter(base.model, config.init) if config.init else attach_adapter(base.model, config.adapter)
    teacher = reference = None
    if config.method.needs_teacher():
        teacher = load_teacher_for(config.method.teacher, config.method.teacher_quant, config.model, base.tokenizer)
    if config.method.kl_coef:
        reference = load_base(config.model, config.quant)
    ctx = Context(model, base.tokenizer, task, config.method, teacher, reference, config.system_prompt, config.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    (out / "meta.json").write_text(json.dumps(run_meta(), indent=1))
    return train(model, base.tokenizer, build_method(ctx), task, config.train, out, resume,
                 config.method.max_new_tokens, config.system_prompt, progress)
