"""One run at a time per output folder: :func:`output_lock` (``train``, ``prune``, ``export``, ``index`` take it)."""
from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labelwise.errors import LabelwiseError
from labelwise.files import umask

__all__ = ["locks_output", "output_lock"]

_HELD: dict[str, int] = {}  # lock file → how many nested output_lock calls of this process hold it


@contextmanager
def output_lock(path: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside folder ``path`` while a run writes it; a second labelwise run into the same
    folder refuses in one line, instead of both training and the last to finish winning.

    Nested calls of one process share the lock; the kernel drops the lock of a killed run (flock), so a stale
    file blocks nothing. Where the platform has no flock (Windows), runs are not locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        enabled = False
    target = Path(os.path.abspath(path))
    lock = target.with_name(f".{target.name}.lock")
    key = str(lock)
    if not enabled:
        yield
        return
    if key in _HELD:  # this process holds it already (a command inside a command)
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LabelwiseError(f"{path}: another labelwise run (process {holder}) is writing this folder; wait "
                                 "for it to finish, or choose another folder") from None
        try:  # the file may have been removed by the run that held it, between our open and our lock
            same = os.path.exists(lock) and os.stat(lock).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode("ascii"))
    _HELD[key] = 1
    try:
        yield
    finally:
        _HELD[key] -= 1
        if not _HELD[key]:
            del _HELD[key]
            try:
                os.unlink(lock)
            except OSError:
                pass
            os.close(fd)


def locks_output(param: str):
    """Decorator: the function holds :func:`output_lock` on its argument ``param`` (a folder) while it runs."""
    def wrap(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with output_lock(bound.arguments[param]):
                return function(*args, **kwargs)
        return run
    return wrap
