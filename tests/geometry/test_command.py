"""`adapters-geo geometry` on saved tiny checkpoints and adapters: outputs and refusals."""

import json

import pytest
import torch

from adapters_geo import DenseConfig, LoraConfig, attach_adapter, load_base, merged_deltas, save_adapter
from adapters_geo.cli import main
from adapters_geo.pipeline.analysis import analyse
from adapters_geo.pipeline.sources import adapter_source, checkpoint_source
from adapters_geo.geometry.suite import Settings
from tests.conftest import train_steps

OUTPUTS = {"geometry.json", "summary.md", "heatmaps.png", "spectra.png"}


def merged_checkpoint(tmp_path, name="tuned", steps=4):
    """A full checkpoint: tiny-llama with a trained dense update merged in."""
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    train_steps(model, steps, lr=1e-3)
    deltas = merged_deltas(model)
    base = load_base("tiny-llama")
    with torch.no_grad():
        for param_name, param in base.model.named_parameters():
            if param_name in deltas:
                param += deltas[param_name]
    base.model.save_pretrained(tmp_path / name)
    return tmp_path / name, deltas


def test_two_checkpoints_give_json_table_and_plots(tmp_path, capsys):
    tuned, deltas = merged_checkpoint(tmp_path)
    out = tmp_path / "geo"
    assert main(["geometry", "tiny-llama", str(tuned), "--out", str(out), "--k", "4"]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS
    result = json.loads((out / "geometry.json").read_text())
    assert set(result) == {"meta", "matrices", "by_type", "by_layer", "by_block", "overall"}
    assert {"reference", "tuned", "quant", "adapter_kind", "k", "K", "r", "alpha", "eta"} <= set(result["meta"])
    assert len(result["matrices"]) == 14 and set(result["by_type"]) == {"q", "k", "v", "o", "gate", "up", "down"}
    norms = {n: row["update_norm"] for n, row in result["matrices"].items()}
    for name, delta in deltas.items():
        assert norms[name] == pytest.approx(delta.norm().item(), rel=1e-4)
    assert "| bf16 sparsity |" in (out / "summary.md").read_text()
    assert (out / "heatmaps.png").stat().st_size > 10_000


def test_adapter_on_quantized_base_uses_the_dequantized_reference(tmp_path):
    model = attach_adapter(load_base("tiny-llama", "4bit").model, LoraConfig(r=4))
    train_steps(model, 4)
    save_adapter(model, tmp_path / "ad")
    source = adapter_source("tiny-llama", str(tmp_path / "ad"))
    result = analyse(source, Settings(k=4), progress=False)
    assert result["meta"]["quant"] == "4bit" and result["meta"]["adapter_rank"] == 4
    assert all(row["rank_at_90"] <= 4 for row in result["matrices"].values())
    from adapters_geo import base_weights

    w0 = base_weights(model)
    name = next(iter(w0))
    assert result["matrices"][name]["update_norm_rel"] == pytest.approx(
        merged_deltas(model)[name].norm().item() / w0[name].norm().item(), rel=1e-5
    )


def test_peft_lora_folder_gives_the_same_deltas(tmp_path):
    model = attach_adapter(load_base("tiny-llama").model, LoraConfig(r=4, alpha=8))
    train_steps(model, 3)
    model.save_pretrained(tmp_path / "peft")
    source = adapter_source("tiny-llama", str(tmp_path / "peft"))
    from_peft = {name: delta for name, _, delta in source.pairs()}
    for name, delta in merged_deltas(model).items():
        torch.testing.assert_close(from_peft[name], delta, rtol=1e-5, atol=1e-7)


def test_same_checkpoint_gives_a_zero_update(tmp_path):
    result = analyse(checkpoint_source("tiny-llama", "tiny-llama"), Settings(k=4), progress=False)
    overall = result["overall"]
    assert overall["sparsity_bf16"]["mean"] == 1.0 and overall["update_norm"]["max"] == 0.0
    assert overall["rotation_right_max_deg"]["max"] < 1e-4


@pytest.mark.parametrize("problem", ["bad_path", "architecture", "shape"])
def test_bad_inputs_fail_clearly_without_output(tmp_path, capsys, problem):
    tuned, _ = merged_checkpoint(tmp_path, steps=1)
    if problem == "bad_path":
        tuned = tmp_path / "does-not-exist"
    else:
        config = json.loads((tuned / "config.json").read_text())
        if problem == "architecture":
            config["num_hidden_layers"] = 3
        (tuned / "config.json").write_text(json.dumps(config))
        if problem == "shape":
            from safetensors.torch import load_file, save_file

            tensors = load_file(tuned / "model.safetensors")
            tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(64, 64)
            save_file(tensors, str(tuned / "model.safetensors"))
    out = tmp_path / "geo"
    capsys.readouterr()
    assert main(["geometry", "tiny-llama", str(tuned), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fix:" in err
    assert {"bad_path": "unknown model", "architecture": "architectures differ", "shape": "with shape"}[problem] in err
    assert not out.exists() and not list(tmp_path.glob(".geo*"))


def test_existing_output_is_never_overwritten_silently(tmp_path, capsys):
    tuned, _ = merged_checkpoint(tmp_path, steps=1)
    out = tmp_path / "geo"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    assert main(["geometry", "tiny-llama", str(tuned), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").read_text() == "earlier result"


def test_adapter_from_another_base_is_refused(tmp_path, capsys):
    model = attach_adapter(load_base("tiny-llama").model, DenseConfig())
    save_adapter(model, tmp_path / "ad")
    tuned, _ = merged_checkpoint(tmp_path, steps=1)
    assert main(["geometry", str(tuned), "--adapter", str(tmp_path / "ad"), "--out", str(tmp_path / "g")]) == 2
    assert "was trained on 'tiny-llama'" in capsys.readouterr().err


def test_trajectory_command_on_a_trained_run(tmp_path, capsys):
    from adapters_geo.config.run import run_config_from_dict
    from adapters_geo.pipeline.runner import run_training

    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 100, "test_size": 4},
        "train": {"steps": 10, "batch_size": 4, "lr": 3e-3, "track_steps": [1, 2, 5, 10]},
    })
    run_training(config, tmp_path / "run", progress=False)
    assert main(["trajectory", str(tmp_path / "run"), "--K", "4"]) == 0
    result = json.loads((tmp_path / "run" / "trajectory_geometry" / "trajectory.json").read_text())
    assert result["steps"] == [1, 2, 5, 10] and result["early_step"] == 2
    overall = result["summary"]["all"]["steps"]
    assert overall[-1]["sim_right"] == pytest.approx(1.0) and 0 <= overall[0]["sim_right"] <= 1
    assert set(result["summary"]) == {"attention", "mlp", "all"}
    assert (tmp_path / "run" / "trajectory_geometry" / "trajectory.png").stat().st_size > 5000
    assert main(["trajectory", str(tmp_path)]) == 2 and "has no trajectory" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated weights", "malformed config"])
def test_a_damaged_tuned_checkpoint_is_one_line_without_output(tmp_path, capsys, damage):
    tuned, _ = merged_checkpoint(tmp_path, steps=1)
    if damage == "truncated weights":
        (file,) = tuned.glob("*.safetensors")
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        fragment = "cannot be read"
    else:
        (tuned / "config.json").write_text('{"model_type": ')
        fragment = "config.json is not valid JSON"
    capsys.readouterr()  # the checkpoint's own progress bars
    assert main(["geometry", "tiny-llama", str(tuned), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "truncated or" in err and err.count("\n") == 1 and not (tmp_path / "g").exists(), err
