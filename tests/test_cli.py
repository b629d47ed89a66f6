"""The `adapters-geo` command: dispatch, and one-line errors with exit code 2."""

import json

from adapters_geo import save_adapter
from adapters_geo.cli import main
from tests.adapters.test_kinds import adapted_model


def test_prepare_tiny_prints_its_folder(capsys):
    assert main(["prepare", "tiny-llama"]) == 0
    assert "tiny-llama:" in capsys.readouterr().out


def test_adapter_info_shows_kind_and_base(tiny, tmp_path, capsys):
    model, _ = adapted_model("lora", tiny, "none", steps=1)
    save_adapter(model, tmp_path / "ad")
    assert main(["adapter-info", str(tmp_path / "ad")]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["kind"] == "lora" and meta["base"]["spec"] == "tiny-llama" and meta["config"]["r"] == 4


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["adapter-info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adapters-geo: error:") and "fix:" in err and "\n" not in err


def test_train_set_overrides_are_recorded_in_config_json(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model: tiny-llama\nmethod: {name: sft, max_new_tokens: 4}\n"
                      "task: {levels: [0], train_size: 20, test_size: 2}\ntrain: {steps: 3, batch_size: 2, track_steps: []}\n")
    out = tmp_path / "out"
    assert main(["train", str(config), "--out", str(out), "--no-analysis", "--set", "train.steps=1", "--set", "train.lr=1e-3"]) == 0
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["steps"] == 1 and saved["lr"] == 1e-3


def test_a_reader_that_leaves_early_is_no_error(tmp_path):
    # `make experiment | head -3` ended in a BrokenPipeError traceback
    import os
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "adapters_geo.cli", "experiment"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    process.stdout.close()  # before the listing is written: every write meets a closed pipe
    err = process.stderr.read().decode()
    assert process.wait(timeout=600) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
