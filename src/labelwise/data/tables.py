"""Labelled data in the files people have: CSV / TSV, JSON Lines, Parquet, and Hugging Face datasets saved to disk.

Chosen by the file's extension (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``; anything else is PaddleNLP's
``text<TAB>labels`` format, :mod:`labelwise.data.dataset`), or, for a folder written by ``datasets``'
``save_to_disk``, by the folder itself. :class:`TableColumns` says where the text and the labels are; left unset,
the columns are found by name (``text``, ``sentence``, ``comment_text`` ...; ``labels`` or ``label``), and a table
with no labels column whose other columns all hold 0 / 1 is read as one column per label (the shape of the
best-known multi-label competitions). The labels of a row can be a list (JSON Lines, Parquet, datasets; in a CSV cell
as JSON: ``["a", "b"]``), a ``label_sep``-joined string (``a,b``), one name, integer ids of a datasets ``ClassLabel``
feature (mapped to its names), or 0 / 1 cells of ``label_columns``.

Every problem is one :class:`~labelwise.errors.DataError` naming the file, the row (the line for CSV and JSON
Lines), the column, what is wrong and how to fix it. The readers: the standard ``csv`` and ``json`` modules,
``pyarrow`` for Parquet and ``datasets`` for its folders (the ``data`` extra), not pandas: they are what those
formats need, and pandas adds nothing to reading a column of texts but ~60 MB of install.
"""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from labelwise.errors import DataError, LabelwiseError, shorten
from labelwise.settings import setting

__all__ = ["TABLE_EXTENSIONS", "DatasetFiles", "TableColumns", "columns_of", "is_table", "labels_by_frequency",
           "read_table", "read_table_texts", "table_file"]

TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".parquet")
TEXT_NAMES = ("text", "texts", "sentence", "comment_text", "content", "document", "review", "body")
LABEL_NAMES = ("labels", "label", "tags", "categories")


@dataclass
class DatasetFiles:
    """A dataset folder and the names of its files (PaddleNLP's layout); configs that hold these fields take them
    from here (:func:`labelwise.settings.same_setting`)."""

    dataset_dir: str | None = setting(None, help="folder with train.txt, dev.txt, label.txt (or .csv / .tsv / .jsonl "
                                                 "/ .parquet splits, or a saved Hugging Face dataset)")
    train_file: str = setting("train.txt", help="file name of the train split")
    dev_file: str = setting("dev.txt", help="file name of the dev split")
    test_file: str = setting("test.txt", help="file name of the test split")
    label_file: str = setting("label.txt", help="file name of the label list")

    def file_names(self) -> dict[str, str]:
        """``train_file=...`` etc., as :func:`labelwise.data.dataset.load_dataset` takes them."""
        return {f"{split}_file": getattr(self, f"{split}_file") for split in ("train", "dev", "test", "label")}


@dataclass
class TableColumns:
    """Where a table's text and labels are (flags of every command that reads data)."""

    text_column: str | None = setting(None, help="column of the texts in a CSV / JSONL / Parquet file or a Hugging "
                                                 "Face dataset (default: text, sentence, comment_text, ...)")
    label_column: str | None = setting(None, help="column of the labels: a list, or names joined by --label_sep "
                                                  "(default: labels or label)")
    label_columns: list[str] | None = setting(None, nargs="+", metavar="COLUMN",
                                              help="instead: one 0/1 column per label, named after it (default: "
                                                   "found when the table has no labels column and its other "
                                                   "columns all hold 0/1)")
    label_sep: str = setting(",", help="separator of label names in one cell")

    def validate(self) -> "TableColumns":
        if self.label_column and self.label_columns:
            raise LabelwiseError("`label_column` and `label_columns` both given: a table has its labels in one "
                                 "column or in one 0/1 column per label; give one of them")
        if not self.label_sep:
            raise LabelwiseError("`label_sep` is empty; give the separator of label names, such as , or |")
        return self


def columns_of(config) -> TableColumns:
    """The :class:`TableColumns` of a config that holds their fields, or of a mapping (a checkpoint's
    ``training_args``; fields it lacks or leaves None keep their defaults)."""
    import dataclasses

    get = config.get if isinstance(config, dict) else lambda name: getattr(config, name, None)
    given = {f.name: get(f.name) for f in dataclasses.fields(TableColumns)}
    return TableColumns(**{name: value for name, value in given.items() if value is not None}).validate()


