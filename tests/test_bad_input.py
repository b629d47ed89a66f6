"""Every bad value a user can type is one line (exit code 2) naming the file or --set, the key, the value and
what is allowed, before any training, and nothing is written to --out or runs/.

Run: python -m pytest -q tests/test_bad_input.py
"""

import contextlib
import json

import pytest

from adapters_geo.cli import main
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.config.run import load_run_config
from adapters_geo.experiments.execute import _state
from adapters_geo.experiments.resolve import experiment_hash, load_resolved

TINY = "model: tiny-llama\ntask: {levels: [0], train_size: 20, test_size: 2}\n"

# (YAML text of the run file, --set overrides, fragment of the one-line error)
TRAIN = [
    # numbers and types
    ("train: {lr: fast}", [], "train.lr = 'fast' is not a number — fix: set train.lr to a number > 0"),
    ("train: {steps: ten}", [], "train.steps = 'ten' is not an integer — fix: set train.steps to an integer ≥ 1"),
    ("train: {steps: 2.5}", [], "train.steps = 2.5 is not an integer"),
    ("train: {lr: -1}", [], "train.lr = -1 is not allowed — fix: set train.lr to a number > 0"),
    ("train: {lr: 0}", [], "train.lr = 0 is not allowed"),
    ("train: {batch_size: 0}", [], "train.batch_size = 0 is not allowed — fix: set train.batch_size to an integer ≥ 1"),
    ("task: {train_size: 0}", [], "task.train_size = 0 is not allowed — fix: set task.train_size to an integer ≥ 1"),
    ("task: {test_size: 0}", [], "task.test_size = 0 is not allowed"),
    ("train: {checkpoint_every: 0}", [], "train.checkpoint_every = 0 is not allowed"),
    ("train: {eval_batch: 0}", [], "train.eval_batch = 0 is not allowed"),
    ("task: {levels: 0}", [], "task.levels = 0 is not a list — fix: set task.levels to a non-empty list of 0 | 1 | 2 | 3"),
    ("task: {levels: [7]}", [], "task.levels = [7] is not allowed — fix: set task.levels to a non-empty list of 0 | 1 | 2 | 3"),
    ("task: {levels: []}", [], "task.levels = [] is not allowed"),
    ("train: {steps: -5}", [], "train.steps = -5 is not allowed"),
    ("train: {lr: .inf}", [], "train.lr = inf is not a finite number — fix: set train.lr to a number > 0"),
    ("train: {grad_clip: .nan}", [], "train.grad_clip = nan is not a finite number"),
    ("train: {seed: 100000000000000}", [], "train.seed = 100000000000000 is not allowed — fix: set train.seed to an integer in [0, 2147483648)"),
    ("task: {seed: -1}", [], "task.seed = -1 is not allowed"),
    ("train: {steps: 10, warmup_steps: 20}", [], "train.warmup_steps = 20 is more than steps = 10 — fix: set train.warmup_steps to at most 10"),
    ("train: {grad_clip: -1}", [], "train.grad_clip = -1 is not allowed — fix: set train.grad_clip to a number ≥ 0"),
    ("train: {track_steps: [0, 5]}", [], "train.track_steps = [0, 5] is not allowed — fix: set train.track_steps to a list of integers > 0"),
    ("method: {token_fraction: 0}", [], "method.token_fraction = 0 is not allowed — fix: set method.token_fraction to a number in (0, 1]"),
    ("method: {token_fraction: 1.5}", [], "method.token_fraction = 1.5 is not allowed"),
    ("method: {name: opd, teacher: self_hint, mix_alpha: 1.5}", [], "method.mix_alpha = 1.5 is not allowed — fix: set method.mix_alpha to a number in [0, 1] (or null)"),
    ("method: {name: opd, teacher: self_hint, mix_alpha: 0.5, full_vocab_kl: true}", [], "method.full_vocab_kl = true cannot be mixed with RLVR advantages"),
    ("method: {name: sft, teacher_hint: true}", [], "method.teacher_hint = true but this method has no teacher to give the hint to — fix: remove method.teacher_hint, or set method.teacher"),
    ("method: {group_size: 0}", [], "method.group_size = 0 is not allowed"),
    ("method: {temperature: -1}", [], "method.temperature = -1 is not allowed — fix: set method.temperature to a number > 0"),
    ("method: {max_new_tokens: 0}", [], "method.max_new_tokens = 0 is not allowed"),
    ("adapter: {kind: lora, r: 0}", [], "adapter.r = 0 is not allowed — fix: set adapter.r to an integer ≥ 1"),
    ("adapter: {kind: lora, alpha: 0}", [], "adapter.alpha = 0 is not allowed — fix: set adapter.alpha to a number > 0"),
    ("adapter: {kind: lora, dropout: 1.5}", [], "adapter.dropout = 1.5 is not allowed — fix: set adapter.dropout to a number in [0, 1)"),
    ("adapter: {kind: lora, targets: 3}", [], "adapter.targets = 3 is not allowed — fix: set adapter.targets to all-linear, or a list"),
    ("model: 3", [], "model = 3 is not text"),
    # enums, with the allowed values
    ("train: {schedule: cosin}", [], "train.schedule = 'cosin' is not allowed — fix: set train.schedule to one of constant | cosine | linear"),
    ("train: {optimizer: adam}", [], "train.optimizer = 'adam' is not allowed — fix: set train.optimizer to one of adamw | adamw8bit | sgd"),
    ("adapter: {kind: rank1}", [], "adapter.kind = 'rank1' is not allowed — fix: set adapter.kind to one of dense | lora | locked"),
    ("adapter: lora", [], "adapter = 'lora' is not allowed — fix: set adapter to a mapping"),
    ("quant: 3bit", [], "quant = '3bit' is not allowed — fix: set quant to one of none | 8bit | 4bit"),
    ("method: {name: dpo}", [], "method.name = 'dpo' is not allowed — fix: set method.name to one of sft | opd | rlvr"),
    ("method: {teacher_quant: 2bit}", [], "method.teacher_quant = '2bit' is not allowed — fix: set method.teacher_quant to one of none | 8bit | 4bit"),
    ("method: {token_select: best}", [], "method.token_select = 'best' is not allowed — fix: set method.token_select to one of random | top_gap"),
    ("method: {name: opd, teacher: self_hint, rollout_source: stale}", [],
     "method.rollout_source = 'stale' is not allowed — fix: set method.rollout_source to student, teacher (off-policy) or stale:N"),
    ("method: {sft_source: model}", [], "method.sft_source = 'model' is not allowed — fix: set method.sft_source to one of reference | teacher"),
    ("task: {reward: vibes}", [], "task.reward = 'vibes' is not allowed — fix: set task.reward to one of exact | exact_format"),
    ("task: {name: poems}", [], "task.name = 'poems' is not allowed — fix: set task.name to one of arithmetic | file"),
    ("adapter: {kind: dense, dtype: float16}", [], "adapter.dtype = 'float16' is not allowed — fix: set adapter.dtype to one of float32 | bfloat16"),
    ("adapter: {kind: locked, source: x, basis: late}", [], "adapter.basis = 'late' is not allowed — fix: set adapter.basis to one of early | random | final"),
    # rules between fields
    ("method: {name: opd}", [], "method.teacher is missing: method 'opd' with these options needs a teacher — fix: set method.teacher to a model spec"),
    ("method: {name: sft, sft_source: teacher}", [], "method.teacher is missing: method 'sft' with these options needs a teacher"),
    ("method: {name: rlvr, group_size: 1}", [], "method.group_size = 1: rlvr needs group_size ≥ 2"),
    ("method: {name: sft, token_fraction: 0.5, token_select: top_gap}", [], "method.token_select = 'top_gap' ranks tokens by the teacher gap but there is no teacher"),
    ("task: {name: file}", [], "task.path is missing: task 'file' reads its examples from a path — fix: set task.path to"),
    ("adapter: {kind: locked}", [], "adapter.source is missing"),
    # ranks against the model's shapes (tiny-llama: k_proj is 32×64), checked once the base is loaded
    (TINY + "adapter: {kind: lora, r: 999}", [], "adapter.r = 999 is larger than this model allows: model.layers.0.self_attn.k_proj is 32×64 — fix: set adapter.r to at most 32"),
    (TINY + "adapter: {kind: locked, source: nowhere, K: 33}", [], "adapter.K = 33 is larger than this model allows: model.layers.0.self_attn.k_proj is 32×64 — fix: set adapter.K to at most 32"),
    # the file itself
    ("train: {lr: 1.0e-4}\ntrain: {lr: 1.0e-5}", [], "run.yaml repeats the key 'train' at line 2 — fix: keep one of the two lines"),
    ("train:\n  lr: 1e-4\n  steps: 3\n  lr: 2e-4", [], "run.yaml repeats the key 'lr' at line 4"),
    ("train: !!python/object:os.system {}", [], "run.yaml uses a YAML tag that is not allowed (!!python/object:os.system) at line 1"),
    ("", [], "run.yaml is empty"),
    ("# nothing but a comment", [], "run.yaml is empty"),
    ("- a\n- b", [], "run.yaml does not hold a mapping of sections (it holds a list)"),
    ("train: {lr: 1e-4\n", [], "run.yaml is not valid YAML at line"),
    # unknown keys, dead fields
    ("task: {system_prompt: hi}", [], "unknown key 'system_prompt' in "),
    ("bogus: 1", [], "unknown key 'bogus' in "),
    ("train: {lerning_rate: 1}", [], "unknown key 'lerning_rate' in "),
    # --set overrides
    (TINY, ["train.lr=fast"], "--set train.lr=fast: train.lr = 'fast' is not a number — fix: set train.lr to a number > 0"),
    (TINY, ["train.lr=-1e-5"], "--set train.lr=-1e-5: train.lr = -1e-05 is not allowed"),
    (TINY, ["adapter.r=16"], "unknown key 'r' in --set adapter.r=16: adapter — fix: use some of: dtype, kind, targets"),
    (TINY, ["train.lrr=1e-5"], "unknown key 'lrr' in --set train.lrr=1e-5: train — fix: did you mean 'lr'?"),
    (TINY, ["lr"], "--set 'lr' is not KEY=VALUE"),
    (TINY, ["train.steps=[1"], "--set train.steps=[1: the value is not valid YAML"),
    (TINY, ["model.name=x"], "--set model.name=x: model is 'tiny-llama', not a section"),
]


