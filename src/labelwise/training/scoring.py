"""Scoring a model in memory during training: dev/test metrics, tuned thresholds, the summary lines.

For a label tree (names such as ``体育##足球``, read with ``meta.hierarchy_sep``) every figure, the one the best
epoch is chosen by included, counts the decisions the saved model will predict with: the consistent rule
(:mod:`labelwise.evaluation.decision`), not the raw per-label ones. The checkpoint's metrics then also hold
PaddleNLP's per-level figures (``levels``) at the model's own thresholds.
"""
from __future__ import annotations

import logging

import numpy as np

from labelwise.data.dataset import multi_hot
from labelwise.data.hierarchy import Hierarchy
from labelwise.evaluation.calibration import apply_temperatures, ece, fit_temperatures
from labelwise.evaluation.decision import logit, sigmoid
from labelwise.evaluation.levels import format_levels
from labelwise.evaluation.metrics import (
    PRIOR_STRENGTH,
    evaluate_predictions,
    headline,
    tune_thresholds,
)
from labelwise.model.blend import Blend, LinearScorer, fit_blend
from labelwise.predict.classifier import Classifier, TorchBackend

log = logging.getLogger("labelwise")


def model_hierarchy(meta) -> Hierarchy:
    """The label tree a model with metadata ``meta`` predicts with (:attr:`Classifier.hierarchy`'s rule)."""
    return Classifier(None, None, meta).hierarchy


def evaluate_model(model, tokenizer, meta, examples, labels, batch_size, blend: Blend | None = None
                   ) -> tuple[np.ndarray, dict]:
    """Probabilities and metrics at 0.5 of an in-memory model (with ``blend``, when given) on ``examples``; leaves
    it in train mode. A label tree is decided by the consistent rule, as the saved model will predict."""
    clf = Classifier(TorchBackend(model, next(model.parameters()).device.type), tokenizer, meta, blend=blend)
    clf.temperatures = None  # raw scores: calibration is fitted on them (score_checkpoint)
    probs = clf.predict_proba([e.text for e in examples], batch_size=batch_size * 2)
    model.train()
    return probs, evaluate_predictions(multi_hot(examples, labels), probs, labels, 0.5, hierarchy=clf.hierarchy)


