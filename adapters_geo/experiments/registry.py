"""Finding and reading experiment files (experiments/NAME.yaml)."""

import os
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.yamlfile import read_mapping

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
    return read_mapping(path)
