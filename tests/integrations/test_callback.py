"""AdaptersGeoCallback inside HF / TRL trainers on tiny-llama (CPU, a few steps each), and locked_for_trainer.

The trainer tests need TRL (in the dev extra: they fail, not skip, without it); the callback's own checks
do not (tests/test_layout.py checks that no module imports TRL at its top level).
Run: OMP_NUM_THREADS=1 python -m pytest -q tests/integrations/test_callback.py
"""

import json

import pytest
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base, merged_deltas
from adapters_geo.adapters.delta_linear import delta_layers
from adapters_geo.adapters.peft_files import lora_deltas
from adapters_geo.pipeline.analysis import run_geometry, run_trajectory
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.integrations import AdaptersGeoCallback, locked_for_trainer, projected_optimizer
from adapters_geo.models.specs import resolve_spec
from adapters_geo.storage.runfolder import RunFolder
from adapters_geo.tasks import TaskConfig, load_task
from adapters_geo.storage.snapshots import read_index, read_parts, tracked_steps


def examples():
    return load_task(TaskConfig(levels=[0], train_size=32, test_size=2)).train


def common(out, steps: int) -> dict:
    """Trainer arguments of every test: CPU, fp32, no evaluation, logging or checkpoints besides ours."""
    return dict(output_dir=str(out), max_steps=steps, learning_rate=1e-3, lr_scheduler_type="constant", logging_steps=1,
                save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
                seed=0, bf16=False, gradient_checkpointing=False)


class Capture(TrainerCallback):
    """merged_deltas of the model at every step end (after AdaptersGeoCallback's own on_step_end)."""

    def __init__(self):
        self.deltas = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.deltas[state.global_step] = merged_deltas(model)


def assert_trajectory_matches(out, captured: dict, start: dict, expected_steps: list) -> dict:
    """Tracked steps as expected; ΔW_t − ΔW_start stored exactly (fp32), to bf16 (t0) or as top-r factors."""
    index = read_index(RunFolder(out).trajectory_dir)
    assert sorted(map(int, index)) == expected_steps
    snapshots, spectra, _ = read_parts(RunFolder(out).trajectory_dir)
    last = expected_steps[-1]
    assert index[str(last)]["format"] == "fp32"
    for step in expected_steps:
        for name, stored in snapshots[step].items():
            moved = captured[step][name] - start.get(name, 0)
            if step == last:
                assert torch.equal(stored, moved), name  # the final snapshot is exact
            else:  # bf16 at t0, top-32 factors elsewhere (exact up to rounding at these ranks)
                assert torch.allclose(stored, moved, atol=1e-2 * moved.abs().max().item() + 1e-8), (step, name)
        assert set(spectra[step]) == set(snapshots[step])
    assert any(d.abs().max() > 0 for d in snapshots[last].values())  # it trained
    return index


def assert_run_folder(out, trainer: str, t0: int) -> None:
    """config.json / meta.json / metrics.jsonl as the toolkit's readers expect them; the trajectory geometry runs."""
    folder = RunFolder(out)
    config = folder.config_dict()
    assert config["trainer"] == trainer and folder.t0 == t0 and config["init"] is None
    assert "trl" in folder.meta()["versions"] and "git" in folder.meta()
    groups = {row["group"] for row in folder.metrics()}
    assert {"train", "geometry/overall", "tracking"} <= groups
    assert any("loss" in row for row in folder.metrics("train"))
    result = run_trajectory(out)
    assert result["early_step"] == t0 and len(result["steps"]) == len(read_index(folder.trajectory_dir))


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """4 SFTTrainer steps of a plain peft LoRA (base from from_pretrained, not load_base): (OUT, captured ΔW)."""
    from datasets import Dataset
    from peft import LoraConfig as PeftLoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out = tmp_path_factory.mktemp("sft") / "run"
    folder = resolve_spec("tiny-llama")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rows = [{"prompt": [{"role": "user", "content": e.prompt}], "completion": [{"role": "assistant", "content": e.solution}]}
            for e in examples()]
    capture = Capture()
    args = SFTConfig(per_device_train_batch_size=2, max_length=128, packing=False, **common(out.parent / "hf", 4))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(folder),
                         peft_config=PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
                         callbacks=[AdaptersGeoCallback(out, steps=[2, 3, 4], t0=2, tensorboard=False), capture])
    trainer.train()
    return out, capture.deltas


