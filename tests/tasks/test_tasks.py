"""Tasks: generated arithmetic, file loading (GSM8K format), rewards."""

import json
import re

import pytest

from adapters_geo import AdaptersGeoError
from adapters_geo.config.schema import validated
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.tasks.arithmetic import splits
from adapters_geo.tasks.rewards import exact, exact_format, parse_final_answer


@pytest.mark.parametrize("levels", [[0], [1], [2], [3], [1, 2, 3]])
def test_arithmetic_is_seeded_disjoint_and_correct(levels):
    train, test = splits(300, 40, levels, seed=3)
    again_train, again_test = splits(300, 40, levels, seed=3)
    assert train == again_train and test == again_test
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    for example in train[:50] + test:
        assert example.solution.endswith(f"Answer: {example.answer}")
        assert exact(example.solution, example.answer) == 1.0


@pytest.mark.parametrize("levels", [[0], [1], [2], [3], [1, 2, 3]])
def test_solution_styles_change_only_how_the_steps_are_written(levels):
    steps, words = splits(200, 40, levels, seed=5), splits(200, 40, levels, seed=5, style="words")
    for a, b in zip(steps[0] + steps[1], words[0] + words[1], strict=True):
        assert (a.prompt, a.answer) == (b.prompt, b.answer)  # the same problems, splits and pools
        assert b.solution.endswith(f"Answer: {b.answer}") and exact(b.solution, b.answer) == 1.0
        if levels != [0]:  # recall has no steps to write
            assert "=" in a.solution and "=" not in b.solution and " is " in b.solution
    example = next((e for e in words[1] if "boxes" in e.prompt), None)
    if example is not None:  # levels 2 and 3
        a, b, c = (int(x) for x in re.findall(r"\d+", example.prompt))
        assert example.solution == f"{b} times {c} is {b * c}. {a} plus {b * c} is {a + b * c}. Answer: {a + b * c}"


def test_a_solution_style_other_than_the_default_is_part_of_a_run_identity():
    from adapters_geo.config.run import run_config_from_dict

    base = {"model": "tiny-llama", "task": {"name": "arithmetic"}}
    default = run_config_from_dict(base).to_dict()
    assert "solution_style" not in default["task"]  # every older run keeps its identity
    assert run_config_from_dict({**base, "task": {"solution_style": "words"}}).to_dict()["task"]["solution_style"] == "words"


def test_test_split_does_not_depend_on_train_size():
    assert splits(10, 20, [2])[1] == splits(500, 20, [2])[1]


def test_answer_parsing_and_rewards():
    assert parse_final_answer("so 3 + 4 = 7. Answer: 7") == "7"
    assert parse_final_answer("Natalia sold 48/2 = 24 clips.\n#### 1,024") == "1024"
    assert parse_final_answer("I think it is 12 or 13") == "13"
    assert parse_final_answer("no numbers", strict=True) is None
    assert exact("Answer: 7", "7") == 1.0 and exact("Answer: 8", "7") == 0.0 and exact("", "7") == 0.0
    assert exact_format("Answer: 7", "7") == pytest.approx(1.1) and exact_format("7", "7") == 1.0


def test_jsonl_file_with_gsm8k_answers(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = load_task(TaskConfig(name="file", path=str(path), test_size=5))
    assert len(task.test) == 5 and len(task.train) == 25
    example = task.test[0]
    assert example.solution.endswith(f"Answer: {example.answer}") and "####" not in example.solution


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(name="file", path="missing.jsonl"), "task file missing.jsonl does not exist"),
        (dict(name="file", path="nobody/no-such-dataset"), "tried a local .json/.jsonl/.parquet/.csv file"),
        (dict(name="poems"), "name = 'poems' is not allowed .*arithmetic \\| file \\| reasoning_gym"),
        (dict(levels=[7]), "levels = \\[7\\] is not allowed .*0 \\| 1 \\| 2 \\| 3"),
        (dict(reward="vibes"), "reward = 'vibes' is not allowed .*exact \\| exact_format"),
        (dict(levels=[0], train_size=5000), "cannot draw 5000 distinct arithmetic problems"),
        (dict(solution_style="poetry"), "solution_style = 'poetry' is not allowed .*steps \\| words"),
        (dict(name="file", path="x.jsonl", solution_style="words"), "solution_style applies to the arithmetic task"),
    ],
)
def test_bad_task_configs(config, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdaptersGeoError, match=message):
        load_task(validated(TaskConfig, config, "task"))


