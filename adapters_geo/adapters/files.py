"""Tensor files of a saved adapter: content hashes, and reading them with one-line errors.

Every file an adapter folder relies on is recorded in adapter.json as {file name: sha256};
`read_tensors` checks the hash before handing the file to safetensors, so a truncated,
emptied or altered file is named as corrupt instead of failing deep inside a parser.
"""

import hashlib
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError

CHUNK = 2**24  # bytes read per hashing step (16 MiB)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_files(folder: Path, names) -> dict[str, str]:
    """{file name: sha256} of `names` inside `folder`."""
    return {name: sha256_file(Path(folder) / name) for name in names}


def corrupt(folder, detail: str) -> AdaptersGeoError:
    """The one error for a damaged adapter folder."""
    return AdaptersGeoError(
        f"adapter {folder} is corrupt: {detail}",
        "re-save it with save_adapter, or re-run the training that wrote it",
    )


def check_hashes(folder, recorded: dict | None) -> None:
    """Raise unless every file in `recorded` ({name: sha256}) is present with that content."""
    for name, want in (recorded or {}).items():
        path = Path(folder) / name
        if not path.is_file():
            raise corrupt(folder, f"{name} is missing")
        got = sha256_file(path)
        if got != want:
            size = path.stat().st_size
            raise corrupt(
                folder,
                f"{name} ({size} bytes) has sha256 {got[:12]}…, adapter.json recorded {want[:12]}… "
                "(truncated or changed after saving)",
            )


def read_tensors(folder, name: str) -> dict:
    """{key: tensor} of the safetensors file `name` in `folder`, on the CPU; damage is one AdaptersGeoError."""
    from safetensors.torch import load_file

    path = Path(folder) / name
    if not path.is_file():
        raise corrupt(folder, f"{name} is missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types (header, size, dtype): all mean damage here
        message = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise corrupt(folder, f"{name} cannot be read ({type(exc).__name__}: {message})") from None
