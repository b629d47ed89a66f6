"""Finding and reading experiment files (experiments/NAME.yaml)."""

import os
from pathlib import Path

from adapters_geo.config import read_yaml
from adapters_geo.errors import AdaptersGeoError

DIR_ENV = "ADAPTERS_GEO_EXPERIMENTS"


def experiments_dir() -> Path:
    """$ADAPTERS_GEO_EXPERIMENTS, else ./experiments."""
    return Path(os.environ.get(DIR_ENV) or "experiments")


def available() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml"))


def read_experiment(name: str) -> dict:
    """The raw mapping of experiments/NAME.yaml."""
    path = experiments_dir() / f"{name}.yaml"
    if not path.is_file():
        raise AdaptersGeoError(
            f"unknown experiment '{name}'",
            f"use one of: {', '.join(available()) or '(none found in ' + str(experiments_dir()) + ')'}",
        )
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise AdaptersGeoError(f"{path} does not hold a mapping", "see the other files in experiments/ for the format")
    return data
