"""The blend: the linear baseline's scores mixed into the fine-tuned model's, per label, where that helps on dev.

``labelwise train`` fits a TF-IDF + linear SVM beside every model (:mod:`labelwise.training.baseline`). On labels
with few training examples the two often err differently, so a model may predict with, per label ``j``::

    logit_j = w_j · model_logit_j + (1 − w_j) · (a · svm_decision_j + b)

``a`` and ``b`` put the SVM's decision values on the model's logit scale (one logistic fit on dev, shared by all
labels). ``w_j`` is chosen on dev from ``GRID`` by average precision (a threshold-free score; the thresholds are
tuned afterwards, on the blended probabilities), and shrunk towards the weight that is best for all labels
together in proportion to how few dev examples the label has: ``w_j = (n_j·best_j + k·w_all) / (n_j + k)``, with
``n_j`` the label's dev positives and ``k`` = ``SHRINKAGE``. When every ``w_j`` is 1 there is no blend.

A checkpoint with a blend holds ``baseline/``: ``vocabulary.json`` (the n-grams in column order and how texts are
cut into them) and ``linear.safetensors`` (``idf`` [features], ``weight`` [labels, features], ``bias`` [labels]),
and ``labelwise.json``'s ``blend`` holds ``weights``, ``scale`` (a), ``shift`` (b). Nothing is pickled: the
vectoriser is rebuilt from its vocabulary (:class:`LinearScorer`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.errors import LabelwiseError

BASELINE_DIR = "baseline"
VOCAB_FILE = "vocabulary.json"
LINEAR_FILE = "linear.safetensors"
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # candidate model weights w_j
SHRINKAGE = 10.0  # k: dev positives at which a label's own best weight counts as much as the shared one

__all__ = ["Blend", "LinearScorer", "fit_blend", "load_blend", "BASELINE_DIR"]


@dataclass
class LinearScorer:
    """TF-IDF features (sublinear tf, idf, l2) and one linear function per label, as plain arrays."""

    analyzer: str  # char | word
    ngram_range: tuple[int, int]
    vocabulary: list[str]  # column j's n-gram
    idf: np.ndarray  # [features]
    weight: np.ndarray  # [labels, features]
    bias: np.ndarray  # [labels]

    def __post_init__(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._columns = {gram: j for j, gram in enumerate(self.vocabulary)}
        self._cut = TfidfVectorizer(analyzer=self.analyzer, ngram_range=tuple(self.ngram_range),
                                    lowercase=True).build_analyzer()

    def features(self, texts: Sequence[str]):
        """Sparse TF-IDF rows, as scikit-learn's ``TfidfVectorizer(sublinear_tf=True)`` gives them."""
        from scipy.sparse import csr_matrix

        rows, cols, vals = [], [], []
        for i, text in enumerate(texts):
            counts: dict[int, int] = {}
            for gram in self._cut(text):
                j = self._columns.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
            tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
            v = tf * self.idf[idx]
            rows.append(np.full(len(idx), i))
            cols.append(idx)
            vals.append(v / np.linalg.norm(v))
        if not rows:
            return csr_matrix((len(texts), len(self.vocabulary)))
        return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(texts), len(self.vocabulary)))

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Each label's decision value, shape (texts, labels) (> 0: the SVM predicts the label)."""
        return np.asarray(self.features(list(texts)) @ self.weight.T, dtype=np.float64) + self.bias

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        (folder / VOCAB_FILE).write_text(json.dumps({"analyzer": self.analyzer, "ngram_range": list(self.ngram_range),
                                                     "vocabulary": self.vocabulary}, ensure_ascii=False),
                                         encoding="utf-8")
        save_file({"idf": self.idf.astype(np.float32), "weight": self.weight.astype(np.float32),
                   "bias": self.bias.astype(np.float32)}, str(folder / LINEAR_FILE))

    @classmethod
    def load(cls, folder: Path, n_labels: int) -> "LinearScorer":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from labelwise.model.checkpoint import damaged, read_json_file

        spec = read_json_file(folder / VOCAB_FILE)
        if not isinstance(spec, dict) or spec.get("analyzer") not in ("char", "word") \
                or not isinstance(spec.get("vocabulary"), list) or len(spec.get("ngram_range") or []) != 2:
            raise damaged(folder / VOCAB_FILE, "not a baseline vocabulary (analyzer, ngram_range, vocabulary)")
        if not (folder / LINEAR_FILE).is_file():
            raise damaged(folder / LINEAR_FILE, "not found")
        try:
            arrays = load_file(str(folder / LINEAR_FILE))
        except (SafetensorError, OSError, ValueError) as err:
            raise damaged(folder / LINEAR_FILE, f"unreadable ({type(err).__name__})") from None
        idf, weight, bias = (arrays.get(k) for k in ("idf", "weight", "bias"))
        n = len(spec["vocabulary"])
        if idf is None or weight is None or bias is None or idf.shape != (n,) or weight.shape != (n_labels, n) \
                or bias.shape != (n_labels,):
            raise damaged(folder / LINEAR_FILE, f"its tensors are not idf [{n}], weight [{n_labels}, {n}] and "
                          f"bias [{n_labels}] for this vocabulary and these labels")
        if not all(np.isfinite(a).all() for a in (idf, weight, bias)):
            raise damaged(folder / LINEAR_FILE, "holds NaN or infinite values")
        return cls(spec["analyzer"], tuple(spec["ngram_range"]), spec["vocabulary"], idf.astype(np.float64),
                   weight.astype(np.float64), bias.astype(np.float64))


