"""The README and docs/ cannot rot: their commands and code run, or at least parse, in the suite.

- README, ```bash blocks: every `adapters-geo` line runs as written (on tiny-llama, which is what the README's
  own-run block uses), in order, in a scratch folder holding examples/; every `make X` names a Makefile target and
  every `NAME=` an experiment that resolves (the SMOKE chain itself runs end to end in tests/test_experiments.py;
  `make setup` / `make test` are what CI itself runs; the 50-minute real experiment is only resolved here).
- README, ```python blocks: executed in order, as written.
- docs/*.md: every `adapters-geo` line parses with the real argument parser (placeholders like BASE are
  plain strings to it; `[...]` marks an optional part, dropped), every `make` target exists, every named
  experiment, example, benchmark script and module path exists, every ```python block compiles.
- docs/*.md, run: every `adapters-geo` line and `make experiment` / `make report` runs and every ```python block
  executes, on tiny-llama (the substitutions are listed in DOCS_ON_TINY: the model name, the step count, the
  placeholders, a prompt set and reward for the TRL block); DOCS_NOT_RUN lists the few lines that cannot run in a
  test, each with why and where it is covered instead.
Run: python -m pytest -q tests/test_docs.py
"""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from adapters_geo.cli import build_parser, main
from adapters_geo.experiments.registry import available
from adapters_geo.experiments.resolve import load_resolved

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.M | re.S)


def command_lines(path: Path) -> list[str]:
    """Every command of the file's bash blocks, comments and `[optional]` parts removed."""
    lines = []
    for block in blocks(path, "bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(re.sub(r"\s*\[[^\]]*\]", "", line))
    return lines


def check_make(words: list[str]) -> None:
    targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
    assert all(t in MAKE_TARGETS for t in targets), f"make {targets}: not all are Makefile targets"
    values = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    if "NAME" in values and values["NAME"] not in ("x", "..."):
        assert values["NAME"] in available(), values["NAME"]
        load_resolved(values["NAME"], values.get("SMOKE") == "1")


def parses(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"adapters-geo {' '.join(argv)} does not parse") from exc


def test_readme_is_a_short_guide():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for page in re.findall(r"\]\((docs/[a-z-]+\.md)", text):
        assert (ROOT / page).is_file(), page


def test_readme_commands_run_as_written(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ran = []
    for line in command_lines(README):
        words = shlex.split(line)
        if words[0] == "make":
            check_make(words)
        elif words[0] == "adapters-geo":
            assert main(words[1:]) == 0, line
            ran.append(words[1])
        else:
            raise AssertionError(f"README command not covered by this test: {line}")
    assert ran == ["train", "trajectory", "geometry", "export", "report"]
    # what the block's comments promise
    runs = tmp_path / "runs"
    assert (runs / "tiny_sft" / "done.json").is_file() and (runs / "tiny_sft" / "trajectory_geometry").is_dir()
    assert (runs / "tiny_sft-trajectory-K8" / "trajectory.json").is_file()  # beside the finished run
    assert (runs / "geometry" / "tiny_sft" / "geometry.json").is_file()  # named by the run, not "adapter"
    assert (runs / "tiny_sft-merged" / "model.safetensors").is_file() and (runs / "report.md").is_file()
    # the run's geometry default never collides: a second run's adapter gets its own folder
    shutil.copytree(runs / "tiny_sft", runs / "tiny_sft_b")
    assert main(["geometry", "tiny-llama", "--adapter", "runs/tiny_sft_b/adapter"]) == 0
    assert (runs / "geometry" / "tiny_sft_b" / "geometry.json").is_file()


def test_readme_python_runs_as_written(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    code = blocks(README, "python")
    assert len(code) == 2
    for block in code:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "tiny_py-trajectory-K4" / "trajectory.json").is_file()
    assert (tmp_path / "runs" / "tiny_lora" / "adapter_config.json").is_file()


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_docs_commands_parse_and_name_what_exists(page):
    for line in command_lines(page):
        words = shlex.split(line)
        if words[0] == "make":
            check_make(words)
        elif words[0] == "adapters-geo":
            parses(words[1:])
        elif "adapters_geo.cli" in words:  # accelerate launch ... -m adapters_geo.cli ARGS
            parses(words[words.index("adapters_geo.cli") + 1:])
        elif words[0] == "accelerate" or words[0] == "tensorboard":
            continue  # other tools' own commands
        elif words[0] == "python":
            target = words[1] if words[1] != "-m" else words[2].replace(".", "/") + ".py"
            assert (ROOT / target).is_file(), line
        else:
            raise AssertionError(f"{page.name}: command not covered by this test: {line}")
    for block in blocks(page, "python"):
        compile(block, page.name, "exec")
    text = page.read_text()
    for path in set(re.findall(r"`((?:examples|experiments)/[\w.-]+\.yaml|benchmarks/[\w.-]+\.py)`", text)):
        assert (ROOT / path).is_file(), f"{page.name} names {path}, which does not exist"
    for module in set(re.findall(r"(?<![\w/])((?:models|adapters|methods|training|rollout|tasks|geometry|report|experiments|config|storage|pipeline|locking|"
                                 r"integrations)/\w+\.py)\b", text)):
        assert (ROOT / "adapters_geo" / module).is_file(), f"{page.name} names {module}, which does not exist"


def test_the_lora_4bit_example_trains_and_measures_against_the_dequantized_base(tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(ROOT / "examples" / "tiny_lora_4bit.yaml"), "--out", str(out)]) == 0
    meta = json.loads((out / "adapter" / "adapter.json").read_text())
    assert meta["kind"] == "lora" and meta["base"]["quant"] == "4bit"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
    geometry = json.loads((out / "geometry" / "geometry.json").read_text())
    assert 0 < geometry["overall"]["stable_rank"]["max"] <= 8 + 1e-6  # rank ≤ r: the merged LoRA update, not base noise


