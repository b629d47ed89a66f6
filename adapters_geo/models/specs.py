"""Model specs: turn what a user writes into a local HF folder.

A spec is one of
- `smollm2-135m-instruct`: the embedded default (converted once, cached);
- `tiny-llama`: the deterministic test model (built once, cached);
- a local folder holding an HF checkpoint (config.json + weights);
- a hub id (`org/name`), fetched through huggingface_hub within a time limit (models/hub.py); with
  HF_HUB_OFFLINE=1, from the local hub cache only.
"""

import hashlib
from pathlib import Path

import adapters_geo.models.hub as hub  # the module, not the package: the package imports this one
from adapters_geo.storage.atomic import atomic_dir
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models.embedded import EMBEDDED_NAME, EMBEDDED_VERSION, convert_embedded
from adapters_geo.models.tiny import TINY_NAME, TINY_VERSION, build_tiny
from adapters_geo.storage.paths import models_dir

BUILT_IN = {EMBEDDED_NAME: (convert_embedded, EMBEDDED_VERSION), TINY_NAME: (build_tiny, TINY_VERSION)}
BUILD_MARKER = "adapters_geo_build.txt"
# Files beyond this size are fingerprinted by a sample of their bytes, not all of them.
FULL_HASH_LIMIT = 2**31
SAMPLE_BYTES = 2**22


def resolve_spec(spec: str) -> Path:
    """The local HF folder for `spec`, converting / building / fetching it if needed."""
    if spec in BUILT_IN:
        build, version = BUILT_IN[spec]
        folder = models_dir() / spec
        marker = folder / BUILD_MARKER
        if not (marker.is_file() and marker.read_text().strip() == str(version)):
            with atomic_dir(folder, overwrite=True) as tmp:  # replaces a cache of an older build
                build(tmp)
                (tmp / BUILD_MARKER).write_text(str(version))
        return folder
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise AdaptersGeoError(
                f"model folder {path} has no config.json",
                "point to a folder written by save_pretrained (config.json + safetensors)",
            )
        return path.resolve()
    return _from_hub(spec)


def portable_name(spec: str) -> str:
    """The name another machine loads `spec` by, for files that record their base (a peft adapter_config.json's
    base_model_name_or_path, a merged export's config), instead of the local cache folder it was loaded from: a hub
    id as given (a hub snapshot folder: its repo id), a built-in name (the embedded model stays `smollm2-135m-instruct`:
    its weights are the dequantized Q4_1 GGUF `adapters-geo prepare` rebuilds, not the hub's HuggingFaceTB/
    SmolLM2-135M-Instruct, which differs by that rounding), else the folder itself."""
    path = Path(spec).expanduser()
    if spec in BUILT_IN or not path.exists():
        return spec  # a built-in name, or a hub id
    parts = path.resolve().parts  # .../hub/models--org--name/snapshots/<revision>
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].removeprefix("models--").replace("--", "/", 1)
    return str(path.resolve())


def _from_hub(spec: str) -> Path:
    known = ", ".join(BUILT_IN)
    if spec.count("/") != 1:
        raise AdaptersGeoError(
            f"unknown model '{spec}': not a built-in name ({known}), not an existing folder, not a hub id",
            f"use one of {known}, a local HF folder, or org/name",
        )
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt"]
    if hub.offline():
        try:
            return Path(snapshot_download(spec, allow_patterns=patterns, local_files_only=True))
        except Exception:  # not in the cache: the hub is not asked
            raise AdaptersGeoError(
                f"model '{spec}' could not be fetched from the hub: HF_HUB_OFFLINE is set (the hub was not asked) "
                "and it is not in the local hub cache",
                f"unset HF_HUB_OFFLINE where the hub is reachable, or pass a local folder or a built-in model ({known})",
            ) from None
    try:
        return Path(hub.call(f"model '{spec}'", snapshot_download, spec, allow_patterns=patterns))
    except AdaptersGeoError:
        raise
    except Exception as exc:  # network, auth, missing repo: all end the same way here
        raise AdaptersGeoError(
            f"model '{spec}' could not be fetched from the hub ({type(exc).__name__})",
            f"download it elsewhere and pass the local folder, or use a built-in model ({known})",
        ) from None


def fingerprint(folder: Path) -> str:
    """A content hash of a checkpoint's weight files (identity of a base model)."""
    digest = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise AdaptersGeoError(f"model folder {folder} has no weight files", "save it with save_pretrained")
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as handle:
            if size <= FULL_HASH_LIMIT:
                for block in iter(lambda: handle.read(2**24), b""):
                    digest.update(block)
            else:
                for offset in range(0, size, size // 64):
                    handle.seek(offset)
                    digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]
