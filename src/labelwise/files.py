"""Safe writes: everything goes to a temporary file or folder first and is renamed into place."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` as a whole.

    The old folder is only removed after the new one is complete, so a crash at any point
    leaves either the old or the new folder in place (never half of one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None] = (), *,
                  overwrite: bool = False, marker: str | None = None) -> list[Path]:
    """The one guard before writing outputs a user names; returns ``outputs`` as paths.

    Refuses (:class:`~labelwise.errors.LabelwiseError`) an output that is also one of ``inputs`` (compared
    after resolving links and ``..``), and a folder replaced as a whole (``marker`` given) that holds one.
    Refuses (:class:`~labelwise.errors.OutputExistsError`) to replace what exists: files unless ``overwrite``;
    with ``marker``, a file or a non-empty folder without ``marker`` in it (labelwise did not write it),
    whatever ``overwrite`` says. Messages name the paths, never a command-line flag.
    """
    from labelwise.errors import LabelwiseError, OutputExistsError

    outputs = [Path(p) for p in outputs]
    sources = [(Path(p), Path(p).resolve()) for p in inputs if p is not None]
    for out in outputs:
        target = out.resolve()
        for given, source in sources:
            named = "" if str(given) == str(out) else f" ({given})"
            if target == source:
                raise LabelwiseError(f"{out}: this output is also an input{named}; choose another output path")
            if marker and target in source.parents:
                raise LabelwiseError(f"{out}: this folder would be replaced as a whole, but it holds the input "
                                     f"{given}; choose another output folder")
    if marker:
        foreign = [p for p in outputs
                   if p.exists() and (not p.is_dir() or (any(p.iterdir()) and not (p / marker).exists()))]
        if foreign:
            raise OutputExistsError(f"{', '.join(map(str, foreign))}: exists and was not written by labelwise (no "
                                    f"{marker}); it would be replaced as a whole, so choose a new or empty folder",
                                    foreign)
    elif not overwrite:
        existing = [p for p in outputs if p.exists()]
        if existing:
            one = len(existing) == 1
            raise OutputExistsError(f"{', '.join(map(str, existing))}: already exist{'s' if one else ''}; choose "
                                    f"another output path or allow overwriting {'it' if one else 'them'}", existing)
    return outputs
