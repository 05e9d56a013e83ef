"""Annotation tools ↔ dataset folders: doccano and Label Studio exports in, doccano JSONL out.

* :func:`read_doccano`: doccano's text-classification JSONL (``{"id", "text" or "data", "label": [...]}``).
* :func:`read_label_studio`: Label Studio's JSON export (full: ``annotations[].result[]`` with
  ``choices`` or ``taxonomy`` values; or JSON-MIN: flat objects); it lives in :mod:`labelwise.data.labelstudio`,
  beside the reader of task lists that the service's retraining uses too, and is imported here as well.
* :func:`write_dataset`: split annotated examples into ``train/dev/test.txt``, a sorted
  ``label.txt`` and ``data.txt`` (the texts of the last split, as PaddleNLP does). By default the split is
  stratified (iterative stratification, seeded) so each label reaches every split in proportion; a plain
  seeded shuffle or the file order on request. The report counts each label per split and warns about
  labels too rare for the splits. Existing files are never replaced silently.
* :func:`write_doccano`: examples back to doccano JSONL for (re-)annotation, labels pre-filled.

Texts are cleaned the way the training format needs (tabs and line breaks become spaces); a label
with a comma, tab or line break is an error naming the file and line (or task): :mod:`labelwise.data.cleaning`.

Label trees: a ``Taxonomy`` choice (a path from the root, ``["体育", "足球"]``) becomes the label ``体育##足球``
(joined by ``sep``, PaddleNLP's ``##`` by default); doccano labels may be such paths already. Every path brings its
missing ancestors (``体育`` beside ``体育##足球``; counted, logged once), so label.txt lists every node, parents
first. An empty path element or a cycle (``a##b##a``) is an error naming the file and line. ``sep=None``
(``none``): flat names; a Taxonomy choice keeps its last element.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from labelwise.data.cleaning import checked_example, clean_labels, log_added_parents
from labelwise.data.dataset import Example, read_labels, read_lines, save_dataset, write_examples, write_lines
from labelwise.data.hierarchy import DEFAULT_SEP, separator
from labelwise.data.labelstudio import read_label_studio
from labelwise.errors import DataError, LabelwiseError
from labelwise.files import check_outputs

log = logging.getLogger("labelwise")

__all__ = ["ImportReport", "check_splits", "label_counts", "label_matrix", "read_doccano", "read_label_studio",
           "split_indices", "split_warnings", "write_dataset", "write_doccano", "write_labelled"]


# ---- readers -----------------------------------------------------------------------------------
def read_doccano(path: str | os.PathLike, sep: str | None = DEFAULT_SEP) -> list[Example]:
    """doccano JSONL export → examples (line numbers kept for later errors); ``sep``: label paths (module doc)."""
    path, sep = Path(path), separator(sep)
    examples, added = [], [0]
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, number, f"not valid JSON ({err.msg} at column {err.colno})",
                            "export from doccano as JSONL: one JSON object a line") from None
        if not isinstance(item, dict):
            raise DataError(path, number, "expected a JSON object with 'text' and 'label'")
        key = "text" if "text" in item else "data" if "data" in item else None
        if key is None:
            raise DataError(path, number, "no 'text' (or 'data') field", "is this a doccano text-classification export?")
        labels = clean_labels(path, number, item.get("label", item.get("labels", [])), sep=sep, added=added)
        examples.append(checked_example(path, number, item[key], labels))
    if not examples:
        raise DataError(path, None, "no annotated example in the file")
    log_added_parents(path, added[0], sep)
    return examples


# ---- splitting ---------------------------------------------------------------------------------
def check_splits(splits: Sequence[float]) -> list[float]:
    """1, 2 or 3 positive ratios summing to 1 (exactly, in decimal)."""
    if len(splits) not in (1, 2, 3):
        raise LabelwiseError(f"`splits` takes 1, 2 or 3 ratios (train [dev [test]]), got {len(splits)}")
    if any(r <= 0 for r in splits):
        raise LabelwiseError(f"`splits` ratios must be positive, got {' '.join(map(str, splits))}")
    if sum(Decimal(str(r)) for r in splits) != 1:
        raise LabelwiseError(f"`splits` must sum to 1, got {' '.join(map(str, splits))}")
    return list(splits)


def label_matrix(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    """(examples × labels) booleans: which example carries which label."""
    index = {label: j for j, label in enumerate(labels)}
    y = np.zeros((len(examples), max(1, len(labels))), dtype=bool)
    for row, e in enumerate(examples):
        for label in e.labels:
            y[row, index[label]] = True
    return y


def split_indices(examples: Sequence[Example], splits: Sequence[float], shuffle: bool = True, seed: int = 3,
                  stratify: bool | None = None) -> list[np.ndarray]:
    """Row indices of each split, reproducible for a given ``seed``.

    ``stratify`` (default: whenever ``shuffle``): iterative stratification (Sechidis et al., 2011, from the
    ``iterative-stratification`` package) over the label sets, so each label is spread over the splits in the
    ratios asked for; then a label with at least as many examples as there are splits but none in some split
    swaps one example into it. Without it: a seeded shuffle (``shuffle``) or the file order, cut at the ratios.
    """
    n = len(examples)
    stratify = shuffle if stratify is None else stratify
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    if not stratify or len(splits) == 1:
        cuts = np.floor(np.cumsum(splits)[:-1] * n + 1e-9).astype(int)
        return np.split(order, cuts)
    from iterstrat.ml_stratifiers import IterativeStratification

    y = label_matrix(examples, sorted({label for e in examples for label in e.labels}))
    split_of = np.empty(n, dtype=int)
    split_of[order] = IterativeStratification(labels=y[order], r=np.asarray(splits, dtype=float),
                                              random_state=np.random.RandomState(seed))
    _reach_every_split(split_of, y, order, len(splits))
    return [order[split_of[order] == k] for k in range(len(splits))]


def _reach_every_split(split_of: np.ndarray, y: np.ndarray, order: np.ndarray, k: int) -> None:
    """In place: a label with >= k examples but none in some split gets one there, by a swap that keeps the
    split sizes and takes no label out of a split it was in. Rarest labels first; rows in ``order``."""
    for j in np.argsort(y.sum(0), kind="stable"):
        if y[:, j].sum() < k:
            continue
        for target in range(k):
            counts = np.stack([y[split_of == s].sum(0) for s in range(k)])  # splits × labels
            if counts[target, j]:
                continue
            donor = int(np.argmax(counts[:, j]))
            # into the target: an example of label j whose every label the donor split holds twice or more
            give = [r for r in order if split_of[r] == donor and y[r, j] and (counts[donor, y[r]] >= 2).all()]
            # back to the donor: an example of the target split whose labels stay there without it
            take = [r for r in order if split_of[r] == target and (counts[target, y[r]] >= 2).all()]
            if give and take:
                give_row = min(give, key=lambda r: y[r].sum())
                take_row = min(take, key=lambda r: y[r].sum())
                split_of[give_row], split_of[take_row] = target, donor


def label_counts(examples: Sequence[Example], labels: Sequence[str], parts: dict[str, Sequence[int]]) -> dict:
    """label → {split name: how many of that split's examples carry it}."""
    y = label_matrix(examples, labels)
    per_split = {name: y[np.asarray(rows, dtype=int)].sum(0) for name, rows in parts.items()}
    return {label: {name: int(counts[j]) for name, counts in per_split.items()} for j, label in enumerate(labels)}


# ---- writers -----------------------------------------------------------------------------------
@dataclass
class ImportReport:
    examples: int
    labels: list[str]
    sizes: dict[str, int]
    save_dir: Path
    skipped: int = 0
    method: str = "random"  # stratified | random | file order
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # label → split → examples carrying it
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        sizes = ", ".join(f"{name} {size}" for name, size in self.sizes.items())
        skipped = f"; {self.skipped} tasks without annotation skipped" if self.skipped else ""
        lines = [(f"{self.examples} examples, {len(self.labels)} labels → {self.save_dir}: {sizes} "
                  f"({self.method} split), label.txt, data.txt{skipped}")]
        if self.counts and len(self.sizes) > 1:
            lines.append("examples per label: " + " ".join(f"{name:>6}" for name in self.sizes) + "  label")
            lines += [" " * 20 + " ".join(f"{c.get(name, 0):>6}" for name in self.sizes) + f"  {label}"
                      for label, c in self.counts.items()]
        return "\n".join(lines)


def split_warnings(counts: dict[str, dict[str, int]], names: Sequence[str]) -> list[str]:
    """Lines naming the labels too rare for the splits, and those a split ended up without."""
    if len(names) < 2:
        return []
    out = []
    rare = [label for label, c in counts.items() if sum(c.values()) < len(names)]
    if rare:
        out.append(f"{len(rare)} label(s) have fewer examples than the {len(names)} splits, so some split has none "
                   f"of them: {', '.join(rare)}; annotate more examples of them or ask for fewer splits")
    for name in names[1:]:
        missing = [label for label, c in counts.items() if not c.get(name) and label not in rare]
        if missing:
            out.append(f"{len(missing)} label(s) have no example in {name}: {', '.join(missing)}")
    return out


def write_dataset(examples: Sequence[Example], save_dir: str | os.PathLike, splits: Sequence[float] = (0.8, 0.2),
                  shuffle: bool = True, seed: int = 3, stratify: bool | None = None, overwrite: bool = False,
                  source: str | os.PathLike | None = None, skipped: int = 0,
                  sep: str | None = DEFAULT_SEP) -> ImportReport:
    """Write a dataset folder from annotated examples (see the module doc and :func:`split_indices`).

    label.txt is sorted; with label paths (``sep``) by path, so each parent comes right before its subtree.
    The report counts each label's examples per split; its warnings (also logged) name the labels with
    fewer examples than splits and those a split has none of.
    """
    splits = check_splits(splits)
    save_dir = Path(save_dir)
    names = ["train", "dev", "test"][:len(splits)]
    files = [save_dir / f"{n}.txt" for n in names] + [save_dir / "label.txt", save_dir / "data.txt"]
    check_outputs(files, [source], overwrite=overwrite)
    sep = separator(sep)
    labels = sorted({label for e in examples for label in e.labels}, key=lambda x: x.split(sep) if sep else [x])
    if not labels:
        raise LabelwiseError("no example has a label; annotate some before exporting")
    stratify = shuffle if stratify is None else stratify
    parts = split_indices(examples, splits, shuffle, seed, stratify)
    save_dataset(save_dir, labels, {name: [examples[i] for i in rows] for name, rows in zip(names, parts)},
                 data=[examples[i].text for i in parts[-1]])
    counts = label_counts(examples, labels, dict(zip(names, parts)))
    report = ImportReport(len(examples), labels, {n: len(rows) for n, rows in zip(names, parts)}, save_dir, skipped,
                          "stratified" if stratify else "random" if shuffle else "file order", counts,
                          split_warnings(counts, names))
    for line in report.warnings:
        log.warning("warning: %s", line)
    return report


def write_labelled(examples: Sequence[Example], path: str | os.PathLike, label_file: str | os.PathLike | None = None,
                   overwrite: bool = False, source: str | os.PathLike | None = None) -> Path:
    """All examples into one ``text\\tlabels`` file (re-annotated dirty or support data), checked
    against ``label_file`` when given so a typo in the tool does not add a new label."""
    (path,) = check_outputs([path], [source, label_file], overwrite=overwrite)
    if label_file is not None:
        known = set(read_labels(label_file))
        for e in examples:
            unknown = [x for x in e.labels if x not in known]
            if unknown:
                raise DataError(source or path, e.line, f"label {unknown[0]!r} is not in {label_file}",
                                "fix it in the annotation tool or add it to label.txt")
    return write_examples(path, examples)


def write_doccano(path: str | os.PathLike, examples: Iterable[Example | str | tuple],
                  meta: Sequence[dict] | None = None) -> Path:
    """doccano JSONL for (re-)annotation: ``{"id", "text", "label": [...]}`` a line, labels pre-filled.

    ``examples``: :class:`Example`, ``(text, labels)`` pairs or bare texts. ``meta``: optional extra
    fields per example (e.g. a score), shown by doccano as metadata.
    """
    lines = []
    for i, item in enumerate(examples):
        if isinstance(item, Example):
            text, labels = item.text, item.labels
        elif isinstance(item, str):
            text, labels = item, ()
        else:
            text, labels = item[0], tuple(item[1] or ())
        record = {"id": i + 1, "text": text, "label": list(labels)}
        if meta is not None:
            record.update({k: v for k, v in meta[i].items() if k not in record})
        lines.append(json.dumps(record, ensure_ascii=False))
    return write_lines(path, lines)
