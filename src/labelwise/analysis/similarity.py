"""Feature similarity: the training examples that support a prediction.

A classifier decides from the input of its final linear layer (:meth:`Classifier.features`). Texts
the model represents alike get alike predictions, so the training examples whose features are
closest (cosine) to a text's are the evidence the model learned that prediction from. This is
the feature-similarity method PaddleNLP used through TrustAI; here it is a few lines of numpy.

It serves two commands: ``labelwise interpret examples`` (sentence-level interpretation: the top-k
supporting training examples of each input) and ``labelwise data sparse`` (dev examples with weak
support, and the training or unlabelled texts that would support them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.dataset import Example, read_lines
from labelwise.errors import DataError
from labelwise.evaluation.decision import sigmoid
from labelwise.predict.classifier import Classifier
from labelwise.predict.search import top_k_dot, unit_rows

__all__ = ['Support', 'SupportIndex', 'Interpretation', 'logits_from_features', 'read_interpret_input', 'interpret_examples', 'format_interpretation']


def logits_from_features(classifier: Classifier, features: np.ndarray) -> np.ndarray:
    """Apply the model's final linear layer to features: the logits, without a second forward pass."""
    head = classifier.backend.head()
    weight = head.weight.detach().float().cpu().numpy()
    bias = head.bias.detach().float().cpu().numpy() if head.bias is not None else 0.0
    return np.asarray(features, dtype=np.float32) @ weight.T + bias


@dataclass
class Support:
    """One supporting example: its position in the pool, text, labels (if known) and cosine score."""

    index: int
    text: str
    labels: tuple[str, ...] | None
    score: float

    def to_json(self) -> dict:
        return {"index": self.index, "text": self.text, "labels": list(self.labels or ()),
                "score": round(self.score, 5)}


class SupportIndex:
    """Features of a pool of texts (the training set, or unlabelled data) searched by cosine."""

    def __init__(self, features: np.ndarray, texts: Sequence[str], labels: Sequence[tuple[str, ...]] | None = None):
        if len(features) != len(texts):
            raise ValueError("one feature row per text")
        self.features, self.texts = unit_rows(features), list(texts)
        self.labels = list(labels) if labels is not None else None

    @classmethod
    def build(cls, classifier: Classifier, pool: Sequence[Example] | Sequence[str], batch_size: int = 32,
              max_seq_length: int | None = None, progress: bool = False) -> "SupportIndex":
        """Compute the features of ``pool`` (examples keep their labels; plain strings have none)."""
        texts = [p.text if isinstance(p, Example) else p for p in pool]
        labels = [p.labels for p in pool] if pool and isinstance(pool[0], Example) else None
        features = classifier.features(texts, batch_size=batch_size, max_seq_length=max_seq_length,
                                       progress=progress)
        return cls(features, texts, labels)

    def __len__(self) -> int:
        return len(self.texts)

    def search(self, query_features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_dot(unit_rows(query_features), self.features, k)

    def supports(self, query_features: np.ndarray, k: int) -> list[list[Support]]:
        indices, scores = self.search(query_features, k)
        return [[self.support(int(i), float(s)) for i, s in zip(row_i, row_s)]
                for row_i, row_s in zip(indices, scores)]

    def support(self, index: int, score: float) -> Support:
        return Support(index, self.texts[index], self.labels[index] if self.labels is not None else None, score)


# ---- sentence-level interpretation ------------------------------------------------------------
@dataclass
class Interpretation:
    text: str
    label: tuple[str, ...] | None  # gold labels when the input file has them
    predicted: list[str]
    supports: list[Support]

    def to_json(self) -> dict:
        return {"text": self.text, "label": None if self.label is None else list(self.label),
                "predicted": self.predicted, "supports": [s.to_json() for s in self.supports]}


BAD_CASE_HEADER = "Text\tLabel\tPrediction"


def read_interpret_input(path: str | os.PathLike,
                         labels: Sequence[str] | None = None) -> list[tuple[str, tuple[str, ...] | None]]:
    """Texts to interpret, with gold labels when given.

    Accepts ``bad_case.txt`` from ``labelwise evaluate`` (header ``Text\\tLabel\\tPrediction``; the
    prediction column is ignored, the model predicts again), ``text\\tlabel,label`` lines or bare texts.
    """
    path = Path(path)
    known = set(labels) if labels is not None else None
    items = []
    for number, line in enumerate(read_lines(path), start=1):
        if number == 1 and line.strip() == BAD_CASE_HEADER:
            continue
        fields = line.split("\t")
        if len(fields) > 3:
            raise DataError(path, number, f"{len(fields) - 1} tabs, expected at most 2",
                            "lines are 'text', 'text<TAB>labels' or 'text<TAB>labels<TAB>prediction'")
        text = fields[0]
        if not text.strip():
            raise DataError(path, number, "empty text", "remove the line")
        gold = None
        if len(fields) >= 2:
            gold = tuple(dict.fromkeys(x.strip() for x in fields[1].split(",") if x.strip()))
            unknown = [x for x in gold if known is not None and x not in known]
            if unknown:
                raise DataError(path, number, f"label {unknown[0]!r} is not one of the model's labels",
                                "interpret with the model trained on this label set")
        items.append((text, gold))
    if not items:
        raise DataError(path, None, "no text to interpret", "write one text a line (or pass `texts`)")
    return items


def interpret_examples(classifier: Classifier, train: Sequence[Example], texts: Sequence[str],
                       gold: Sequence[tuple[str, ...] | None] | None = None, top_k: int = 3,
                       batch_size: int = 32, max_seq_length: int | None = None,
                       progress: bool = False, index: SupportIndex | None = None) -> list[Interpretation]:
    """For each text: the model's prediction and the ``top_k`` training examples that support it."""
    index = index or SupportIndex.build(classifier, train, batch_size, max_seq_length, progress)
    features = classifier.features(list(texts), batch_size=batch_size, max_seq_length=max_seq_length)
    predictions = classifier.decode(sigmoid(logits_from_features(classifier, features)))
    gold = list(gold) if gold is not None else [None] * len(texts)
    return [Interpretation(text, g, pred.labels, sups)
            for text, g, pred, sups in zip(texts, gold, predictions, index.supports(features, top_k))]


def format_interpretation(items: Sequence[Interpretation]) -> str:
    """PaddleNLP's sent_interpret.txt layout, one block per text."""
    blocks = []
    for item in items:
        lines = [f"text: {item.text}", f"predict label: {','.join(item.predicted)}"]
        if item.label is not None:
            lines.append(f"label: {','.join(item.label)}")
        lines.append("examples with positive influence")
        for rank, sup in enumerate(item.supports, start=1):
            lines.append(f"support{rank} text: {sup.text}\tlabel: {','.join(sup.labels or ())}\tscore: {sup.score:.5f}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
