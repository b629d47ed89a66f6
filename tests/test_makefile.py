"""The Makefile passes what a user types as arguments, never as shell text.

Run: python -m pytest -q tests/test_makefile.py
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parent.parent  # the environment running the tests
    env = {k: v for k, v in os.environ.items() if k not in ("NAME", "SET", "SEEDS", "FORCE", "SMOKE", "NPROC", "MAKEFLAGS")}
    return subprocess.run(["make", "-s", "-C", str(ROOT), *args, f"VENV={venv}"], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_name_or_override_with_shell_syntax_is_an_argument_not_a_command(tmp_path):
    planted = tmp_path / "planted"
    for name, overrides in [(f"x; touch {planted}", ""), (f"$(shell touch {planted})", ""), (f"`touch {planted}`", ""), ("lock_opd", f"a=1;touch${{IFS}}{planted}")]:
        done = make("experiment", f"NAME={name}", f"SET={overrides}")
        assert done.returncode != 0 and not planted.exists(), (name, done.stdout, done.stderr)
        assert "adapters-geo: error:" in done.stderr and "Traceback" not in done.stderr, done.stderr
