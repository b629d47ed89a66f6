"""A reasoning-gym dataset and local files in GSM8K and MATH form train and evaluate end to end through `train`."""

import json

import pytest

from adapters_geo.cli import main
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.tasks.rewards import exact

TRAIN = "train: {steps: 2, batch_size: 2, track_steps: [], eval_samples: 2}\n"
MATH = [{"problem": f"Simplify {i}/{2 * i}.", "solution": f"Divide by {i}: $\\boxed{{\\frac{{1}}{{2}}}}$."} for i in range(1, 13)]
MATH += [{"problem": f"Solve x + {i} = {i + 3}.", "solution": f"x = {i + 3} - {i}, so $x = \\boxed{{3}}$."} for i in range(13)]


def run(tmp_path, task: str, method: str, capsys) -> list[dict]:
    config = tmp_path / "run.yaml"
    config.write_text(f"model: tiny-llama\nmethod: {{name: {method}, max_new_tokens: 6}}\ntask: {task}\n{TRAIN}")
    assert main(["train", str(config), "--out", str(tmp_path / "out"), "--no-analysis"]) == 0, capsys.readouterr().err
    evals = [row for row in RunFolder(tmp_path / "out").evals() if "accuracy" in row]
    assert [row["step"] for row in evals] == [0, 2] and all(0.0 <= row["accuracy"] <= 1.0 for row in evals)
    return evals


def test_a_reasoning_gym_dataset_trains_and_is_scored_by_the_library(tmp_path, capsys, monkeypatch):
    pytest.importorskip("reasoning_gym")
    from adapters_geo.tasks.reasoning_gym import Scorer

    scored = []
    library_score = Scorer.__call__
    monkeypatch.setattr(Scorer, "__call__", lambda self, text, example: scored.append(example) or library_score(self, text, example))
    task = "{name: reasoning_gym, dataset: chain_sum, config: {min_terms: 2, max_terms: 2, max_digits: 1}, train_size: 20, test_size: 4}"
    evals = run(tmp_path, task, "rlvr", capsys)
    assert evals[0]["examples"] == 4
    split = load_task(TaskConfig(name="reasoning_gym", dataset="chain_sum", train_size=20, test_size=4,
                                 config={"min_terms": 2, "max_terms": 2, "max_digits": 1}))
    prompts = {e.prompt for e in split.train} | {e.prompt for e in split.test}
    # RLVR's rollouts (2 steps × 2 prompts × 4 samples) and every evaluation (greedy and 2 samples per prompt) went through it
    assert len(scored) >= 16 + 2 * 4 * 3 and {e.prompt for e in scored} <= prompts


def test_a_gsm8k_jsonl_file_trains_end_to_end(tmp_path, capsys):
    rows = [{"question": f"Tom has {i} pens and buys {i}. How many?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(30)]
    (tmp_path / "gsm.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    run(tmp_path, f"{{name: file, path: {tmp_path / 'gsm.jsonl'}, test_size: 4}}", "sft", capsys)


def test_a_math_parquet_file_trains_end_to_end_with_boxed_answers(tmp_path, capsys):
    import datasets

    datasets.Dataset.from_list(MATH).to_parquet(str(tmp_path / "math.parquet"))
    task = f"{{name: file, path: {tmp_path / 'math.parquet'}, prompt_field: problem, answer_field: solution, test_size: 4}}"
    run(tmp_path, task, "sft", capsys)
    split = load_task(TaskConfig(name="file", path=str(tmp_path / "math.parquet"), prompt_field="problem",
                                 answer_field="solution", test_size=4))
    answers = {e.prompt: e for e in split.train + split.test}
    half, three = answers["Simplify 1/2."], answers["Solve x + 0 = 3."]
    assert half.answer == "\\frac{1}{2}" and three.answer == "3"
    assert half.solution == "Divide by 1: $\\boxed{\\frac{1}{2}}$. Answer: \\frac{1}{2}"
    assert exact(half.solution, half.answer) == 1.0 and exact(three.solution, three.answer) == 1.0


def test_an_interrupted_reasoning_gym_run_resumes_to_the_uninterrupted_result(tmp_path):
    """RLVR on chain_sum, killed after its step-2 checkpoint and resumed: the same ΔW as the run that was never cut
    (the library's draws and scorer are as reproducible as the arithmetic task's)."""
    pytest.importorskip("reasoning_gym")
    import torch

    from adapters_geo.adapters.io import load_saved_deltas
    from adapters_geo.config.run import run_config_from_dict
    from adapters_geo.methods.policy import PolicyGradient
    from adapters_geo.pipeline.runner import run_training
    from tests.conftest import interrupted_at

    config = run_config_from_dict({
        "model": "tiny-llama", "method": {"name": "rlvr", "max_new_tokens": 6, "group_size": 2},
        "task": {"name": "reasoning_gym", "dataset": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "max_digits": 1},
                 "train_size": 20, "test_size": 4},
        "train": {"steps": 4, "batch_size": 2, "lr": 5e-3, "checkpoint_every": 2, "track_steps": []},
    })
    run_training(config, tmp_path / "whole", progress=False)
    with pytest.MonkeyPatch.context() as patch, interrupted_at(patch, PolicyGradient, 3):
        run_training(config, tmp_path / "cut", progress=False)
    run_training(config, tmp_path / "cut", resume=True, progress=False)
    whole, cut = (dict(load_saved_deltas(tmp_path / name / "adapter")[1]) for name in ("whole", "cut"))
    assert all(torch.equal(whole[n], cut[n]) for n in whole)
    assert RunFolder(tmp_path / "cut").prompt_evals()[4] == RunFolder(tmp_path / "whole").prompt_evals()[4]


def test_a_gsm8k_file_runs_through_make_experiment_with_set(tmp_path, monkeypatch):
    """The README's SET form pointed at a local GSM8K-form file: `make experiment NAME=sft_init SMOKE=1
    SET="task.name=file task.path=..."` trains, evaluates on the file's held-out rows and writes the report's task column."""
    from pathlib import Path

    from adapters_geo.experiments.execute import run_experiment
    from adapters_geo.report.runs import train_row

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(root / "experiments"))
    monkeypatch.setenv("ADAPTERS_GEO_RUNS", str(tmp_path / "runs"))
    rows = [{"question": f"Tom has {i} pens and buys {i}. How many?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(40)]
    (tmp_path / "gsm.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    folder = RunFolder(run_experiment("sft_init", smoke=True, progress=False,
                                      overrides={"task.name": "file", "task.path": str(tmp_path / "gsm.jsonl")}))
    assert folder.config_dict()["task"]["name"] == "file"
    final = folder.prompt_evals()[10]  # SMOKE's 10 steps
    assert len(final["greedy_reward"]) == 8  # SMOKE's test_size: 8 of the file's rows held out (SET comes after SMOKE)
    assert train_row(folder.path)["task"] == "file:gsm.jsonl"  # the report's task column
