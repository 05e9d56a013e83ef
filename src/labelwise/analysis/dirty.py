"""Dirty data: rank training examples by how likely their labels are wrong.

Two methods, both scoring every training example (higher = more suspicious):

``representer``
    Representer points (Yeh et al., 2018), on the trained model. The final linear layer is refit to a
    stationary point of ``mean BCE(sigmoid(F W), Y) + lambda * |W|^2`` over the frozen features
    ``F = Classifier.features(train texts)`` (plus a bias column) and the *gold* labels ``Y``. Then
    ``W = sum_i alpha_i f_i`` exactly, with
    ``alpha_ij = -1/(2 lambda n) * dL/dlogit_ij = (y_ij - p_ij) / (2 lambda n)``.
    Rules (``--representer_score``):

    * ``self`` (default): ``sum_j |alpha_ij| * (f_i . f_i)``, the example's influence on its own logits: how hard
      the head must be pulled toward this example's labels; a wrong label needs a large pull.
    * ``paddlenlp``: PaddleNLP's rule, examples sorted by (how many ``alpha_ij > --dirty_threshold``, their sum).
      With sigmoid outputs ``alpha_ij > 0`` exactly when label j is gold, so this mostly counts gold labels;
      kept for comparison.

``confident``
    Confident learning (cleanlab, multi-label) on out-of-fold probabilities from ``--folds`` K folds
    (multi-label stratified). ``--cl_model head`` (default, seconds): a logistic head per fold over the
    checkpoint's frozen features; the encoder itself saw every example in training, so only the head is
    out-of-fold. ``--cl_model finetune``: K models of the same kind as the checkpoint (its base model and
    training arguments) fine-tuned on K-1 folds each, the held-out fold predicted: truly out-of-fold, K trainings.
    Score = 1 - cleanlab's label quality score (self-confidence, pooled over labels).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.dataset import (
    Example,
    load_dataset,
    multi_hot,
    save_dataset,
    write_examples,
)
from labelwise.errors import LabelwiseError
from labelwise.evaluation.decision import decision_matrix, sigmoid

__all__ = ["DirtyRanking", "fit_linear_head", "representer_alpha", "representer_scores", "out_of_fold_probs",
           "confident_scores", "find_dirty", "select_dirty", "write_dirty", "METHODS"]

METHODS = ("representer", "confident")


@dataclass
class DirtyRanking:
    method: str
    scores: np.ndarray  # (n,) higher = more likely mislabelled
    suggested: list[list[str]]  # what the model (or the out-of-fold model) predicts, a hint for relabelling
    detail: dict = field(default_factory=dict)

    @property
    def order(self) -> np.ndarray:
        """Example indices, most suspicious first (ties keep file order)."""
        return np.argsort(-self.scores, kind="stable")


# ---- a linear multi-label head, fit exactly (shared by the representer refit and the CL head) -------------
def fit_linear_head(features: np.ndarray, targets: np.ndarray, lmbd: float, init: np.ndarray | None = None,
                    max_iter: int = 2000) -> np.ndarray:
    """W (d+1, L) minimising mean BCE(sigmoid([F 1] W), targets) + lmbd * |W|^2 (convex; scipy L-BFGS)."""
    from scipy.optimize import minimize

    x, y = _with_bias(features), np.asarray(targets, dtype=np.float64)
    shape = (x.shape[1], y.shape[1])

    def loss_and_grad(flat: np.ndarray):
        w = flat.reshape(shape)
        z = x @ w
        loss = (np.logaddexp(0.0, z) - y * z).sum() / len(x) + lmbd * (w * w).sum()
        grad = x.T @ (sigmoid(z) - y) / len(x) + 2 * lmbd * w
        return loss, grad.ravel()

    start = np.zeros(shape) if init is None else np.asarray(init, dtype=np.float64)
    result = minimize(loss_and_grad, start.ravel(), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": 1e-10, "ftol": 1e-16})
    return result.x.reshape(shape)


def _with_bias(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return np.hstack([features, np.ones((len(features), 1))])


def representer_alpha(features: np.ndarray, y: np.ndarray, lmbd: float, init: np.ndarray | None = None) -> np.ndarray:
    """alpha (n, L): refit the head with L2 ``lmbd`` on gold labels, then -1/(2 lmbd n) * dBCE/dlogit."""
    w = fit_linear_head(features, y, lmbd, init)
    probs = sigmoid(_with_bias(features) @ w)
    return (np.asarray(y, dtype=np.float64) - probs) / (2.0 * lmbd * len(features))


def representer_scores(alpha: np.ndarray, features: np.ndarray, rule: str = "self",
                       threshold: float = 0.0) -> np.ndarray:
    """Per-example score from the representer weights; see the module docstring for the rules."""
    if rule == "self":
        self_kernel = np.einsum("ij,ij->i", _with_bias(features), _with_bias(features))
        return np.abs(alpha).sum(axis=1) * self_kernel
    if rule == "paddlenlp":
        positive = np.where(alpha > threshold, alpha, 0.0)
        count, total = (alpha > threshold).sum(axis=1), positive.sum(axis=1)
        return count + total / (1.0 + total.max(initial=0.0))  # lexicographic (count, sum) as one number
    raise LabelwiseError(f"`representer_score` must be self or paddlenlp, got {rule!r}")


# ---- confident learning --------------------------------------------------------------------------------
def _folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Held-out index arrays of a multi-label stratified K-fold split."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if not 2 <= k <= len(y):
        raise LabelwiseError(f"`folds` must be between 2 and the number of training examples ({len(y)}), got {k}")
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(y)), y)]


def out_of_fold_probs(features: np.ndarray, y: np.ndarray, folds: int = 5, lmbd: float = 1e-3,
                      seed: int = 3) -> np.ndarray:
    """Out-of-fold probabilities of a logistic head over frozen ``features`` (the cheap ``head`` model)."""
    probs = np.zeros(y.shape, dtype=np.float64)
    for held in _folds(y, folds, seed):
        fit = np.setdiff1d(np.arange(len(y)), held)
        w = fit_linear_head(features[fit], y[fit], lmbd)
        probs[held] = sigmoid(_with_bias(features[held]) @ w)
    return probs


def out_of_fold_probs_finetune(classifier, examples: Sequence[Example], dataset_dir: str | os.PathLike,
                               folds: int = 5, epochs: int | None = None, seed: int = 3,
                               progress: bool = False) -> np.ndarray:
    """Out-of-fold probabilities of K models of the checkpoint's kind, each fine-tuned on K-1 folds."""
    from labelwise.predict.classifier import Classifier
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    meta, labels = classifier.meta, classifier.labels
    ds = load_dataset(dataset_dir, require=("dev",))
    known = set(TrainConfig.__dataclass_fields__)
    base = {k: v for k, v in meta.training_args.items() if k in known}
    y = multi_hot(examples, labels)
    probs = np.zeros(y.shape, dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="labelwise-dirty-") as work:
        work = Path(work)
        for k, held in enumerate(_folds(y, folds, seed), start=1):
            fit = np.setdiff1d(np.arange(len(y)), held)
            save_dataset(work, labels, {"train": [examples[i] for i in fit], "dev": ds.dev})
            cfg = TrainConfig(**{**base, "dataset_dir": str(work), "save_dir": str(work / f"fold{k}"),
                                 "model_name": meta.base_model, "init_from_ckpt": None, "resume": False,
                                 "max_train_samples": None, "train_file": "train.txt", "dev_file": "dev.txt",
                                 "test_file": "test.txt", "label_file": "label.txt", "progress": progress,
                                 "seed": seed + k, **({"epochs": epochs} if epochs else {})})
            train(cfg)
            fold_clf = Classifier.load(work / f"fold{k}")
            probs[held] = fold_clf.predict_proba([examples[i].text for i in held])
    return probs


