"""One annotated item from an annotation tool → an :class:`Example` the training format can hold.

Shared by the doccano reader (:mod:`labelwise.data.annotation`) and the Label Studio one
(:mod:`labelwise.data.labelstudio`), so both clean texts, check label names and complete label paths the same way:

* texts: tabs, line breaks and NUL become spaces (the data files are ``text<TAB>labels`` lines);
* labels: stripped, deduplicated (first order kept); a comma, tab or line break in one is an error, since the
  data files separate labels with commas;
* label paths (with a separator ``sep``): ``a##b##c`` brings its missing ancestors ``a`` and ``a##b``, put before
  it; an empty path element or a name repeated along one path (a cycle) is an error.

Every error is a :class:`DataError` naming the file and line (or the task, through ``where``) and what to do.
"""
from __future__ import annotations

import logging
from pathlib import Path

from labelwise.data.dataset import Example
from labelwise.errors import DataError

log = logging.getLogger("labelwise")

__all__ = ["checked_example", "clean_labels", "clean_text", "log_added_parents", "text_problem"]


def clean_text(text: str) -> str:
    for ch in "\t\r\n\x00":
        text = text.replace(ch, " ")
    return text.strip()


def clean_labels(path: Path, line: int | None, raw, where: str = "", sep: str | None = None,
                 added: list[int] | None = None) -> tuple[str, ...]:
    """The labels of one item, stripped, deduplicated, checked; with ``sep``, each path's missing ancestors are
    put before it (``added[0]`` counts them)."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise DataError(path, line, f"{where}'label' must be a list of label names, got {raw!r}")
    labels: dict[str, None] = {}
    given = {item.strip() for item in raw}
    for item in raw:
        label = item.strip()
        if not label:
            continue
        for bad, name in ((",", "a comma"), ("\t", "a tab"), ("\n", "a line break")):
            if bad in label:
                raise DataError(path, line, f"{where}label {label!r} contains {name}, which the training "
                                "format uses as a separator", "rename the label in the annotation tool")
        for node in _path_nodes(path, line, label, sep, where):
            if node not in labels and node not in given and added is not None:
                added[0] += 1
            labels[node] = None  # duplicates dropped, first order kept
    return tuple(labels)


def _path_nodes(path: Path, line: int | None, label: str, sep: str | None, where: str) -> list[str]:
    """``a##b##c`` → ``[a, a##b, a##b##c]`` (a flat label, or no ``sep``: ``[label]``), the path checked."""
    if not sep or sep not in label:
        return [label]
    parts = label.split(sep)
    if not all(p.strip() for p in parts):
        raise DataError(path, line, f"{where}label {label!r} has an empty path element (nothing before, after or "
                        f"between two {sep!r})", f"name every level in the annotation tool: parent{sep}child")
    parts = [p.strip() for p in parts]
    repeated = next((p for k, p in enumerate(parts) if p in parts[:k]), None)
    if repeated is not None:
        raise DataError(path, line, f"{where}label {label!r} names {repeated!r} twice along one path (a cycle)",
                        "rename one of them in the annotation tool")
    return [sep.join(parts[:k]) for k in range(1, len(parts) + 1)]


def log_added_parents(path: Path, added: int, sep: str | None) -> None:
    """One log line for the ancestors :func:`clean_labels` added to a whole file (or batch of tasks)."""
    if added:
        log.info("%s: added %d parent labels the annotations left out (a%sb brings a)", path, added, sep)


def checked_example(path: Path, line: int | None, text, labels: tuple[str, ...], where: str = "") -> Example:
    """An :class:`Example` of ``text`` (cleaned; it must be a non-empty string) and ``labels``."""
    problem = text_problem(text)
    if problem:
        raise DataError(path, line, f"{where}{problem[0]}", problem[1])
    return Example(clean_text(text), labels, line)


def text_problem(text) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) with an item's text, or None where it is a usable text."""
    if not isinstance(text, str):
        return f"the text must be a string, got {type(text).__name__}", ""
    if not clean_text(text):
        return "empty text", "remove the item or give it a text"
    return None
