"""Calibrated scores: per-label temperature scaling fitted on dev, and how calibrated a model's scores are.

A label's probability is calibrated when, of the texts scored near p, a share p has the label. Fine-tuned
classifiers are often over-confident; thresholds, ``select``'s uncertainty and Label Studio's pre-annotation
scores all read these numbers. Temperature scaling divides each label's logit by a temperature T > 0 fitted on
dev by likelihood (Guo et al. 2017), one per label here: the order of a label's scores does not change, so
neither do its tuned-threshold decisions, only what the numbers say.

``ece``: expected calibration error, the gap between confidence and frequency averaged over 10 equal-width bins,
weighted by how many scores fall in each (over every text × label score, and per label).
"""
from __future__ import annotations

import numpy as np

__all__ = ["BINS", "MIN_POSITIVES", "apply_temperatures", "ece", "fit_temperatures", "reliability"]

BINS = 10
MIN_POSITIVES = 5  # a label with fewer dev positives keeps T = 1 (too little evidence to move it)
LOG_T_RANGE = (-2.5, 2.5)  # T between 0.08 and 12


def _bins(probs: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((probs * bins).astype(int), bins - 1)


def reliability(y: np.ndarray, probs: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin over every score: its range, mean predicted probability, observed frequency, count."""
    y, probs = np.asarray(y, dtype=float).ravel(), np.asarray(probs, dtype=float).ravel()
    which = _bins(probs, bins)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append({"low": b / bins, "high": (b + 1) / bins, "count": n,
                    "confidence": float(probs[inside].mean()) if n else None,
                    "frequency": float(y[inside].mean()) if n else None})
    return out


def _ece(y: np.ndarray, probs: np.ndarray, bins: int) -> float:
    if y.size == 0:
        return 0.0
    which = _bins(probs, bins)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(probs[inside].mean() - y[inside].mean())
    return float(total / y.size)


def ece(y: np.ndarray, probs: np.ndarray, bins: int = BINS) -> tuple[float, np.ndarray]:
    """(ECE over every score, ECE of each label), as fractions (0 = calibrated)."""
    y, probs = np.asarray(y, dtype=float), np.asarray(probs, dtype=float)
    per_label = np.array([_ece(y[:, j], probs[:, j], bins) for j in range(y.shape[1])])
    return _ece(y.ravel(), probs.ravel(), bins), per_label


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of logits ``z`` (stable form)."""
    return float(np.mean(np.logaddexp(0, z) - y * z))


def fit_temperatures(y: np.ndarray, logits: np.ndarray, min_positives: int = MIN_POSITIVES) -> np.ndarray:
    """One temperature per label minimising the dev log-loss of ``logits / T``; 1 for a label with fewer than
    ``min_positives`` dev positives (or negatives)."""
    from scipy.optimize import minimize_scalar

    y, logits = np.asarray(y, dtype=float), np.asarray(logits, dtype=float)
    temperatures = np.ones(y.shape[1])
    for j in range(y.shape[1]):
        positives = y[:, j].sum()
        if positives < min_positives or len(y) - positives < min_positives:
            continue
        best = minimize_scalar(lambda log_t: _nll(logits[:, j] / np.exp(log_t), y[:, j]), bounds=LOG_T_RANGE,
                               method="bounded", options={"xatol": 1e-3})
        temperatures[j] = float(np.exp(best.x))
    return temperatures


def apply_temperatures(logits: np.ndarray, temperatures) -> np.ndarray:
    return np.asarray(logits) / np.asarray(temperatures, dtype=np.float32)[None, :]
