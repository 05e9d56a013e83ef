"""Which texts to annotate next: scores over a pool's probabilities, or spread over its vectors.

Every function here is plain NumPy over a pool's probabilities (rows = texts, columns = labels) and/or its pooled
vectors, so the same code serves ``labelwise select`` and the simulation in ``benchmarks/label_efficiency/active_learning.py``.

* :func:`uncertainty` — how close the pool's texts are to a label decision: for each label, the margin between its
  probability and its threshold, as a share of the room on that side (0 = exactly at the threshold, 1 = as far as
  it can be); a text's uncertainty is 1 − its smallest margin, plus a small share of the mean over labels so ties
  between texts whose closest label is equally close go to the one with more doubtful labels.
* :func:`cardinality_gap` — label-cardinality inconsistency: how far the number of labels the model gives a text
  is from the labelled data's mean number of labels per text.
* :func:`diverse_pick` — ``n`` rows that spread over the vector space: greedy k-center (farthest-first), over the
  whole pool on a cold start (no model yet), or among the best-scoring candidates.
* :func:`by_label` — each label in turn picks its own most doubtful text (the one nearest that label's
  threshold) not yet picked, round after round: every label, rare ones included, gets its share of the batch.

``auto`` is :func:`by_label` when there is a model and diversity when there is none (a cold start). It was chosen
by measurement (benchmarks/RESULTS.md, "Active learning"): on divorce and GoEmotions it was the only strategy whose
learning curve lies above random sampling's on both micro- and macro-F1; plain uncertainty (the text's most
doubtful label) wins micro-F1 on divorce but falls below random on GoEmotions. Mixing diversity into uncertain
batches (k-center over the 2·n most uncertain, skipping near-duplicates) did not help, nor did shares of the batch
weighted towards rare labels (level with ``auto`` over the curve); exact duplicates are dropped from the pool before
any strategy runs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["STRATEGIES", "uncertainty", "by_label", "cardinality_gap", "diverse_pick", "rank", "CANDIDATES_PER_PICK"]

STRATEGIES = ("auto", "uncertainty", "cardinality", "diversity", "random")
CANDIDATES_PER_PICK = 5  # diverse_pick with scores: the k-center runs over the 5·n best-scoring texts
MEAN_WEIGHT = 0.1  # share of the mean margin in the uncertainty score (a tie-breaker)


def margins(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each label's distance from its threshold as a share of the room on that side, in [0, 1]."""
    probs = np.asarray(probs, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape)
    room = np.where(probs >= thr, 1.0 - thr, thr)
    return np.clip(np.abs(probs - thr) / np.maximum(room, 1e-9), 0.0, 1.0)


def uncertainty(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per text, in [0, 1]: 1 at a label's threshold, 0 when every label is as sure as it can be."""
    m = margins(probs, thresholds)
    if m.shape[1] == 0:
        return np.zeros(len(m))
    return (1.0 - m.min(axis=1)) + MEAN_WEIGHT * (1.0 - m.mean(axis=1))


def by_label(probs: np.ndarray, thresholds: np.ndarray, n: int) -> np.ndarray:
    """Row indices of ``n`` texts: label 1's most doubtful text, label 2's, …, then each label's second, and so on
    (a text already picked for another label is passed over); doubt is the label's :func:`margins`."""
    m = margins(probs, thresholds)
    if m.size == 0:
        return np.zeros(0, dtype=np.int64)
    turns = np.argsort(m, axis=0, kind="stable").ravel()  # row-major: every label's nearest, then second nearest…
    return np.asarray(list(dict.fromkeys(turns.tolist()))[:n], dtype=np.int64)


def cardinality_gap(probs: np.ndarray, thresholds: np.ndarray, mean_labels: float) -> np.ndarray:
    """Per text: |labels predicted − the labelled data's mean labels per text|, with the expected count Σp as a
    tie-breaker (a text at 0 predicted labels whose probabilities add up to 0.9 is nearer the edge)."""
    probs = np.asarray(probs, dtype=np.float64)
    decided = (probs >= np.asarray(thresholds, dtype=np.float64)).sum(axis=1)
    return np.abs(decided - mean_labels) + 0.1 * np.abs(probs.sum(axis=1) - mean_labels)


def diverse_pick(vectors: np.ndarray, n: int, scores: np.ndarray | None = None,
                 candidates: int | None = None) -> np.ndarray:
    """Row indices of ``n`` texts spread over ``vectors`` (greedy k-center, cosine distance).

    With ``scores``: only the ``candidates`` best-scoring rows take part (default ``CANDIDATES_PER_PICK · n``) and
    the first pick is the best of them; without: every row, starting from the one nearest the pool's centre.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    total = len(vectors)
    n = min(n, total)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if scores is not None:
        size = min(total, candidates or CANDIDATES_PER_PICK * n)
        pool = np.argsort(-np.asarray(scores), kind="stable")[:size]
        first = 0  # the most uncertain candidate
    else:
        pool = np.arange(total)
        first = int(np.argmax(unit @ unit.mean(axis=0)))
    chosen = [first]
    distance = 1.0 - unit[pool] @ unit[pool[first]]
    for _ in range(n - 1):
        distance[chosen[-1]] = -np.inf
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, 1.0 - unit[pool] @ unit[pool[nxt]])
    return pool[np.asarray(chosen)]


def rank(strategy: str, n: int, *, probs: np.ndarray | None = None, thresholds: np.ndarray | None = None,
         vectors: np.ndarray | None = None, mean_labels: float = 1.0,
         rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(chosen row indices, the score of every pool row) for ``strategy``; see :data:`STRATEGIES`.

    ``auto`` is :func:`by_label` when there is a model (``probs``), diversity when there is none (a cold start). ``diversity`` needs ``vectors``; ``uncertainty`` and ``cardinality`` need ``probs``.
    """
    size = len(probs) if probs is not None else len(vectors) if vectors is not None else 0
    rng = rng or np.random.default_rng(0)
    if strategy == "random":
        scores = rng.random(size)
        return np.argsort(-scores, kind="stable")[:n], scores
    if strategy == "auto" and probs is None:
        strategy = "diversity"
    if strategy == "diversity":
        chosen = diverse_pick(vectors, n)
        scores = np.zeros(size)
        scores[chosen] = 1.0
        return chosen, scores
    if probs is None:
        raise ValueError(f"strategy {strategy!r} needs a model's probabilities")
    if strategy == "cardinality":
        scores = cardinality_gap(probs, thresholds, mean_labels)
        return np.argsort(-scores, kind="stable")[:n], scores
    scores = uncertainty(probs, thresholds)
    if strategy == "auto":
        return by_label(probs, thresholds, n), scores
    return np.argsort(-scores, kind="stable")[:n], scores
