"""Weight files checked against the checksums their folder recorded when labelwise wrote it.

A checkpoint or an export lists, in ``labelwise.json`` under ``"checksums"``, the SHA-256 of every weight file it
holds (``*.safetensors``, and the patterns an export's writer names for its engine's files), by path inside the
folder. Loading verifies each
one that is there: a file changed after it was written (a bad copy, a flipped disk block, bytes overwritten in
place with the size kept) is one line naming it, instead of a model that answers NaN. This guards against damage,
not against someone who also edits ``labelwise.json``; folders written before checksums were kept load unchecked.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from labelwise.errors import LabelwiseError

__all__ = ["WEIGHT_PATTERNS", "checksums", "sha256", "verify_checksums"]

WEIGHT_PATTERNS = ("*.safetensors",)  # a checkpoint's; exports add their engine's files


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: str | os.PathLike, patterns=()) -> dict[str, str]:
    """{path inside ``folder`` (with /): SHA-256} of every weight file under ``folder`` (``*.safetensors`` and
    ``patterns``), sorted by path."""
    folder = Path(folder)
    found = {p for pattern in (*WEIGHT_PATTERNS, *patterns) for p in folder.rglob(pattern) if p.is_file()}
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(found)}


def verify_checksums(folder: str | os.PathLike, recorded) -> None:
    """Raise one line for the first weight file of ``folder`` whose SHA-256 is not the one ``recorded``.

    ``recorded``: the folder's ``"checksums"`` (None or empty: nothing to check). Every recorded file that exists
    is checked; a missing one is left to the loader, which names it."""
    if not recorded:
        return
    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in recorded.items()):
        raise LabelwiseError(f"{Path(folder) / 'labelwise.json'}: \"checksums\" is not an object of file paths and "
                             "SHA-256 digests; restore the folder from a copy, or write it again")
    for name in sorted(recorded):
        path = Path(folder) / name
        if not path.is_file():
            continue
        if sha256(path) != recorded[name]:
            raise LabelwiseError(f"{path}: its content is not what labelwise wrote (its SHA-256 differs from the one "
                                 "in labelwise.json): the file was damaged or changed; restore the folder from a "
                                 "copy, or write it again (labelwise train; labelwise export for an export)")
