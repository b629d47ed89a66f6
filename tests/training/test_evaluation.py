"""The common outcome (train.eval_samples) and the locking report's choice of outcome.

Run: python -m pytest -q tests/training/test_evaluation.py
"""

import json

import pytest
import torch

from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.config.run import run_config_from_dict
from adapters_geo.report.locking import lock_summary, lock_table, verdict
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.pipeline.runner import run_training
from adapters_geo.tasks import load_task


def tiny_run(folder, method: str = "sft", **train):
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 64, "test_size": 6},
        "method": {"name": method, "max_new_tokens": 6},
        "train": {"steps": 4, "batch_size": 4, "lr": 3e-3, "eval_every": 2, "track_steps": [], **train},
    })
    run_training(config, folder, progress=False)
    return RunFolder(folder)


def test_sampled_accuracy_at_the_ends_leaves_training_untouched(tmp_path):
    plain, common = tiny_run(tmp_path / "plain"), tiny_run(tmp_path / "common", eval_samples=3)
    a, b = (dict(load_saved_deltas(f.adapter)[1]) for f in (plain, common))
    assert all(torch.equal(a[n], b[n]) for n in a)  # its sampling runs on its own seeds, not the training RNG
    evals = common.prompt_evals()
    assert sorted(evals) == [0, 2, 4] and "sampled_reward" not in evals[2]  # the ends only, not the curve
    for step in (0, 4):
        rewards = evals[step]["sampled_reward"]
        assert len(rewards) == 6 and all(0 <= r <= 1 and abs(r * 3 - round(r * 3)) < 1e-9 for r in rewards)  # k = 3
        each = evals[step]["sampled_rewards"]  # every sample's reward, prompt by prompt: their mean is sampled_reward
        assert [len(row) for row in each] == [3] * 6 and all(r in (0.0, 1.0) for row in each for r in row)
        assert all(abs(sum(row) / 3 - mean) < 1e-12 for row, mean in zip(each, rewards))
    assert "sampled_reward" not in plain.prompt_evals()[4]
    assert "eval_samples" not in plain.config_dict()["train"]  # off: every older run's identity is unchanged
    again = tiny_run(tmp_path / "again", eval_samples=3)  # common random numbers: the same model samples the same
    assert again.prompt_evals()[4]["sampled_reward"] == evals[4]["sampled_reward"]


def test_an_rlvr_run_records_reference_nll_and_greedy_accuracy_from_one_teacher_forced_pass(tmp_path):
    from adapters_geo.models import load_base
    from adapters_geo.tasks.outcome import reference_nll

    run = tiny_run(tmp_path / "rlvr", "rlvr", batch_size=2)
    start = run.prompt_evals()[0]
    assert start["outcome_kind"] == "neg_reward" and len(start["greedy_reward"]) == 6
    base = load_base("tiny-llama")  # step 0: the base itself, so its NLL can be recomputed here
    task = load_task(RunFolder(run.path).config().task)
    assert start["reference_nll"] == pytest.approx(reference_nll(base.model, base.tokenizer, task.test).tolist(), rel=1e-5)
    assert "reference_nll" not in run.prompt_evals()[2] and "reference_nll" in run.prompt_evals()[4]  # the ends only


def test_the_common_outcome_samples_on_its_own_seeds_and_leaves_the_global_rng_alone():
    """negative_reward: the same model gives the same samples whatever the global RNG did before (common random
    numbers across arms), and the global RNG is where it was (training draws nothing different)."""
    from adapters_geo import load_base
    from adapters_geo.tasks import TaskConfig, load_task
    from adapters_geo.tasks.outcome import negative_reward

    base = load_base("tiny-llama")
    examples = load_task(TaskConfig(levels=[0], train_size=8, test_size=6)).test
    by_text = lambda text, answer: float(len(text) % 3) / 2  # varies with the sampled text itself
    state = torch.get_rng_state()
    first = negative_reward(base.model, base.tokenizer, examples, by_text, samples=3, max_new_tokens=6)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(1000)  # the global RNG moves on; the samples must not
    assert torch.equal(negative_reward(base.model, base.tokenizer, examples, by_text, samples=3, max_new_tokens=6), first)
    assert first.unique().numel() > 1  # the reward varies with the samples, so other samples would show


