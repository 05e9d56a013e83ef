"""Evaluate a model on a labelled split (numbers, per-label table, bad cases) and predict files."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import Example, load_dataset, multi_hot, read_texts
from .inference import Classifier, Prediction
from .io_utils import atomic_write_text
from .metrics import apply_thresholds, evaluate_predictions

ZERO_DIVISION_NOTE = ("labels with no gold and no predicted example score 0 in macro-F1 (scikit-learn's "
                      "zero_division=0, as PaddleNLP); macro_f1_zero_division_1 gives the CAIL2019 judger's 1.0")


@dataclass
class Evaluation:
    split: str
    metrics: dict
    probs: np.ndarray
    examples: list[Example]
    thresholds: np.ndarray
    labels: list[str]

    def predicted_labels(self) -> list[list[str]]:
        pred = apply_thresholds(self.probs, self.thresholds)
        return [[self.labels[j] for j in np.flatnonzero(row)] for row in pred]


def evaluate(classifier: Classifier, dataset_dir: str | os.PathLike, split: str = "dev",
             threshold: float | None = None, batch_size: int = 32, long_text: str = "truncate",
             **file_names) -> Evaluation:
    """Score ``classifier`` on ``split`` of ``dataset_dir`` with its thresholds (or ``threshold``)."""
    ds = load_dataset(dataset_dir, require=(split,), **file_names)
    examples = ds.split(split)
    if ds.labels != classifier.labels:
        from .errors import LabelwiseError

        raise LabelwiseError(f"{dataset_dir}: label.txt differs from the model's labels "
                             f"({len(ds.labels)} vs {len(classifier.labels)}); evaluate with the dataset it was trained on")
    probs = classifier.predict_proba([e.text for e in examples], batch_size=batch_size, long_text=long_text,
                                     progress=len(examples) > 2000)
    thresholds = (np.full(len(ds.labels), threshold, dtype=np.float32) if threshold is not None
                  else classifier.thresholds)
    metrics = evaluate_predictions(multi_hot(examples, ds.labels), probs, ds.labels, thresholds)
    metrics["split"] = split
    metrics["thresholds"] = "global %.2f" % threshold if threshold is not None else (
        "per-label, tuned on dev" if classifier.meta.thresholds is not None else "0.5")
    if threshold is None and classifier.meta.thresholds is not None:
        metrics["at_0.5"] = {k: v for k, v in evaluate_predictions(
            multi_hot(examples, ds.labels), probs, ds.labels, 0.5).items() if k in ("accuracy", "micro", "macro")}
    metrics["zero_division"] = ZERO_DIVISION_NOTE
    return Evaluation(split, metrics, probs, examples, thresholds, ds.labels)


def write_bad_cases(evaluation: Evaluation, path: str | os.PathLike) -> int:
    """``Text\\tLabel\\tPrediction`` for every example with any wrong label; returns how many."""
    lines = ["Text\tLabel\tPrediction"]
    for example, predicted in zip(evaluation.examples, evaluation.predicted_labels()):
        if set(predicted) != set(example.labels):
            lines.append(f"{example.text}\t{','.join(example.labels)}\t{','.join(predicted)}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1


def format_report(metrics: dict) -> str:
    """PaddleNLP's evaluate.py layout: sizes and overall numbers, then one block per class."""
    out = [f"{metrics['split'].capitalize()} dataset size: {metrics['size']}",
           f"Thresholds: {metrics['thresholds']}",
           f"Accuracy (exact match): {metrics['accuracy']:.2f}",
           "Micro avg  precision {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}".format(**metrics["micro"]),
           "Macro avg  precision {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}".format(**metrics["macro"]),
           f"Hamming loss: {metrics['hamming_loss']:.4f}   mAP: {metrics['mAP']:.2f}   "
           f"label-ranking AP: {metrics['lrap']:.2f}"]
    if "at_0.5" in metrics:
        a = metrics["at_0.5"]
        out.append(f"At a fixed 0.5 threshold (PaddleNLP's): accuracy {a['accuracy']:.2f}  micro-F1 "
                   f"{a['micro']['f1']:.2f}  macro-F1 {a['macro']['f1']:.2f}")
    out.append(f"Note: {metrics['zero_division']}.")
    out.append("")
    width = max(len(row["label"]) for row in metrics["per_label"])
    out.append(f"{'label':<{width}}  {'support':>7} {'%':>6}  {'P':>6} {'R':>6} {'F1':>6}")
    for row in metrics["per_label"]:
        out.append(f"{row['label']:<{width}}  {row['support']:>7} {row['support_pct']:>5.1f}%  "
                   f"{row['precision']:>6.2f} {row['recall']:>6.2f} {row['f1']:>6.2f}")
    return "\n".join(out)


def format_predictions(texts: Sequence[str], predictions: Sequence[Prediction], with_scores: bool = False) -> str:
    """``text\\tlabel,label`` lines (the training format); with scores ``label:0.97,label:0.55``."""
    lines = []
    for text, pred in zip(texts, predictions):
        if with_scores:
            field = ",".join(f"{label}:{score:.4f}" for label, score in zip(pred.labels, pred.scores))
        else:
            field = ",".join(pred.labels)
        lines.append(f"{text}\t{field}")
    return "\n".join(lines) + ("\n" if lines else "")


def predict_file(classifier: Classifier, data_file: str | os.PathLike, output_file: str | os.PathLike,
                 with_scores: bool = False, **predict_options) -> list[Prediction]:
    """Predict every line of ``data_file`` and write ``output_file`` (atomically)."""
    texts = read_texts(data_file)
    predictions = classifier.predict(texts, progress=len(texts) > 2000, **predict_options)
    atomic_write_text(Path(output_file), format_predictions(texts, predictions, with_scores))
    return predictions
