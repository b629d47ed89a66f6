"""The three methods on tiny-llama, end to end through the shared loop.

Run: python -m pytest -q tests/methods
"""

import json

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base, merged_deltas
from adapters_geo.config.run import run_config_from_dict
from adapters_geo.methods import Context, MethodConfig, build_method
from adapters_geo.pipeline.runner import train_into
from adapters_geo.training.config import TrainConfig
from adapters_geo.rollout.sampling import sample
from adapters_geo.pipeline.runner import run_training
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.storage.snapshots import read_trajectory

TASK = TaskConfig(levels=[0], train_size=200, test_size=8)
SHORT = dict(group_size=2, max_new_tokens=10)


def odd_length_reward(text, answer):
    """A reward with variance on a random model, so GRPO groups are not all skipped."""
    return float(len(text) % 2)


def make(method: MethodConfig, adapter=None, teacher=None, perturb=0.0):
    base = load_base("tiny-llama")
    model = attach_adapter(base.model, adapter or DenseConfig())
    if perturb:
        with torch.no_grad():
            for p in (p for p in model.parameters() if p.requires_grad):
                p.add_(perturb * torch.randn_like(p))
    task = load_task(TASK)
    task.reward = odd_length_reward
    ctx = Context(model, base.tokenizer, task, method, teacher=teacher)
    return build_method(ctx), model, base.tokenizer, task


@pytest.mark.parametrize("adapter", [DenseConfig(), LoraConfig(r=4)], ids=["dense", "lora"])
@pytest.mark.parametrize("name", ["sft", "opd", "rlvr"])
def test_each_method_trains_and_tracks(tmp_path, name, adapter):
    teacher = load_base("tiny-llama") if name == "opd" else None
    config = MethodConfig(name=name, teacher="tiny-llama" if teacher else None, **SHORT)
    method, model, tok, task = make(config, adapter, teacher, perturb=0.02 if name == "opd" else 0.0)
    before = merged_deltas(model)
    summary = train_into(tmp_path, model, tok, method, task, TrainConfig(steps=3, batch_size=4, lr=1e-2, track_steps=[1, 3]),
                         max_new_tokens=10, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["group"] == "train"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    after = merged_deltas(model)
    assert any((after[n] - before[n]).abs().max() > 0 for n in before)
    trajectory = read_trajectory(tmp_path / "trajectory")
    assert sorted(trajectory) == [1, 3] and set(trajectory[3]) == set(after)
    for n in after:
        torch.testing.assert_close(trajectory[3][n], after[n] - before[n])
    assert {"geometry/overall", "eval"} <= {r["group"] for r in rows}
    assert (tmp_path / "adapter" / "adapter.json").is_file() and summary["steps"] == 3


def test_opd_with_teacher_equal_to_student_has_zero_advantage_and_gradient():
    teacher = load_base("tiny-llama")  # the student's adapter starts at zero: same policy
    method, model, _, task = make(MethodConfig(name="opd", teacher="tiny-llama", **SHORT), teacher=teacher)
    batch = method.batch(task.train[:3], step=0)
    loss, metrics = method.loss(model, batch)
    loss.backward()
    assert metrics["teacher_gap"] == 0.0 and loss.item() == 0.0
    assert all(p.grad.abs().max() == 0 for p in model.parameters() if p.requires_grad)


def test_teacher_rollouts_come_from_the_teacher():
    teacher = load_base("tiny-llama")
    config = MethodConfig(name="opd", teacher="tiny-llama", rollout_source="teacher", **SHORT)
    method, model, tok, task = make(config, teacher=teacher, perturb=0.05)
    prompts, _ = method._prompts(task.train[:3])
    torch.manual_seed(7)
    got, behaviour = method._rollouts(model, prompts, prompts)
    assert behaviour is None  # teacher samples: no importance correction
    torch.manual_seed(7)
    assert got == sample(teacher.model, tok, prompts, 2, 10)
    torch.manual_seed(7)
    assert got != sample(model, tok, prompts, 2, 10)


def test_stale_rollouts_come_from_the_policy_n_updates_old():
    config = MethodConfig(name="opd", teacher="tiny-llama", rollout_source="stale:2", sampler="float32", **SHORT)
    method, model, tok, task = make(config, teacher=load_base("tiny-llama"))
    params = [p for p in model.parameters() if p.requires_grad]
    snapshots = []
    method.after_update(model)  # the initial policy
    for _ in range(3):
        with torch.no_grad():
            for p in params:
                p.add_(0.05 * torch.randn_like(p))
        method.after_update(model)
        snapshots.append([p.detach().clone() for p in params])
    prompts, _ = method._prompts(task.train[:3])
    torch.manual_seed(3)
    got = method._rollouts(model, prompts, prompts)[0]
    current = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, old in zip(params, snapshots[0]):  # after update 1 = 2 updates before the current 3
            p.copy_(old)
    torch.manual_seed(3)
    want = sample(model, tok, prompts, 2, 10)
    assert got == want
    with torch.no_grad():
        for p, now in zip(params, current):
            p.copy_(now)
    torch.manual_seed(3)
    assert got != sample(model, tok, prompts, 2, 10)


@pytest.mark.parametrize("alpha, pure", [(1.0, "opd"), (0.0, "rlvr")])
def test_mix_alpha_endpoints_reduce_exactly(alpha, pure):
    teacher = load_base("tiny-llama")
    mixed, model, _, task = make(MethodConfig(name="opd", teacher="tiny-llama", mix_alpha=alpha, **SHORT),
                                 teacher=teacher, perturb=0.05)
    batch = mixed.batch(task.train[:4], step=0)
    plain = build_method(Context(model, mixed.ctx.tokenizer, task, MethodConfig(name=pure, teacher="tiny-llama", **SHORT),
                                 teacher=teacher))
    assert mixed.loss(model, batch)[0].item() == plain.loss(model, batch)[0].item()


def test_sft_learns_the_easy_task_from_chance_to_well_above():
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 600, "test_size": 32},
        "method": {"name": "sft", "max_new_tokens": 12},
        "train": {"steps": 120, "batch_size": 16, "lr": 3e-3, "checkpoint_every": 1000, "track_steps": [120]},
    })
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        run_training(config, out, progress=False)
        evals = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if '"eval"' in l]
    assert evals[0]["accuracy"] <= 0.15 and evals[-1]["accuracy"] >= 0.8, evals


