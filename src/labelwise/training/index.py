"""Building a retrieval index (``labelwise index``), adding examples to one and taking a label out of one; the
index format and its backend are :mod:`labelwise.predict.retrieval`, where the vectors live
:mod:`labelwise.predict.vector_store` (the folder, or a Milvus collection with ``vector_db``)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.dataset import Example, load_dataset, multi_hot, read_examples, read_label_words
from labelwise.errors import LabelwiseError
from labelwise.evaluation.metrics import evaluate_predictions, tune_thresholds
from labelwise.files import INDEX, prepare_output_dir
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import (
    FORMAT_VERSION,
    INDEX_FILE,
    K_CHOICES,
    MILVUS_FORMAT,
    SCALE,
    Encoder,
    centred,
    label_matrix_of,
    open_encoder,
    open_index,
    open_store,
    read_index,
    vote,
    write_index,
)
from labelwise.predict.search import top_k_dot, unit_rows
from labelwise.predict.vector_store import MilvusStore, collection_name, connect, milvus_uri

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
                label_names: bool = True, approximate: bool = False, vector_db: str | None = None,
                batch_size: int = 32, device: str | None = None, progress: bool = True,
                overwrite: bool = False) -> Classifier:
    """Embed the training texts (+ label names) of ``dataset_dir`` with ``params_path``; write ``index_dir``
    (missing, empty or an index; ``overwrite``: any other folder, whose files of other names stay).

    ``vector_db``: keep the vectors in a new Milvus collection there (a Milvus Lite path ending in .db, or a
    server URI such as http://host:19530) instead of the folder. Rebuilding an index in place drops the
    collection of the index it replaces, once the new one is written.
    """
    start = time.perf_counter()
    prepare_output_dir(index_dir, INDEX, overwrite=overwrite,
                       inputs={"params_path": params_path, "dataset_dir": dataset_dir})
    if k != "auto" and (not isinstance(k, int) or k < 1):
        raise LabelwiseError(f"`k` {k!r}: a positive whole number, or auto")
    if approximate and vector_db:
        raise LabelwiseError("`approximate` and `vector_db` do not combine: Milvus searches its collection itself; "
                             "choose one")
    uri = milvus_uri(vector_db) if vector_db else None
    if uri:
        connect(uri)  # an unreachable Milvus fails now, not after the embedding
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
    info = {"format_version": MILVUS_FORMAT if uri else FORMAT_VERSION, "encoder": _encoder_ref(params_path),
            "labels": ds.labels, "k": chosen_k,
            "scale": SCALE, "thresholds": thresholds, "max_seq_length": encoder.max_seq_length,
            "approximate": approximate, "size": len(rows), "dim": int(vectors.shape[1]), "metrics": metrics,
            "built_from": str(Path(dataset_dir).resolve()), "build_seconds": round(time.perf_counter() - start, 1)}
    replaced = _collection_of(index_dir)
    store = None
    if uri:
        store = MilvusStore.create(uri, collection_name(index_dir), int(vectors.shape[1]), info["encoder"])
        info["vector_db"] = {"uri": uri, "collection": store.collection}
    try:
        if store is not None:
            store.insert(vectors)
        write_index(index_dir, info, None if store is not None else vectors, label_matrix, center, rows)
    except BaseException:
        if store is not None:
            store.drop()
        raise
    if replaced:
        _drop(replaced)
    return Classifier(*open_index(index_dir, encoder=Encoder(encoder.backend, encoder.tokenizer, encoder.meta)),
                      path=index_dir)


def add_to_index(index_dir: str, data_file: str, *, batch_size: int = 32, device: str | None = None,
                 progress: bool = True) -> tuple[int, list[str]]:
    """Append the examples of ``data_file`` (train.txt format; new labels allowed); (rows added, new labels)."""
    info, vectors, label_matrix, center, rows = read_index(index_dir)
    store = open_store(index_dir, info, vectors) if info.get("vector_db") else None  # checked before embedding
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
    if store is None:
        write_index(index_dir, info, np.concatenate([vectors, new_vectors]), label_matrix, center, rows + added)
        return len(added), new_labels
    store.insert(new_vectors)  # rows len(rows)…: searched only once index.json counts them
    try:
        write_index(index_dir, info, None, label_matrix, center, rows + added)
    except BaseException:
        store.truncate(len(rows))
        raise
    return len(added), new_labels


def remove_label(index_dir: str, label: str) -> tuple[int, int]:
    """Take ``label`` out of an index: the rows whose only label it is go (their vectors too), the other rows
    that have it keep their vectors and their other labels. Returns (rows removed, rows that lost the label).

    In Milvus the remaining vectors are copied to a new collection (ids stay row numbers), which the index
    points to once it is written; the old collection is dropped after that.
    """
    info, vectors, label_matrix, center, rows = read_index(index_dir)
    if label not in info["labels"]:
        raise LabelwiseError(f"{index_dir}: no label {label!r} in this index; its labels: {', '.join(info['labels'])}")
    j = info["labels"].index(label)
    has = label_matrix[:, j].astype(bool)
    only = has & (label_matrix.sum(1) == 1)
    keep = np.flatnonzero(~only)
    if len(keep) == 0:
        raise LabelwiseError(f"{index_dir}: every row has only the label {label!r}; removing it would leave an empty "
                             "index")
    old = open_store(index_dir, info, vectors) if info.get("vector_db") else None
    kept_rows = [{**rows[i], "labels": [name for name in rows[i]["labels"] if name != label]} for i in keep]
    kept_labels = np.delete(label_matrix[keep], j, axis=1)
    if info["thresholds"] is not None:
        info["thresholds"] = info["thresholds"][:j] + info["thresholds"][j + 1:]
    info.update(labels=[name for name in info["labels"] if name != label], size=len(keep))
    counts = int(only.sum()), int((has & ~only).sum())
    if old is None:
        write_index(index_dir, info, vectors[keep], kept_labels, center, kept_rows)
        return counts
    kept_vectors = old.vectors(keep)
    new = MilvusStore.create(old.uri, collection_name(index_dir), kept_vectors.shape[1], str(info["encoder"]))
    info["vector_db"] = {"uri": old.uri, "collection": new.collection}
    try:
        new.insert(kept_vectors)
        write_index(index_dir, info, None, kept_labels, center, kept_rows)
    except BaseException:
        new.drop()
        raise
    old.drop()
    return counts


def _collection_of(index_dir: str) -> dict | None:
    """The Milvus collection of the index now in ``index_dir``, if there is one."""
    try:
        return json.loads((Path(index_dir) / INDEX_FILE).read_text(encoding="utf-8")).get("vector_db")
    except (OSError, ValueError, AttributeError):
        return None


def _drop(db: dict) -> None:
    try:
        MilvusStore(db["uri"], db["collection"]).drop()
    except (LabelwiseError, KeyError, TypeError) as err:
        log.warning("the collection of the replaced index was left in Milvus (%s)", err)


def _encoder_ref(params_path: str) -> str:
    """A checkpoint folder by absolute path (the index lives elsewhere); a model name as given."""
    return str(Path(params_path).resolve()) if Path(params_path).is_dir() else params_path


__all__ = ['add_to_index', 'build_index', 'remove_label']

