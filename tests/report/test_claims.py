"""The claims table: each of the paper's statements read from its interval's sign, on constructed runs.

Run: python -m pytest -q tests/report/test_claims.py
"""

from adapters_geo.report.claims import claims_table, verdict
from tests.report.test_channel import _null
from tests.report.test_matched import _row


def test_verdicts_follow_the_predicted_sign_and_the_seed_count():
    interval = lambda low, high: {"estimate": (low + high) / 2, "low": low, "high": high}
    assert verdict(interval(0.1, 0.2), 1, 3) == "supported" and verdict(interval(0.1, 0.2), -1, 3) == "contradicted"
    assert verdict(interval(-0.1, 0.2), 1, 3) == "undecided at this budget"
    assert verdict(interval(0.1, 0.2), 1, 2) == "undecided at this budget"  # two seeds decide nothing
    assert verdict(None, 1, 3) == "not measured"


def test_the_table_reads_each_claim_from_its_own_interval():
    """OPD is sparser than SFT at the matched size (+0.05), principal energy equal; OPD's Sim(t0, T) is 0.3 above its
    null and above SFT's; no RLVR run and no absolute sparsity: those rows are not measured."""
    noise = (0.0, 0.004, -0.004)
    rows = [{**_row(f"opd_dense{s}", "opd", 1e-3, 0.05, e), "null": _null(0.7 + e, 0.4)}
            for s, e in zip(("", "-seed1", "-seed2"), noise)]
    rows += [{**_row(f"sft_dense{s}", "sft", 1e-2, 0.0, -e), "null": _null(0.5 + e, 0.45)}
             for s, e in zip(("", "-seed1", "-seed2"), noise)]
    text = "\n".join(claims_table(rows))
    line = lambda start: next(row for row in text.splitlines() if start in row)
    assert line("touches fewer weights").endswith("| **supported** |") and "OPD − SFT = 0.05" in line("touches fewer")
    assert line("absolute definition").endswith("| – | – | **not measured** |")
    assert line("principal directions").endswith("**undecided at this budget** |")
    assert line("less sparse than RLVR").endswith("**not measured** |")
    assert line("enters its channel early").endswith("**supported** |") and "OPD − null mean = 0.3" in line("channel early")
    assert line("earlier than SFT").endswith("**supported** |")
    one_seed = [r for r in rows if "seed" not in r["run"]]
    assert "**undecided at this budget**" in "\n".join(claims_table(one_seed)).split("touches fewer")[1].splitlines()[0]