def test_resume_reaches_the_uninterrupted_result(tmp_path, monkeypatch):
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 200, "test_size": 4},
        "method": {"name": "opd", "teacher": "self_hint", "rollout_source": "stale:1", **SHORT},
        "train": {"steps": 5, "batch_size": 3, "lr": 5e-3, "checkpoint_every": 2, "optimizer": "adamw"},
    })
    run_training(config, tmp_path / "whole", progress=False)

    from adapters_geo.methods.policy import PolicyGradient
    from tests.conftest import interrupted_at

    with interrupted_at(monkeypatch, PolicyGradient, 3):
        run_training(config, tmp_path / "cut", progress=False)
    with pytest.raises(Exception, match="already holds a checkpoint"):
        run_training(config, tmp_path / "cut", progress=False)
    run_training(config, tmp_path / "cut", resume=True, progress=False)

    from adapters_geo.adapters.io import load_saved_deltas

    whole = dict(load_saved_deltas(tmp_path / "whole" / "adapter")[1])
    cut = dict(load_saved_deltas(tmp_path / "cut" / "adapter")[1])
    assert all(torch.equal(whole[n], cut[n]) for n in whole)


def test_a_hinted_teacher_reads_the_worked_solution_and_the_student_does_not():
    """teacher_hint on any teacher source (here the student's own start, as lock_opd's teacher): the teacher's
    prompt holds the reference solution, the student's is the plain prompt; without the hint both are the same."""
    teacher = load_base("tiny-llama")
    hinted, model, _, task = make(MethodConfig(name="opd", teacher="tiny-llama", teacher_hint=True, full_vocab_kl=True,
                                               **SHORT), teacher=teacher)
    plain, _, _, _ = make(MethodConfig(name="opd", teacher="tiny-llama", full_vocab_kl=True, **SHORT), teacher=teacher)
    examples = task.train[:2]
    student, teacher_prompts = hinted._prompts(examples)
    assert plain._prompts(examples) == (student, student)
    tok = hinted.ctx.tokenizer
    for s, t, e in zip(student, teacher_prompts, examples):
        assert e.solution in tok.decode(t) and e.solution not in tok.decode(s)
    # the same student, the same teacher weights: only the hint separates the two losses
    assert hinted.loss(model, hinted.batch(examples, step=0))[0].item() > 1e-6
    assert abs(plain.loss(model, plain.batch(examples, step=0))[0].item()) < 1e-6


