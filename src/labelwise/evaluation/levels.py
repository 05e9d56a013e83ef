"""Evaluation of a label tree: figures per level, PaddleNLP's level lines, the per-label table in tree order.

Level 1 is the roots (``体育``), level 2 their children (``体育##足球``), and so on. A level's figures are those of
its labels' columns alone: micro- and macro-F1 over them, and accuracy = the share of texts whose labels of
that level are exactly the gold ones (PaddleNLP's hierarchical evaluation, "Level 1 Label Performance: Macro
F1 score … | Micro F1 score … | Accuracy …"). Nothing here runs for a flat label set.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from labelwise.data.hierarchy import Hierarchy

__all__ = ["level_metrics", "hierarchy_metrics", "format_levels", "tree_order"]


def level_metrics(y_true: np.ndarray, y_pred: np.ndarray, hierarchy: Hierarchy) -> list[dict]:
    """One dict per level: ``level`` (1 = roots), ``labels``, ``micro_f1``, ``macro_f1``, ``accuracy`` (percent)."""
    y_true, y_pred = np.asarray(y_true).astype(np.int8), np.asarray(y_pred).astype(np.int8)
    out = []
    for depth, ids in enumerate(hierarchy.levels):
        gold, pred = y_true[:, ids], y_pred[:, ids]
        n = len(gold)
        out.append({
            "level": depth + 1, "labels": len(ids),
            "micro_f1": 100 * float(f1_score(gold, pred, average="micro", zero_division=0)) if n else 0.0,
            "macro_f1": 100 * float(f1_score(gold, pred, average="macro", zero_division=0)) if n else 0.0,
            "accuracy": 100 * float(np.mean(np.all(gold == pred, axis=1))) if n else 0.0,
        })
    return out


def hierarchy_metrics(y_true: np.ndarray, y_pred: np.ndarray, hierarchy: Hierarchy, mode: str,
                      inconsistent_before: int) -> dict:
    """What `labelwise evaluate` adds for a tree: the mode, the levels and the consistency counts."""
    return {"mode": mode, "separator": hierarchy.sep, "depth": hierarchy.depth,
            "levels": level_metrics(y_true, y_pred, hierarchy),
            "inconsistent_before": int(inconsistent_before),
            "inconsistent_after": int(hierarchy.inconsistent(y_pred).sum())}


def format_levels(section: dict, size: int) -> list[str]:
    """PaddleNLP's level lines, then the consistency count."""
    out = [f"Level {row['level']} Label Performance: Macro F1 score: {row['macro_f1']:.2f} | Micro F1 score: "
           f"{row['micro_f1']:.2f} | Accuracy: {row['accuracy']:.2f}" for row in section["levels"]]
    before, after = section["inconsistent_before"], section["inconsistent_after"]
    line = (f"Consistency: {before} of {size} texts had a label without its parent before the hierarchy rule "
            f"({section['mode']})")
    out.append(line + (f"; {after} after it" if after or section["mode"] == "none" else "; none after it"))
    return out


def tree_order(hierarchy: Hierarchy) -> list[tuple[int, int]]:
    """(label id, indent depth) in table order: each parent followed by its subtree."""
    return [(i, hierarchy.depths[i]) for i in hierarchy.order()]