def is_table(path: str | os.PathLike, columns: TableColumns | None = None) -> bool:
    """Whether ``path`` is read as a table: by its extension; a ``.tsv`` only when its first line names a text
    column (PaddleNLP's ``text<TAB>labels`` files are often called .tsv too)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".tsv":
        return suffix in TABLE_EXTENSIONS
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = [name.strip() for name in handle.readline().rstrip("\r\n").split("\t")]
    except OSError:
        return False
    given = columns.text_column if columns is not None else None
    return (given in header) if given else any(name.lower() in TEXT_NAMES for name in header)


def table_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or, when that ``.txt`` is missing, the one table of the same stem (train.csv, ...)."""
    path = folder / name
    if path.exists() or Path(name).suffix.lower() != ".txt":
        return path if path.exists() else None
    found = [folder / f"{Path(name).stem}{ext}" for ext in TABLE_EXTENSIONS if (folder / f"{Path(name).stem}{ext}")
             .exists()]
    if len(found) > 1:
        raise DataError(folder, None, f"{', '.join(p.name for p in found)}: more than one file for the "
                                      f"{Path(name).stem} split", "keep one, or name it with `train_file` etc.")
    return found[0] if found else None


# ---- rows --------------------------------------------------------------------------------------------------------
def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line or row number, row as a dict) of a CSV / TSV / JSONL / Parquet file."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",", strict=True)
            line = 1  # where the row being read starts (a quoted cell may span lines)
            try:
                if not reader.fieldnames:
                    raise DataError(path, None, "empty file, or no header row",
                                    "the first row names the columns, such as text,labels")
                line = reader.line_num + 1
                for row in reader:
                    if None in row:
                        raise DataError(path, line, f"{len(row) - 1 + len(row[None])} cells, but the header names "
                                                    f"{len(reader.fieldnames)} columns",
                                        "quote cells that hold the separator")
                    yield line, row
                    line = reader.line_num + 1
            except UnicodeDecodeError as err:
                raise DataError(path, None, f"not valid UTF-8 (byte {err.start})", "save the file as UTF-8") from None
            except csv.Error as err:
                raise DataError(path, line, f"not CSV: {err}", "check the quoting of that row") from None
    elif suffix == ".jsonl":
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
                except (UnicodeDecodeError, ValueError) as err:
                    raise DataError(path, number, f"not a JSON object ({shorten(str(err), 60)})",
                                    'write one object a line, such as {"text": "...", "labels": ["a"]}') from None
                if not isinstance(row, dict):
                    raise DataError(path, number, f"a JSON {type(row).__name__}, not an object",
                                    'write one object a line, such as {"text": "...", "labels": ["a"]}')
                yield number, row
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise LabelwiseError(f"{path}: reading Parquet needs pyarrow: pip install 'labelwise[data]'") from None
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises its own error types for a damaged file
            raise DataError(path, None, f"not a Parquet file ({shorten(str(err), 80)})",
                            "write it again with pyarrow or pandas") from None
        for number, row in enumerate(table.to_pylist(), 1):
            yield number, row
    else:
        raise LabelwiseError(f"{path}: not a table ({', '.join(TABLE_EXTENSIONS)})")


def _pick(names: Sequence[str], given: str | None, candidates: Sequence[str], what: str, flag: str, path) -> str | None:
    if given is not None:
        if given not in names:
            raise DataError(path, None, f"no column {given!r} (`{flag}`); the columns are {', '.join(names)}",
                            f"give `{flag}` one of them")
        return given
    lowered = {n.lower(): n for n in names}
    return next((lowered[c] for c in candidates if c in lowered), None)


@dataclass
class _Layout:
    text: str
    label: str | None  # one column of label names (or ids)
    label_columns: list[str] | None  # one 0/1 column per label
    names: list[str] | None = None  # a datasets ClassLabel's names, for integer ids


def _layout(path, names: list[str], columns: TableColumns, first: dict | None, need_labels: bool) -> _Layout:
    text = _pick(names, columns.text_column, TEXT_NAMES, "text", "text_column", path)
    if text is None:
        raise DataError(path, None, f"no text column among {', '.join(names)}",
                        "name it text, or give `text_column`")
    if columns.label_columns:
        missing = [c for c in columns.label_columns if c not in names]
        if missing:
            raise DataError(path, None, f"no column {missing[0]!r} (`label_columns`); the columns are "
                                        f"{', '.join(names)}", "give the names of the 0/1 columns")
        return _Layout(text, None, list(columns.label_columns))
    label = _pick(names, columns.label_column, LABEL_NAMES, "labels", "label_column", path)
    if label is not None or not need_labels:
        return _Layout(text, label, None)
    others = [n for n in names if n != text and n.lower() not in ("id", "idx", "index")]
    if others and first is not None and all(_flag(first.get(n)) is not None for n in others):
        return _Layout(text, None, others)
    raise DataError(path, None, f"no labels column among {', '.join(names)}",
                    "name it labels, give `label_column`, or `label_columns` for one 0/1 column per label")


