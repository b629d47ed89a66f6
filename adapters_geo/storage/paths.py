"""Where adapters_geo keeps its caches (converted models, SVD caches).

The root is `$ADAPTERS_GEO_CACHE`, or `~/.cache/adapters_geo` when unset.
"""

import os
from pathlib import Path

CACHE_ENV = "ADAPTERS_GEO_CACHE"


def cache_root() -> Path:
    """The cache folder (created on first use where it can be: a read-only place is left to each writer to handle)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "adapters_geo")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # e.g. the SVD cache then works in memory; building a model there fails with the path named
    return root


def models_dir() -> Path:
    """Folder holding converted / generated HF model folders."""
    path = cache_root() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
