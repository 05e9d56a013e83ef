"""Building a retrieval index (``labelwise index``), adding examples to one and taking a label out of one; the
index format and its backend are :mod:`labelwise.predict.retrieval`, where the vectors live
:mod:`labelwise.predict.vector_store` (Milvus Lite inside the folder when the extra is installed, the folder's
own file, or a Milvus collection named by ``vector_db``).

An index whose Milvus Lite database is inside its folder is rewritten as the file index is: a new folder,
database included, is written beside the old one and swapped in whole. With a database elsewhere, the folder and
the collection are kept in step: rows past the folder's count are searched by no one.

Label trees (``体育##足球``): the index stores the separator its label paths were read with (``hierarchy_sep`` in
index.json; by default the checkpoint's own, ``##`` for a sentence encoder), ``--add`` completes new paths with it
and ``--remove_label`` refuses a label whose children are still in the index.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from labelwise.data.dataset import (
    Example,
    complete_ancestors,
    load_dataset,
    multi_hot,
    read_examples,
    read_label_words,
)
from labelwise.data.hierarchy import DEFAULT_SEP, Hierarchy, separator
from labelwise.data.tables import TableColumns
from labelwise.errors import LabelwiseError, shorten
from labelwise.evaluation.metrics import evaluate_predictions, tune_thresholds
from labelwise.files import INDEX, prepare_output_dir
from labelwise.locks import locks_output
from labelwise.model.checkpoint import META_FILE, read_meta
from labelwise.model.language import CJK_ENCODER, pick_encoder
from labelwise.predict.classifier import Classifier
from labelwise.predict.retrieval import (
    FORMAT_VERSION,
    INDEX_FILE,
    K_CHOICES,
    MILVUS_FORMAT,
    SCALE,
    Encoder,
    centred,
    index_separator,
    label_matrix_of,
    open_encoder,
    open_index,
    open_store,
    read_index,
    vote,
    write_index,
)
from labelwise.predict.search import top_k_dot, unit_rows
from labelwise.predict.vector_store import (
    LITE_DB,
    MilvusStore,
    choose_vector_db,
    collection_name,
    connect,
    is_embedded,
)

log = logging.getLogger("labelwise")

AUTO_SEP = "auto"  # build_index's default hierarchy_sep: the model's own (a labelwise checkpoint or export), else ##


# ---- build, save, load, add -----------------------------------------------------------------------------------

def _rows(examples: Sequence[Example], label_words: dict[str, str] | None, source: str,
          hierarchy: Hierarchy | None = None) -> list[dict]:
    rows = [{"text": e.text, "labels": list(e.labels), "source": source} for e in examples]
    if label_words:  # in a label tree, a name's row carries its ancestors too
        rows += [{"text": word, "labels": list(hierarchy.complete((label,))[0] if hierarchy else (label,)),
                  "source": "label name"} for label, word in label_words.items()]
    return rows


def _with_new_parents(examples: list[Example], labels: list[str], data_file: str,
                      sep: str | None = DEFAULT_SEP) -> list[Example]:
    """``examples`` with the ancestors of their label paths added, new parents too (``体育##篮球`` brings ``体育``);
    ``sep`` the index's separator (None: flat labels, nothing added)."""
    if sep is None:
        return examples
    paths = [label for e in examples for label in e.labels if sep in label]
    if not paths:
        return examples
    names = [*labels, *(sep.join(p.split(sep)[:k]) for p in paths for k in range(1, p.count(sep) + 1)),
             *(label for e in examples for label in e.labels)]
    try:
        tree = Hierarchy.from_labels(list(dict.fromkeys(names)), sep)
    except LabelwiseError as err:
        raise LabelwiseError(f"{data_file}: its labels and the index's do not form a label tree: {err}") from None
    return complete_ancestors(examples, tree)[0]


def index_hierarchy_sep(params_path: str, hierarchy_sep: str | None = AUTO_SEP) -> str | None:
    """The separator an index over ``params_path`` reads label paths with: ``hierarchy_sep`` itself (None or
    "none": flat), or for ``auto`` the one stored with a labelwise checkpoint or export, else ``##``."""
    if hierarchy_sep != AUTO_SEP:
        return separator(hierarchy_sep)
    if (Path(params_path) / META_FILE).is_file():
        return read_meta(params_path).hierarchy_sep
    return DEFAULT_SEP


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


@locks_output("index_dir")  # one run at a time writes the folder
def build_index(params_path: str | None, dataset_dir: str, index_dir: str, *, k: int | str = "auto",
                label_names: bool = True, approximate: bool = False, vector_db: str | None = None,
                batch_size: int = 32, device: str | None = None, progress: bool = True,
                overwrite: bool = False, hierarchy_sep: str | None = AUTO_SEP,
                columns: TableColumns | None = None) -> Classifier:
    """Embed the training texts (+ label names) of ``dataset_dir`` with ``params_path``; write ``index_dir``
    (missing, empty or an index; ``overwrite``: any other folder, whose files of other names stay).
    ``params_path`` None: the offline sentence encoder for the texts' script (:mod:`labelwise.model.language`).

    ``vector_db``: where the vectors go. None (the default): a Milvus Lite database inside ``index_dir``
    (``milvus.db``) when pymilvus and milvus-lite are installed and the search is not ``approximate``, else
    the folder's ``vectors.safetensors``; ``"file"``: the folder; a Milvus Lite path ending in .db or a
    server URI such as http://host:19530: a new collection there. Rebuilding an index in place drops the
    collection of the index it replaces (in a database outside the folder), once the new one is written.

    ``hierarchy_sep``: how label names spell tree paths (:func:`index_hierarchy_sep`; default: as the model was
    trained); stored in index.json.
    """
    start = time.perf_counter()
    prepare_output_dir(index_dir, INDEX, overwrite=overwrite,
                       inputs={"params_path": params_path, "dataset_dir": dataset_dir})
    if k != "auto" and (not isinstance(k, int) or k < 1):
        raise LabelwiseError(f"`k` {k!r}: a positive whole number, or auto")
    uri = choose_vector_db(vector_db, approximate)
    if uri and not is_embedded(uri):
        connect(uri)  # an unreachable Milvus fails now, not after the embedding
    elif vector_db is None and not approximate:
        log.info("vectors go into the index folder (pip install 'labelwise[milvus]' to keep them in Milvus Lite)")
    sep = index_hierarchy_sep(params_path or CJK_ENCODER, hierarchy_sep)  # either offline encoder: a sentence encoder
    ds = load_dataset(dataset_dir, require=("train",), hierarchy_sep=sep, columns=columns)  # columns: of a table
    params_path, _ = pick_encoder(params_path, (e.text for e in ds.train), "the texts to index")
    words = read_label_words(Path(dataset_dir) / "label.txt") if label_names else None
    if words:
        from labelwise.training.zeroshot import label_texts

        words = label_texts(words, ds.hierarchy)  # a tree label's path → its words
    encoder = Classifier(*open_encoder(params_path, device))
    rows = _rows(ds.train, words, "train", ds.hierarchy)
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
            "hierarchy_sep": ds.hierarchy_sep,
            "built_from": str(Path(dataset_dir).resolve()), "build_seconds": round(time.perf_counter() - start, 1)}
    replaced = _collection_of(index_dir)
    if uri is None:
        write_index(index_dir, info, vectors, label_matrix, center, rows)
    else:
        _write_in_new_collection(index_dir, info, uri, vectors, label_matrix, center, rows)
    if replaced and not is_embedded(str(replaced.get("uri", ""))):  # a folder's own database went with it
        _drop(replaced)
    return Classifier(*open_index(index_dir, encoder=Encoder(encoder.backend, encoder.tokenizer, encoder.meta)),
                      path=index_dir)