def test_the_trl_example_script_records_a_run_folder(tmp_path, monkeypatch):
    import runpy
    import sys

    out = tmp_path / "grpo"
    monkeypatch.setattr(sys, "argv", ["trl_grpo_callback.py", "--model", "tiny-llama", "--steps", "2", "--out", str(out)])
    runpy.run_path(str(ROOT / "examples" / "trl_grpo_callback.py"), run_name="__main__")
    assert (out / "adapter" / "adapter.json").is_file() and (out / "trajectory").is_dir()
    assert main(["trajectory", str(out)]) == 0  # the README's next step works on it


def test_the_api_takes_python_values_as_overrides(tmp_path):
    import adapters_geo as ag
    from adapters_geo.storage.runfolder import RunFolder

    config = {"model": "tiny-llama", "task": {"levels": [0], "train_size": 50, "test_size": 4},
              "train": {"steps": 5, "batch_size": 2, "lr": 3e-3}}
    ag.train(config, tmp_path / "run", overrides={"train.steps": 2, "train.lr": 1e-3, "train.schedule": "cosine"},
             analyse=False, progress=False)
    train = RunFolder(tmp_path / "run").config().train
    assert (train.steps, train.lr, train.schedule) == (2, 1e-3, "cosine")


# docs lines that cannot run inside a test, each with why and where it is covered instead
DOCS_NOT_RUN = {
    "make experiment NAME=lock_opd": "the 50-minute real experiment; its SMOKE form below runs in tests/test_experiments.py",
    "make experiment NAME=lock_opd SMOKE=1": "runs end to end in tests/test_experiments.py (the smoke chain)",
    "make tensorboard": "a server that does not exit; the target is checked to exist",
    "tensorboard --logdir runs": "a server that does not exit; event files are checked in tests/test_tensorboard.py",
    "make experiment NAME=opd_dense NPROC=2": "two processes of a real run; the same launch runs in tests/training/test_parallel.py",
    "accelerate launch --num_processes 8 -m adapters_geo.cli train run.yaml --out runs/x": "needs 8 GPUs; parsed above",
    "accelerate config": "interactive; accelerate's own command",
}
DOCS_ON_TINY = [  # (pattern, replacement) applied to every docs line and block before it runs
    ("smollm2-135m-instruct", "tiny-llama"),  # the embedded model -> the test model, as in the README's own run
    # the placeholders, the `[optional]` parts (dropped by command_lines) run too; TUNED is a merged export of the run
    ("geometry BASE TUNED", "geometry tiny-llama runs/sft_smollm2-merged --out runs/two-checkpoints"),
    ("geometry BASE --adapter DIR", "geometry tiny-llama --adapter runs/sft_smollm2/adapter --quant 8bit --out runs/on-8bit"),
    ("max_steps=100,", "max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=8, "
                       "use_cpu=True, bf16=False, disable_tqdm=True,"),
    ("K=16", "K=4"),  # tiny-llama's matrices are 64 wide
    ("overlap RUN_A RUN_B", "overlap runs/sft_smollm2 runs/sft_smollm2"),  # a run against itself
]
TRL_PRELUDE = """
from datasets import Dataset
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.tasks.rewards import exact
_task = load_task(TaskConfig(levels=[0], train_size=16, test_size=2))
_answers = {e.prompt: e.answer for e in _task.train}
prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": e.prompt}], "question": e.prompt} for e in _task.train])
def my_reward(completions, question, **kwargs):
    return [exact(c[0]["content"], _answers[q]) for c, q in zip(completions, question)]
"""