@pytest.mark.parametrize("text, sets, fragment", TRAIN, ids=[f"{i}:{row[2][:40]}" for i, row in enumerate(TRAIN)])
def test_bad_run_file_is_one_line_and_writes_nothing(tmp_path, capsys, text, sets, fragment):
    path = tmp_path / "run.yaml"
    path.write_text(text + "\n" if text else "")
    out = tmp_path / "out"
    argv = ["train", str(path), "--out", str(out)] + [arg for s in sets for arg in ("--set", s)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]  # loading a base may print a progress bar first
    assert err.count("adapters-geo: error:") == 1 and line.startswith("adapters-geo: error:")
    assert fragment in line, line
    assert not out.exists()


def test_yaml_numbers_and_strings_of_numbers_parse(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 1e-4, steps: 1e3, grad_clip: 3e-1}\nadapter: {kind: lora, r: '8', alpha: 3E1}\n")
    config = load_run_config(path)
    assert (config.train.lr, config.train.steps, config.train.grad_clip) == (1e-4, 1000, 0.3)
    assert (config.adapter.r, config.adapter.alpha) == (8, 30.0)
    again = load_run_config(path, {"train.lr": "1e-5", "adapter.r": "16", "task.levels": "[0, 1]"})
    assert (again.train.lr, again.adapter.r, again.task.levels) == (1e-5, 16, [0, 1])
    assert again.to_dict()["train"]["lr"] == 1e-5  # what config.json records


