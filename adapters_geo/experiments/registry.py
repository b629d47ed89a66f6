"""Finding and reading experiment files (NAME.yaml in the experiments folder).

The folder is `$ADAPTERS_GEO_EXPERIMENTS` when set, else ./experiments, else the `experiments/`
folder of the project the package was installed from (editable), else the copy a wheel installs
under <prefix>/share/adapters_geo/experiments. A name is a file name without `.yaml`:
letters, digits, `_`, `.` and `-`, no leading dot, so a name never leaves the folder.
"""

import os
import re
import site
import sys
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.config.yamlfile import read_mapping, read_yaml

DIR_ENV = "ADAPTERS_GEO_EXPERIMENTS"
NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
PROJECT = Path(__file__).resolve().parents[2]  # the folder above adapters_geo/


def experiments_dir() -> Path:
    """The experiments folder; none found is one line naming the places tried."""
    if os.environ.get(DIR_ENV):
        tried = [Path(os.environ[DIR_ENV])]  # an explicit choice is the only place looked at
    else:
        # ./experiments, the project an editable install came from, the copy a wheel installs (pyproject's data-files)
        tried = [Path("experiments"), PROJECT / "experiments"]
        tried += [Path(prefix) / "share" / "adapters_geo" / "experiments" for prefix in (sys.prefix, site.USER_BASE or sys.prefix)]
    for folder in tried:
        if folder.is_dir():
            return folder
    places = ", ".join(dict.fromkeys(str(p) for p in tried))
    raise AdaptersGeoError(f"no experiments folder found (tried {places})",
                           f"run from the project root, or set ${DIR_ENV} to a folder of experiment YAML files")


def check_name(name: str) -> str:
    """`name` if it is an experiment name (no path separators, no leading dot), else one line."""
    if not NAME.match(name):
        raise AdaptersGeoError(f"'{name}' is not an experiment name",
                               "use a file name of the experiments folder without .yaml (letters, digits, _ . -, no leading dot)")
    return name


def available() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml") if NAME.match(p.stem))


def experiment_path(name: str) -> Path:
    """experiments/NAME.yaml; an unknown name lists the available ones."""
    path = experiments_dir() / f"{check_name(name)}.yaml"
    if not path.is_file():
        raise AdaptersGeoError(f"unknown experiment '{name}'", f"use one of: {', '.join(available()) or '(none in ' + str(path.parent) + ')'}")
    return path


def read_experiment(name: str) -> dict:
    """The raw mapping of experiments/NAME.yaml."""
    return read_mapping(experiment_path(name))


def description(name: str) -> str:
    """One line about NAME: its `description:` key, else the second line of its opening comment."""
    path = experiment_path(name)
    try:
        data = read_yaml(path)
    except AdaptersGeoError as exc:
        if "UTF-8" in exc.problem:  # the listing names the file; running it says the same in one line
            return f"(unreadable: {exc.problem})"
        data = None
    if isinstance(data, dict) and data.get("description"):
        return " ".join(str(data["description"]).split())
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    return header[1] if len(header) > 1 else ""
