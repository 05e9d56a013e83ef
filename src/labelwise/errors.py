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


class BrokenModel(LabelwiseError):
    """A model that gives NaN or infinite scores: its weights are damaged. The service reports itself unhealthy."""


class WriteError(LabelwiseError):
    """A write failed for want of space, quota or permission (see :func:`labelwise.files.write_error`).

    ``needed``: the bytes the file or folder needs, where known. Nothing half-written is left behind.
    """

    def __init__(self, message: str, path: str | os.PathLike, errno: int, needed: int | None = None):
        self.path, self.errno, self.needed = str(path), errno, needed
        super().__init__(message)


def os_error_line(err: OSError) -> str:
    """One line for an OSError that reached the command line: the path, what went wrong, no traceback."""
    where = f"{err.filename}: " if getattr(err, "filename", None) else ""
    lines = str(err).strip().splitlines()
    what = err.strerror or (lines[0][:200] if lines else type(err).__name__)
    return f"{where}{what}"


def shorten(value: object, limit: int = 80) -> str:
    """``repr`` of a user's value (a label, a text) for an error line, cut to about ``limit`` characters with its
    length when longer, so a 1 MB label does not become a 1 MB message."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit - 20]!r}… ({len(text):,} characters)"
