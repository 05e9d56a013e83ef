"""Self-training on unlabelled texts: a first model labels a pool, a second one learns from its surest guesses.

``train(..., unlabeled_file="pool.txt")`` / ``labelwise train --unlabeled_file pool.txt``:

1. the *teacher*: an ordinary run of :func:`labelwise.training.train` (with ``few_shot`` when asked), saved in a
   scratch folder beside ``save_dir``;
2. the teacher scores the pool (texts already in train, dev or test are left out, so test texts never teach);
3. :func:`pseudo_labels` keeps, for each label in turn, the ``per_label`` pool texts it is surest to carry
   that label (each with every label the teacher gives it), plus texts it is surest carry no label at all, in
   the share the pool has of them: every label gets the same number of guesses, rare ones included;
4. the *student* starts from the teacher's weights and trains on the labelled examples (and, in a few-shot run,
   the label names) plus those guesses; dev picks its best epoch and tunes its thresholds as usual. The student
   is the checkpoint in ``save_dir``; the teacher's scratch folder is removed.

Measured on PaddleNLP's few-shot protocol (benchmarks/RESULTS.md, "Self-training"): the decision to keep it is
there, with the numbers on divorce and GoEmotions.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from labelwise.data.dataset import Dataset, Example, read_label_words, read_texts
from labelwise.errors import DataError

log = logging.getLogger("labelwise")

PSEUDO_PER_LABEL = 16  # guesses kept per label (4× PaddleNLP's few-shot 4 examples per label)
MAX_POOL = 4000  # texts of the pool the teacher scores (a random sample of larger pools), ~1 min on 2 CPU cores


def certainty(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per text and label: how far the probability is from the label's threshold, in log-odds (≥ 0)."""
    eps = 1e-6
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    t = np.clip(np.broadcast_to(np.asarray(thresholds, dtype=np.float64), p.shape), eps, 1 - eps)
    return np.abs(np.log(p / (1 - p)) - np.log(t / (1 - t)))


def pseudo_labels(texts: list[str], probs: np.ndarray, thresholds: np.ndarray, labels: list[str],
                  per_label: int = PSEUDO_PER_LABEL, empty: bool = True) -> list[Example]:
    """The teacher's surest guesses, balanced over labels.

    A text's guess is sure when all its label decisions are far from their thresholds (the smallest
    :func:`certainty`). Label by label, the ``per_label`` surest texts predicted to carry it are taken (a text
    once); then, with ``empty``, texts predicted to carry no label, the surest first, as many as keeps their
    share of the pool. Without ``empty`` (data where every text carries a label) those are the teacher's misses,
    not examples of "no label", and are left out.
    """
    probs = np.asarray(probs, dtype=np.float64)
    chosen = probs >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape)
    sureness = certainty(probs, thresholds).min(axis=1) if probs.shape[1] else np.zeros(len(texts))
    by_sureness = np.argsort(-sureness, kind="stable")
    taken: dict[int, None] = {}
    for j in range(len(labels)):
        carriers = [i for i in by_sureness if chosen[i, j] and i not in taken][:per_label]
        taken.update(dict.fromkeys(carriers))
    if empty:
        unlabelled = [i for i in by_sureness if not chosen[i].any()]
        share = len(unlabelled) / max(1, len(texts))
        n_empty = min(len(unlabelled), int(round(len(taken) * share / max(1e-9, 1 - share)))) if share < 1 else 0
        taken.update(dict.fromkeys(unlabelled[:n_empty]))
    return [Example(texts[i], tuple(labels[j] for j in np.flatnonzero(chosen[i]))) for i in taken]


def self_train(cfg, ds: Dataset, fit: Callable):
    """Teacher, pseudo-labels, student (see the module's text); ``fit(cfg, ds)`` is one training run."""
    from labelwise.training.fewshot import anchors
    from labelwise.training.zeroshot import label_texts

    pool = _pool(cfg.unlabeled_file, ds, np.random.default_rng(cfg.seed))
    save_dir = Path(cfg.save_dir)
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{save_dir.name}.teacher-", dir=save_dir.parent))
    try:
        teacher_dir = scratch / "teacher"
        teacher = fit(dataclasses.replace(cfg, unlabeled_file=None, save_dir=str(teacher_dir), overwrite=False,
                                          baseline=False), ds)
        clf = teacher.classifier
        probs = clf.predict_proba(pool, batch_size=64)
        guesses = pseudo_labels(pool, probs, np.asarray(clf.thresholds), ds.labels,
                                empty=any(not e.labels for e in ds.train))
        extra = []
        if cfg.few_shot:  # the teacher trained on the label names too; the student keeps them
            label_file = Path(cfg.dataset_dir) / cfg.label_file
            words = read_label_words(label_file) if ds.root and label_file.exists() else {l: l for l in ds.labels}
            extra = anchors(label_texts(words, ds.hierarchy), ds.hierarchy)
        log.info("self-training: the teacher labelled %d pool texts; the student trains on %d examples + %d of its "
                 "surest guesses (%d with no label)", len(pool), len(ds.train), len(guesses),
                 sum(1 for g in guesses if not g.labels))
        student_ds = dataclasses.replace(ds, train=list(ds.train) + extra + guesses)
        student = fit(dataclasses.replace(cfg, unlabeled_file=None, few_shot=False, init_from_ckpt=str(teacher_dir),
                                          batch_size=cfg.batch_size or teacher_batch(teacher)), student_ds)
        student.teacher = clf
        return student
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def teacher_batch(teacher) -> int:
    return int(teacher.classifier.meta.training_args.get("batch_size") or 32)


def _pool(path, ds: Dataset, rng: np.random.Generator) -> list[str]:
    """The pool's texts, without those of the dataset's splits and without repeats; a sample of ``MAX_POOL``."""
    texts = read_texts(path)
    seen = {e.text for e in ds.train + ds.dev + (ds.test or [])}
    kept = list(dict.fromkeys(t for t in texts if t.strip() and t not in seen))
    if not kept:
        raise DataError(Path(path), None, "no text of the pool is new (all blank or already in the dataset)",
                        "give texts without labels that are not in train, dev or test")
    if len(kept) > MAX_POOL:
        kept = [kept[i] for i in sorted(rng.choice(len(kept), MAX_POOL, replace=False))]
    return kept


__all__ = ["PSEUDO_PER_LABEL", "certainty", "pseudo_labels", "self_train"]