def test_sft_trainer_with_a_plain_peft_lora_writes_a_run_folder(sft_run):
    out, captured = sft_run
    assert_trajectory_matches(out, captured, {}, [2, 3, 4])
    assert_run_folder(out, "SFTTrainer", t0=2)
    folder = RunFolder(out)
    assert folder.config_dict()["adapter"]["kind"] == "lora" and folder.config_dict()["base"] is None
    assert (folder.adapter / "adapter_config.json").is_file()  # peft's own folder: no load_base identity to record
    for step, adapter in ((2, folder.t0_state / "adapter"), (4, folder.adapter)):
        saved = dict(lora_deltas(adapter)[0])
        assert saved.keys() == captured[step].keys()
        assert all(torch.allclose(saved[n], captured[step][n], atol=1e-7) for n in saved)


def test_grpo_trainer_with_the_dense_adapter_writes_a_run_folder(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    base = load_base("tiny-llama")
    model = attach_adapter(base.model, DenseConfig())

    def length_parity(completions, **kwargs):
        return [float(len(c[0]["content"]) % 2) for c in completions]

    out, capture, steps = tmp_path / "run", Capture(), 5
    args = GRPOConfig(per_device_train_batch_size=4, num_generations=4, max_completion_length=8, beta=0.0,
                      temperature=1.0, **common(tmp_path / "hf", steps))
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": e.prompt}]} for e in examples()])
    trainer = GRPOTrainer(model=model, reward_funcs=length_parity, args=args, train_dataset=prompts,
                          processing_class=base.tokenizer, callbacks=[AdaptersGeoCallback(out, tensorboard=False), capture])
    trainer.train()
    expected = tracked_steps(steps, None, 1)  # default_steps(5) plus t0 = round(0.2 · 5) = 1
    assert_trajectory_matches(out, capture.deltas, {}, expected)
    assert_run_folder(out, "GRPOTrainer", t0=1)
    folder = RunFolder(out)
    assert folder.config_dict()["arguments_class"] == "GRPOConfig" and folder.config_dict()["train"]["num_generations"] == 4
    assert json.loads((folder.adapter / "adapter.json").read_text())["kind"] == "dense"  # save_adapter: base identity kept
    assert (folder.t0_state / "adapter" / "adapter.json").is_file()
    assert "along" in run_trajectory(out)  # with a load_base model the endpoint metrics along the run are measured too
    assert run_geometry(out, progress=False).joinpath("geometry.json").is_file()  # and the endpoint geometry runs


def test_locked_for_trainer_stays_in_the_early_subspace(sft_run, tmp_path):
    """A plain transformers Trainer continues the SFT run's t0 adapter inside span(V), projected steps."""
    from datasets import Dataset
    from transformers import Trainer

    source, source_deltas = sft_run
    torch.manual_seed(0)
    base = load_base("tiny-llama")
    with pytest.raises(AdaptersGeoError, match="gradient"):  # gradient projection needs a dense source
        locked_for_trainer(base.model, source, mode="gradient")
    model = locked_for_trainer(base.model, source, basis="early", K=4)
    start = merged_deltas(model)  # ΔW_t0 of the source, read from its plain peft t0 adapter
    assert all(torch.allclose(start[n], source_deltas[2][n], atol=1e-7) for n in source_deltas[2])
    rows = [base.tokenizer(e.prompt + " " + e.solution) for e in examples()]
    data = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["input_ids"]} for r in rows])
    out, capture = tmp_path / "locked", Capture()
    trainer = Trainer(model=model, args=TrainingArguments(per_device_train_batch_size=1, **common(tmp_path / "hf", 3)),
                      train_dataset=data, callbacks=[AdaptersGeoCallback(out, steps=[1, 2, 3], tensorboard=False), capture])
    assert type(projected_optimizer(trainer)).__name__ == "ProjectedAdamW"
    trainer.train()
    assert_trajectory_matches(out, capture.deltas, start, [1, 2, 3])
    layers = {n: m.delta for n, m in delta_layers(model).items()}
    for name, moved in ((n, capture.deltas[3][n] - start[n]) for n in start):
        v = layers[name].right
        assert moved.abs().max() > 0
        assert torch.allclose(moved - moved @ v @ v.T, torch.zeros_like(moved), atol=1e-6)  # inside span(V)
    assert RunFolder(out).config_dict()["adapter"]["mode"] == "projected"


