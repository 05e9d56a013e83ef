"""The one label-decision rule, shared by prediction, evaluation's bad cases and the service.

Probabilities come from logits through :func:`sigmoid`; a label is chosen when its probability reaches its
threshold (:func:`check_thresholds`), then ``top_k_min`` / ``top_k_max`` bound how many (:func:`decide`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from labelwise.errors import LabelwiseError

__all__ = ['decide', 'sigmoid', 'check_thresholds']


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


def decide(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray,
           top_k_min: int = 0, top_k_max: int | None = None) -> list[list[int]]:
    """Chosen label ids per row, highest probability first.

    A label is chosen when its probability reaches its threshold; then at least ``top_k_min`` (the
    most probable ones, even below threshold) and at most ``top_k_max`` labels are kept.
    """
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

