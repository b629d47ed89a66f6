"""The benchmark's target lines read what runs recorded: evaluation and tracking + analysis shares from done.json.

Run: python -m pytest -q tests/test_benchmarks.py
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_shares_are_the_done_json_breakdown_over_its_total_and_say_met_or_not(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_training import run_shares, targets

    def done(name, **seconds):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "done.json").write_text(json.dumps({"hash": "h", "seconds": seconds}))

    done("opd_dense", total=750.0, evaluation=336.0, tracking=45.0, analysis=60.0, steps=309.0)
    done("lock_opd/seed_0/early", total=400.0, evaluation=60.0, tracking=20.0, analysis=10.0, steps=310.0)
    done(".archive/opd_dense-old", total=10.0, evaluation=9.0)  # archived: not a run of the chain
    done("empty", total=0.0)
    done("cut")
    (tmp_path / "cut" / "done.json").write_text('{"hash": "ab')
    shares = run_shares(tmp_path)
    assert shares.keys() == {"opd_dense", "lock_opd/seed_0/early", "cut"} and shares["cut"] is None
    assert shares["opd_dense"] == {"evaluation": 336 / 750, "tracking_analysis": 105 / 750}
    lines = [line.strip() for line in targets([], tmp_path).splitlines()]
    assert "opd_dense: evaluation 44.8% of its wall time (target ≤ 20%): NOT met; tracking + analysis 14.0% (target < 25%): met" in lines
    assert "cut: its done.json cannot be read (damaged): left out" in lines
    assert "lock_opd/seed_0/early: evaluation 15.0% of its wall time (target ≤ 20%): met; tracking + analysis 7.5% (target < 25%): met" in lines
    sys.modules.pop("bench_training", None)


def test_eval_samples_pilot_reads_the_first_j_samples_of_every_arm(tmp_path, monkeypatch, capsys):
    """k = 4 samples on 8 prompts: frozen never right, unconstrained always, early right on its first two samples only:
    early retains 1.0 of the gain with j = 1 and 2 samples, 0.5 with 4; greedy says 1.0 (early greedy always right)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from eval_samples_pilot import main

    from adapters_geo.storage.runfolder import RunFolder

    lock = RunFolder(tmp_path / "lock")
    samples = {"frozen": [0, 0, 0, 0], "unconstrained": [1, 1, 1, 1], "early": [1, 1, 0, 0]}
    arms = {}
    for arm, rewards in samples.items():
        folder = RunFolder(lock.path / "seed_0" / arm)
        folder.evals_dir.mkdir(parents=True)
        step = 2 if arm == "frozen" else 10
        greedy = 0.0 if arm == "frozen" else 1.0
        record = {"step": step, "outcome_kind": "kl", "outcome": [1.0 - greedy] * 8, "greedy_reward": [greedy] * 8,
                  "sampled_rewards": [rewards] * 8, "sampled_reward": [sum(rewards) / 4] * 8}
        (folder.evals_dir / f"step_{step:06d}.json").write_text(json.dumps(record))
        arms[arm] = {"folder": str(folder.path)}
    lock.write_json(lock.done_file, {"seeds": {"0": {"source": "x", "arms": arms}}, "K": 4, "mode": "projected",
                                     "t0": 2, "steps": 10})
    monkeypatch.setattr(sys, "argv", ["eval_samples_pilot.py", str(lock.path), "--draws", "200"])
    main()
    out = capsys.readouterr().out
    assert "1 seed(s) × 8 prompts, k = 4" in out
    assert "| sampled, j = 1 | 1.000 [1.000, 1.000] | early 1.00 [1.00, 1.00] (width 0.00) |" in out
    assert "| sampled, j = 2 |" in out and "| sampled, j = 4 | 1.000 [1.000, 1.000] | early 0.50 [0.50, 0.50]" in out
    assert "| greedy accuracy | 1.000 [1.000, 1.000] | early 1.00" in out and "j = 8" not in out


def test_resample_check_finds_a_run_s_own_samples_and_counts_what_differs(tmp_path, monkeypatch):
    """A tiny run with k = 3 re-sampled by this checkout: the same samples; a saved reward changed: one differs."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from resample_check import resample

    from adapters_geo.config.run import run_config_from_dict
    from adapters_geo.pipeline.runner import run_training

    config = run_config_from_dict({
        "model": "tiny-llama", "task": {"levels": [0], "train_size": 64, "test_size": 6},
        "method": {"name": "sft", "max_new_tokens": 6},
        "train": {"steps": 2, "batch_size": 4, "lr": 3e-3, "eval_every": 0, "track_steps": [], "eval_samples": 3},
    })
    run_training(config, tmp_path / "run", progress=False)
    same = resample(tmp_path / "run")
    assert same["samples"] == 18 and same["samples_differing"] == 0 and same["now"] == same["then"]
    saved = tmp_path / "run" / "evals" / "step_000002.json"
    record = json.loads(saved.read_text())
    record["sampled_rewards"][4][1] = 1.0 - record["sampled_rewards"][4][1]
    saved.write_text(json.dumps(record))
    changed = resample(tmp_path / "run")
    assert changed["samples_differing"] == 1 and changed["prompts_differing"] == 1
    sys.modules.pop("resample_check", None)


def test_eval_precision_check_reproduces_a_lock_experiment_s_evaluations_at_fp32(tmp_path, monkeypatch, capsys):
    """The SMOKE lock_sft re-evaluated by the check at float32: every arm's per-prompt values equal the run's files and
    the two verdict lines are the same, so what the check shows at bfloat16 is the precision's doing, nothing else."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("ADAPTERS_GEO_EXPERIMENTS", str(ROOT / "experiments"))
    monkeypatch.setenv("ADAPTERS_GEO_RUNS", str(tmp_path / "runs"))
    from eval_precision_check import main

    from adapters_geo.experiments.execute import run_experiment

    folder = run_experiment("lock_sft", smoke=True, progress=False)  # sft_dense samples k = 4 per prompt
    monkeypatch.setattr(sys, "argv", ["eval_precision_check.py", str(folder), "--dtype", "float32"])
    main()
    out = capsys.readouterr().out
    assert " 0 differ" in out and not any(f" {n} differ" in out for n in range(1, 100))
    fp32, again = [line.strip() for line in out.split("(the run's files):")[1].split("\n\n")[0].splitlines() if line.startswith("  ")]
    assert fp32 == again and "lock_sft" in fp32
    monkeypatch.setattr(sys, "argv", ["eval_precision_check.py", str(folder), "--dtype", "bfloat16"])
    main()  # bf16 draws the samples only: the teacher-forced outcomes and greedy decoding stay the run's to the digit
    worst = capsys.readouterr().out.split("values differing in the worst arm):")[1]
    assert all(f"  {key}: 0 (0.0%), 0" in worst for key in ("outcome", "greedy_reward")) and "sampled_reward" in worst
    sys.modules.pop("eval_precision_check", None)