# ---- the callback's own rules, without a trainer


def tiny_lora():
    torch.manual_seed(0)
    return attach_adapter(load_base("tiny-llama").model, LoraConfig(r=2))


def drive(callback, model, args, zero: bool, steps: int = 3, first: int = 0) -> None:
    """The events a trainer sends, with a TrainerState of a process of rank 0 (zero) or not."""
    state, control = TrainerState(max_steps=steps, global_step=first, is_world_process_zero=zero), TrainerControl()
    callback.on_train_begin(args, state, control, model=model)
    for step in range(first + 1, steps + 1):
        state.global_step = step
        callback.on_step_end(args, state, control, model=model)
        callback.on_log(args, state, control, logs={"loss": 1.0, "eval_loss": 2.0, "note": "text"})
    callback.on_train_end(args, state, control, model=model)


def test_only_the_world_process_zero_writes(tmp_path):
    model, args = tiny_lora(), TrainingArguments(output_dir=str(tmp_path / "hf"), use_cpu=True, report_to="none")
    drive(AdaptersGeoCallback(tmp_path / "rank1"), model, args, zero=False)
    assert not (tmp_path / "rank1").exists()
    drive(AdaptersGeoCallback(tmp_path / "rank0", tensorboard=False), torch.nn.DataParallel(model), args, zero=True)
    folder = RunFolder(tmp_path / "rank0")
    assert sorted(map(int, read_index(folder.trajectory_dir))) == tracked_steps(3, None, 1) == [1, 3]
    assert {r["group"] for r in folder.metrics()} >= {"train", "hf_eval"} and folder.metrics("hf_eval")[0]["loss"] == 2.0
    assert (folder.adapter / "adapter.json").is_file()  # a load_base model wrapped by DataParallel was unwrapped


def test_dense_adapter_on_a_base_not_from_load_base_is_refused_before_training(tmp_path):
    from transformers import AutoModelForCausalLM

    model = attach_adapter(AutoModelForCausalLM.from_pretrained(resolve_spec("tiny-llama")), DenseConfig())
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), use_cpu=True, report_to="none")
    with pytest.raises(AdaptersGeoError, match="load_base"):
        drive(AdaptersGeoCallback(tmp_path / "run"), model, args, zero=True)


def test_a_resumed_run_measures_from_the_recorded_start(tmp_path):
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), use_cpu=True, report_to="none")
    first = model.model.layers[0].self_attn.q_proj.delta.weight
    with torch.no_grad():
        first.add_(0.5)  # a non-zero start: the run starts from an adapter
    drive(AdaptersGeoCallback(tmp_path / "run", tensorboard=False), model, args, zero=True, steps=2)
    with torch.no_grad():
        first.add_(0.25)  # moved on after the checkpoint the trainer resumes from
    drive(AdaptersGeoCallback(tmp_path / "run", tensorboard=False), model, args, zero=True, steps=4, first=2)
    snapshots = read_parts(RunFolder(tmp_path / "run").trajectory_dir)[0]
    assert torch.allclose(snapshots[4]["model.layers.0.self_attn.q_proj.weight"], torch.full_like(first, 0.25))
    with pytest.raises(AdaptersGeoError, match="tracker_state.pt is missing"):
        drive(AdaptersGeoCallback(tmp_path / "other"), model, args, zero=True, steps=4, first=2)
