"""Dataset folder → validated examples and the label set.

This module and :mod:`labelwise.data.tables` (CSV / TSV, JSON Lines, Parquet, saved Hugging Face datasets, chosen
by extension) are the only ones that read a user's data files. The text format is PaddleNLP's:

* ``train.txt`` / ``dev.txt`` / ``test.txt``: ``<text>\\t<label>,<label>,...`` one example a line
  (``<text>\\t`` is an example with no label: real multi-label data has negatives);
* ``label.txt``: one label a line (line order = class id);
* ``data.txt``: one unlabelled text a line (a ``text\\tlabels`` line is accepted: its text is used).

Labels may be paths (``体育##足球``, :mod:`labelwise.data.hierarchy`): label.txt is checked as a tree and a data
line that lists a label without its ancestors gets them (counted, and reported once by :func:`load_dataset`).

Every problem is raised as a :class:`~labelwise.errors.DataError` naming the file, the line and the fix.
A UTF-8 BOM, CRLF line ends, trailing blank lines and a label repeated within a line are handled silently.
Nothing here imports torch.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from labelwise.data.hierarchy import DEFAULT_SEP, Hierarchy, separator, written_otherwise
from labelwise.errors import DataError, LabelwiseError, shorten
from labelwise.data.hf import hf_split_names, is_hf_dataset, read_hf_split
from labelwise.data.tables import TableColumns, is_table, labels_by_frequency, read_table, read_table_texts, table_file
from labelwise.files import atomic_write_text

__all__ = [
    "Example", "Dataset", "read_labels", "read_examples", "read_texts", "load_dataset", "complete_ancestors",
    "multi_hot", "format_example", "write_examples", "write_lines", "save_dataset", "read_lines", "check_same_labels",
]

log = logging.getLogger("labelwise")


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[str, ...] = ()
    line: int | None = None  # 1-based line in the file it came from


@dataclass
class Dataset:
    labels: list[str]
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] | None = None
    data: list[str] | None = None
    root: Path | None = None
    hierarchy_sep: str | None = DEFAULT_SEP  # how label names spell a path (None: flat names)
    added_parents: int = 0  # ancestors that load_dataset added to the data lines that lacked them
    _hierarchy: Hierarchy | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def hierarchy(self) -> Hierarchy:
        """The label tree (:class:`~labelwise.data.hierarchy.Hierarchy`; flat when no label is a path)."""
        if self._hierarchy is None or self._hierarchy.labels != tuple(self.labels):
            self._hierarchy = Hierarchy.from_labels(self.labels, self.hierarchy_sep)
        return self._hierarchy

    def split(self, name: str) -> list[Example]:
        examples = {"train": self.train, "dev": self.dev, "test": self.test}.get(name)
        if examples is None:
            raise LabelwiseError(f"{self.root}: there is no '{name}' split in this dataset folder")
        return examples


def read_lines(path: str | os.PathLike) -> list[str]:
    """Read a UTF-8 text file as lines (LF, CRLF or CR-only endings): BOM dropped, trailing blank lines dropped."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "file not found", "check `dataset_dir` and the file names")
    if path.is_dir():
        raise DataError(path, None, "is a folder, expected a text file")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines: list[str] = []
    newline = b"\n" if b"\n" in raw or b"\r" not in raw else b"\r"  # CR alone: classic Mac OS line endings
    for number, chunk in enumerate(raw.split(newline), start=1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(path, number, f"not valid UTF-8 (byte {err.start + 1} of the line)",
                            "save the file as UTF-8") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _check_text(path: Path, number: int, text: str) -> str:
    if not text.strip():
        raise DataError(path, number, "empty text", "every line needs a text before the tab; remove the line")
    if "\r" in text or "\x00" in text:
        raise DataError(path, number, "text contains a carriage return or NUL character",
                        "remove control characters from the text")
    return text


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read ``label.txt``: one unique label a line, no commas or tabs (``label==word``: :func:`read_label_words`)."""
    return list(read_label_words(path))


def read_label_words(path: str | os.PathLike) -> dict[str, str]:
    """``label.txt`` as {label: the text that names it}: the label itself, or ``word`` on a ``label==word`` line.

    PaddleNLP's few-shot route lets a long label name a short word this way; the data files use the label.
    Few-shot and zero-shot models embed the word.
    """
    path = Path(path)
    lines = read_lines(path)
    labels: list[str] = []
    words: dict[str, str] = {}
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        label, _, word = line.strip().partition("==")
        label, word = label.strip(), word.strip()
        if _ and not (label and word):
            raise DataError(path, number, f"{shorten(line.strip())}: a mapping line needs a label and a word",
                            "write label==word")
        words[label] = word or label
        if not label:
            raise DataError(path, number, "blank line in the label file", "remove it")
        if "\t" in label:
            raise DataError(path, number, f"label {shorten(label)} contains a tab", "one label per line, nothing else")
        if "," in label:
            raise DataError(path, number, f"label {shorten(label)} contains a comma, which separates labels in "
                            "the data files", "rename the label")
        if label in seen:
            raise DataError(path, number, f"duplicate label {shorten(label)} (first on line {seen[label]})",
                            "keep one line per label")
        seen[label] = number
        labels.append(label)
    if not labels:
        raise DataError(path, None, "the label file is empty", "write one label per line")
    return {label: words[label] for label in labels}


def _parse_label_field(path: Path, number: int, field_text: str, known: set[str] | None) -> tuple[str, ...]:
    if not field_text.strip():
        return ()
    out: list[str] = []
    for item in field_text.split(","):
        label = item.strip()
        if not label:
            raise DataError(path, number, f"blank label in {shorten(field_text)}",
                            "labels are separated by single commas, with no empty item")
        if known is not None and label not in known:
            other = written_otherwise(label, known)
            if other is not None:
                raise DataError(path, number, f"label {shorten(label)} is not in label.txt, which has {shorten(other)}"
                                ": the levels of the path are separated another way", f"write {other}")
            raise DataError(path, number, f"label {shorten(label)} is not in label.txt",
                            "add it to label.txt or fix the spelling")
        if label not in out:  # a repeated label within one line is harmless
            out.append(label)
    return tuple(out)


def read_examples(path: str | os.PathLike, labels: Sequence[str] | None = None,
                  columns: TableColumns | None = None) -> list[Example]:
    """Read a labelled split (``text\\tlabel,label``, or a table: :mod:`labelwise.data.tables`). ``labels`` (from
    label.txt) validates names."""
    path = Path(path)
    if is_table(path, columns):
        return [Example(*row) for row in read_table(path, columns, labels)[0]]
    known = set(labels) if labels is not None else None
    examples: list[Example] = []
    for number, line in enumerate(read_lines(path), start=1):
        tabs = line.count("\t")
        if tabs == 0:
            if not line.strip():
                raise DataError(path, number, "blank line", "remove it")
            raise DataError(path, number, "no tab between text and labels",
                            "write '<text>\\t<label>,<label>' (a text with no label ends with a tab)")
        if tabs > 1:
            raise DataError(path, number, f"{tabs} tabs, expected exactly 1",
                            "a text may not contain a tab; replace tabs in the text with spaces")
        text, field_text = line.split("\t")
        text = _check_text(path, number, text)
        examples.append(Example(text, _parse_label_field(path, number, field_text, known), number))
    return examples


def read_texts(path: str | os.PathLike, columns: TableColumns | None = None) -> list[str]:
    """Read unlabelled texts (``data.txt``, or a table's text column); for a ``text\\tlabels`` line the text is used."""
    path = Path(path)
    if is_table(path, columns):
        return read_table_texts(path, columns)
    texts = []
    for number, line in enumerate(read_lines(path), start=1):
        text = line.split("\t", 1)[0]
        texts.append(_check_text(path, number, text))
    return texts


def load_dataset(
    dataset_dir: str | os.PathLike,
    *,
    train_file: str = "train.txt",
    dev_file: str = "dev.txt",
    test_file: str = "test.txt",
    label_file: str = "label.txt",
    data_file: str = "data.txt",
    require: Iterable[str] = ("train", "dev"),
    hierarchy_sep: str | None = DEFAULT_SEP,
    columns: TableColumns | None = None,
    labels: Sequence[str] | None = None,
) -> Dataset:
    """Load a dataset folder. Splits named in ``require`` must exist; others are read when present.

    A split may be a table (``train.csv`` for a missing ``train.txt``, or any ``*_file`` ending in .csv, .tsv, .jsonl,
    .parquet; ``columns`` says where its text and labels are), and the folder may be a Hugging Face dataset saved with
    ``save_to_disk`` (splits train, validation or dev, test). Without label.txt the labels are ``labels`` (a model's,
    when it scores the data) or else every label the splits use, most frequent first; said in one line.

    Label names that hold ``hierarchy_sep`` are paths of a tree (None or "none": flat names): label.txt is
    checked as a tree, and a line's missing ancestors are added to it, counted in ``added_parents`` and
    reported once as a warning.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise LabelwiseError(f"{root}: dataset folder not found (`dataset_dir`)")
    hf = is_hf_dataset(root)
    files = {"train": train_file, "dev": dev_file, "test": test_file}
    hf_names = hf_split_names(root) if hf else {}
    paths = {name: None if hf else table_file(root, filename) for name, filename in files.items()}
    if (root / label_file).exists() or not (hf or any(p is not None and is_table(p, columns) for p in paths.values())):
        known = read_labels(root / label_file)  # the text format needs label.txt: read_labels says so when missing
    else:
        known = list(labels) if labels else None
    raw: dict[str, list[Example] | None] = {}
    seen, own = [], None  # label names in first-seen order; a table's own list (0/1 columns, a ClassLabel)
    for name, filename in files.items():
        path, fixed = paths[name], False
        if hf and hf_names.get(name):
            rows, found, fixed = read_hf_split(root, hf_names[name], columns, known)
            raw[name] = [Example(*row) for row in rows]
        elif path is not None and is_table(path, columns):
            rows, found, fixed = read_table(path, columns, known)
            raw[name] = [Example(*row) for row in rows]
        elif path is not None:
            raw[name], found = read_examples(path, known), []
        elif name in require:
            what = f"no {name} split (train, validation or dev, test)" if hf else f"{name} split not found"
            raise DataError(root / filename, None, what, f"put {filename} in the dataset folder or pass `{name}_file`")
        else:
            raw[name], found = None, []
        seen += [label for label in found if label not in seen]
        own = found if fixed and own is None else own
    if known is None and own is not None:  # no label.txt: the table's own list
        known = own + [label for label in seen if label not in own]
        log.info("%s: no %s; the %d labels of the data's %s (the checkpoint keeps them)", root, label_file,
                 len(known), "class names" if hf else "0/1 columns")
    elif known is None:  # no label.txt: the labels the data uses, most frequent first
        known = labels_by_frequency([e for split in raw.values() for e in split or []])
        known += [label for label in seen if label not in known]
        log.info("%s: no %s; %d labels from the data, most frequent first (the checkpoint keeps them)", root,
                 label_file, len(known))
    hierarchy = Hierarchy.from_labels(known, hierarchy_sep, root / label_file)
    added, first, splits = 0, None, {}
    for name, read in raw.items():
        if read is None:
            splits[name] = None
            continue
        splits[name], count = complete_ancestors(read, hierarchy)
        if count and first is None:
            first = next(e.labels for e, c in zip(read, splits[name]) if e.labels != c.labels)
        added += count
    data_path = table_file(root, data_file) if not hf else None
    data = read_texts(data_path, columns) if data_path is not None else None
    if "data" in require and data is None:
        raise DataError(root / data_file, None, "file not found", "put the texts to predict there or pass `data_file`")
    if added:
        listed = ",".join(first)
        missing = ",".join(label for label in hierarchy.complete(first)[0] if label not in first)
        log.warning("%s: added %d missing parent label%s (a line listing only `%s` now also has `%s`)", root, added,
                    "s" if added != 1 else "", listed, missing)
    ds = Dataset(labels=list(known), train=splits["train"] or [], dev=splits["dev"] or [], test=splits["test"],
                 data=data, root=root, hierarchy_sep=separator(hierarchy_sep), added_parents=added)
    ds._hierarchy = hierarchy
    return ds


def complete_ancestors(examples: Sequence[Example], hierarchy: Hierarchy) -> tuple[list[Example], int]:
    """``examples`` with the missing ancestors of their labels added (:meth:`Hierarchy.complete`), and how many
    labels were added in all; a flat hierarchy returns them as they are."""
    if hierarchy.is_flat:
        return list(examples), 0
    out, added = [], 0
    for example in examples:
        labels, count = hierarchy.complete(example.labels)
        out.append(Example(example.text, labels, example.line) if count else example)
        added += count
    return out, added


def multi_hot(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    """Gold labels as a (n_examples, n_labels) 0/1 float32 matrix."""
    index = {label: i for i, label in enumerate(labels)}
    y = np.zeros((len(examples), len(labels)), dtype=np.float32)
    for row, example in enumerate(examples):
        for label in example.labels:
            y[row, index[label]] = 1.0
    return y


def format_example(text: str, labels: Iterable[str]) -> str:
    return f"{text}\t{','.join(labels)}"


def write_examples(path: str | os.PathLike, examples: Iterable[Example]) -> Path:
    """Write examples in the training format (atomic)."""
    body = "".join(format_example(e.text, e.labels) + "\n" for e in examples)
    return atomic_write_text(path, body)


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """One item a line (labels, bare texts), atomic."""
    return atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def save_dataset(folder: str | os.PathLike, labels: Sequence[str], splits: Mapping[str, Iterable[Example]],
                 data: Iterable[str] | None = None) -> Path:
    """Write a dataset folder that :func:`load_dataset` reads back: ``<name>.txt`` for each of ``splits``
    (e.g. ``{"train": ..., "dev": ...}``), ``label.txt`` in the order of ``labels`` and, given ``data``, a
    ``data.txt`` of bare texts. Each file is written atomically; files not named are left alone."""
    folder = Path(folder)
    for name, examples in splits.items():
        write_examples(folder / f"{name}.txt", examples)
    write_lines(folder / "label.txt", labels)
    if data is not None:
        write_lines(folder / "data.txt", data)
    return folder


def _few(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(shorten(x) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_same_labels(model_labels: Sequence[str], dataset_labels: Sequence[str],
                      model_path: str | os.PathLike | None = None,
                      label_file: str | os.PathLike | None = None) -> None:
    """Raise :class:`LabelwiseError` unless a model and a dataset have the same labels in the same order.

    The line order of ``label.txt`` is the class order of the model's outputs, so the same names in
    another order are a mismatch too. The message names both files and what to do.
    """
    model_labels, dataset_labels = list(model_labels), list(dataset_labels)
    if model_labels == dataset_labels:
        return
    if set(model_labels) == set(dataset_labels):
        detail = "the same names in another order, and a label file's line order is the model's class order"
    else:
        in_model, in_file = set(model_labels), set(dataset_labels)
        parts = [f"the model has {len(model_labels)} labels, the file {len(dataset_labels)}"]
        only_file = [x for x in dataset_labels if x not in in_model]
        only_model = [x for x in model_labels if x not in in_file]
        if only_file:
            parts.append(f"only in the file: {_few(only_file)}")
        if only_model:
            parts.append(f"only in the model: {_few(only_model)}")
        detail = "; ".join(parts)
    model = f"the model in {model_path}" if model_path is not None else "the model"
    where = label_file if label_file is not None else "the dataset's label file"
    raise LabelwiseError(f"{where}: the labels differ from those of {model} ({detail}); use the dataset the "
                         "model was trained on, or a model trained on this dataset")
