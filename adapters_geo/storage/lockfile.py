"""One writer per folder: FOLDER/.lock, created with O_EXCL, holds the writer's pid and host.

A lock whose process is gone (killed, crashed) is stale: the next writer takes it over and says
so on stderr. A lock of a live process is refused in one line naming the pid. The writer also
holds an OS lock (flock) on the file while it runs, which the kernel (or a shared file system's
lock manager) drops when the process dies: that is how a lock written on another host, whose pid
cannot be checked from here, is told live from stale. Where the file system has no such locks,
another host's lock counts as live. Caution: a shared file system whose flock is local to each
machine (NFS mounted with local_lock=flock or all, Lustre's localflock, BeeGFS's default) shows
another host's live lock as free; run one writer per folder there.
"""

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError, one_line

NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except (OverflowError, ValueError):
        return False  # not a pid at all
    return True


def _holder(path: Path) -> tuple[int | None, str]:
    """(pid, host) written in a lock file; (None, '') when it cannot be read."""
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


_HELD: dict[Path, int] = {}  # our lock files -> the descriptor holding their OS lock (closed on release)


def _create(path: Path) -> bool:
    """Create the lock file with our pid and host, and hold its OS lock; False when it already exists."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with contextlib.suppress(OSError):  # no OS locks on this file system: the pid alone then
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    _HELD[path] = fd
    return True


def _os_lock_free(path: Path) -> bool:
    """True when nobody holds the OS lock of `path` (its writer died, wherever it ran); False when someone
    does, or when this file system cannot tell."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (EWOULDBLOCK), or no OS locks here
        return False
    finally:
        os.close(fd)  # drops the probe's lock at once
    return True


def _take_over(path: Path, pid: int | None, host: str = "") -> None:
    """Move a stale lock aside (one process wins the rename), then drop it."""
    aside = path.with_name(f"{NAME}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process took it over first: try again
    if _holder(aside)[0] != pid:  # raced: what we moved is a fresh lock; put it back (never over another)
        with contextlib.suppress(OSError):
            os.link(aside, path)
        aside.unlink(missing_ok=True)
        return
    aside.unlink(missing_ok=True)
    whose = f"of process {pid}, which is no longer running" if pid is not None else "that names no process"
    if pid is not None and host not in ("", socket.gethostname()):
        whose = f"of process {pid} on {host}, which holds it no more (its OS lock is free)"
    print(one_line(f"adapters-geo: {path.parent}: took over a stale lock {whose}"), file=sys.stderr, flush=True)


def _refuse_if_held(path: Path, pid: int | None, host: str) -> None:
    """One line when the lock at `path` names a live process (or one on another host)."""
    here = host in ("", socket.gethostname())
    if pid is not None and (_alive(pid) if here else not _os_lock_free(path)):
        where = "" if here else f" on {host}"
        raise AdaptersGeoError(
            f"{path.parent} is being written by process {pid}{where} (its lock file {path} exists)",
            f"wait for that run to end, or use another --out; if no such process runs, delete {path}",
        )


def check(folder: Path) -> None:
    """Refuse, without writing anything, a folder another live process holds."""
    path = Path(folder) / NAME
    if path.is_file():
        _refuse_if_held(path, *_holder(path))


def acquire(folder: Path) -> Path:
    """Lock `folder` (created if needed) for this process; returns the lock file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    for attempt in range(10):
        if _create(path):
            return path
        pid, host = _holder(path)
        if pid is None and attempt < 5:
            time.sleep(0.05)  # being written by its creator this instant, or unreadable: look again, then take it
            continue
        _refuse_if_held(path, pid, host)
        _take_over(path, pid, host)
    raise AdaptersGeoError(f"could not lock {folder}: other processes keep taking its lock {path}", "run one at a time")


def release(path: Path) -> None:
    """Remove our lock file (only if it is still ours), then drop its OS lock."""
    if _holder(path)[0] == os.getpid():
        path.unlink(missing_ok=True)
    fd = _HELD.pop(Path(path), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def locked(folder: Path):
    """Hold `folder`'s lock for the block; a folder this created is removed again if left empty."""
    folder = Path(folder)
    created = not folder.exists()
    path = acquire(folder)
    try:
        yield path
    finally:
        release(path)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when nothing was written
