"""``labelwise select``: the next texts to annotate, from a pool, with the model's guesses as pre-annotations.

>>> clf = Classifier.load("checkpoint")
>>> sel = select_next(read_pool("pool.txt"), 200, classifier=clf, dataset=load_dataset("data"))
>>> write_tasks(sel, "next.jsonl", "doccano")

Texts already in the dataset (train, dev, test) and repeats inside the pool are skipped (and counted) before
scoring. Asked for more texts than the pool has new ones, it takes them all and says so (``Selection.summary``).
With no model (a cold start) the batch is spread over the encoder's vector space; with one, the default ``auto``
strategy lets each label in turn take its most doubtful text, so rare labels get their share (see
:mod:`.strategies`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelwise.data.dataset import Dataset, check_same_labels, read_lines
from labelwise.data.tables import TableColumns, is_table, read_table_texts, table_file
from labelwise.errors import DataError, LabelwiseError
from labelwise.model.language import pick_encoder
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import open_encoder
from labelwise.select.stopping import StoppingSignal, record_round
from labelwise.select.strategies import STRATEGIES, rank

__all__ = ["Selection", "read_pool", "select_next"]


@dataclass
class Selection:
    texts: list[str]
    scores: list[float]  # the strategy's score of each chosen text (auto with a model: the text's uncertainty)
    strategy: str
    probabilities: np.ndarray | None = None  # [chosen, labels] when there is a model
    labels: list[str] = field(default_factory=list)
    thresholds: np.ndarray | None = None
    model_version: str = ""
    pool_size: int = 0  # texts read
    already_labelled: int = 0  # skipped: in the dataset's train, dev or test
    duplicates: int = 0  # skipped: repeated inside the pool
    asked: int = 0  # the number of texts asked for (more than were chosen when the pool ran short)
    signal: StoppingSignal | None = None  # with a model and a history file: do successive models still disagree?

    def predicted(self, i: int) -> list[tuple[str, float]]:
        """The model's labels for chosen text ``i`` (at its thresholds), most probable first."""
        if self.probabilities is None:
            return []
        row = self.probabilities[i]
        keep = [j for j in np.argsort(-row, kind="stable") if row[j] >= self.thresholds[j]]
        return [(self.labels[j], round(float(row[j]), 4)) for j in keep]

    def summary(self) -> str:
        line = (f"{len(self.texts)} texts selected ({self.strategy}) from a pool of {self.pool_size}: "
                f"{self.already_labelled} already in the dataset and {self.duplicates} repeats skipped")
        if self.asked > len(self.texts):
            line += (f"; {self.asked} were asked for, but the pool has only {len(self.texts)} new texts, so all of "
                     "them were taken")
        return line + (f"\n{self.signal.message()}" if self.signal is not None else "")


