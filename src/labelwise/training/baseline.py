"""A linear baseline trained beside every run: TF-IDF n-grams + one linear SVM per label (scikit-learn).

It trains in seconds and answers the question a user should ask of every fine-tune: does the transformer
earn its cost? ``labelwise train`` prints its dev micro/macro-F1 beside the transformer's and stores them in
``labelwise.json``.

Features: character 1–3-grams for Chinese/Japanese/Korean text (no word boundaries to rely on), word 1–2-grams
otherwise; sublinear tf, l2-normalised. Each label gets a ``LinearSVC`` (C 0.5); a label is predicted when its
decision value is above 0.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelwise.data.dataset import multi_hot
from labelwise.evaluation.metrics import evaluate_predictions, headline

log = logging.getLogger("labelwise")

__all__ = ["LinearBaseline", "is_cjk", "fit_baseline"]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def is_cjk(texts: Sequence[str], sample: int = 2000) -> bool:
    """True when at least a fifth of the (sampled) characters are CJK ideographs, kana or hangul."""
    chars = "".join(texts[:sample])
    return bool(chars) and len(_CJK.findall(chars)) >= 0.2 * len(chars)


@dataclass
class LinearBaseline:
    """TF-IDF + LinearSVC per label. ``fit(texts, y)`` then ``decision_function(texts)`` (> 0 → label)."""

    C: float = 0.5
    max_features: int = 300_000
    analyzer: str = "auto"  # auto | char | word
    fit_seconds: float = 0.0

    def fit(self, texts: Sequence[str], y: np.ndarray) -> "LinearBaseline":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.svm import LinearSVC

        start = time.perf_counter()
        texts, y = list(texts), np.asarray(y)
        if len(texts) != len(y):
            raise ValueError(f"{len(texts)} texts but {len(y)} label rows")
        analyzer = self.analyzer if self.analyzer != "auto" else ("char" if is_cjk(texts) else "word")
        self.analyzer_ = analyzer
        ngrams = (1, 3) if analyzer == "char" else (1, 2)
        self.vectorizer_ = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True,
                                           max_features=self.max_features, lowercase=True)
        x = self.vectorizer_.fit_transform(texts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # labels absent from (or present in every) training text
            self.model_ = OneVsRestClassifier(LinearSVC(C=self.C)).fit(x, y)
        self.fit_seconds = time.perf_counter() - start
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Signed distance to each label's separating plane, shape (texts, labels)."""
        scores = self.model_.decision_function(self.vectorizer_.transform(list(texts)))
        return np.asarray(scores, dtype=np.float64).reshape(len(texts), -1)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return (self.decision_function(texts) > 0).astype(np.int64)

    def scorer(self):
        """The fitted model as plain arrays (:class:`labelwise.model.blend.LinearScorer`), to store beside a model."""
        from labelwise.model.blend import LinearScorer

        vocab = self.vectorizer_.vocabulary_
        columns = [""] * len(vocab)
        for gram, j in vocab.items():
            columns[j] = gram
        weight = np.zeros((len(self.model_.estimators_), len(columns)))
        bias = np.zeros(len(self.model_.estimators_))
        for j, est in enumerate(self.model_.estimators_):
            if hasattr(est, "coef_"):
                weight[j], bias[j] = np.ravel(est.coef_), float(np.ravel(est.intercept_)[0])
            else:  # a label constant in the training data: scikit-learn's constant predictor answers 0 or 1
                bias[j] = float(np.ravel(getattr(est, "y_", [0]))[0])
        ngrams = self.vectorizer_.ngram_range
        return LinearScorer(self.analyzer_, tuple(ngrams), columns, np.asarray(self.vectorizer_.idf_), weight, bias)

    def describe(self) -> str:
        grams = "character 1-3-grams" if self.analyzer_ == "char" else "word 1-2-grams"
        return f"TF-IDF {grams} + LinearSVC (C {self.C})"


def fit_baseline(train_set, dev_set, test_set, labels) -> tuple[dict, LinearBaseline]:
    """Fit the TF-IDF + linear SVM baseline; score it on dev (and test, when there is one): (scores, model)."""
    base = LinearBaseline().fit([e.text for e in train_set], multi_hot(train_set, labels))
    result = {"model": base.describe(), "fit_seconds": round(base.fit_seconds, 2)}
    for split, examples in (("dev", dev_set), ("test", test_set)):
        if examples:
            predicted = base.predict([e.text for e in examples])
            result[f"{split}@0.5"] = headline(evaluate_predictions(multi_hot(examples, labels), predicted, labels, 0.5))
    log.info("baseline %s: dev micro-F1 %.2f macro-F1 %.2f (%.1f s)", result["model"],
             result["dev@0.5"]["micro_f1"], result["dev@0.5"]["macro_f1"], base.fit_seconds)
    return result, base
