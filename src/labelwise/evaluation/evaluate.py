"""Evaluate a model on a labelled split: numbers, the per-label table, bad cases.

Predicting files is :mod:`labelwise.predict.output`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelwise.data.dataset import Example, check_same_labels, load_dataset, multi_hot
from labelwise.data.tables import TableColumns
from labelwise.data.hierarchy import Hierarchy
from labelwise.evaluation.calibration import ece, reliability
from labelwise.evaluation.decision import check_decision, decision_matrix, shown_ids
from labelwise.evaluation.levels import format_levels, tree_order
from labelwise.evaluation.metrics import evaluate_predictions
from labelwise.files import atomic_write_text, check_outputs

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
    sources: tuple[Path, ...] = ()  # the files it was computed from (split, label.txt): outputs must not replace them
    top_k_min: int = 0  # at least / at most this many labels per text, as `labelwise predict` takes them
    top_k_max: int | None = None
    hierarchy: Hierarchy | None = None  # the label tree (None or flat: no tree)
    mode: str = "consistent"  # the hierarchy mode (consistent | leaves | none)

    def decisions(self) -> np.ndarray:
        """0/1 matrix of the labels predicted for each example: what the metrics count and what
        ``labelwise predict`` outputs with the same thresholds, top-k bounds and hierarchy mode
        (``leaves``: every node of the consistent set, of which prediction shows the deepest)."""
        return decision_matrix(self.probs, self.thresholds, self.top_k_min, self.top_k_max, self.hierarchy,
                               self.mode)

    def predicted_labels(self) -> list[list[str]]:
        """Predicted label names per example, most probable first (as :meth:`Classifier.predict` orders and
        shows them)."""
        shown = shown_ids(self.probs, self.decisions(), self.hierarchy, self.mode)
        return [[self.labels[j] for j in ids] for ids in shown]

    def gold_labels(self, example: Example) -> list[str]:
        """An example's gold labels as prediction shows labels (``leaves``: the deepest only)."""
        if self.mode != "leaves" or self.hierarchy is None or self.hierarchy.is_flat:
            return list(example.labels)
        gold = multi_hot([example], self.labels)
        return [self.labels[j] for j in np.flatnonzero(self.hierarchy.ends(gold)[0])]


def evaluate(classifier, dataset_dir: str | os.PathLike, split: str = "dev",
             threshold: float | list[float] | None = None, batch_size: int = 32, long_text: str | None = None,
             top_k_min: int = 0, top_k_max: int | None = None, hierarchy: str = "consistent",
             columns: TableColumns | None = None, **file_names) -> Evaluation:
    """Score ``classifier`` on ``split`` of ``dataset_dir`` with its thresholds (or ``threshold``: one number
    or one per label, in [0, 1]).

    ``top_k_min`` / ``top_k_max`` bound the labels per text and ``hierarchy`` (consistent | leaves | none)
    applies to a label tree as :meth:`Classifier.predict` does; ``columns``: where a table's text and labels are
    (:mod:`labelwise.data.tables`); the metrics and the bad cases count the labels
    that prediction would output. The data's label paths are read with the model's ``hierarchy_sep``.
    """
    check_decision(threshold, len(classifier.labels), top_k_min, top_k_max, hierarchy)
    tree = getattr(classifier, "hierarchy", None)
    sep = tree.sep if tree is not None and not tree.is_flat else None  # a flat model reads the labels flat
    ds = load_dataset(dataset_dir, require=(split,), hierarchy_sep=sep, columns=columns, labels=classifier.labels,
                      **file_names)  # a table without label.txt is read with the model's labels
    examples = ds.split(split)
    label_file = Path(dataset_dir) / file_names.get("label_file", "label.txt")
    check_same_labels(classifier.labels, ds.labels, classifier.path, label_file)
    probs = classifier.predict_proba([e.text for e in examples], batch_size=batch_size, long_text=long_text,
                                     progress=len(examples) > 2000)
    thresholds = (np.full(len(ds.labels), threshold, dtype=np.float32) if threshold is not None
                  else classifier.thresholds)
    top_k = {"top_k_min": top_k_min, "top_k_max": top_k_max}
    rule = {"hierarchy": tree, "mode": hierarchy}
    metrics = evaluate_predictions(multi_hot(examples, ds.labels), probs, ds.labels, thresholds, **top_k, **rule)
    metrics["split"] = split
    if threshold is None:
        metrics["thresholds"] = "per-label, tuned on dev" if classifier.meta.thresholds is not None else "0.5"
    else:
        metrics["thresholds"] = "global %.2f" % threshold if np.ndim(threshold) == 0 else "per-label, given"
    metrics.update(top_k)
    if threshold is None and classifier.meta.thresholds is not None:
        metrics["at_0.5"] = {k: v for k, v in evaluate_predictions(
            multi_hot(examples, ds.labels), probs, ds.labels, 0.5, **top_k, **rule).items()
            if k in ("accuracy", "micro", "macro")}
    metrics["calibration"] = calibration_metrics(multi_hot(examples, ds.labels), probs, ds.labels,
                                                 getattr(classifier.meta, "calibration", None))
    metrics["zero_division"] = ZERO_DIVISION_NOTE
    sources = (Path(dataset_dir) / file_names.get(f"{split}_file", f"{split}.txt"), label_file)
    return Evaluation(split, metrics, probs, examples, thresholds, ds.labels, sources, top_k_min, top_k_max,
                      tree, hierarchy)


