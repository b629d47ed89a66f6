"""Atomic writes: a folder or file appears complete or not at all.

Work goes into a hidden sibling first and is renamed into place, so an interrupted
write never leaves something that looks finished, and never clobbers earlier results.
Replacing a folder takes two renames (target -> .NAME.old-PID, .NAME.tmp-XXXX -> target);
`recover(target)` repairs what a kill at any point leaves behind (run it before reading target).
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

TMP, OLD = ".tmp-", ".old-"  # infixes of the hidden siblings: .NAME.tmp-XXXX (being written), .NAME.old-PID (replaced)


@contextlib.contextmanager
def atomic_dir(target: Path, overwrite: bool = False):
    """Yield a temporary folder that is renamed to `target` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP}", dir=target.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        _sync_tree(tmp)  # the contents on disk before the rename makes them visible (a power cut included)
        if target.exists():
            if not overwrite:
                raise FileExistsError(target)
            old = target.with_name(f".{target.name}{OLD}{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _sync(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _sync(path: Path) -> None:
    """fsync a file or a folder (its entries), where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder
    finally:
        os.close(fd)


def _sync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _sync(Path(root) / name)
        _sync(Path(root))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(target: Path) -> list[str]:
    """Repair `target` after a write was killed; returns what was done, one sentence each (empty: nothing).

    A .NAME.tmp-* sibling is an unfinished write: removed. A .NAME.old-* sibling is the previous
    version: deleted when `target` exists (the swap completed), renamed back to `target` when it does
    not (killed between the two renames), so a complete version is never lost. Call it only while
    no other process writes `target` (under the run folder's lock).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    done = []
    for tmp in sorted(target.parent.glob(f".{target.name}{TMP}*")):
        _remove(tmp)
        done.append(f"removed {tmp.name}, an interrupted write of {target.name}")
    olds = sorted(target.parent.glob(f".{target.name}{OLD}*"), key=lambda p: p.stat().st_mtime)
    if olds and not target.exists():
        os.replace(olds.pop(), target)  # the newest previous version
        done.append(f"restored {target.name} from its previous version (a write was killed between two renames)")
    for old in olds:
        _remove(old)
        done.append(f"removed {old.name}, a replaced version of {target.name}")
    return done


def atomic_write_bytes(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `data` to `path` through a temporary file and a rename (`sync`: on disk first; off for caches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # as an ordinary file, not mkstemp's 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))
