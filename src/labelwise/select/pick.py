"""``labelwise select``: the next texts to annotate, from a pool, with the model's guesses as pre-annotations.

>>> clf = Classifier.load("checkpoint")
>>> sel = select_next(read_pool("pool.txt"), 200, classifier=clf, dataset=load_dataset("data"))
>>> write_tasks(sel, "next.jsonl", "doccano")

Texts already in the dataset's train/dev and repeats inside the pool are skipped (and counted) before scoring.
With no model (a cold start) the batch is spread over the encoder's vector space; with one, the default ``auto``
strategy takes the most uncertain texts that are not near-duplicates of each other (see :mod:`.strategies`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelwise.data.dataset import Dataset, check_same_labels, read_texts
from labelwise.errors import DataError, LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import open_encoder
from labelwise.select.strategies import STRATEGIES, rank

log = logging.getLogger("labelwise")

__all__ = ["Selection", "read_pool", "select_next"]


@dataclass
class Selection:
    texts: list[str]
    scores: list[float]  # the strategy's score of each chosen text (higher = picked first)
    strategy: str
    probabilities: np.ndarray | None = None  # [chosen, labels] when there is a model
    labels: list[str] = field(default_factory=list)
    thresholds: np.ndarray | None = None
    model_version: str = ""
    pool_size: int = 0  # lines read
    already_labelled: int = 0  # skipped: in train or dev
    duplicates: int = 0  # skipped: repeated inside the pool

    def predicted(self, i: int) -> list[tuple[str, float]]:
        """The model's labels for chosen text ``i`` (at its thresholds), most probable first."""
        if self.probabilities is None:
            return []
        row = self.probabilities[i]
        keep = [j for j in np.argsort(-row, kind="stable") if row[j] >= self.thresholds[j]]
        return [(self.labels[j], round(float(row[j]), 4)) for j in keep]

    def summary(self) -> str:
        return (f"{len(self.texts)} texts selected ({self.strategy}) from a pool of {self.pool_size}: "
                f"{self.already_labelled} already in train/dev and {self.duplicates} repeats skipped")


def read_pool(path: str | os.PathLike) -> list[str]:
    """A pool file, one text a line (``text\\tlabels`` lines give their text), or a dataset folder's data.txt."""
    path = Path(path)
    if path.is_dir():
        path = path / "data.txt"
    texts = read_texts(path)
    if not texts:
        raise DataError(path, None, "the pool is empty", "put one text a line in it")
    return texts


def _unique_new(pool: list[str], dataset: Dataset | None) -> tuple[list[str], int, int]:
    seen = {e.text for e in (dataset.train + dataset.dev)} if dataset is not None else set()
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
                dataset: Dataset | None = None, encoder: str = "m3e-small", seed: int = 3, batch_size: int = 32,
                device: str | None = None, progress: bool = False) -> Selection:
    """Choose ``num`` texts of ``pool`` to annotate next; see the module docstring."""
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
        raise LabelwiseError(f"nothing to select: all {len(pool)} texts of the pool are already in train/dev or "
                             "repeated")
    if num > len(texts):
        log.warning("select: asked for %d texts but the pool has %d new ones; taking all of them", num, len(texts))
    probs = vectors = None
    if classifier is not None:
        probs = classifier.predict_proba(texts, batch_size=batch_size, progress=progress)
        if strategy in ("auto", "diversity"):
            vectors = _vectors(classifier, texts, batch_size, progress)
    elif strategy in ("auto", "diversity"):
        vectors = Classifier(*open_encoder(encoder, device)).features(texts, batch_size=batch_size, progress=progress)
    if strategy == "diversity" and vectors is None:
        raise LabelwiseError("`strategy` diversity needs text vectors: a PyTorch checkpoint, an export made with "
                             "--features, or no model (then `encoder` embeds the pool)")
    mean_labels = (float(np.mean([len(e.labels) for e in dataset.train])) if dataset is not None and dataset.train
                   else 1.0)
    thresholds = classifier.thresholds if classifier is not None else None
    chosen, scores = rank(strategy, num, probs=probs, thresholds=thresholds, vectors=vectors,
                          mean_labels=mean_labels, rng=np.random.default_rng(seed))
    used = strategy if strategy != "auto" else ("uncertainty + diversity" if probs is not None and vectors is not None
                                                else "uncertainty" if probs is not None else "diversity (cold start)")
    return Selection(texts=[texts[i] for i in chosen], scores=[round(float(scores[i]), 4) for i in chosen],
                     strategy=used, probabilities=probs[chosen] if probs is not None else None,
                     labels=list(classifier.labels) if classifier is not None else [], thresholds=thresholds,
                     model_version=_version(classifier), pool_size=len(pool), already_labelled=labelled,
                     duplicates=repeats)


def _vectors(classifier: Classifier, texts: list[str], batch_size: int, progress: bool) -> np.ndarray | None:
    """The model's own pooled vectors; None (uncertainty alone, with a warning) for an export without them."""
    try:
        return classifier.features(texts, batch_size=batch_size, progress=progress)
    except LabelwiseError:
        log.warning("select: this model gives no text vectors (an ONNX export without --features); choosing by "
                    "uncertainty alone, without the diversity step")
        return None


def _version(classifier: Classifier | None) -> str:
    if classifier is None:
        return ""
    name = classifier.path.name if classifier.path is not None else "model"
    epoch = classifier.meta.metrics.get("epoch") if isinstance(classifier.meta.metrics, dict) else None
    return f"labelwise {name}" + (f" (epoch {epoch})" if epoch else "")