def test_full_vocab_reverse_kl_is_zero_for_an_identical_teacher_and_trains_otherwise():
    teacher = load_base("tiny-llama")
    config = MethodConfig(name="opd", teacher="tiny-llama", full_vocab_kl=True, **SHORT)
    method, model, _, task = make(config, teacher=teacher)
    batch = method.batch(task.train[:2], step=0)
    assert abs(method.loss(model, batch)[0].item()) < 1e-6
    method, model, _, task = make(config, teacher=teacher, perturb=0.05)
    loss, _ = method.loss(model, method.batch(task.train[:2], step=0))
    loss.backward()
    assert loss.item() > 0 and any(p.grad.abs().max() > 0 for p in model.parameters() if p.requires_grad)


def test_rlvr_with_kl_to_the_initial_policy(tmp_path):
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 50, "test_size": 2},
        "method": {"name": "rlvr", "kl_coef": 0.1, **SHORT}, "train": {"steps": 2, "batch_size": 2},
    })
    summary = run_training(config, tmp_path, progress=False)
    assert summary["steps"] == 2


def test_teacher_from_a_saved_adapter_and_tokenizer_check(tmp_path):
    from adapters_geo import AdaptersGeoError, save_adapter
    from adapters_geo.methods.teacher import load_teacher_for

    trained = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    with torch.no_grad():
        next(p for p in trained.parameters() if p.requires_grad).add_(0.1)
    save_adapter(trained, tmp_path / "teacher")
    student = load_base("tiny-llama")
    teacher = load_teacher_for(str(tmp_path / "teacher"), "none", "tiny-llama", student.tokenizer)
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert merged_deltas(teacher.model).keys() == merged_deltas(trained).keys()
    with pytest.raises(AdaptersGeoError, match="uses another tokenizer than the student"):
        load_teacher_for("smollm2-135m-instruct", "none", "tiny-llama", student.tokenizer)


