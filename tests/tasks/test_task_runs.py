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
