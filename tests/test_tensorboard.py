"""A run's TensorBoard events, read back as TensorBoard reads them (EventAccumulator) after a tiny run
through runner.run: the HPARAMS row in the run itself, config.json as text, the analysis figures as
images, the tracked-step geometry scalars and the default evaluation curve.

Run: python -m pytest -q tests/test_tensorboard.py
"""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from adapters_geo.config.run import run_config_from_dict
from adapters_geo.report.tensorboard import FIGURES, HPARAMS, METRICS, SHOWN
from adapters_geo.pipeline.runner import run
from adapters_geo.storage.runfolder import RunFolder

STEPS = 8


def events(tb) -> EventAccumulator:
    accumulator = EventAccumulator(str(tb), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def read_hparams(tb) -> dict:
    """{name: value} of the session start record in `tb`'s events."""
    content = events(tb).PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 50, "test_size": 4},
        "method": {"name": "sft", "max_new_tokens": 8},
        "train": {"steps": STEPS, "batch_size": 2, "lr": 1e-3, "seed": 3},
    })
    run(config, out, progress=False, label="tiny sft")
    return RunFolder(out)


def test_the_run_is_one_hparams_session_with_its_final_metrics(finished):
    assert [p for p in finished.tensorboard.iterdir() if p.is_dir()] == []  # no sub-run per hparams write
    hparams = read_hparams(finished.tensorboard)
    assert set(hparams) == set(HPARAMS)
    assert hparams["run"] == "tiny sft" and hparams["method"] == "sft" and hparams["adapter"] == "dense"
    assert hparams["lr"] == pytest.approx(1e-3) and hparams["seed"] == 3 and hparams["steps"] == STEPS
    assert hparams["basis"] == hparams["arm"] == "-" and hparams["outcome_kind"] == "nll" and hparams["quant"] == "none"
    content = events(finished.tensorboard).PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos] == list(METRICS)
    assert {h.name for h in experiment.hparam_infos if h.differs} == SHOWN  # the columns shown before any is ticked
    assert metadata.SESSION_END_INFO_TAG in content  # the pipeline finished
    scalars = events(finished.tensorboard)
    final = finished.done()["final_eval"]
    for tag, key in (("eval/outcome", "outcome"), ("eval/accuracy", "accuracy")):
        assert scalars.Scalars(tag)[-1].step == STEPS and scalars.Scalars(tag)[-1].value == pytest.approx(final[key])


def test_config_text_and_analysis_figures(finished):
    accumulator = events(finished.tensorboard)
    text = accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.removeprefix("```json\n").removesuffix("\n```")) == finished.config_dict()
    assert set(accumulator.Tags()["images"]) == set(FIGURES)
    for tag in FIGURES:
        image = accumulator.Images(tag)[-1]
        assert image.step == STEPS and image.width > 100 and image.encoded_image_string[:4] == b"\x89PNG"


def test_tracked_steps_log_the_trajectory_scalars_and_evaluation_is_a_curve(finished):
    accumulator = events(finished.tensorboard)
    tracked = sorted(int(s) for s in json.loads((finished.trajectory_dir / "index.json").read_text()))
    for key in ("sim_right_to_first", "effective_rank", "principal_energy", "rotation_right_max_deg",
                "sparsity_bf16", "stable_rank"):
        assert [e.step for e in accumulator.Scalars(f"geometry/overall/{key}")] == tracked, key
    assert accumulator.Scalars("geometry/overall/sim_right_to_first")[0].value == pytest.approx(1, abs=1e-5)
    steps = [e.step for e in accumulator.Scalars("eval/outcome")]
    assert steps == [0, 2, 4, 6, 8] and finished.config_dict()["train"]["eval_every"] == 2  # default: steps // 4


def test_a_new_events_file_sorts_after_every_events_file_already_there(tmp_path):
    # TensorBoard reads a folder's events files in name order (whole seconds, host, pid): a resume within the
    # second of a killed run's last file, with a pid that sorts lower, would be read first and its purge lost
    import socket
    import time

    from adapters_geo.training.loggers import TensorBoardLogger

    # this second, this host, a pid no real one sorts after: only a later second sorts after it
    last = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.99999999.0"
    (tmp_path / last).write_bytes(b"")
    TensorBoardLogger(tmp_path, purge_step=1).close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == last, names
