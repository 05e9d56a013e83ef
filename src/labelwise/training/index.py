"""Building a retrieval index (``labelwise index``) and adding examples to one; the index format and its
backend are :mod:`labelwise.predict.retrieval`."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.dataset import Example, load_dataset, multi_hot, read_examples, read_label_words
from labelwise.errors import LabelwiseError
from labelwise.evaluation.metrics import evaluate_predictions, tune_thresholds
from labelwise.files import check_outputs
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import (
    FORMAT_VERSION,
    INDEX_FILE,
    K_CHOICES,
    SCALE,
    Encoder,
    centred,
    label_matrix_of,
    open_encoder,
    open_index,
    read_index,
    vote,
    write_index,
)
from labelwise.predict.search import top_k_dot, unit_rows

log = logging.getLogger("labelwise")


# ---- build, save, load, add -----------------------------------------------------------------------------------

def _rows(examples: Sequence[Example], label_words: dict[str, str] | None, source: str) -> list[dict]:
    rows = [{"text": e.text, "labels": list(e.labels), "source": source} for e in examples]
    if label_words:
        rows += [{"text": word, "labels": [label], "source": "label name"} for label, word in label_words.items()]
    return rows


def _tune(encoder: Classifier, vectors, label_matrix, center, labels, dev: Sequence[Example], k: int | str,
          batch_size: int) -> tuple[int, list[float] | None, dict]:
    """k (when "auto") and per-label thresholds on dev; dev metrics at them."""
    ks = [k] if k != "auto" else [c for c in K_CHOICES if c <= len(vectors)] or [len(vectors)]
    if not dev:
        return ks[0] if k == "auto" else int(k), None, {}
    queries = centred(encoder.features([e.text for e in dev], batch_size=batch_size), center)
    neighbours, sims = top_k_dot(queries, vectors, max(ks))
    y = multi_hot(dev, labels)
    best = None
    for choice in ks:
        scores = vote(neighbours[:, :choice], sims[:, :choice], label_matrix)
        thresholds = tune_thresholds(y, scores)
        m = evaluate_predictions(y, scores, labels, thresholds)
        if best is None or m["macro"]["f1"] > best[2]["macro"]["f1"]:
            best = (choice, [round(float(t), 4) for t in thresholds], m)
    choice, thresholds, m = best
    return choice, thresholds, {"dev@tuned": {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"]}, "k": choice}


def build_index(params_path: str, dataset_dir: str, index_dir: str, *, k: int | str = "auto",
                label_names: bool = True, approximate: bool = False, batch_size: int = 32,
                device: str | None = None, progress: bool = True) -> Classifier:
    """Embed the training texts (+ label names) of ``dataset_dir`` with ``params_path``; write ``index_dir``."""
    start = time.perf_counter()
    check_outputs([index_dir], [params_path, dataset_dir], marker=INDEX_FILE)
    if k != "auto" and (not isinstance(k, int) or k < 1):
        raise LabelwiseError(f"`k` {k!r}: a positive whole number, or auto")
    ds = load_dataset(dataset_dir, require=("train",))
    words = read_label_words(Path(dataset_dir) / "label.txt") if label_names else None
    encoder = Classifier(*open_encoder(params_path, device))
    rows = _rows(ds.train, words, "train")
    log.info("indexing %d texts with %s", len(rows), params_path)
    raw = unit_rows(encoder.features([r["text"] for r in rows], batch_size=batch_size, progress=progress))
    center = raw.mean(0)
    vectors = centred(raw, center)
    label_matrix = label_matrix_of(rows, ds.labels)
    chosen_k, thresholds, metrics = _tune(encoder, vectors, label_matrix, center, ds.labels, ds.dev, k, batch_size)
    info = {"format_version": FORMAT_VERSION, "encoder": _encoder_ref(params_path), "labels": ds.labels, "k": chosen_k,
            "scale": SCALE, "thresholds": thresholds, "max_seq_length": encoder.max_seq_length,
            "approximate": approximate, "size": len(rows), "dim": int(vectors.shape[1]), "metrics": metrics,
            "built_from": str(Path(dataset_dir).resolve()), "build_seconds": round(time.perf_counter() - start, 1)}
    write_index(index_dir, info, vectors, label_matrix, center, rows)
    return Classifier(*open_index(index_dir, encoder=Encoder(encoder.backend, encoder.tokenizer, encoder.meta)),
                      path=index_dir)


def add_to_index(index_dir: str, data_file: str, *, batch_size: int = 32, device: str | None = None,
                 progress: bool = True) -> tuple[int, list[str]]:
    """Append the examples of ``data_file`` (train.txt format; new labels allowed); (rows added, new labels)."""
    info, vectors, label_matrix, center, rows = read_index(index_dir)
    examples = read_examples(data_file, labels=None)
    new_labels = [l for l in dict.fromkeys(l for e in examples for l in e.labels) if l not in info["labels"]]
    labels = info["labels"] + new_labels
    encoder = Classifier(*open_encoder(info["encoder"], device, info["max_seq_length"]))
    added = _rows(examples, None, f"added from {Path(data_file).name}")
    new_vectors = centred(encoder.features([r["text"] for r in added], batch_size=batch_size, progress=progress),
                          center)
    label_matrix = np.concatenate([np.pad(label_matrix, ((0, 0), (0, len(new_labels)))),
                                   label_matrix_of(added, labels)])
    if info["thresholds"] is not None:  # new labels start at the median of the tuned ones
        info["thresholds"] += [round(float(np.median(info["thresholds"])), 4)] * len(new_labels)
    info.update(labels=labels, size=len(rows) + len(added))
    write_index(index_dir, info, np.concatenate([vectors, new_vectors]), label_matrix, center, rows + added)
    return len(added), new_labels


def _encoder_ref(params_path: str) -> str:
    """A checkpoint folder by absolute path (the index lives elsewhere); a model name as given."""
    return str(Path(params_path).resolve()) if Path(params_path).is_dir() else params_path


__all__ = ['build_index', 'add_to_index']