def fake_lock(root, sampled: bool, seeds: int = 3, beside: bool = False):
    """A finished lock folder over `seeds` training seeds × 8 prompts: frozen 1.0, unconstrained 0.5, early 0.48 on the method's outcome;
    on the sampled outcome (reward) frozen 0.2, unconstrained 0.6, early 0.3: the two readings disagree."""
    source = RunFolder(root / "source")
    source.path.mkdir(parents=True)
    source.write_json(source.config_file, {"model": "tiny-llama", "method": {"name": "opd"}, "task": {"name": "arithmetic"}})
    arms = {"frozen": (1.0, 0.2), "unconstrained": (0.5, 0.6), "early": (0.48, 0.3), "final": (0.5, 0.6)}
    lock = RunFolder(root / "lock")
    by_seed = {str(s): {"source": str(source.path), "arms": {}} for s in range(seeds)}
    for (s, entry), (arm, (loss, reward)) in ((x, y) for x in by_seed.items() for y in arms.items()):
        folder = RunFolder(lock.path / f"seed_{s}" / arm)
        folder.evals_dir.mkdir(parents=True)
        step = 2 if arm == "frozen" else 10
        noise = torch.linspace(-0.01, 0.01, 8)
        record = {"step": step, "outcome_kind": "kl", "outcome": (loss + noise).tolist()}
        if sampled:
            record["sampled_reward"] = (reward + noise).tolist()
        if beside:  # reference NLL and greedy accuracy: the early arm keeps half the NLL gain, all of the greedy one
            record["reference_nll"] = (torch.full((8,), {"frozen": 2.0, "early": 1.5}.get(arm, 1.0)) + noise).tolist()
            record["greedy_reward"] = [0.0] * 8 if arm == "frozen" else [1.0] * 4 + [0.0] * 4
        (folder.evals_dir / f"step_{step:06d}.json").write_text(json.dumps(record))
        if arm == "final":  # run before `final` meant the increment after t0: its config has no final_of
            folder.write_json(folder.config_file, {"adapter": {"kind": "locked", "basis": "final"}})
        entry["arms"][arm] = {"final_eval": {}, "folder": str(folder.path)}
    lock.write_json(lock.experiment_file, {"name": "lock", "file": {"kind": "lock", "source": "experiment:x"}})
    lock.write_json(lock.done_file, {"seeds": by_seed, "K": 4, "mode": "projected", "t0": 2, "steps": 10})
    return lock.path


@pytest.mark.parametrize("sampled", [False, True])
def test_the_verdict_uses_the_common_outcome_where_every_arm_has_it(tmp_path, sampled):
    summary = lock_summary(fake_lock(tmp_path, sampled), draws=300)
    early = summary["stats"]["retention"]["early"]["estimate"]
    if sampled:  # reward gains 0.1 of 0.4: R = 0.25, degrades; the KL reading (R = 1.04) is shown beside it
        assert summary["kind"] == "sampled" and early == pytest.approx(0.25)
        assert summary["margin"]["reading"] == "degrades" and summary["other"][0]["kind"] == "kl"
        assert summary["other"][0]["stats"]["retention"]["early"]["estimate"] == pytest.approx(1.04)
        assert "on sampled accuracy" in summary["budget"] and "retention on KL to the teacher" in "\n".join(lock_table(summary))
        assert "**contradicted** here" in verdict(summary)  # the paper says OPD's early subspace preserves its gain
    else:
        assert summary["kind"] == "kl" and early == pytest.approx(1.04) and summary["other"] == []
        assert summary["margin"]["reading"] == "preserves" and "**supported** here" in verdict(summary)
    assert summary["old_final"] == ["final"]  # labelled, not read as the increment after t0
    assert "the final (ΔW_T − ΔW_init, the definition before 2026-12-05) subspace retains" in verdict(summary)
    assert any(row.startswith("| final (ΔW_T − ΔW_init") for row in lock_table(summary))


def test_reference_nll_and_greedy_accuracy_are_shown_beside_the_verdict_s_outcome(tmp_path):
    summary = lock_summary(fake_lock(tmp_path, True, beside=True), draws=300)
    assert summary["kind"] == "sampled" and [o["kind"] for o in summary["other"]] == ["kl", "nll", "greedy"]
    by_kind = {o["kind"]: o["stats"]["retention"]["early"]["estimate"] for o in summary["other"]}
    assert by_kind["nll"] == pytest.approx(0.5) and by_kind["greedy"] == pytest.approx(1.0)
    header = lock_table(summary)[6]
    assert "retention on reference NLL" in header and "retention on greedy accuracy" in header


def test_one_seed_leaves_the_paper_s_claim_undecided(tmp_path):
    """The same clear reading (R = 1.04, preserves) from one training seed: the claim stays undecided, saying why."""
    summary = lock_summary(fake_lock(tmp_path, False, seeds=1), draws=300)
    assert summary["seeds"] == 1 and summary["margin"]["reading"] == "preserves"
    line = verdict(summary)
    assert "**undecided at this budget** here (1 training seed(s)" in line and "SEEDS=3" in line


