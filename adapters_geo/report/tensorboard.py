"""What a run's TensorBoard folder (tb/) shows beyond the loop's scalars and histograms (training/loggers.py).

- HPARAMS: the run's own tb/ is one session, one row: the hyperparameters that tell runs apart and,
  as metrics, the last `eval/outcome` and `eval/accuracy` scalars of the run (its final held-out
  evaluation). Written with the hparams plugin's summary protos into the events of the training
  writer itself (torch's `add_hparams` writes a separate sub-run per call). Every run writes the same
  experiment definition (HPARAMS, METRICS), so the table has the same columns whichever run
  TensorBoard reads it from; when the pipeline finishes, a session-end record marks the run done.
- TEXT: the resolved config.json, tag `config`.
- IMAGES: the figures the analysis writes (FIGURES), at the run's last step.
Figures and the session's end come from writers opened after training: later events files, so a live
TensorBoard, which only follows the newest file of a folder, misses nothing of the training.
"""

import hashlib
import json
import time
from pathlib import Path

HPARAMS = {  # name -> description: the HPARAMS tab's columns
    "run": "the run's name (the experiment; a locking arm: experiment seed S arm)",
    "model": "model spec",
    "method": "sft | opd | rlvr",
    "adapter": "dense | lora | locked",
    "quant": "none | 8bit | 4bit",
    "arm": "locking arm (unconstrained | frozen | early | random | final); '-' when not a continuation from t0",
    "basis": "locking arm's basis (early | random | final); '-' when not locked",
    "mode": "locking arm's mode (projected | gradient | adapter); '-' when not locked",
    "lr": "peak learning rate",
    "seed": "training seed",
    "steps": "last step of the run",
    "batch_size": "prompts per step",
    "outcome_kind": "what eval/outcome is: nll (sft), kl to the teacher (opd), -reward (rlvr)",
}
NUMBERS = {"lr", "seed", "steps", "batch_size"}
SHOWN = {"run", "method", "adapter", "arm", "lr"}  # the table's 5 default columns (TensorBoard shows 5, `differs` first)
METRICS = {
    "eval/outcome": "final held-out outcome (lower is better; its kind is the outcome_kind column)",
    "eval/accuracy": "final held-out greedy accuracy",
}
FIGURES = {  # tag -> file in the run folder
    "figures/geometry_heatmaps": "geometry/heatmaps.png",
    "figures/geometry_spectra": "geometry/spectra.png",
    "figures/trajectory": "trajectory_geometry/trajectory.png",
}


def _plugin_summary(tag: str, data):
    """A summary proto carrying hparams plugin data (as the plugin's own summary_v2 writes them)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    content = metadata.create_summary_metadata(data)
    return Summary(value=[Summary.Value(tag=tag, metadata=content, tensor=metadata.NULL_TENSOR)])


def hparams_summaries(values: dict, session: str) -> list:
    """The experiment definition and this session's hparams (summary protos); `values` has the HPARAMS keys.

    `session`: the row's name (its trial id); rows with the same name are merged by TensorBoard.
    """
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb

    unknown = sorted(set(values) - set(HPARAMS))
    if unknown:
        raise KeyError(f"not an hparam of HPARAMS: {unknown}")
    kind = lambda name: api_pb2.DATA_TYPE_FLOAT64 if name in NUMBERS else api_pb2.DATA_TYPE_STRING
    # `differs` is how TensorBoard picks the columns shown before any is ticked: set on the ones that tell runs apart
    experiment = api_pb2.Experiment(
        hparam_infos=[api_pb2.HParamInfo(name=name, description=text, type=kind(name), differs=name in SHOWN)
                      for name, text in HPARAMS.items()],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), description=text) for tag, text in METRICS.items()])
    return [_plugin_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
            hparams_pb(values, trial_id=session)]


def session_end_summary():
    """The hparams plugin's record of a finished session (status SUCCESS)."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return _plugin_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def write_header(writer, hparams: dict, config_file: Path) -> None:
    """Into an open SummaryWriter: the hparams row and config.json as text (step 0).

    The row is named after the run and, for uniqueness (a SMOKE run, an archived one), a hash of its folder.
    """
    config_file = Path(config_file)
    session = f"{hparams['run']} · {hashlib.sha1(str(config_file.parent.resolve()).encode()).hexdigest()[:6]}"
    for summary in hparams_summaries(hparams, session):
        writer.file_writer.add_summary(summary)
    if config_file.is_file():
        text = json.dumps(json.loads(config_file.read_text()), indent=1)
        writer.add_text("config", f"```json\n{text}\n```", 0)  # the text plugin renders fenced code
    writer.flush()


def write_figures(tb_folder: Path, run_folder: Path, step: int) -> list[str]:
    """Into tb_folder: the run's figures that exist (FIGURES) as images at `step`; returns their tags."""
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    found = {tag: Path(run_folder) / name for tag, name in FIGURES.items() if (Path(run_folder) / name).is_file()}
    if found:
        writer = SummaryWriter(str(tb_folder))
        for tag, path in found.items():
            with Image.open(path) as image:
                writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        writer.close()
    return list(found)


def write_session_end(tb_folder: Path, step: int) -> None:
    """Into tb_folder: the hparams session's end (the run finished)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tb_folder))
    writer.file_writer.add_summary(session_end_summary(), step)
    writer.close()
