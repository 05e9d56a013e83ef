"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""
from __future__ import annotations

import os


class LabelwiseError(Exception):
    """Something the user can fix (bad file, bad flag, missing model). Never a bug."""


class DataError(LabelwiseError):
    """A problem in a user's data file, located by file and line."""

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str, fix: str = ""):
        self.path, self.line, self.problem, self.fix = str(path), line, problem, fix
        where = f"{self.path}:{line}" if line is not None else self.path
        message = f"{where}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class OutputExistsError(LabelwiseError):
    """An output that exists may not be replaced (see :func:`labelwise.files.check_outputs`).

    The message suggests no flag; the command line adds its own (``--overwrite``) where it has one.
    """

    def __init__(self, message: str, paths):
        self.paths = list(paths)
        super().__init__(message)
