"""reasoning-gym tasks: seeded disjoint splits and pools, the library's own scorer, and one line for each bad name."""

import sys

import pytest

from adapters_geo import AdaptersGeoError
from adapters_geo.config.schema import validated
from adapters_geo.tasks import TaskConfig, load_task

rg = pytest.importorskip("reasoning_gym")  # make setup installs it (the .[tasks] extra)
CHAIN = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}


def task(**fields):
    return load_task(validated(TaskConfig, {"name": "reasoning_gym", "dataset": "chain_sum", "config": CHAIN,
                                            "train_size": 120, "test_size": 30, **fields}, "task"))


def test_splits_are_seeded_disjoint_and_the_library_s_own_entries():
    one, again, other = task(), task(), task(seed=1)
    assert one.train == again.train and one.test == again.test and one.test != other.test
    assert not {e.prompt for e in one.train} & {e.prompt for e in one.test}
    assert len({e.prompt for e in one.train}) == 120 and len(one.test) == 30
    library = rg.create_dataset("chain_sum", seed=10_000, size=40, **CHAIN)  # the test split: seed 10_000 + task.seed
    assert [e.prompt for e in one.test] == list(dict.fromkeys(x["question"] for x in library))[:30]
    assert all(e.solution == f"Answer: {e.answer}" for e in one.train)  # no worked solutions in the library
    assert task(train_size=60).test == one.test  # the test split does not depend on train_size


def test_training_pools_are_disjoint_and_share_the_test_split():
    pools = [task(pool=p, pools=3) for p in range(3)]
    prompts = [{e.prompt for e in t.train} for t in pools]
    assert not (prompts[0] & prompts[1]) and not (prompts[1] & prompts[2]) and not (prompts[0] & prompts[2])
    assert pools[0].test == pools[1].test == pools[2].test


def test_the_score_is_the_dataset_s_score_answer_on_the_stated_answer():
    t = task()
    example = t.test[0]
    entry = next(x for x in rg.create_dataset("chain_sum", seed=10_000, size=5, **CHAIN) if x["question"] == example.prompt)
    library = rg.create_dataset("chain_sum", seed=0, size=1, **CHAIN)
    wrong = str(int(example.answer) + 1)
    for completion, stated in [(f"so it is\nAnswer: {example.answer}", example.answer), (f"Answer: {wrong}", wrong),
                               (f"<answer>{example.answer}</answer>", example.answer), ("no answer here", None),
                               (f"Answer: {wrong}\nAnswer: {example.answer} ok", f"{example.answer} ok")]:
        assert t.score(completion, example) == library.score_answer(stated, entry)
    assert t.score(example.solution, example) == 1.0 and t.score(f"Answer: {wrong}", example) == 0.0
    with pytest.raises(AdaptersGeoError, match="no reasoning-gym entry"):
        t.score("Answer: 1", type(example)("another prompt", "1", "Answer: 1"))


def test_a_scorer_with_partial_credit_passes_through():
    t = load_task(TaskConfig(name="reasoning_gym", dataset="word_sorting", train_size=10, test_size=5))
    example = t.test[0]
    assert t.score(example.solution, example) == 1.0
    assert 0.0 < t.score(f"Answer: {example.answer} and more", example) < 1.0  # the library's substring credit


@pytest.mark.parametrize("fields, message", [
    ({"dataset": "chainsum"}, "reasoning-gym has no dataset 'chainsum' \\(closest: chain_sum.*\\) — fix: set task.dataset"),
    ({"dataset": None}, "dataset is missing: task 'reasoning_gym' draws one of that library's datasets"),
    ({"config": {"min_term": 2}}, "task.config.min_term is not a field of reasoning-gym's ChainSumConfig — fix: use its fields: .*min_terms"),
    ({"config": {"seed": 3}}, "task.config.seed is set by the toolkit"),
    ({"config": {"min_terms": 5, "max_terms": 2}}, "reasoning-gym rejects task.config for 'chain_sum': AssertionError"),
    ({"levels": [1]}, "levels does not apply to task 'reasoning_gym'"),
    ({"dataset": "rotate_matrix"}, "'rotate_matrix' has answers of several lines, which the 'Answer:' format cannot state"),
])
def test_bad_reasoning_gym_configs_are_one_line(fields, message):
    data = {"name": "reasoning_gym", "dataset": "chain_sum", "train_size": 10, "test_size": 5, **fields}
    with pytest.raises(AdaptersGeoError, match=message) as error:
        load_task(validated(TaskConfig, data, "task"))
    assert "\n" not in str(error.value)


def test_reasoning_gym_fields_on_another_task_are_refused():
    with pytest.raises(AdaptersGeoError, match="dataset applies to task 'reasoning_gym', not 'arithmetic'"):
        validated(TaskConfig, {"dataset": "chain_sum"}, "task")


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import reasoning_gym raises ImportError
    with pytest.raises(AdaptersGeoError, match="needs the reasoning-gym package, which is not installed — fix: pip install -e '.\\[tasks\\]'"):
        validated(TaskConfig, {"name": "reasoning_gym", "dataset": "chain_sum"}, "task")


def test_unset_reasoning_gym_fields_leave_a_run_identity_as_it_was():
    from adapters_geo.config.run import RunConfig

    assert "dataset" not in RunConfig().to_dict()["task"] and "config" not in RunConfig().to_dict()["task"]
    named = RunConfig(task={"name": "reasoning_gym", "dataset": "chain_sum", "config": CHAIN}).to_dict()["task"]
    assert named["dataset"] == "chain_sum" and named["config"] == CHAIN


def test_set_points_an_arithmetic_experiment_at_a_reasoning_gym_dataset():
    from adapters_geo.config.run import run_config_from_dict
    from adapters_geo.experiments.resolve import load_resolved

    overrides = {"task.name": "reasoning_gym", "task.dataset": "leg_counting"}  # the README's SET example
    config = run_config_from_dict(load_resolved("sft_init", False, overrides), "sft_init")
    assert (config.task.name, config.task.dataset, config.task.pool, config.task.pools) == ("reasoning_gym", "leg_counting", 0, 3)
    with pytest.raises(AdaptersGeoError, match="solution_style does not apply to task 'reasoning_gym'"):
        load_resolved("teacher_words", False, overrides)  # its worded solutions are arithmetic's: one line, not ignored