TRAIN_EXPERIMENT = "# make experiment NAME=tr\n# A tiny run.\n" + TINY + "train: {steps: 2, batch_size: 2}\n"

# (experiment files {name: text}, argv after `experiment`, fragment of the one-line error)
EXPERIMENTS = [
    ({"lk": "kind: lock\nsourc: experiment:tr\n", "tr": TRAIN_EXPERIMENT}, ["lk"], "unknown key 'sourc' in "),
    ({"lk": "kind: lock\nsourc: experiment:tr\n"}, ["lk"], "lk.yaml — fix: did you mean 'source'?"),
    ({"lk": "kind: lock\nsource: runs/tr\n"}, ["lk"], "lk.yaml: source = 'runs/tr' is not allowed — fix: set source to experiment:NAME"),
    ({"lk": "kind: lock\nsource: experiment:tr\nbases: [early, late]\n", "tr": TRAIN_EXPERIMENT}, ["lk"],
     "lk.yaml: bases = ['early', 'late'] is not allowed — fix: set bases to a non-empty list of unconstrained | frozen | early | random | final"),
    ({"lk": "kind: lock\nsource: experiment:tr\nK: 0\n", "tr": TRAIN_EXPERIMENT}, ["lk"], "lk.yaml: K = 0 is not allowed — fix: set K to an integer ≥ 1"),
    ({"lk": "kind: lock\nsource: experiment:tr\nmode: fast\n", "tr": TRAIN_EXPERIMENT}, ["lk"],
     "lk.yaml: mode = 'fast' is not allowed — fix: set mode to one of projected | gradient | adapter"),
    ({"a": "kind: bogus\n"}, ["a"], "a.yaml: kind = 'bogus' is not allowed — fix: set kind to one of train | lock"),
    ({"a": TRAIN_EXPERIMENT + "seeds: [1, 2]\n"}, ["a"], "unknown key 'seeds' in"),
    ({"a": TINY + "init: experiment:b\n", "b": TINY + "init: experiment:a\n"}, ["a"], "experiments depend on each other in a cycle: a -> b -> a"),
    ({"a": TINY + "init: experiment:a\n"}, ["a"], "experiments depend on each other in a cycle: a -> a"),
    ({"top": TINY + "init: experiment:dep\n", "dep": "train: {lr: fast}\n"}, ["top"], "dep.yaml: train.lr = 'fast' is not a number"),
    ({"a": TINY + "init: experiment:nope\n"}, ["a"], "a.yaml refers to experiment:nope: unknown experiment 'nope' — fix: use one of: a"),
    ({"a": TINY + "init: experiment:../b\n"}, ["a"], "a.yaml refers to experiment:../b: '../b' is not an experiment name"),
    ({"tr": TRAIN_EXPERIMENT}, ["../../x"], "'../../x' is not an experiment name — fix: use a file name of the experiments folder"),
    ({"tr": TRAIN_EXPERIMENT}, ["/etc/passwd"], "'/etc/passwd' is not an experiment name"),
    ({"tr": TRAIN_EXPERIMENT}, [".tr"], "'.tr' is not an experiment name"),
    ({"tr": TRAIN_EXPERIMENT}, ["tr", "--set", "train.lr=-1"], "--set train.lr=-1: train.lr = -1 is not allowed"),
    ({"tr": TRAIN_EXPERIMENT}, ["tr", "--set", "train.lrr=1"], "unknown key 'lrr' in --set train.lrr=1: train"),
    ({"tr": "train: {steps: 2}\ntrain: {steps: 3}\n"}, ["tr"], "tr.yaml repeats the key 'train' at line 2"),
    ({"tr": ""}, ["tr"], "tr.yaml is empty"),
    ({"cl": "kind: claims\nsources: [experiment:tr]\n", "tr": TRAIN_EXPERIMENT}, ["cl"],
     "cl.yaml: sources = ['experiment:tr'] is not allowed — fix: set sources to a list of at least 2 texts"),
]