def test_runs_from_one_saved_start_share_its_first_evaluation(tmp_path, monkeypatch):
    """Two seeds from one init adapter: the second reads the first's step-0 evaluation instead of computing it (the
    same per-prompt file); another evaluation batch (other sampling seeds) or a fresh adapter computes its own."""
    from adapters_geo.training.evaluation import HeldOut

    anchor = tiny_run(tmp_path / "anchor")
    computed = []
    original = HeldOut.evaluate
    monkeypatch.setattr(HeldOut, "evaluate", lambda self, step: computed.append(step) or original(self, step))
    runs = tmp_path / "runs"

    def from_anchor(name, shared=True, **train):
        config = run_config_from_dict({
            "model": "tiny-llama", "init": str(anchor.adapter), "task": {"levels": [0], "train_size": 64, "test_size": 6},
            "method": {"name": "sft", "max_new_tokens": 6},
            "train": {"steps": 2, "batch_size": 4, "lr": 3e-3, "eval_every": 0, "track_steps": [], "eval_samples": 2,
                      **train},
        })
        run_training(config, runs / name, progress=False, shared_evals=runs / ".start_evals" if shared else None)
        return RunFolder(runs / name)

    first = from_anchor("seed0")
    assert computed == [0, 2]
    second = from_anchor("seed1", seed=1)
    assert computed == [0, 2, 2]  # its start was read, not computed
    assert second.prompt_evals()[0] == first.prompt_evals()[0]
    logged = [[json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()] for run in (first, second)]
    starts = [next(r for r in rows if r["group"] == "eval" and r["step"] == 0) for rows in logged]
    assert {k: v for k, v in starts[0].items() if k != "eval_seconds"} == {k: v for k, v in starts[1].items() if k != "eval_seconds"}
    from_anchor("batch", eval_batch=2)  # other chunks, other sampling seeds: computed
    assert computed[-2:] == [0, 2]
    assert len(list((runs / ".start_evals").iterdir())) == 2
    from_anchor("alone", shared=False, seed=2)  # as `adapters-geo train`: no shared folder, computed
    assert computed[-2:] == [0, 2]
    from_anchor("low", seed=3, eval_precision="bfloat16")  # scored by a bf16 copy: other numbers, computed
    assert computed[-2:] == [0, 2] and len(list((runs / ".start_evals").iterdir())) == 3


def test_a_bf16_evaluation_samples_from_a_refreshed_copy_and_scores_on_the_run_s_model(tmp_path, monkeypatch):
    """train.eval_precision: the k samples come from a bf16 copy of the merged policy, W0 + ΔW as they are at that
    evaluation (refreshed after an update); NLL and greedy decoding stay on the fp32 model, which is not touched."""
    from adapters_geo import DenseConfig, attach_adapter, base_weights, load_base, merged_deltas
    from adapters_geo.tasks import TaskConfig
    from adapters_geo.training import evaluation
    from adapters_geo.training.evaluation import HeldOut

    base = load_base("tiny-llama", device="cpu")  # fp32 (on CUDA a bf16 model samples itself)
    model = attach_adapter(base.model, DenseConfig())
    task = load_task(TaskConfig(levels=[0], train_size=8, test_size=6))
    drawn = []
    original = evaluation.sampled_rewards
    monkeypatch.setattr(evaluation, "sampled_rewards", lambda net, *a, **k: drawn.append(net) or original(net, *a, **k))

    def held(dtype, name):
        return HeldOut(model, base.tokenizer, task, task.test, "nll", RunFolder(tmp_path / name), {0, 1},
                       max_new_tokens=6, common_samples=2, dtype=dtype)

    def merged_now(name):  # bf16(W0 + ΔW) of one adapted matrix, summed in fp32
        return (base_weights(model)[name].float() + merged_deltas(model)[name]).to(torch.bfloat16)

    exact, low = held(None, "fp32"), held(torch.bfloat16, "bf16")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    name = next(iter(merged_deltas(model)))
    for step in (0, 1):
        a, b = exact.evaluate(step)[1], low.evaluate(step)[1]
        assert drawn[-2] is model and drawn[-1] is not model  # fp32 samples the model, bf16 its copy
        copy = dict(drawn[-1].named_parameters())[name.removeprefix("base_model.model.")]
        assert copy.dtype == torch.bfloat16 and torch.equal(copy, merged_now(name))
        assert a["outcome"] == b["outcome"] and a["greedy_reward"] == b["greedy_reward"]  # scoring: the fp32 model's
        assert len(b["sampled_rewards"]) == 6
        if step == 0:
            assert all(torch.equal(p, before[n]) and p.dtype == torch.float32 for n, p in model.named_parameters())
            with torch.no_grad():  # an update between evaluations: the copy must follow it
                for p in (p for p in model.parameters() if p.requires_grad):
                    p.add_(0.05 * torch.randn_like(p))


def test_eval_precision_is_part_of_a_run_s_identity_only_when_set():
    plain = run_config_from_dict({"model": "tiny-llama"}).to_dict()["train"]
    assert "eval_precision" not in plain  # float32: every older run's identity
    low = run_config_from_dict({"model": "tiny-llama", "train": {"eval_precision": "bfloat16"}}).to_dict()["train"]
    assert low["eval_precision"] == "bfloat16"
    from adapters_geo import AdaptersGeoError

    with pytest.raises(AdaptersGeoError, match="eval_precision"):
        run_config_from_dict({"model": "tiny-llama", "train": {"eval_precision": "bf16"}})