def write_bad_cases(evaluation: Evaluation, path: str | os.PathLike) -> int:
    """``Text\\tLabel\\tPrediction`` for every example with any wrong label; returns how many.

    ``path`` is replaced if it exists, but never when it is one of the files the evaluation read.
    """
    check_outputs([path], evaluation.sources, overwrite=True)
    lines = ["Text\tLabel\tPrediction"]
    decisions = evaluation.decisions()
    for row, (example, predicted) in enumerate(zip(evaluation.examples, evaluation.predicted_labels())):
        if {evaluation.labels[j] for j in np.flatnonzero(decisions[row])} != set(example.labels):
            gold = evaluation.gold_labels(example)
            lines.append(f"{example.text}\t{','.join(gold)}\t{','.join(predicted)}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1


def _top_k_note(metrics: dict) -> str:
    bounds = []
    if metrics.get("top_k_min"):
        bounds.append(f"at least {metrics['top_k_min']}")
    if metrics.get("top_k_max") is not None:
        bounds.append(f"at most {metrics['top_k_max']}")
    return f"; {' and '.join(bounds)} label(s) per text" if bounds else ""


def calibration_metrics(y: np.ndarray, probs: np.ndarray, labels, fitted: dict | None) -> dict:
    """ECE (in %) over every score and per label, the reliability bins, and whether the model is calibrated."""
    overall, per_label = ece(y, probs)
    return {"ece": round(100 * overall, 3), "per_label": {label: round(100 * float(e), 3)
                                                          for label, e in zip(labels, per_label)},
            "reliability": reliability(y, probs), "calibrated": bool(fitted)}


def format_report(metrics: dict) -> str:
    """PaddleNLP's evaluate.py layout: sizes and overall numbers, then one block per class."""
    out = [f"{metrics['split'].capitalize()} dataset size: {metrics['size']}",
           f"Thresholds: {metrics['thresholds']}{_top_k_note(metrics)}",
           f"Accuracy (exact match): {metrics['accuracy']:.2f}",
           "Micro avg  precision {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}".format(**metrics["micro"]),
           "Macro avg  precision {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}".format(**metrics["macro"]),
           f"Hamming loss: {metrics['hamming_loss']:.4f}   mAP: {metrics['mAP']:.2f}   "
           f"label-ranking AP: {metrics['lrap']:.2f}"]
    if "at_0.5" in metrics:
        a = metrics["at_0.5"]
        out.append(f"At a fixed 0.5 threshold (PaddleNLP's): accuracy {a['accuracy']:.2f}  micro-F1 "
                   f"{a['micro']['f1']:.2f}  macro-F1 {a['macro']['f1']:.2f}")
    if "calibration" in metrics:
        c = metrics["calibration"]
        worst = max(c["per_label"].items(), key=lambda kv: kv[1]) if c["per_label"] else ("—", 0.0)
        out.append(f"Calibration: expected calibration error {c['ece']:.2f}% over every score (worst label "
                   f"{worst[0]} {worst[1]:.2f}%); scores {'temperature-scaled on dev' if c['calibrated'] else 'raw'}")
    if "hierarchy" in metrics:
        out += format_levels(metrics["hierarchy"], metrics["size"])
    out.append(f"Note: {metrics['zero_division']}.")
    out.append("")
    rows = _table_rows(metrics)
    width = max(len(name) for name, _ in rows)
    out.append(f"{'label':<{width}}  {'support':>7} {'%':>6}  {'P':>6} {'R':>6} {'F1':>6}")
    for name, row in rows:
        out.append(f"{name:<{width}}  {row['support']:>7} {row['support_pct']:>5.1f}%  "
                   f"{row['precision']:>6.2f} {row['recall']:>6.2f} {row['f1']:>6.2f}")
    return "\n".join(out)


def _table_rows(metrics: dict) -> list[tuple[str, dict]]:
    """(shown name, row) of the per-label table: label.txt order, or a tree's order with each label's last path
    element indented under its parent."""
    per_label = metrics["per_label"]
    if "hierarchy" not in metrics:
        return [(row["label"], row) for row in per_label]
    tree = Hierarchy.from_labels([row["label"] for row in per_label], metrics["hierarchy"]["separator"])
    return [("  " * depth + tree.name(i), per_label[i]) for i, depth in tree_order(tree)]
