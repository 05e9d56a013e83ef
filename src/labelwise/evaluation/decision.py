"""The one label-decision rule, shared by prediction, evaluation's bad cases and the service.

Probabilities come from logits through :func:`sigmoid`; a label is chosen when its probability reaches its
threshold (:func:`check_thresholds`), then ``top_k_min`` / ``top_k_max`` bound how many (:func:`decide`).
:func:`decision_matrix` gives the same decisions as a 0/1 matrix, the form metrics are computed from, so
``labelwise predict``, ``labelwise evaluate`` (numbers and bad cases) and the service cannot disagree.

Label trees (:class:`~labelwise.data.hierarchy.Hierarchy`, names such as ``体育##足球``) add a ``mode``:

* ``consistent`` (the default): a child is only predicted with its parent, and a predicted child brings its
  parent. Where the per-label decisions disagree (a child at or above its threshold, its parent below), the
  child wins: its parent, and the parent's parent, are added (rule ``add``). Two other rules were measured
  against it (``benchmarks/accuracy/hierarchy_rules.py``, docs/hierarchy.md): ``drop`` (the child goes) and ``sum``
  (the label set closed under ancestors with the largest sum of margins ``logit(p) - logit(threshold)``,
  :meth:`Hierarchy.best_closed`: both when the child clears its threshold by more than the parent misses
  its own, neither otherwise). ``add`` gave the best (micro-F1 + macro-F1) / 2 in most settings and never
  less than the raw decisions; ``sum`` the best exact-match accuracy. Every rule keeps rows without a
  conflict as they are; ``rule=`` picks another.
* ``leaves``: the same labels, of which only the deepest (no chosen child) are shown (:func:`shown_matrix`);
  metrics count the whole consistent set.
* ``none``: the raw per-label decisions, as for flat labels.

``top_k_min`` / ``top_k_max`` then bound the deepest chosen nodes (the paths) per text, not every node:
with ``top_k_max=1`` a text gets one path, its ancestors with it. A flat label set is decided exactly as before.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from labelwise.data.hierarchy import Hierarchy
from labelwise.errors import LabelwiseError

__all__ = ['HIERARCHY_MODES', 'CONFLICT_RULES', 'check_hierarchy_mode', 'check_thresholds', 'check_top_k',
           'check_decision', 'chosen_ids', 'decide', 'decision_matrix', 'inconsistent_count', 'margins',
           'logit', 'shown_ids', 'shown_matrix', 'sigmoid']

HIERARCHY_MODES = ("consistent", "leaves", "none")
CONFLICT_RULES = ("sum", "add", "drop")  # how `consistent` settles a child chosen without its parent
DEFAULT_RULE = "add"  # measured: benchmarks/accuracy/hierarchy_rules.py, docs/hierarchy.md
_EPS = 1e-12


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


def check_hierarchy_mode(mode: str, rule: str = DEFAULT_RULE) -> None:
    if mode not in HIERARCHY_MODES:
        raise LabelwiseError(f"`hierarchy` must be one of {', '.join(HIERARCHY_MODES)}, got {mode!r}")
    if rule not in CONFLICT_RULES:
        raise LabelwiseError(f"the hierarchy rule must be one of {', '.join(CONFLICT_RULES)}, got {rule!r}")


def check_decision(threshold, num_labels: int, top_k_min: int = 0, top_k_max: int | None = None,
                   mode: str = "consistent") -> None:
    """Every decision setting a caller takes (``threshold`` None = the model's own), checked at the door, before
    a model runs: :func:`check_thresholds`, :func:`check_top_k`, :func:`check_hierarchy_mode`."""
    if threshold is not None:
        check_thresholds(threshold, num_labels)
    check_top_k(top_k_min, top_k_max)
    check_hierarchy_mode(mode)


def _tree(hierarchy: Hierarchy | None, mode: str) -> Hierarchy | None:
    """The hierarchy when it changes anything: a tree, and a mode other than none."""
    return hierarchy if hierarchy is not None and not hierarchy.is_flat and mode != "none" else None


def decision_matrix(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray,
                    top_k_min: int = 0, top_k_max: int | None = None, hierarchy: Hierarchy | None = None,
                    mode: str = "consistent", rule: str = DEFAULT_RULE) -> np.ndarray:
    """:func:`decide` as a 0/1 int8 matrix shaped like ``probs`` (1 = label chosen).

    Rows whose count of labels at or above threshold already lies within [top_k_min, top_k_max] are
    compared at once; only the others go through :func:`decide` row by row. With a label tree
    (``hierarchy``) and ``mode`` consistent or leaves, the labels come from :func:`_tree_matrix` instead
    (see the module docstring); ``leaves`` chooses the same labels as ``consistent`` here.
    """
    check_top_k(top_k_min, top_k_max)
    check_hierarchy_mode(mode, rule)
    tree = _tree(hierarchy, mode)
    if tree is not None:
        return _tree_matrix(np.asarray(probs), thresholds, top_k_min, top_k_max, tree, rule)
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


def logit(p: np.ndarray, eps: float = _EPS) -> np.ndarray:
    """The inverse of :func:`sigmoid` in float64, ``p`` clipped to [eps, 1 - eps] first."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def margins(probs: np.ndarray, thresholds) -> np.ndarray:
    """``logit(p) - logit(threshold)`` per label (float64), >= 0 exactly where ``p >= threshold``."""
    probs = np.asarray(probs, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])
    out = logit(probs) - logit(thr)
    chosen = probs >= thr  # the sign is the raw decision's, whatever the clipping did
    return np.where(chosen, np.maximum(out, 0.0), np.minimum(out, -_EPS))


