"""The one error type users see: a problem and the fix, on one line; and the line for an expected OSError of a place."""

import errno


class AdaptersGeoError(Exception):
    """A user-facing error: `problem` says what is wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — fix: {fix}" if fix else problem)


# Expected failures of the places a command reads and writes: errno -> (problem, fix). Others keep their traceback.
_WRITABLE = "make it writable, or choose another --out / $ADAPTERS_GEO_CACHE"
PLACES = {
    errno.EACCES: ("{path} is not accessible (permission denied)", _WRITABLE),
    errno.EPERM: ("{path} is not accessible (operation not permitted)", _WRITABLE),
    errno.EROFS: ("{path} is on a read-only file system", "choose another --out / $ADAPTERS_GEO_CACHE"),
    errno.ENOTDIR: ("{path}: a file stands where a folder should be", "choose an --out whose parents are folders"),
    errno.EEXIST: ("{path} already exists", "remove it or choose another --out"),
    errno.EISDIR: ("{path} is a folder where a file should be", "choose another path"),
    errno.ENOSPC: ("no space left on the device writing {path}", "free disk space, or point --out / $ADAPTERS_GEO_CACHE elsewhere"),
    errno.EDQUOT: ("disk quota exceeded writing {path}", "free space in your quota, or point --out elsewhere"),
    errno.ENAMETOOLONG: ("{path}: a name in it is too long for the file system", "choose a shorter --out or name"),
    errno.ELOOP: ("{path}: its path loops through symbolic links", "choose an --out whose parents are no link loop"),
}


def place_error(exc: OSError) -> AdaptersGeoError | None:
    """The one-line error for an expected OSError of a place (a path and the fix); None when unexpected."""
    if exc.errno not in PLACES:
        return None
    problem, fix = PLACES[exc.errno]
    return AdaptersGeoError(problem.format(path=exc.filename if exc.filename is not None else "a file"), fix)


def one_line(text: str) -> str:
    """`text` with every control character escaped: a newline or an escape sequence in a value a user typed
    (or in a path) is shown, not obeyed by the terminal, and a message stays one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
