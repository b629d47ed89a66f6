"""Where adapters_geo keeps its caches (converted models, SVD caches).

The root is `$ADAPTERS_GEO_CACHE`, or `~/.cache/adapters_geo` when unset.
"""

import os
from pathlib import Path

CACHE_ENV = "ADAPTERS_GEO_CACHE"


def cache_root() -> Path:
    """The cache folder (created on first use)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "adapters_geo")
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    """Folder holding converted / generated HF model folders."""
    path = cache_root() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