@dataclass
class Blend:
    """Per-label model weights and the SVM's scale on the logit scale (module doc), with the SVM itself."""

    weights: np.ndarray  # [labels], w_j
    scale: float
    shift: float
    scorer: LinearScorer

    def apply(self, logits: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The blended logits of ``texts`` from the model's ``logits`` (texts, labels)."""
        return self.mix(logits, self.scorer.decision_function(texts))

    def mix(self, logits: np.ndarray, svm_decision: np.ndarray) -> np.ndarray:
        """The blended logits from the model's ``logits`` and the SVM's decision values, both (texts, labels)."""
        svm = self.scale * svm_decision + self.shift
        return (self.weights * logits + (1.0 - self.weights) * svm).astype(np.float32)

    def to_json(self) -> dict:
        return {"weights": [round(float(w), 4) for w in self.weights], "scale": round(self.scale, 6),
                "shift": round(self.shift, 6), "shrinkage": SHRINKAGE, "grid": list(GRID)}

    def save(self, folder: str | os.PathLike) -> None:
        """Into a model folder being written: the SVM, as ``baseline/``."""
        self.scorer.save(Path(folder) / BASELINE_DIR)

    @property
    def blended(self) -> int:
        """How many labels lean on the SVM at all."""
        return int(np.sum(self.weights < 1.0))


def _average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, scores)) if y.any() else 0.0


def fit_blend(model_logits: np.ndarray, svm_decision: np.ndarray, y: np.ndarray, scorer: LinearScorer,
              shrinkage: float = SHRINKAGE, eligible: np.ndarray | None = None) -> Blend | None:
    """The blend for dev ``model_logits`` and ``svm_decision`` (texts, labels) against dev labels ``y``;
    None when the model alone is as good on every label. ``eligible``: the labels that may blend (default all)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y)
    flat = LogisticRegression(C=1e4).fit(svm_decision.reshape(-1, 1), y.reshape(-1)) if 0 < y.mean() < 1 else None
    if flat is None:
        return None
    scale, shift = float(flat.coef_[0, 0]), float(flat.intercept_[0])
    svm = scale * svm_decision + shift
    ap = np.array([[_average_precision(y[:, j], w * model_logits[:, j] + (1 - w) * svm[:, j]) for w in GRID]
                   for j in range(y.shape[1])])  # [labels, grid]
    has = y.any(axis=0)
    def top(row):  # the best weight of a row of average precisions; ties go to the larger weight (the model)
        return GRID[len(GRID) - 1 - int(np.argmax(row[::-1]))]

    shared = top(ap[has].mean(axis=0))
    best = np.array([top(row) for row in ap])
    n = y.sum(axis=0).astype(np.float64)
    weights = np.where(has, (n * best + shrinkage * shared) / np.maximum(n + shrinkage, 1e-12), shared)
    if eligible is not None:
        weights = np.where(eligible, weights, 1.0)
    weights = np.round(weights, 4)
    if np.all(weights >= 1.0):
        return None
    return Blend(weights, scale, shift, scorer)


def load_blend(folder: str | os.PathLike | None, meta) -> Blend | None:
    """The blend a model folder predicts with (``meta.blend`` and ``baseline/``), or None."""
    spec = getattr(meta, "blend", None)
    if not spec:
        return None
    if folder is None:
        raise LabelwiseError("this model blends a linear baseline into its scores, but no folder holds it")
    weights = np.asarray(spec["weights"], dtype=np.float64)
    scorer = LinearScorer.load(Path(folder) / BASELINE_DIR, len(weights))
    return Blend(weights, float(spec["scale"]), float(spec["shift"]), scorer)