def read_pool(path: str | os.PathLike, columns: TableColumns | None = None) -> list[str]:
    """A pool file, one text a line (``text\\tlabels`` lines give their text; blank lines are skipped), or a
    dataset folder's data.txt. An empty pool, or one not in UTF-8, is a :class:`DataError` naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "data.txt"
    path = path if path.exists() else table_file(path.parent, path.name) or path  # data.csv for a missing data.txt
    if is_table(path, columns):  # a CSV / JSONL / Parquet pool: its text column (labelwise.data.tables)
        return read_table_texts(path, columns)
    try:
        lines = read_lines(path)
    except DataError as err:
        if err.line is None or "UTF-8" not in err.problem or not _reads_as_gbk(path, err.line):
            raise
        raise DataError(path, err.line, err.problem + "; it reads as GBK/GB18030, a common Chinese encoding",
                        f"convert it, e.g. iconv -f GB18030 -t UTF-8 {path.name} > {path.stem}-utf8.txt") from None
    texts = []
    for number, line in enumerate(lines, start=1):
        text = line.split("\t", 1)[0]
        if not text.strip():
            continue
        if "\r" in text or "\x00" in text:
            raise DataError(path, number, "text contains a carriage return or NUL character",
                            "remove control characters from the text")
        texts.append(text)
    if not texts:
        raise DataError(path, None, "the pool is empty", "put the texts to choose from in it, one a line")
    return texts


def _reads_as_gbk(path: Path, line: int) -> bool:
    """Whether line ``line`` (not UTF-8) decodes as GB18030, a superset of GBK (Chinese Windows files often are)."""
    try:
        path.read_bytes().split(b"\n")[line - 1].decode("gb18030")
    except (UnicodeDecodeError, IndexError):
        return False
    return True


def _unique_new(pool: list[str], dataset: Dataset | None) -> tuple[list[str], int, int]:
    """(new texts in pool order, how many are in the dataset, how many repeat an earlier one of the pool)."""
    labelled = [] if dataset is None else dataset.train + dataset.dev + (dataset.test or [])
    seen = {e.text for e in labelled}
    kept, labelled, repeats, inside = [], 0, 0, set()
    for text in pool:
        if text in seen:
            labelled += 1
        elif text in inside:
            repeats += 1
        else:
            inside.add(text)
            kept.append(text)
    return kept, labelled, repeats


def select_next(pool: list[str], num: int, *, strategy: str = "auto", classifier: Classifier | None = None,
                dataset: Dataset | None = None, encoder: str | None = None, seed: int = 3, batch_size: int = 32,
                device: str | None = None, progress: bool = False, source: str | os.PathLike | None = None,
                history: str | os.PathLike | None = None) -> Selection:
    """Choose ``num`` texts of ``pool`` to annotate next; see the module docstring. ``source``: the pool's file,
    for messages. ``history``: with a model, the file of :mod:`labelwise.select.stopping` that this round's decisions
    on the pool are compared with and then stored in (the selection's ``signal``)."""
    if strategy not in STRATEGIES:
        raise LabelwiseError(f"`strategy` {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if num < 1:
        raise LabelwiseError(f"`num` must be at least 1, got {num}")
    if classifier is None and strategy in ("uncertainty", "cardinality"):
        raise LabelwiseError(f"`strategy` {strategy} needs a model: pass `params_path` (a checkpoint or export), "
                             "or use auto / diversity / random for a cold start")
    if classifier is not None and dataset is not None:
        check_same_labels(classifier.labels, dataset.labels, classifier.path,
                          (dataset.root / "label.txt") if dataset.root else None)
    texts, labelled, repeats = _unique_new(list(pool), dataset)
    if not texts:
        where = f"{source}: " if source is not None else ""
        raise LabelwiseError(f"{where}nothing to select: all {len(pool)} texts of the pool are already in the "
                             "dataset or repeated; add new texts to the pool")
    probs = vectors = None
    if classifier is not None:
        probs = classifier.predict_proba(texts, batch_size=batch_size, progress=progress)
        if strategy == "diversity":  # the model's own vectors
            vectors = _vectors(classifier, texts, batch_size, progress)
    elif strategy in ("auto", "diversity"):  # a cold start: the encoder's vectors (by default the texts' script's)
        encoder, _ = pick_encoder(encoder, texts, "the pool's texts")
        vectors = Classifier(*open_encoder(encoder, device)).features(texts, batch_size=batch_size, progress=progress)
    mean_labels = (float(np.mean([len(e.labels) for e in dataset.train])) if dataset is not None and dataset.train
                   else 1.0)
    thresholds = classifier.thresholds if classifier is not None else None
    chosen, scores = rank(strategy, num, probs=probs, thresholds=thresholds, vectors=vectors,
                          mean_labels=mean_labels, rng=np.random.default_rng(seed))
    signal = None
    if probs is not None and history is not None:
        signal = record_round(history, texts, probs >= np.asarray(thresholds), list(classifier.labels))
    used = strategy if strategy != "auto" else ("auto: each label's most doubtful texts" if probs is not None
                                                else "diversity (cold start)")
    return Selection(texts=[texts[i] for i in chosen], scores=[round(float(scores[i]), 4) for i in chosen],
                     strategy=used, probabilities=probs[chosen] if probs is not None else None,
                     labels=list(classifier.labels) if classifier is not None else [], thresholds=thresholds,
                     model_version=_version(classifier), pool_size=len(pool), already_labelled=labelled,
                     duplicates=repeats, asked=num, signal=signal)


def _vectors(classifier: Classifier, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    """The model's own pooled vectors; a one-line error for a model without them."""
    try:
        return classifier.features(texts, batch_size=batch_size, progress=progress)
    except LabelwiseError as err:
        raise LabelwiseError(f"`strategy` diversity needs text vectors, which this model does not give ({err}): use "
                             "a PyTorch checkpoint, an export made with --features, or no model (then the "
                             "encoder embeds the pool)") from None


def _version(classifier: Classifier | None) -> str:
    if classifier is None:
        return ""
    name = classifier.path.name if classifier.path is not None else "model"
    epoch = classifier.meta.metrics.get("epoch") if isinstance(classifier.meta.metrics, dict) else None
    return f"labelwise {name}" + (f" (epoch {epoch})" if epoch else "")
