"""The one pipeline: `adapters-geo train` and `make experiment` write the same run folder and both reach the report.

Run: python -m pytest -q tests/pipeline/test_runner.py
"""

from pathlib import Path

import yaml

from adapters_geo.cli import main
from adapters_geo.experiments.execute import run_experiment
from adapters_geo.experiments.resolve import load_resolved
from adapters_geo.report.runs import write_report
from adapters_geo.storage.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[2]


def test_train_command_and_experiment_write_the_same_layout_and_both_reach_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(ROOT / "experiments"))
    monkeypatch.setenv("ADAPTERS_GEO_RUNS", str(tmp_path / "runs"))
    run_experiment("sft_init", smoke=True, progress=False)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(load_resolved("sft_init", smoke=True)))
    by_command = tmp_path / "runs" / "smoke" / "by_command"
    assert main(["train", str(config), "--out", str(by_command)]) == 0

    by_experiment = RunFolder(tmp_path / "runs" / "smoke" / "sft_init")
    layout = lambda folder: sorted(p.name for p in Path(folder).iterdir() if p.name != "experiment.json")
    assert layout(by_command) == layout(by_experiment.path)
    for folder in (RunFolder(by_command), by_experiment):
        assert folder.done() and folder.geometry() and folder.trajectory() and folder.t0 == 2
    untimed = lambda folder: {k: v for k, v in folder.done()["final_eval"].items() if k != "eval_seconds"}
    assert untimed(RunFolder(by_command)) == untimed(by_experiment)  # same config, same run
    assert set(by_experiment.done()["seconds"]) == {"total", "evaluation", "tracking", "steps", "analysis"}

    text = write_report(tmp_path / "runs" / "smoke").read_text()
    assert "| by_command | sft | arithmetic | dense |" in text and "| sft_init | sft | arithmetic | dense |" in text
    assert by_experiment.trajectory()["early_step"] == 2  # t0, stored in full