@pytest.mark.parametrize("files, argv, fragment", EXPERIMENTS, ids=[f"{i}:{row[2][:40]}" for i, row in enumerate(EXPERIMENTS)])
def test_bad_experiment_is_one_line_and_runs_nothing(tmp_path, monkeypatch, capsys, files, argv, fragment):
    folder = tmp_path / "experiments"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(folder))
    monkeypatch.setenv("ADAPTERS_GEO_RUNS", str(tmp_path / "runs"))
    assert main(["experiment", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapters-geo: error:") and err.count("\n") == 1
    assert fragment in err, err
    assert not (tmp_path / "runs").exists()


def test_no_experiments_folder_names_the_places_tried(tmp_path, monkeypatch, capsys):
    from adapters_geo.experiments import registry

    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(tmp_path / "missing"))
    assert main(["experiment", "x"]) == 2
    assert f"no experiments folder found (tried {tmp_path / 'missing'})" in capsys.readouterr().err
    monkeypatch.delenv("ADAPTERS_GEO_EXPERIMENTS")
    monkeypatch.chdir(tmp_path)
    assert registry.experiments_dir() == registry.PROJECT / "experiments"  # the installed package's project
    monkeypatch.setattr(registry, "PROJECT", tmp_path / "project")
    assert main(["experiment", "x"]) == 2
    err = capsys.readouterr().err
    assert f"(tried experiments, {tmp_path / 'project' / 'experiments'}, " in err  # then where a wheel puts them
    assert "share/adapters_geo/experiments)" in err and err.count("\n") == 1


def test_listing_gives_each_experiment_its_description(tmp_path, monkeypatch, capsys):
    (tmp_path / "tr.yaml").write_text(TRAIN_EXPERIMENT)
    (tmp_path / "described.yaml").write_text("# make experiment NAME=described\n" + TINY + "description: From the key.\n")
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(tmp_path))
    assert main(["experiment"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["described", "From", "the", "key."] and lines[2].split() == ["tr", "A", "tiny", "run."]


def test_overrides_change_the_named_experiment_only_and_its_hash(tmp_path, monkeypatch):
    (tmp_path / "dep.yaml").write_text(TRAIN_EXPERIMENT)
    (tmp_path / "top.yaml").write_text(TINY + "init: experiment:dep\n")
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(tmp_path))
    sets = {"train.steps": "200", "train.lr": "1e-5"}
    assert load_resolved("top", False, sets)["train"] == {"steps": 200, "lr": 1e-5}
    assert experiment_hash("top", False, sets) != experiment_hash("top", False)
    assert experiment_hash("top", False, sets) != experiment_hash("top", False, {"train.steps": "300", "train.lr": "1e-5"})
    assert experiment_hash("dep", False) == experiment_hash("dep", False)  # the dependency is not overridden
    assert load_resolved("dep", False)["train"] == {"steps": 2, "batch_size": 2}


def test_a_folder_holding_only_experiment_json_starts_afresh(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "experiment.json").write_text(json.dumps({"name": "x", "hash": "old"}))
    assert _state(folder, "new", False, "x") == "fresh"  # it failed before training: the corrected file may run
    (folder / "config.json").write_text("{}")
    with pytest.raises(Exception, match="was run with another config"):
        _state(folder, "new", False, "x")


def test_experiment_overrides_reach_the_run_config_and_experiment_json(tmp_path, monkeypatch):
    from adapters_geo.experiments import execute
    from adapters_geo.report import runs

    (tmp_path / "dep.yaml").write_text(TRAIN_EXPERIMENT)
    (tmp_path / "top.yaml").write_text(TRAIN_EXPERIMENT + "init: experiment:dep\n")
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(tmp_path))
    monkeypatch.setenv("ADAPTERS_GEO_RUNS", str(tmp_path / "runs"))
    trained = {}

    def fake_run(config, folder, **kwargs):
        trained[folder.name] = config
        (folder / "done.json").write_text(json.dumps({"hash": kwargs["identity"]}))

    monkeypatch.setattr(execute, "run", fake_run)
    monkeypatch.setattr(runs, "write_report", lambda root: root / "report.md")
    sets = {"train.steps": "5", "train.lr": "1e-5"}
    assert main(["experiment", "top", "--set", "train.steps=5", "--set", "train.lr=1e-5"]) == 0
    assert (trained["top"].train.steps, trained["top"].train.lr) == (5, 1e-5) and trained["dep"].train.steps == 2
    recorded = json.loads((tmp_path / "runs" / "top" / "experiment.json").read_text())
    assert recorded["set"] == sets and recorded["hash"] == experiment_hash("top", False, sets)
    assert main(["experiment", "top"]) == 2  # without the overrides it is another config: not silently reused