def test_a_batch_without_signal_does_not_move_the_adapter(tmp_path):
    """GRPO with every group's rewards equal: no update, although Adam holds momentum from step 1."""
    method, model, tok, task = make(MethodConfig(name="rlvr", **SHORT))
    batches = []
    original = method.batch

    def batch(examples, step):  # counts the training batches drawn so far
        batches.append(step)
        return original(examples, step)

    calls = []

    def reward(text, answer):  # alternates within each group while the first training batch is the latest drawn
        calls.append(1)
        return float(len(calls) % 2) if len(batches) == 1 else 0.0

    method.batch = batch
    task.reward = reward
    train_into(tmp_path, model, tok, method, task, TrainConfig(steps=1, batch_size=4, lr=1e-2), max_new_tokens=10, progress=False)
    after_one = merged_deltas(model)
    assert any(d.abs().max() > 0 for d in after_one.values())
    train_into(tmp_path, model, tok, method, task, TrainConfig(steps=3, batch_size=4, lr=1e-2), resume=True, max_new_tokens=10,
               progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_update"] for r in rows if r["group"] == "train"] == [0.0, 1.0, 1.0]
    for name, delta in merged_deltas(model).items():
        assert torch.equal(delta, after_one[name]), name


def test_one_rlvr_step_raises_rewarded_samples_and_lowers_the_others():
    """The sign of the policy gradient: after one SGD step, Δ log π(sample) follows its GRPO advantage."""
    from adapters_geo.methods.advantages import grpo_advantages
    from adapters_geo.rollout.scoring import completion_logprobs, completion_mask, pack

    torch.manual_seed(0)
    method, model, tok, task = make(MethodConfig(name="rlvr", group_size=4, max_new_tokens=10))
    batch = method.batch(task.train[:4], step=0)

    def sequence_logp():
        packed = pack(batch.prompts, batch.completions, tok.pad_token_id)
        with torch.no_grad():
            return (completion_logprobs(model, packed) * completion_mask(packed.lengths, packed.width)).sum(1)

    before = sequence_logp()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    method.loss(model, batch)[0].backward()
    optimizer.step()
    change = sequence_logp() - before
    advantage, keep = grpo_advantages(batch.rewards, 4)
    kept = keep > 0
    assert kept.sum() >= 4
    assert torch.corrcoef(torch.stack([advantage[kept], change[kept]]))[0, 1] > 0.8
    assert (change[kept][advantage[kept] > 0] > 0).all() and (change[kept][advantage[kept] < 0] < 0).all()


def test_stale_rollouts_are_importance_corrected_with_the_policy_that_drew_them():
    config = MethodConfig(name="opd", teacher="tiny-llama", rollout_source="stale:1", sampler="float32", **SHORT)
    method, model, tok, task = make(config, teacher=load_base("tiny-llama"), perturb=0.02)
    method.after_update(model)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    method.after_update(model)  # the history now holds the policy before this change
    batch = method.batch(task.train[:2], step=0)
    with method.history.policy(model):
        want = method._score(model, batch.prompts, batch.completions, full=False)
    assert torch.equal(batch.behaviour, want)
    current = method._score(model, batch.prompts, batch.completions, full=False)
    assert (batch.behaviour - current).abs().max() > 1e-3
    _, metrics = method.loss(model, batch)
    assert metrics["policy_mismatch"] > 0 and "correction" not in metrics
    assert "importance ratio" in config.rollout_correction() and "none" in MethodConfig(name="opd", teacher="x", rollout_source="teacher").rollout_correction()


def test_a_mix_logs_each_component_s_gradient_norm():
    """At ρ = 1 the mixed gradient is α·g_OPD + (1 − α)·g_RLVR: its parts' norms are α‖g_OPD‖ and (1 − α)‖g_RLVR‖."""
    torch.manual_seed(0)
    teacher = load_base("tiny-llama")
    options = dict(group_size=4, max_new_tokens=10)
    mixed, model, _, task = make(MethodConfig(name="opd", teacher="tiny-llama", mix_alpha=0.25, **options),
                                 teacher=teacher, perturb=0.05)
    batch = mixed.batch(task.train[:4], step=0)
    assert len(set(batch.rewards.tolist())) > 1  # some group has reward variance: the RLVR part is not zero
    _, metrics = mixed.loss(model, batch)
    pure = build_method(Context(model, mixed.ctx.tokenizer, task, MethodConfig(name="opd", teacher="tiny-llama", **options),
                                teacher=teacher))
    loss, _ = pure.loss(model, batch)
    loss.backward()
    norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.requires_grad)).item()
    assert metrics["grad_norm_opd"] == pytest.approx(0.25 * norm, rel=1e-4)
    assert 0 < metrics["grad_share_opd"] < 1 and metrics["grad_norm_rlvr"] > 0


def test_data_parallel_shares_draw_their_own_random_token_selection():
    # the loss's random token selection is seeded by (seed, step, share): a lone run (stream 0) repeats
    # exactly, and two processes' shares do not select the same positions
    torch.manual_seed(0)
    config = MethodConfig(name="rlvr", token_fraction=0.5, token_select="random", **SHORT)
    method, model, _, task = make(config)
    for step in range(3, 13):  # a batch whose GRPO advantages are not all zero (else every selection's loss is 0)
        batch = method.batch(task.train[:4], step=step)
        if (batch.rewards.view(-1, SHORT["group_size"]).std(1) > 0).any():
            break
    assert (batch.rewards.view(-1, SHORT["group_size"]).std(1) > 0).any(), "no batch with reward variance"
    grads = {}  # the gradient, not the loss: equal-length completions can give the same loss for any selection
    for stream in (0, 0, 1):
        batch.stream = stream
        model.zero_grad()
        method.loss(model, batch)[0].backward()
        grads.setdefault(stream, []).append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert torch.equal(grads[0][0], grads[0][1]) and not torch.equal(grads[1][0], grads[0][0])