def on_tiny(text: str) -> str:
    for pattern, replacement in DOCS_ON_TINY:
        text = text.replace(pattern, replacement)
    return text


def test_docs_commands_and_python_run_on_tiny_llama(tmp_path, monkeypatch, capsys):
    import yaml

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    example = tmp_path / "examples" / "sft_smollm2.yaml"  # what docs/training.md trains, made tiny
    config = yaml.safe_load(example.read_text())
    config["model"] = on_tiny(config["model"])
    config["task"].update(levels=[0], train_size=40, test_size=4)
    config["train"].update(steps=4, batch_size=2, eval_batch=4, checkpoint_every=2)
    example.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    ran, skipped = [], []
    order = ["training.md", "geometry.md", "experiments.md", "integrations.md", "models.md", "setup.md", "benchmarks.md",
             "design.md"]
    assert sorted(order) == sorted(p.name for p in DOCS), "a new docs page: give it its place in this order"
    for name in order:
        page = ROOT / "docs" / name
        for line in command_lines(page):
            words = shlex.split(on_tiny(line))
            if line in DOCS_NOT_RUN or (words[0] == "make" and "NAME" not in line and words[1:] == ["tensorboard"]):
                skipped.append(line)
            elif words[0] == "make" and words[1:] in (["experiment"], ["report"]):
                assert main(words[1:]) == 0, line  # the listing; the report of every finished run here
                ran.append(line)
            elif words[0] == "adapters-geo":
                if words[1] == "geometry" and "runs/sft_smollm2-merged" in words:  # TUNED: a full checkpoint folder
                    assert main(["export", "runs/sft_smollm2", "--merged", "runs/sft_smollm2-merged"]) == 0
                assert main(words[1:]) == 0, line
                ran.append(line)
            elif words[0] == "python" or line.startswith("make bench"):
                skipped.append(line)  # benchmark scripts: tests/test_benchmarks.py runs each at its smallest size
            else:
                raise AssertionError(f"{name}: neither run nor listed in DOCS_NOT_RUN: {line}")
        for block in blocks(page, "python"):
            source = on_tiny(block)
            exec(compile((TRL_PRELUDE if "GRPOTrainer" in block else "") + source, name, "exec"), {})
            ran.append(f"{name} python block")
    assert set(DOCS_NOT_RUN) <= set(skipped), set(DOCS_NOT_RUN) - set(skipped)  # no stale entries
    runs = tmp_path / "runs"
    assert (runs / "sft_smollm2" / "done.json").is_file() and (runs / "sft_smollm2-K8" / "trajectory.json").is_file()
    assert (runs / "two-checkpoints" / "geometry.json").is_file() and (runs / "on-8bit" / "geometry.json").is_file()
    assert (runs / "grpo_hf" / "adapter").is_dir() and (runs / "grpo_hf_early" / "adapter").is_dir()
    assert (runs / "report.md").is_file()
    assert len(ran) >= 8, ran