def confident_scores(y: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1 - cleanlab label quality, cleanlab's own issue mask) for multi-hot ``y`` and out-of-fold probs."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    given = [list(np.flatnonzero(row)) for row in y]
    pred_probs = np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    with warnings.catch_warnings():  # "too few examples in class k" for rare labels: expected, not actionable
        warnings.simplefilter("ignore", UserWarning)
        quality = get_label_quality_scores(given, pred_probs)
        issues = find_label_issues(given, pred_probs)
    return 1.0 - quality, np.asarray(issues, dtype=bool)


# ---- the whole step ----------------------------------------------------------------------------------
def find_dirty(classifier, examples: Sequence[Example], method: str = "representer", *,
               lmbd: float = 1e-3, representer_score: str = "self", dirty_threshold: float = 0.0,
               folds: int = 5, cl_model: str = "head", cl_epochs: int | None = None,
               dataset_dir: str | os.PathLike | None = None, batch_size: int = 32,
               max_seq_length: int | None = None, seed: int = 3, progress: bool = False) -> DirtyRanking:
    """Score every example of ``examples`` (the training set ``classifier`` was trained on)."""
    if method not in METHODS:
        raise LabelwiseError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
    if not examples:
        raise LabelwiseError("no training examples to rank")
    if lmbd <= 0:
        raise LabelwiseError(f"`lmbd` must be positive, got {lmbd}")
    if cl_model not in ("head", "finetune"):
        raise LabelwiseError(f"`cl_model` must be head or finetune, got {cl_model!r}")
    labels = classifier.labels
    y = multi_hot(examples, labels)
    texts = [e.text for e in examples]
    needs_features = method == "representer" or cl_model == "head"
    features = (classifier.features(texts, batch_size=batch_size, max_seq_length=max_seq_length,
                                    progress=progress) if needs_features else None)
    if method == "representer":
        head = classifier.backend.head()
        init = np.vstack([head.weight.detach().cpu().double().numpy().T,
                          head.bias.detach().cpu().double().numpy()[None]])
        alpha = representer_alpha(features, y, lmbd, init)
        scores = representer_scores(alpha, features, representer_score, dirty_threshold)
        probs = sigmoid(_with_bias(features) @ init)  # the trained head's own predictions
        detail = {"alpha": alpha, "lmbd": lmbd, "rule": representer_score}
    else:
        if cl_model == "head":
            probs = out_of_fold_probs(features, y, folds, lmbd, seed)
        elif dataset_dir is None:
            raise LabelwiseError("`cl_model` finetune needs `dataset_dir` (its dev.txt picks each fold's best epoch)")
        else:
            probs = out_of_fold_probs_finetune(classifier, examples, dataset_dir, folds, cl_epochs, seed, progress)
        scores, issues = confident_scores(y, probs)
        detail = {"pred_probs": probs, "cleanlab_issues": issues, "folds": folds, "cl_model": cl_model}
    # what the model would predict (the consistent rule for a label tree), a hint for relabelling
    chosen = decision_matrix(probs, classifier.thresholds, hierarchy=classifier.hierarchy)
    suggested = [[labels[j] for j in np.flatnonzero(row)] for row in chosen]
    return DirtyRanking(method, np.asarray(scores, dtype=np.float64), suggested, detail)


def select_dirty(ranking: DirtyRanking, dirty_num: int = 100, dirty_threshold: float = 0.0) -> list[int]:
    """Indices of at most ``dirty_num`` top-ranked examples whose score exceeds ``dirty_threshold``."""
    if dirty_num < 0:
        raise LabelwiseError(f"`dirty_num` must be >= 0, got {dirty_num}")
    threshold = -np.inf if ranking.detail.get("rule") == "paddlenlp" else dirty_threshold  # paddlenlp: already applied
    return [int(i) for i in ranking.order[:dirty_num] if ranking.scores[i] > threshold]


def write_dirty(examples: Sequence[Example], dirty: Sequence[int], dirty_file: str | os.PathLike,
                rest_file: str | os.PathLike, doccano_file: str | os.PathLike | None = None,
                ranking: DirtyRanking | None = None) -> None:
    """Dirty examples (most suspicious first) and the rest (file order), both in the training format.

    The doccano JSONL has the gold labels pre-filled and, given ``ranking``, each example's score and
    the labels the model predicts as metadata.
    """
    chosen = set(dirty)
    write_examples(dirty_file, [examples[i] for i in dirty])
    write_examples(rest_file, [e for i, e in enumerate(examples) if i not in chosen])
    if doccano_file:
        try:
            from labelwise.data.annotation import write_doccano
        except ImportError:
            raise LabelwiseError("`doccano_file` needs labelwise.annotation (the annotation extra), "
                                 "which is not installed here") from None
        meta = None if ranking is None else [
            {"dirty_score": round(float(ranking.scores[i]), 6), "model_labels": ranking.suggested[i]} for i in dirty]
        write_doccano(doccano_file, [examples[i] for i in dirty], meta)