def score_checkpoint(model, tokenizer, meta, dev_probs, dev_set, test_set, epoch, baseline=None, *,
                     tune: bool = True, batch_size: int = 32, prior_strength: float = PRIOR_STRENGTH,
                     train_size: int | None = None, linear: LinearScorer | None = None,
                     calibrate: bool = False) -> Blend | None:
    """Into ``meta``: the blend with the ``linear`` baseline (when given and it helps on dev), per-label thresholds
    tuned on dev, dev (and test) metrics at 0.5 and tuned, the baseline, per-label support and F1 with the model's
    thresholds and the data sizes (for the model card). Returns the blend, which the checkpoint must store.

    ``prior_strength``: see :func:`labelwise.evaluation.metrics.tune_thresholds` (0 = no pull towards a shared threshold).
    ``calibrate``: per-label temperatures fitted on dev (after the blend), kept when they lower dev's expected
    calibration error; thresholds are then tuned on the calibrated scores.
    """
    labels = meta.labels
    tree = model_hierarchy(meta)

    def score(y, probs, thresholds) -> dict:  # the decisions the model predicts with, a tree's consistent ones
        return evaluate_predictions(y, probs, labels, thresholds, hierarchy=tree)

    y_dev = multi_hot(dev_set, labels)
    blend, model_dev = None, None
    if linear is not None:
        logits, svm = logit(dev_probs, eps=1e-7), linear.decision_function([e.text for e in dev_set])
        blend = fit_blend(logits, svm, y_dev, linear)
        if blend is not None:
            model_dev = headline(score(y_dev, dev_probs, 0.5))
            dev_probs = sigmoid(blend.mix(logits, svm)).astype(np.float32)
    meta.blend = blend.to_json() if blend is not None else None
    meta.calibration = None
    temperatures = None
    if calibrate:
        temperatures, dev_probs = calibration(meta, y_dev, dev_probs)
    thresholds = tune_thresholds(y_dev, dev_probs, prior_strength=prior_strength) if tune else None
    meta.thresholds = [round(float(t), 4) for t in thresholds] if thresholds is not None else None
    metrics = {"epoch": epoch, "dev@0.5": headline(score(y_dev, dev_probs, 0.5))}
    if thresholds is not None:
        metrics["dev@tuned"] = headline(score(y_dev, dev_probs, meta.thresholds))
        metrics["note"] = "dev@tuned uses thresholds fit on dev itself: optimistic; test@tuned is the honest figure"
    if test_set:
        test_probs, _ = evaluate_model(model, tokenizer, meta, test_set, labels, batch_size, blend)
        if temperatures is not None:
            test_probs = sigmoid(apply_temperatures(logit(test_probs, eps=1e-7), temperatures)).astype(np.float32)
        y_test = multi_hot(test_set, labels)
        metrics["test@0.5"] = headline(score(y_test, test_probs, 0.5))
        if thresholds is not None:
            metrics["test@tuned"] = headline(score(y_test, test_probs, meta.thresholds))
    if baseline:
        metrics["baseline"] = baseline
    if model_dev is not None:  # what the blend added on dev
        metrics["blend"] = {"labels": blend.blended, "model alone dev@0.5": model_dev}
    final = meta.thresholds if thresholds is not None else 0.5  # what the model predicts with
    splits = {"dev": score(y_dev, dev_probs, final)}
    if test_set:
        splits["test"] = score(y_test, test_probs, final)
    rows = [{"label": r["label"], "dev_support": r["support"], "dev_f1": round(r["f1"], 2)}
            for r in splits["dev"]["per_label"]]
    if test_set:
        for row, r in zip(rows, splits["test"]["per_label"]):
            row.update(test_support=r["support"], test_f1=round(r["f1"], 2))
    metrics["per_label"] = rows
    if not tree.is_flat:  # PaddleNLP's per-level figures, with the model's thresholds
        metrics["levels"] = {split: {**m["hierarchy"], "size": m["size"]} for split, m in splits.items()}
    metrics["sizes"] = {"train": train_size, "dev": len(dev_set), "test": len(test_set or [])}
    meta.metrics = metrics
    return blend


def calibration(meta, y_dev: np.ndarray, dev_probs: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(per-label temperatures, dev's scores with them) when they lower dev's expected calibration error (then
    set in ``meta.calibration``, with dev's ECE before and after); else (None, ``dev_probs`` unchanged)."""
    raw = logit(dev_probs, eps=1e-7)
    temperatures = np.round(fit_temperatures(y_dev, raw), 4).astype(np.float32)  # as labelwise.json keeps them
    calibrated = sigmoid(apply_temperatures(raw, temperatures)).astype(np.float32)
    before, after = ece(y_dev, dev_probs)[0], ece(y_dev, calibrated)[0]
    if np.allclose(temperatures, 1) or after >= before:
        return None, dev_probs
    meta.calibration = {"method": "temperature", "temperatures": [round(float(t), 4) for t in temperatures],
                        "dev_ece_before": round(100 * before, 3), "dev_ece_after": round(100 * after, 3)}
    return temperatures, calibrated


def log_summary(metrics: dict) -> None:
    log.info("best epoch %s:", metrics.get("epoch"))
    rows = [(split, values, "") for split, values in metrics.items() if isinstance(values, dict) and "micro_f1" in values]
    rows += [(split, values, "  (linear baseline)") for split, values in metrics.get("baseline", {}).items()
             if isinstance(values, dict)]
    for split, values, note in rows:
        log.info("%-10s micro-F1 %.2f  macro-F1 %.2f  accuracy %.2f%s", split, values["micro_f1"],
                 values["macro_f1"], values["accuracy"], note)
    for split, section in metrics.get("levels", {}).items():  # a label tree: each level, as evaluate prints it
        for line in format_levels(section, section["size"]):
            log.info("%-10s %s", split, line)


__all__ = ['evaluate_model', 'log_summary', 'model_hierarchy', 'score_checkpoint']

