"""The one error type users see: a problem and the fix, on one line."""


class AdaptersGeoError(Exception):
    """A user-facing error: `problem` says what is wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — fix: {fix}" if fix else problem)