def _flag(value) -> bool | None:
    """A 0/1 cell as True / False; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", "0.0", "1.0"):
        return value.strip().lower() in ("1", "true", "1.0")
    return None


def _labels(path, number: int, row: dict, layout: _Layout, sep: str) -> list[str]:
    if layout.label_columns is not None:
        out = []
        for name in layout.label_columns:
            flag = _flag(row.get(name))
            if flag is None:
                raise DataError(path, number, f"column {name!r} holds {shorten(row.get(name), 30)}, not 0 or 1",
                                "one 0/1 column per label: 1 where the text has the label")
            if flag:
                out.append(name)
        return out
    value = row.get(layout.label)
    if value is None or value == "":
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON list in a CSV cell
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(path, number, f"column {layout.label!r}: {shorten(value, 40)} is not a JSON list",
                            'write ["a", "b"], or the names joined by `label_sep`') from None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(sep)]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool) and layout.names:
        items = [value]
    else:
        raise DataError(path, number, f"column {layout.label!r} holds a {type(value).__name__}, not label names",
                        f"write a list of names, or names joined by {sep!r}")
    out = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and layout.names:
            if not 0 <= item < len(layout.names):
                raise DataError(path, number, f"column {layout.label!r}: label id {item} is not among the "
                                              f"{len(layout.names)} class names", "fix the id")
            item = layout.names[item]
        if not isinstance(item, str) or not item.strip():
            raise DataError(path, number, f"column {layout.label!r}: {shorten(item, 30)} is not a label name",
                            "label names are non-empty strings")
        if item.strip() not in out:
            out.append(item.strip())
    return out


def _text(path, number: int, row: dict, column: str) -> str:
    text = row.get(column)
    if not isinstance(text, str) or not text.strip():
        got = "empty" if isinstance(text, str) or text is None else f"a {type(text).__name__}"
        raise DataError(path, number, f"column {column!r}: the text is {got}", "every row needs a text; remove it")
    return " ".join(text.split())  # tabs and line breaks become spaces, as in the text format


def read_table(path: str | os.PathLike, columns: TableColumns | None = None, labels: Sequence[str] | None = None):
    """(rows, label names, whether those are the table's own list) of a table file: each row (text, labels, line or
    row number); the names in first-seen order, or, True, the 0/1 columns in the table's order. ``labels``
    (label.txt) validates the names. :func:`labelwise.data.dataset.read_examples` makes examples of the rows."""
    path = Path(path)
    columns = (columns or TableColumns()).validate()
    return _examples(path, _rows(path), columns, labels)


def _examples(path, rows, columns: TableColumns, labels, layout: _Layout | None = None):
    """(rows, label names, whether they are the table's own list); ``layout`` None: found from the first row."""
    known = set(labels) if labels is not None else None
    out, seen = [], {}
    for number, row in rows:
        layout = layout or _layout(path, list(row), columns, row, need_labels=True)
        found = _labels(path, number, row, layout, columns.label_sep)
        for label in found:
            if known is not None and label not in known:
                raise DataError(path, number, f"label {shorten(label)} is not in label.txt",
                                "add it to label.txt or fix the spelling")
            seen.setdefault(label, None)
        out.append((_text(path, number, row, layout.text), tuple(found), number))
    if not out:
        raise DataError(path, None, "no rows", "write one row per labelled text")
    if layout.label_columns is not None:  # every column is a label, in the table's order, even one never set
        return out, list(layout.label_columns), True
    if layout.names:  # a datasets ClassLabel: its names, in its order
        return out, list(layout.names), True
    return out, list(seen), False


def read_table_texts(path: str | os.PathLike, columns: TableColumns | None = None) -> list[str]:
    """The texts of a table file (its labels, if any, are ignored)."""
    path = Path(path)
    columns = (columns or TableColumns()).validate()
    texts, layout = [], None
    for number, row in _rows(path):
        layout = layout or _layout(path, list(row), columns, row, need_labels=False)
        texts.append(_text(path, number, row, layout.text))
    return texts


def labels_by_frequency(examples) -> list[str]:
    """Label names by how many examples carry them, most first (ties by name): label.txt when there is none."""
    counts = Counter(label for e in examples for label in e.labels)
    return sorted(counts, key=lambda label: (-counts[label], label))