def test_wrong_field_names(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"q": "x", "a": "1"}))
    with pytest.raises(AdaptersGeoError, match="record has no field 'question'"):
        load_task(TaskConfig(name="file", path=str(path), test_size=1))


def test_training_pools_are_disjoint_and_share_the_test_split():
    tasks = [load_task(TaskConfig(levels=[2], train_size=300, test_size=40, pool=p, pools=3)) for p in range(3)]
    prompts = [{e.prompt for e in t.train} for t in tasks]
    assert all(len(p) == 300 for p in prompts)
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    assert tasks[0].test == tasks[1].test == tasks[2].test
    assert not prompts[0] & {e.prompt for e in tasks[0].test}


def test_a_level_holds_the_distinct_problems_its_capacity_says_and_no_more_are_drawn():
    # the capacities are closed-form counts; drawing past one is refused before any drawing (it spun for minutes)
    import random

    from adapters_geo.tasks.arithmetic import CAPACITY, GENERATORS, generate

    rng = random.Random(0)
    assert len({GENERATORS[0](rng)[0] for _ in range(20_000)}) == CAPACITY[0] == 900
    assert len(generate(900, [0], seed=1)) == 900
    with pytest.raises(AdaptersGeoError, match=r"level 0 has 900 distinct problems and would need 500000"):
        generate(1_000_000, [0, 2], seed=1)


def test_answers_that_are_not_numbers_compare_as_stated_text():
    assert exact("so the answer is\nAnswer: \\frac{1}{2}", "\\frac{1}{2}") == 1.0
    assert exact("Answer: $\\frac{1}{2}$.", "\\frac{1}{2}") == 1.0  # '$', spaces and a final '.' do not count
    assert exact("it is $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}") == 1.0  # MATH's own marking
    assert exact("Answer: \\frac{1}{3}", "\\frac{1}{2}") == 0.0 and exact("1/2", "\\frac{1}{2}") == 0.0
    assert exact("Answer: B", "B") == 1.0 and exact("Answer: C", "B") == 0.0
    assert exact("Answer: 12 apples", "12") == 1.0  # a number reference is parsed as before


@pytest.mark.parametrize("answer, expected, solution", [
    ("2 + 2 = 4\n#### 4", "4", "2 + 2 = 4 Answer: 4"),  # GSM8K
    ("Add them: $\\boxed{7}$.", "7", "Add them: $\\boxed{7}$. Answer: 7"),  # MATH
    ("so $x = \\boxed{\\sqrt{2}}$", "\\sqrt{2}", "so $x = \\boxed{\\sqrt{2}}$ Answer: \\sqrt{2}"),
    ("\\boxed{5}", "5", "Answer: 5"),  # a bare boxed answer is the answer, not a solution
    ("1,024", "1024", "Answer: 1024"),  # a final number
    ("B", "B", "Answer: B"),
])
def test_answer_forms_of_a_file(answer, expected, solution):
    from adapters_geo.tasks.files import to_example

    example = to_example({"question": "q", "answer": answer}, "question", "answer", None)
    assert (example.answer, example.solution) == (expected, solution)


@pytest.mark.parametrize("record, fields, message", [
    ({"question": "q", "answer": ""}, ("question", "answer", None), "a record's 'answer' holds no answer"),
    ({"question": "q", "answer": "1"}, ("question", "answer", "steps"), "record has no field 'steps' .*fix: set solution_field"),
    ({"problem": "q", "answer": "1"}, ("question", "answer", None), "record has no field 'question' \\(fields: problem, answer\\)"),
])
def test_bad_fields_of_a_file_are_one_line(record, fields, message):
    from adapters_geo.tasks.files import to_example

    with pytest.raises(AdaptersGeoError, match=message):
        to_example(record, *fields)


def test_a_report_labels_each_task_by_its_source():
    from adapters_geo.tasks import label

    assert label({"name": "arithmetic", "levels": [2]}) == "arithmetic" and label({}) == "arithmetic"
    assert label({"name": "reasoning_gym", "dataset": "chain_sum"}) == "reasoning_gym:chain_sum"
    assert label({"name": "file", "path": "/data/gsm8k/train.jsonl"}) == "file:train.jsonl"
    assert label({"name": "file", "path": "openai/gsm8k"}) == "file:gsm8k"