def _write_in_new_collection(index_dir: str, info: dict, uri: str, vectors: np.ndarray, label_matrix: np.ndarray,
                             center: np.ndarray, rows: list[dict]) -> None:
    """Write the index with ``vectors`` in a new collection at ``uri`` (the folder's own database when it is
    :data:`LITE_DB`); a collection elsewhere made for a write that fails is dropped again."""
    name, encoder = collection_name(index_dir), str(info["encoder"])
    info["vector_db"] = {"uri": uri, "collection": name}
    if is_embedded(uri):
        write_index(index_dir, info, None, label_matrix, center, rows, fill=_lite_filler(name, vectors, encoder))
        return
    store = MilvusStore.create(uri, name, int(vectors.shape[1]), encoder)
    try:
        store.insert(vectors)
        write_index(index_dir, info, None, label_matrix, center, rows)
    except BaseException:
        store.drop()
        raise


def _lite_filler(collection: str, vectors: np.ndarray, encoder: str, copy_from: MilvusStore | None = None
                 ) -> Callable[[Path], None]:
    """What writes a new folder's own Milvus Lite database: a new collection holding ``vectors``, or, with
    ``copy_from`` (the folder's database, closed), a copy of it with ``vectors`` appended."""
    def fill(folder: Path) -> None:
        path = str(folder / LITE_DB)
        if copy_from is None:
            store = MilvusStore.create(path, collection, int(vectors.shape[1]), encoder)
        else:
            shutil.copytree(copy_from.uri, path)
            store = MilvusStore(path, collection, size=copy_from.size)
        try:
            store.insert(vectors)
        finally:
            store.close()
    return fill


def add_to_index(index_dir: str, data_file: str, *, batch_size: int = 32, device: str | None = None,
                 progress: bool = True) -> tuple[int, list[str]]:
    """Append the examples of ``data_file`` (train.txt format; new labels allowed); (rows added, new labels)."""
    info, vectors, label_matrix, center, rows = read_index(index_dir)
    store = open_store(index_dir, info, vectors) if info.get("vector_db") else None  # checked before embedding
    examples = _with_new_parents(read_examples(data_file, labels=None), info["labels"], data_file,
                                 index_separator(info))
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
    if is_embedded(info["vector_db"]["uri"]):  # a copy of the folder's database, with the rows added, swapped in
        store.close()
        write_index(index_dir, info, None, label_matrix, center, rows + added,
                    fill=_lite_filler(store.collection, new_vectors, info["encoder"], copy_from=store))
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
    _check_no_children(index_dir, info, label)
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
    embedded = is_embedded(info["vector_db"]["uri"])  # then a new database goes into the new folder
    if embedded:
        old.close()
    _write_in_new_collection(index_dir, info, info["vector_db"]["uri"], kept_vectors, kept_labels, center, kept_rows)
    if not embedded:
        old.drop()
    return counts


def _check_no_children(index_dir: str, info: dict, label: str) -> None:
    """In a label tree, a label goes only once its children have: else they would be left without a parent."""
    try:
        tree = Hierarchy.from_labels(info["labels"], index_separator(info))
    except LabelwiseError:  # names that are no tree (an index from before trees were read): flat labels
        return
    children = [tree.labels[c] for c in tree.children(tree.index(label))]
    if children:
        raise LabelwiseError(f"{index_dir}: label {shorten(label)} has children in this index "
                             f"({', '.join(map(shorten, children))}); remove them first (--remove_label), then it")


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


__all__ = ['AUTO_SEP', 'add_to_index', 'build_index', 'index_hierarchy_sep', 'remove_label']

