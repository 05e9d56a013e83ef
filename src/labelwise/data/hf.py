"""Hugging Face ``datasets`` as labelled data: folders saved with ``save_to_disk``, and ``--hf_dataset NAME``.

A saved folder is read where a dataset folder is expected (``--dataset_dir``), its splits ``train``,
``validation`` (or ``dev`` / ``valid``) and ``test``, its columns found as :mod:`labelwise.data.tables` finds a
table's. :func:`hf_dataset_folder` turns anything ``datasets.load_dataset`` takes (a hub name such as
``go_emotions``, which needs internet, or a local folder of CSV / JSON / Parquet files) into such a folder, saved
once under the cache (``$LABELWISE_CACHE``, default ``~/.cache/labelwise``) and reused after. Reading needs the
``data`` extra (``datasets``).
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from labelwise.data.tables import TableColumns, _examples, _layout, _text
from labelwise.errors import DataError, LabelwiseError, shorten
from labelwise.files import atomic_dir

__all__ = ["cache_dir", "hf_dataset_folder", "hf_split_names", "is_hf_dataset", "read_hf_split"]

log = logging.getLogger("labelwise")

HF_DEV_SPLITS = ("validation", "dev", "valid")


def is_hf_dataset(folder: str | os.PathLike) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a DatasetDict, or one Dataset)."""
    folder = Path(folder)
    return (folder / "dataset_dict.json").is_file() or ((folder / "dataset_info.json").is_file()
                                                         and (folder / "state.json").is_file())



def _open_hf(folder: Path):
    try:
        import datasets
    except ImportError:
        raise LabelwiseError(f"{folder}: reading a Hugging Face dataset needs datasets: pip install "
                             "'labelwise[data]'") from None
    try:
        return datasets.load_from_disk(str(folder))
    except Exception as err:  # datasets raises several types for a damaged or foreign folder
        raise DataError(folder, None, f"not a dataset saved with datasets' save_to_disk ({shorten(str(err), 80)})",
                        "save it again with dataset.save_to_disk(folder)") from None


def hf_split_names(folder: str | os.PathLike) -> dict[str, str | None]:
    """Which of the folder's splits are train, dev (validation / dev / valid) and test."""
    data = _open_hf(Path(folder))
    names = list(data.keys()) if hasattr(data, "keys") else ["train"]
    dev = next((n for n in HF_DEV_SPLITS if n in names), None)
    return {"train": "train" if "train" in names else None, "dev": dev, "test": "test" if "test" in names else None}


def read_hf_split(folder: str | os.PathLike, split: str, columns: TableColumns | None = None,
                  labels: Sequence[str] | None = None, texts_only: bool = False):
    """(rows, label names, whether those are the dataset's own list) of one split of a saved Hugging Face dataset,
    as :func:`read_table` gives them (or its texts, ``texts_only``). Integer labels of a ``ClassLabel`` feature
    become its names, and its names, in order, are the list."""
    folder = Path(folder)
    columns = (columns or TableColumns()).validate()
    data = _open_hf(folder)
    if hasattr(data, "keys"):
        if split not in data:
            raise DataError(folder, None, f"no split {split!r}; it has {', '.join(data.keys())}",
                            "name one of them (`hf_split`)")
        data = data[split]
    where = folder / split
    rows = ((number, row) for number, row in enumerate(data, 1))
    names = list(data.column_names)
    if texts_only:
        layout = _layout(where, names, columns, None, need_labels=False)
        return [_text(where, n, row, layout.text) for n, row in rows]
    layout = _layout(where, names, columns, data[0] if len(data) else None, need_labels=True)
    if layout.label is not None:
        feature = data.features[layout.label]
        inner = getattr(feature, "feature", None) or (feature[0] if isinstance(feature, list) and feature else None)
        layout.names = getattr(inner, "names", None) or getattr(feature, "names", None)
    return _examples(where, rows, columns, labels, layout)


def cache_dir() -> Path:
    """Where :func:`hf_dataset_folder` keeps what it loaded: ``$LABELWISE_CACHE``, else ``~/.cache/labelwise``."""
    return Path(os.environ.get("LABELWISE_CACHE") or Path.home() / ".cache" / "labelwise")


def hf_dataset_folder(name: str, config: str | None = None, *, cache: str | os.PathLike | None = None,
                      refresh: bool = False) -> Path:
    """A ``save_to_disk`` folder of the dataset ``name`` (a hub name or a local path ``datasets.load_dataset``
    reads), loaded and saved once under ``cache`` (default :func:`cache_dir`), then reused; a folder already saved
    with ``save_to_disk`` is returned as it is. ``config``: the dataset's configuration (``simplified``)."""
    path = Path(name).expanduser()
    if is_hf_dataset(path):
        return path
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", str(path.resolve()) if path.exists() else name).strip("_")
    target = Path(cache or cache_dir()) / "datasets" / (key + (f"--{config}" if config else ""))
    if is_hf_dataset(target) and not refresh:
        log.info("hf_dataset %s: the copy saved in %s (delete it to load again)", name, target)
        return target
    try:
        import datasets
    except ImportError:
        raise LabelwiseError(f"{name}: loading a Hugging Face dataset needs datasets: pip install "
                             "'labelwise[data]'") from None
    where = "the local files" if path.exists() else "the Hugging Face hub (needs internet)"
    log.info("hf_dataset %s: loading it from %s", name, where)
    try:
        data = datasets.load_dataset(str(path) if path.exists() else name, config)
    except Exception as err:  # no network, an unknown name, a missing configuration: datasets raises many types
        raise LabelwiseError(f"{name}: datasets.load_dataset could not load it from {where} "
                             f"({shorten(str(err).splitlines()[0] if str(err) else type(err).__name__, 120)}); "
                             "check the name (and `hf_config`), or save it with dataset.save_to_disk(DIR) and "
                             "pass DIR as `dataset_dir`") from None
    with atomic_dir(target) as tmp:
        data.save_to_disk(str(tmp))
    log.info("hf_dataset %s: saved in %s (%s)", name, target,
             ", ".join(f"{split} {len(rows):,}" for split, rows in data.items()) if hasattr(data, "items") else
             f"{len(data):,} rows")
    return target