RUN_FILE = TINY + "train: {steps: 2, batch_size: 2, lr: 0.001}\n"


def _hand_made_run(folder, config_path, done: bool = False):
    """A run folder as far as the checks read it: the resolved config.json, a checkpoint, done.json when finished."""
    from adapters_geo.pipeline.runner import resolved

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(resolved(load_run_config(config_path)).to_dict()))
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "state.pt").write_bytes(b"not read")
    if done:
        (folder / "done.json").write_text('{"hash": "x"}')


def _holding(what: str, out, config_path) -> None:
    """Put `what` at --out."""
    import os
    import socket

    if what == "a file":
        out.write_text("not a folder")
    elif what == "other files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif what in ("a finished run", "an unfinished run"):
        _hand_made_run(out, config_path, done=what == "a finished run")
    elif what == "a live lock":
        out.mkdir()
        (out / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")
    elif what == "a read-only folder":
        out.mkdir()


# (what --out holds, argv with CFG / OUT, fragment of the one-line error with OUT): nothing at OUT changes, no model loads
PLACES = [
    ("a file", ["train", "CFG", "--out", "OUT"], "--out OUT is a file, not a run folder — fix: choose a new or empty folder for --out"),
    ("other files", ["train", "CFG", "--out", "OUT"],
     "OUT is not empty and holds no run (notes.txt) — fix: a new run needs a new or empty folder: choose another --out"),
    ("a finished run", ["train", "CFG", "--out", "OUT", "--resume"],
     "OUT holds a finished run (done.json): a finished run is never extended or rewritten in place — fix: use another --out"),
    ("an unfinished run", ["train", "CFG", "--out", "OUT"],
     "OUT already holds a checkpoint of an unfinished run — fix: continue it with --resume (same config), or train into a new --out"),
    ("an unfinished run", ["train", "CFG", "--out", "OUT", "--resume", "--set", "train.lr=0.05", "--set", "train.steps=3"],
     "OUT holds a run of another config, which --resume would not continue (train.lr: 0.001 -> 0.05; train.steps: 2 -> 3)"),
    ("a live lock", ["train", "CFG", "--out", "OUT"], "OUT is being written by process"),
    ("a read-only folder", ["train", "CFG", "--out", "OUT/run"],
     "OUT/run is not accessible (permission denied) — fix: make it writable, or choose another --out / $ADAPTERS_GEO_CACHE"),
    ("a file", ["geometry", "tiny-llama", "--adapter", "CFG", "--out", "OUT"], "--out OUT is a file — fix: choose a folder for --out"),
    ("an unfinished run", ["geometry", "tiny-llama", "--adapter", "CFG", "--out", "OUT", "--overwrite"],
     "--overwrite would replace OUT, which holds a training run (config.json, checkpoint) — fix: choose another --out"),
    ("other files", ["geometry", "tiny-llama", "--adapter", "CFG", "--out", "OUT", "--overwrite"],
     "--overwrite would replace OUT, which holds no geometry.json or trajectory.json (not an earlier result)"),
    ("a finished run", ["trajectory", "OUT", "--out", "OUT", "--overwrite"],
     "--overwrite would replace OUT, which holds a training run (config.json, done.json, checkpoint)"),
    # a finished run's own results and folder, even by request
    ("a finished run", ["geometry", "tiny-llama", "--adapter", "CFG", "--out", "OUT/geometry", "--overwrite"],
     "--out OUT/geometry lies inside the finished run OUT, which no command changes — fix: choose a folder outside it"),
    ("a finished run", ["trajectory", "OUT", "--K", "8", "--out", "OUT/trajectory_geometry", "--overwrite"],
     "--out OUT/trajectory_geometry lies inside the finished run OUT, which no command changes"),
    ("a finished run", ["export", "CFG", "--merged", "OUT/merged"], "--merged OUT/merged lies inside the finished run OUT"),
    ("a finished run", ["train", "CFG", "--out", "OUT/nested"], "--out OUT/nested lies inside the finished run OUT"),
]


@pytest.mark.parametrize("holds, argv, fragment", PLACES, ids=[f"{i}:{row[0]}:{row[1][0]}" for i, row in enumerate(PLACES)])
def test_a_place_that_cannot_take_the_output_is_one_line_and_changes_nothing(tmp_path, monkeypatch, capsys, holds, argv, fragment):
    from adapters_geo.pipeline import runner
    from tests.conftest import ReadOnly
    from tests.test_faults import snapshot

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output folder was checked")

    monkeypatch.setattr(runner, "load_base", refuse)
    config, out = tmp_path / "run.yaml", tmp_path / "out"
    config.write_text(RUN_FILE)
    _holding(holds, out, config)
    before = snapshot(tmp_path)
    with ReadOnly(out) if holds == "a read-only folder" else contextlib.nullcontext():
        assert main([arg.replace("CFG", str(config)).replace("OUT", str(out)) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("adapters-geo: error:") == 1 and err.count("\n") == 1, err
    assert fragment.replace("OUT", str(out)) in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv,fragment", [
    (["geometry", "tiny-llama", "--adapter", "x", "--k", "-5"], "argument --k: -5 is outside [1, 1048576]"),
    (["geometry", "tiny-llama", "--adapter", "x", "--alpha", "2"], "argument --alpha: 2 is outside (0, 1)"),
    (["geometry", "tiny-llama", "--adapter", "x", "--eta", "nan"], "argument --eta: nan is outside (0, 1)"),
    (["geometry", "tiny-llama", "--adapter", "x", "--r", "\u0663"], "argument --r: '\u0663' is not an integer"),
    (["trajectory", "runs/x", "--K", "0"], "argument --K: 0 is outside [1, 1048576]"),
    (["experiment", "lock_opd", "--seeds", "1000000000"], "argument --seeds: 1000000000 is outside [1, 100]"),
])
def test_a_command_line_number_out_of_range_is_one_line_before_any_work(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("adapters-geo: error: ") and fragment in err, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_process_count_in_another_script_is_one_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "adapters_geo.launch", "\u0663", "report"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2 and "the process count '\\u0663' is not a whole number in [1, 1024]" in done.stderr, done.stderr


def test_the_report_leaves_out_a_damaged_run_with_a_warning_and_reports_the_rest(tmp_path, capsys):
    # make report ends every experiment: one truncated done.json of any run must not stop it
    from adapters_geo.report.runs import write_report
    from adapters_geo.storage.runfolder import RunFolder

    run = tmp_path / "runs" / "damaged"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": {"name": "sft"}, "adapter": {"kind": "dense"}, "quant": "none"}))
    (run / "metrics.jsonl").write_text("")
    (run / "done.json").write_text('{"hash": "ab')  # cut short
    odd = tmp_path / "runs" / "odd\x1b[31mname"  # a folder name the terminal would obey
    odd.mkdir()
    for name in ("config.json", "metrics.jsonl", "done.json"):
        (odd / name).write_text((run / name).read_text())
    assert write_report(tmp_path / "runs").is_file()
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "warning: damaged left out of the report" in err and "done.json is not valid JSON" in err, err
    assert "\x1b" not in err and "warning: odd\\x1b[31mname left out" in err, err
    (run / "metrics.jsonl").write_text('{"step": 1, "group": "train"}\n{"step": 2, "gro\n')
    with pytest.raises(AdaptersGeoError, match="metrics.jsonl is not valid JSON \\(line 2: .*\\): truncated or edited — fix: re-run"):
        RunFolder(run).metrics()
    (run / "config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(AdaptersGeoError, match="config.json is not UTF-8 text"):
        RunFolder(run).config_dict()


def test_a_yaml_alias_bomb_is_one_line_before_it_is_built(tmp_path, capsys):
    # nine levels of nine aliases: 9^9 values once written out; anchors of a sane reach still load
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert main(["train", str(tmp_path / "bomb.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "bomb.yaml expands through its aliases to more than 100,000 values at line 1" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
    from adapters_geo.config.yamlfile import read_yaml

    (tmp_path / "ok.yaml").write_text("a: &a [1, 2]\nb: [*a, *a]\n")
    assert read_yaml(tmp_path / "ok.yaml") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


@pytest.mark.parametrize("place, message", [("long", "a name in it is too long for the file system"),
                                            ("loop", "its path loops through symbolic links")])
def test_an_output_name_too_long_or_a_link_loop_is_one_line(tmp_path, capsys, place, message):
    import os

    config = tmp_path / "run.yaml"
    config.write_text(TINY + "method: {name: sft}\ntrain: {steps: 1}\n")
    if place == "loop":
        os.symlink(tmp_path / "b", tmp_path / "a")
        os.symlink(tmp_path / "a", tmp_path / "b")
        out = tmp_path / "a" / "run"
    else:
        out = tmp_path / ("x" * 300)
    assert main(["train", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_file_that_is_not_utf8_is_one_line_and_the_listing_names_it(tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.yaml"
    config.write_bytes(TINY.encode() + b"# caf\xe9\n")  # Latin-1
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{config} is not UTF-8 text (byte" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "good.yaml").write_text("# make experiment NAME=good\n# A good one.\n" + TINY)
    (experiments / "latin.yaml").write_bytes(b"# caf\xe9\n" + TINY.encode())
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(experiments))
    assert main(["experiment"]) == 0  # the listing: one unreadable file does not end it
    out = capsys.readouterr().out
    assert "A good one." in out and "latin" in out and "is not UTF-8 text" in out


def test_control_characters_in_a_value_are_shown_escaped_on_the_one_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(TINY)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--set", "train.lr=fast\nrm -rf \x1b[31m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "train.lr=fast\\nrm -rf \\x1b[31m" in err, err


def test_a_bad_config_under_a_two_process_launch_is_one_line(tmp_path):
    # every process meets the bad value; the user reads it once, without the launcher's per-process records
    import os
    import socket
    import subprocess
    import sys

    config = tmp_path / "run.yaml"
    config.write_text(TINY + "train: {lr: fast}\n")
    with socket.socket() as s:  # a port for the launcher (it fails before any rendezvous, so a race cannot matter)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ADAPTERS_GEO_MAIN_PORT": str(port), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "adapters_geo.launch", "2", "train", str(config), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600, env=env)
    ours = [line for line in done.stderr.splitlines() if line.startswith("adapters-geo:")]
    others = [line for line in done.stderr.splitlines() if line not in ours]  # a library's import notice may stand here
    assert done.returncode == 2 and len(ours) == 1, done.stderr
    assert not [line for line in others if any(word in line.lower() for word in ("error", "exitcode", "traceback", "failed"))], done.stderr
    assert "train.lr = 'fast' is not a number" in ours[0] and not (tmp_path / "run").exists()


def test_force_archives_a_run_whose_done_json_is_damaged(tmp_path):
    # the damaged file's line says FORCE=1 archives the run: it must, not fail on the same file again
    folder = tmp_path / "runs" / "sft_init"
    folder.mkdir(parents=True)
    (folder / "done.json").write_text('{"hash": "ab')
    with pytest.raises(AdaptersGeoError, match="done.json is not valid JSON"):
        _state(folder, "abc", False, "sft_init")
    assert _state(folder, "abc", True, "sft_init") == "fresh" and not folder.exists()
    assert [p.name.split("-")[:2] for p in (tmp_path / "runs" / ".archive").iterdir()] == [["sft_init", "damaged"]]


def test_an_error_is_said_where_rank_is_set_without_a_launch(monkeypatch, capsys):
    # only a data-parallel launch's other processes stay silent (WORLD_SIZE > 1); a cluster's RANK alone does not
    monkeypatch.setenv("RANK", "3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["experiment", "no_such_one"]) == 2
    assert "unknown experiment 'no_such_one'" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert main(["experiment", "no_such_one"]) == 2
    assert capsys.readouterr().err == ""