def _tree_matrix(probs: np.ndarray, thresholds, top_k_min: int, top_k_max: int | None, tree: Hierarchy,
                 rule: str) -> np.ndarray:
    if rule == "sum":
        out = tree.best_closed(margins(probs, thresholds))
    else:
        raw = probs >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])
        out = tree.close(raw) if rule == "add" else tree.prune(raw)
    counts = tree.ends(out).sum(axis=1)
    redo = counts < top_k_min
    if top_k_max is not None:
        redo |= counts > top_k_max
    for row in np.flatnonzero(redo):
        out[row] = _bound_paths(tree, probs[row], out[row], top_k_min, top_k_max)
    return out


def _bound_paths(tree: Hierarchy, row: np.ndarray, chosen: np.ndarray, top_k_min: int,
                 top_k_max: int | None) -> np.ndarray:
    """One row's labels with at least ``top_k_min`` and at most ``top_k_max`` deepest nodes, still closed:
    too few, the most probable other labels join with their ancestors; too many, the most probable
    deepest nodes stay with their ancestors."""
    chosen = chosen.copy()
    order = np.argsort(-row, kind="stable")
    if tree.ends(chosen[None])[0].sum() < top_k_min:
        for j in order:
            if not chosen[j]:
                chosen[tree.path(int(j))] = 1
                if tree.ends(chosen[None])[0].sum() >= top_k_min:
                    break
    ends = np.flatnonzero(tree.ends(chosen[None])[0])
    if top_k_max is not None and len(ends) > top_k_max:
        keep = ends[np.argsort(-row[ends], kind="stable")][:top_k_max]
        chosen[:] = 0
        for j in keep:
            chosen[tree.path(int(j))] = 1
    return chosen


def shown_matrix(decisions: np.ndarray, hierarchy: Hierarchy | None = None, mode: str = "consistent") -> np.ndarray:
    """The labels a text is shown with: ``decisions`` itself, or their deepest nodes in ``leaves`` mode."""
    if mode == "leaves" and hierarchy is not None and not hierarchy.is_flat:
        return hierarchy.ends(decisions)
    return np.asarray(decisions)


def shown_ids(probs: np.ndarray, decisions: np.ndarray, hierarchy: Hierarchy | None = None,
              mode: str = "consistent") -> list[list[int]]:
    """The label ids each text is shown with (:func:`shown_matrix`), highest probability first
    (:func:`chosen_ids`): what ``labelwise predict`` prints and ``evaluate``'s bad cases list."""
    return chosen_ids(probs, shown_matrix(decisions, hierarchy, mode))


def inconsistent_count(probs: np.ndarray, thresholds, top_k_min: int = 0, top_k_max: int | None = None,
                       hierarchy: Hierarchy | None = None) -> int:
    """How many texts the raw per-label decisions (``mode`` none) give a label without its parent: the
    predictions the consistent rule changes. 0 for a flat label set."""
    if hierarchy is None or hierarchy.is_flat:
        return 0
    raw = decision_matrix(probs, thresholds, top_k_min, top_k_max)
    return int(hierarchy.inconsistent(raw).sum())
