"""The one label-decision rule, shared by prediction, evaluation's bad cases and the service.

Probabilities come from logits through :func:`sigmoid`; a label is chosen when its probability reaches its
threshold (:func:`check_thresholds`), then ``top_k_min`` / ``top_k_max`` bound how many (:func:`decide`).
:func:`decision_matrix` gives the same decisions as a 0/1 matrix, the form metrics are computed from, so
``labelwise predict``, ``labelwise evaluate`` (numbers and bad cases) and the service cannot disagree.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from labelwise.errors import LabelwiseError

__all__ = ['check_thresholds', 'check_top_k', 'chosen_ids', 'decide', 'decision_matrix', 'sigmoid']


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64; very negative logits give 0 without an overflow warning."""
    with np.errstate(over="ignore"):  # exp(-x) is inf below x = -709: 1 / inf is the right 0
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def check_thresholds(threshold, num_labels: int) -> np.ndarray:
    """``threshold`` (one number, or one per label) as a float64 array, each in [0, 1].

    0.0 chooses every label and 1.0 only a probability of exactly 1 (in practice none: the
    ``top_k_min`` labels then); anything outside [0, 1], NaN, or a list of another length is refused.
    """
    try:
        values = np.asarray(threshold, dtype=np.float64)
    except (TypeError, ValueError):
        raise LabelwiseError(f"threshold must be a number or one number per label, got {threshold!r}") from None
    if values.ndim > 1 or (values.ndim == 1 and len(values) != num_labels):
        raise LabelwiseError(f"threshold: expected one number or a list of {num_labels} (one per label), "
                             f"got {values.size} values")
    bad = values[~((values >= 0.0) & (values <= 1.0))]  # NaN fails both comparisons
    if bad.size:
        raise LabelwiseError(f"threshold must be between 0 and 1 (a probability), got {float(bad.flat[0])}")
    return values


def check_top_k(top_k_min: int = 0, top_k_max: int | None = None) -> None:
    """``top_k_min`` a whole number >= 0; ``top_k_max`` unset or a whole number >= 1 and >= ``top_k_min``."""
    def whole(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(top_k_min) or top_k_min < 0:
        raise LabelwiseError(f"`top_k_min` must be a whole number of labels, 0 or more, got {top_k_min!r}")
    if top_k_max is not None:
        if not whole(top_k_max) or top_k_max < 1:
            raise LabelwiseError(f"`top_k_max` must be a whole number of labels, 1 or more (or unset for no "
                                 f"limit), got {top_k_max!r}")
        if top_k_max < top_k_min:
            raise LabelwiseError(f"`top_k_max` ({top_k_max}) must not be smaller than `top_k_min` ({top_k_min})")


def decide(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray,
           top_k_min: int = 0, top_k_max: int | None = None) -> list[list[int]]:
    """Chosen label ids per row, highest probability first.

    A label is chosen when its probability reaches its threshold; then at least ``top_k_min`` (the
    most probable ones, even below threshold) and at most ``top_k_max`` labels are kept.
    """
    check_top_k(top_k_min, top_k_max)
    probs = np.asarray(probs)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])
    chosen = []
    for row in probs:
        order = np.argsort(-row, kind="stable")
        keep = [int(j) for j in order if row[j] >= thr[j]]
        if len(keep) < top_k_min:
            keep = [int(j) for j in order[:top_k_min]]
        if top_k_max is not None:
            keep = keep[:top_k_max]
        chosen.append(keep)
    return chosen


def decision_matrix(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray,
                    top_k_min: int = 0, top_k_max: int | None = None) -> np.ndarray:
    """:func:`decide` as a 0/1 int8 matrix shaped like ``probs`` (1 = label chosen).

    Rows whose count of labels at or above threshold already lies within [top_k_min, top_k_max] are
    compared at once; only the others go through :func:`decide` row by row.
    """
    check_top_k(top_k_min, top_k_max)
    probs = np.asarray(probs)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])
    out = (probs >= thr).astype(np.int8)  # the comparison decide makes, for every row at once
    counts = out.sum(axis=1)
    redo = counts < top_k_min
    if top_k_max is not None:
        redo |= counts > top_k_max
    rows = np.flatnonzero(redo)
    if rows.size:
        out[rows] = 0
        for row, ids in zip(rows, decide(probs[rows], thr, top_k_min, top_k_max)):
            out[row, ids] = 1
    return out


def chosen_ids(probs: np.ndarray, decisions: np.ndarray) -> list[list[int]]:
    """The label ids set in each row of ``decisions``, highest probability first (ties: lower id first),
    the order :func:`decide` gives them in."""
    out = []
    for row, chosen in zip(np.asarray(probs), np.asarray(decisions)):
        ids = np.flatnonzero(chosen)
        out.append([int(j) for j in ids[np.argsort(-row[ids], kind="stable")]])
    return out
