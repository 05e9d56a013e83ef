"""The retrieval kind: an index folder from ``labelwise index``, scored by its nearest labelled neighbours.

The backend itself (:class:`labelwise.predict.retrieval.RetrievalBackend`) lives with the index it reads; this
module declares the kind to :mod:`labelwise.predict.backends`.
"""
from __future__ import annotations

from pathlib import Path

from labelwise.predict.backends import Kind, Opened, register
from labelwise.predict.retrieval import INDEX_FILE, open_index

__all__ = ["KIND"]


def _open(folder, device=None, num_threads=None, precision="fp32", **options) -> Opened:
    return Opened(*open_index(folder, device=device, **options))


def _is_index(folder: Path) -> bool:
    return (folder / INDEX_FILE).exists()


KIND = register(Kind("retrieval", "retrieval index", recognise=_is_index, open=_open, priority=10,
                     make="`labelwise index`", option="index_dir"))
