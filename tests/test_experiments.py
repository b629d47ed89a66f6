"""Named experiments: every file resolves, SMOKE forms load, lock_opd runs end to end (smoke).

Run: python -m pytest -q tests/test_experiments.py
"""

import json
from pathlib import Path

import pytest
import torch

from adapters_geo import AdaptersGeoError
from adapters_geo.adapters.io import load_saved_deltas
from adapters_geo.cli import main
from adapters_geo.config.run import run_config_from_dict
from adapters_geo.locking.continuation import BASES
from adapters_geo.experiments.execute import plan, run_experiment
from adapters_geo.experiments.registry import available
from adapters_geo.experiments.resolve import experiment_hash, load_resolved, references, substitute
from adapters_geo.methods import validate
from adapters_geo.storage.runfolder import RunFolder
from tests.test_tensorboard import read_hparams

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(ROOT / "experiments"))
    monkeypatch.setenv("ADAPTERS_GEO_RUNS", str(tmp_path / "runs"))


def as_run_config(name: str, smoke: bool):
    data = load_resolved(name, smoke)
    paths = {dep: {"init": "x/adapter", "teacher": "x/adapter", "source": "x"} for dep in references(data)}
    return run_config_from_dict({k: v for k, v in substitute(data, paths).items() if k not in ("kind", "description")}, name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("smoke", [False, True])
def test_every_experiment_resolves(name, smoke):
    text = (ROOT / "experiments" / f"{name}.yaml").read_text()
    assert text.startswith(f"# make experiment NAME={name}")
    assert len(experiment_hash(name, smoke)) == 12
    data = load_resolved(name, smoke)
    if data.get("kind") == "lock":
        assert references(data) and data["source"].startswith("experiment:")
        return
    if data.get("kind") == "claims":
        assert len(references(data)) >= 2 and all(load_resolved(r, smoke).get("kind", "train") == "train" for r in references(data))
        return
    config = as_run_config(name, smoke)
    validate(config.method)
    if smoke:
        assert config.model == "tiny-llama" and config.train.steps <= 10
        assert config.task.solution_style == as_run_config(name, False).task.solution_style  # the SMOKE form keeps it


def test_suite_is_complete():
    wanted = {"teacher", "sft_init", "lock_opd", "lock_sft", "lock_rlvr", "opd_offpolicy_teacher", "lock_opd_cross", "paper",
              "lock_sft_cross", "lock_opd_gradient", "lock_sft_gradient"}
    wanted |= {f"{m}_{a}" for m in ("sft", "opd", "rlvr") for a in ("dense", "lora")}
    wanted |= {"opd_tokens_random25", "opd_tokens_topgap25", "opd_tokens_topgap50", "opd_mix_75", "opd_mix_50",
               "opd_mix_25", "opd_mix_05"}
    assert wanted <= set(NAMES) and set(available()) == set(NAMES)


def test_a_cross_arm_s_run_is_a_dependency_and_only_the_trained_arms_count():
    todo = plan("lock_opd_cross", smoke=True)
    names = [item.split(" ")[0] for item in todo]
    assert names.index("sft_dense") < names.index("lock_opd_cross") and "opd_dense" in names
    steps = load_resolved("opd_dense", True)["train"]
    assert todo[-1] == f"lock_opd_cross (2 × {steps['steps'] - steps['t0']} steps)"  # principal and cross
    assert load_resolved("lock_opd_gradient", False)["mode"] == "gradient"


def test_what_a_lock_experiment_s_bases_mean_is_part_of_its_identity(monkeypatch):
    from adapters_geo.experiments import resolve

    before = {name: experiment_hash(name, False) for name in ("lock_opd", "opd_dense")}
    monkeypatch.setattr(resolve, "LOCK_DEFINITIONS", {"final": "something else"})
    assert experiment_hash("lock_opd", False) != before["lock_opd"]  # refused with FORCE=1, not reused
    assert experiment_hash("opd_dense", False) == before["opd_dense"]  # a training run is not affected


def test_unknown_experiment_lists_the_available_ones(capsys):
    assert main(["experiment", "lock_opdd"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'lock_opdd'" in err and "lock_opd" in err and err.count("\n") == 1


def test_smoke_lock_opd_end_to_end_then_reuse_and_force(tmp_path, capsys, monkeypatch):
    todo = plan("lock_opd", smoke=True)
    assert [item.split(" ")[0] for item in todo] == ["sft_init", "teacher_words", "opd_dense", "lock_opd"]
    steps = load_resolved("opd_dense", True)["train"]
    t0 = steps["t0"]
    assert todo[-1] == f"lock_opd (3 × {steps['steps'] - t0} steps)" and todo[2] == f"opd_dense ({steps['steps']} steps)"
    folder = run_experiment("lock_opd", smoke=True, progress=False)
    assert plan("lock_opd", smoke=True) == [] and plan("lock_opd", smoke=True, force=True) == [todo[-1]]
    runs = tmp_path / "runs" / "smoke"
    for dep in ("teacher_words", "sft_init", "opd_dense", "lock_opd"):
        assert (runs / dep / "done.json").is_file(), dep
    for item in ("adapter", "t0_state/adapter", "t0_state/state.pt", "geometry/geometry.json", "geometry/heatmaps.png",
                 "trajectory_geometry/trajectory.json", "metrics.jsonl", "config.json", "meta.json", "tb", "evals"):
        assert (runs / "opd_dense" / item).exists(), item
    done = json.loads((folder / "done.json").read_text())
    arms = done["seeds"]["0"]["arms"]
    assert set(arms) == {"unconstrained", "frozen", "early", "random", "final"} and done["t0"] == t0
    for basis in ("early", "random", "final"):
        saved = json.loads((folder / "seed_0" / basis / "config.json").read_text())
        assert saved["adapter"]["basis"] == basis and saved["adapter"]["mode"] == "projected"
        assert saved["train"]["start_state"] == str(runs / "opd_dense" / "t0_state")
    assert 0 <= arms["unconstrained"]["increment"]["inside_share"] <= 1
    assert arms["unconstrained"]["folder"] == str(runs / "opd_dense")  # the source's own continuation, not re-run
    assert not (folder / "seed_0" / "unconstrained").exists()
    for arm in set(arms) - {"unconstrained"}:  # each arm is its own named TensorBoard run (its own tb/, its HPARAMS row)
        hparams = read_hparams(folder / "seed_0" / arm / "tb")
        assert hparams["run"] == f"lock_opd seed 0 {arm}" and hparams["arm"] == arm
        assert hparams["basis"] == (arm if arm in BASES else "-")
    geometry = json.loads((runs / "opd_dense" / "geometry" / "geometry.json").read_text())
    assert "+" in geometry["meta"]["reference"]  # measured against the SFT anchor, not the base
    teacher, anchor = (json.loads((runs / r / "config.json").read_text()) for r in ("teacher_words", "sft_init"))
    assert teacher["train"]["seed"] != anchor["train"]["seed"] and teacher["task"]["pool"] != anchor["task"]["pool"]

    capsys.readouterr()
    run_experiment("lock_opd", smoke=True, progress=False)
    assert capsys.readouterr().out.count("reused") == 4

    # `unconstrained: rerun` trains the arm from opd_dense's t0 state: sampled rollouts and all, the same run as the
    # source to every digit (adapter and per-prompt evaluation at T) - what lets the default take the source instead
    run_experiment("lock_opd", force=True, smoke=True, progress=False, overrides={"unconstrained": "rerun"})
    rerun = RunFolder(folder / "seed_0" / "unconstrained")
    again, source = (dict(load_saved_deltas(f)[1]) for f in (rerun.adapter, RunFolder(runs / "opd_dense").adapter))
    assert all(torch.equal(again[n], source[n]) for n in source)
    end = steps["steps"]
    assert rerun.prompt_evals()[end] == RunFolder(runs / "opd_dense").prompt_evals()[end]
    assert list(rerun.prompt_evals()) == [end]  # an arm is evaluated at its end only

    changed = tmp_path / "experiments"
    changed.mkdir()
    for path in (ROOT / "experiments").glob("*.yaml"):
        (changed / path.name).write_text(path.read_text())
    (changed / "opd_dense.yaml").write_text((changed / "opd_dense.yaml").read_text().replace("full_vocab_kl: true}", "full_vocab_kl: true, opd_coef: 0.5}"))
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(changed))
    before = (runs / "opd_dense" / "done.json").read_text()
    with pytest.raises(AdaptersGeoError, match="was run with another config"):
        run_experiment("opd_dense", smoke=True, progress=False)
    assert (runs / "opd_dense" / "done.json").read_text() == before
    run_experiment("opd_dense", force=True, smoke=True, progress=False)
    assert len(list((runs / ".archive").glob("opd_dense-*"))) == 1


def test_report_from_smoke_runs(tmp_path):
    from adapters_geo.report.runs import write_report

    run_experiment("lock_sft", smoke=True, progress=False)
    runs = tmp_path / "runs" / "smoke"
    report = write_report(runs)
    text = report.read_text()
    assert "| sft_dense | sft | arithmetic | dense | none |" in text and "## Subspace locking" in text
    assert text.index("**Verdicts**") < text.index("| run |")  # the report opens with the verdicts
    verdict = next(line for line in text.splitlines() if line.startswith("- SFT, lock_sft ("))
    assert "tiny-llama, arithmetic" in verdict and "1 seed(s) × 8 prompts, mode projected" in verdict  # its budget
    assert "retains" in verdict or "no gain to retain" in verdict
    if "retains" in verdict:  # SFT is a method the paper makes a claim about: the line says what this run does to it
        assert any(f"**{status}** here" in verdict for status in ("supported", "contradicted", "undecided at this budget"))
    done = json.loads((runs / "lock_sft" / "done.json").read_text())
    t0 = done["t0"]
    frozen = RunFolder(runs / "lock_sft" / "seed_0" / "frozen").prompt_evals()
    assert list(frozen) == [t0] and len(frozen[t0]["outcome"]) == 8  # the start, evaluated once, per prompt
    for arm in ("frozen", "unconstrained", "early", "random", "final"):
        assert f"| {arm} |" in text
    assert (report.parent / "report_locking.png").stat().st_size > 5000
    assert (report.parent / "report_trajectories.png").stat().st_size > 5000


def test_malformed_experiment_file_is_one_line_naming_file_and_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.yaml").write_text("# make experiment NAME=broken\nmodel: tiny-llama\n  method: {name: sft\n")
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(tmp_path))
    assert main(["experiment", "broken"]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml is not valid YAML at line" in err and err.count("\n") == 1
    assert not (tmp_path / "runs" / "broken").exists()


def test_seeds_retrain_the_source_per_seed_and_add_missing_seeds_only(tmp_path, capsys):
    """SEEDS=2: teacher and anchor shared, one source and one set of arms per seed; SEEDS=3 later adds seed 2 only."""
    from adapters_geo.report.locking import lock_summary

    todo = plan("lock_sft", smoke=True, overrides={"seeds": "[0, 1]"})
    assert [item.split(" ")[0] for item in todo] == ["sft_init", "sft_dense", "sft_dense-seed1", "lock_sft"]
    run_experiment("lock_sft", smoke=True, progress=False, seeds=2)
    runs = tmp_path / "runs" / "smoke"
    seeds = {s: json.loads((runs / f / "config.json").read_text())["train"]["seed"] for s, f in ((0, "sft_dense"), (1, "sft_dense-seed1"))}
    assert seeds == {0: 0, 1: 1}
    done = json.loads((runs / "lock_sft" / "done.json").read_text())
    assert set(done["seeds"]) == {"0", "1"} and done["seeds"]["1"]["source"] == str(runs / "sft_dense-seed1")
    assert lock_summary(runs / "lock_sft")["seeds"] == 2
    drawn = {s: json.loads((runs / "lock_sft" / f"seed_{s}" / "random" / "config.json").read_text())["adapter"]["seed"] for s in (0, 1)}
    assert drawn == {0: 0, 1: 1}  # a fresh random basis per training seed
    before = (runs / "lock_sft" / "seed_0" / "early" / "done.json").read_text()
    assert plan("lock_sft", smoke=True, overrides={"seeds": "[0, 1, 2]"}) == ["sft_dense-seed2 (10 steps)", "lock_sft (9 × 8 steps)"]
    run_experiment("lock_sft", smoke=True, progress=False, seeds=3)
    assert set(json.loads((runs / "lock_sft" / "done.json").read_text())["seeds"]) == {"0", "1", "2"}
    assert (runs / "lock_sft" / "seed_0" / "early" / "done.json").read_text() == before  # reused, not re-run
    # a training experiment with SEEDS trains NAME-seedS, the folders the lock trained: here all reused, one added
    assert plan("sft_dense", smoke=True, train_seeds=[0, 1, 2]) == []
    assert plan("sft_dense", smoke=True, train_seeds=[0, 1, 2, 3]) == ["sft_dense-seed3 (10 steps)"]
    run_experiment("sft_dense", smoke=True, progress=False, seeds=4)
    assert json.loads((runs / "sft_dense-seed3" / "config.json").read_text())["train"]["seed"] == 3
    assert (runs / "lock_sft" / "seed_0" / "early" / "done.json").read_text() == before
    with pytest.raises(AdaptersGeoError, match="SEEDS=0 is not a number of seeds"):
        run_experiment("sft_dense", smoke=True, progress=False, seeds=0)


def test_claims_measure_every_seed_of_every_source_and_reach_the_report(tmp_path, capsys):
    """`paper` with SEEDS=2: each source trained per seed (SOURCE, SOURCE-seed1, the folders a lock uses), then the
    null test of every run in done.json, then both claims' sections of the report; a third seed adds its runs only."""
    from adapters_geo.report.runs import write_report

    todo = [item.split(" ")[0] for item in plan("paper", smoke=True, overrides={"seeds": "[0, 1]"})]
    assert set(todo) == {"sft_init", "teacher_words", "sft_dense", "opd_dense", "sft_dense-seed1", "opd_dense-seed1",
                         "paper"} and todo[-1] == "paper"
    run_experiment("paper", smoke=True, progress=False, seeds=2)
    runs = tmp_path / "runs" / "smoke"
    done = json.loads((runs / "paper" / "done.json").read_text())
    assert set(done["seeds"]) == {"0", "1"} and set(done["seeds"]["1"]) == {"sft_dense", "opd_dense"}
    entry = done["seeds"]["1"]["opd_dense"]
    assert entry["folder"] == str(runs / "opd_dense-seed1") and entry["method"] == "opd"
    assert entry["null"]["step"] == 2 and entry["null"]["shuffle"]["draws"] == 200 and 0 < entry["null"]["shuffle"]["p"] <= 1
    assert json.loads((runs / "opd_dense-seed1" / "config.json").read_text())["train"]["seed"] == 1
    # t0's snapshot is a reference to the t0 state's adapter (storage/snapshots.py): still the run's early step
    assert RunFolder(runs / "opd_dense").trajectory()["early_step"] == 2
    text = write_report(runs).read_text()
    assert "## The paper's claims 1 and 2 (paper: sft_dense, opd_dense on arithmetic, 2 seed(s))" in text
    claims = (runs / "paper" / "claims.md").read_text()  # the section alone, beside done.json
    assert "| claim | the paper says | measured | 95% interval | verdict |" in claims and claims in text
    assert claims.count("**undecided at this budget**") + claims.count("**not measured**") == 6  # 2 seeds decide nothing
    assert "### Endpoint metrics at a matched update size (claim 1)" in text and "| opd_dense (opd, n=2) |" in text
    assert "- bf16 sparsity, opd_dense − sft_dense: " in text
    assert "### Does the update enter its channel early? (claim 2)" in text and "| opd_dense-seed1 | opd | 2 |" in text
    assert "- opd_dense (opd, 2 seed(s)): Sim(t0, T) − shuffle-null mean = " in text
    assert "- opd_dense − sft_dense: Sim(t0, T) difference " in text
    damaged = runs / "paper_damaged"  # a claims result of the wrong shape: a warning line, the report still written
    damaged.mkdir()
    (damaged / "experiment.json").write_text((runs / "paper" / "experiment.json").read_text())
    (damaged / "done.json").write_text(json.dumps({"hash": "x", "seeds": {"0": {"sft_dense": {"method": "sft"}}}}))
    assert "## The paper's claims 1 and 2 (paper:" in write_report(runs).read_text()
    assert "paper_damaged left out of the report" in capsys.readouterr().err
    with pytest.raises(AdaptersGeoError, match="claims source experiment:lock_sft is not a training run that tracks"):
        plan("paper", smoke=True, overrides={"sources": "[experiment:opd_dense, experiment:lock_sft]"})
    before = (runs / "paper" / "done.json").read_text()
    run_experiment("paper", smoke=True, progress=False, seeds=2)
    assert (runs / "paper" / "done.json").read_text() == before  # reused
    assert plan("paper", smoke=True, overrides={"seeds": "[0, 1, 2]"}) == [
        "sft_dense-seed2 (10 steps)", "opd_dense-seed2 (10 steps)", "paper (claims on 6 runs)"]
