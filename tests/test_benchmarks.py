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
