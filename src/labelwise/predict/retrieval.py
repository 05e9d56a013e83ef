"""Retrieval-based classification: a text takes the labels of its nearest labelled texts (PaddleNLP's retrieval route).

``build_index("checkpoint", "data", "index")`` embeds the training texts (and each label's name, as a text with
that one label) with a checkpoint's or a sentence encoder's pooled vectors, picks k and per-label thresholds on
dev, and writes a plain folder::

    index/
      index.json           encoder, labels, k, scale, thresholds, the label paths' separator (hierarchy_sep), how
                           it was built, dev metrics, where the vectors are
      vectors.safetensors  vectors [rows, dim] (centred, unit length, float32), labels [rows, labels] (uint8, 0/1),
                           center [dim] (subtracted from every vector, queries included)
      texts.jsonl          one {"text", "labels", "source"} per row: what each vector is

Vectors are centred (the mean of the indexed unit vectors is subtracted, then they are scaled to unit length
again): sentence encoders put all texts in a narrow cone, and centring spreads the cosines that the vote
weighs. A text's score for a label is the similarity-weighted vote of its k nearest rows (weights: softmax of
scale × cosine), between 0 and 1. ``add_to_index`` appends examples, new labels included, without training
anything: their rows vote from the next query on; ``remove_label`` takes a label out. The folder opens as an
ordinary :class:`~labelwise.Classifier` (``Classifier.load(index_dir)``), so predict, evaluate and serve take an
index like a model.
Search is exact (one matrix product per batch) unless ``approximate`` (faiss HNSW, ``pip install faiss-cpu``).
With the ``labelwise[milvus]`` extra installed the vectors live by default in a Milvus Lite database inside the
folder (``milvus.db``), and with ``vector_db`` (a Milvus Lite file elsewhere or a Milvus server URI) in a
collection there: ``vectors.safetensors`` then keeps only labels and center, and ``index.json`` records
``vector_db: {uri, collection}`` (format 2; a relative ``uri`` is the folder's own database).
The stores are :mod:`labelwise.predict.vector_store`; the backend calls their one ``search``.
Label names that hold ``hierarchy_sep`` (``体育##足球``; null: flat names) are the paths of a label tree, decided
by the consistent rule as a model's are; an index written before the separator was stored reads ``##``.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from safetensors import SafetensorError

from labelwise.data.hierarchy import DEFAULT_SEP
from labelwise.errors import LabelwiseError
from labelwise.files import INDEX, atomic_dir, atomic_write_json
from labelwise.model.checkpoint import (
    META_FILE,
    CheckpointMeta,
    brief,
    damaged,
    is_checkpoint,
    read_json_file,
)
from labelwise.model.device import resolve_device
from labelwise.model.encoders import build_model
from labelwise.predict.batching import encode, pad_batch
from labelwise.predict.search import unit_rows
from labelwise.predict.torch_backend import TorchBackend
from labelwise.predict.vector_store import (
    LITE_DB,
    ExactStore,
    FaissStore,
    MilvusStore,
    VectorStore,
    is_embedded,
    release_lite,
    resolve_uri,
)

log = logging.getLogger("labelwise")

INDEX_FILE, VECTORS_FILE, TEXTS_FILE = "index.json", "vectors.safetensors", "texts.jsonl"
FORMAT_VERSION, MILVUS_FORMAT = 1, 2  # 2: the vectors are in Milvus, not in vectors.safetensors
K_CHOICES = (5, 10, 20, 50)  # k="auto" picks the best on dev (macro-F1 at tuned thresholds)
SCALE = 20.0  # vote weights: softmax(SCALE × cosine) over the k neighbours
EPS = 1e-6


class Encoder(NamedTuple):
    """What embeds texts for an index: a backend with ``features``, its tokenizer, and its metadata."""

    backend: object
    tokenizer: object
    meta: CheckpointMeta


def open_encoder(source: str, device: str | None = None, max_seq_length: int = 128) -> Encoder:
    """The encoder whose pooled vectors an index holds: a labelwise model folder's (a checkpoint, or an export
    made with ``features``: any kind :mod:`labelwise.predict.backends` opens that gives vectors), or a bare
    sentence encoder's (a model name or folder)."""
    if Path(source).is_dir() and ((Path(source) / META_FILE).exists() or is_checkpoint(source)):
        from labelwise.predict.backends import open_folder

        backend, tokenizer, meta = open_folder(source, device=device, require=("features",))
        backend.features(pad_batch(encode(tokenizer, ["x"], 8), [0], tokenizer.pad_token_id or 0))  # says why not
        return Encoder(backend, tokenizer, meta)
    with warnings.catch_warnings():  # a head of zero labels: torch warns that initialising it is a no-op
        warnings.simplefilter("ignore", UserWarning)
        model, tokenizer, pooling = build_model(source, [], "auto")
    meta = CheckpointMeta(labels=[], max_seq_length=max_seq_length, base_model=source, pooling=pooling)
    return Encoder(TorchBackend(model.eval(), resolve_device(device)), tokenizer, meta)


def centred(features: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Unit vectors minus the index's center, at unit length again."""
    return unit_rows(unit_rows(features) - center)


def vote(neighbours: np.ndarray, sims: np.ndarray, label_matrix: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """Scores [queries, labels]: each label's share of the softmax(scale × cosine) weight of the neighbours."""
    weights = np.exp(scale * (sims - sims[:, :1]))
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("qk,qkl->ql", weights, label_matrix[neighbours].astype(np.float32))


class RetrievalBackend:
    """A Classifier backend: embed the batch with the encoder backend, find the k nearest index rows in the
    store, return the logits of their vote."""

    name = "retrieval"

    def __init__(self, encoder, store: VectorStore, label_matrix: np.ndarray, center: np.ndarray,
                 k: int, scale: float = SCALE):
        self.encoder, self.store, self.label_matrix, self.center = encoder, store, label_matrix, center
        self.k, self.scale = k, scale

    @property
    def size(self) -> int:
        """Rows in the index."""
        return len(self.label_matrix)

    def neighbours(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows to raw pooled ``features`` (centred here, as the index was)."""
        return self.store.search(centred(features, self.center), k)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        neighbours, sims = self.neighbours(self.encoder.features(batch), self.k)
        scores = np.clip(vote(neighbours, sims, self.label_matrix, self.scale), EPS, 1 - EPS)
        return np.log(scores / (1 - scores))


def open_index(index_dir: str | os.PathLike, *, device: str | None = None, encoder: Encoder | None = None
               ) -> tuple[RetrievalBackend, object, CheckpointMeta]:
    """(backend, tokenizer, meta) of an index folder; :meth:`labelwise.Classifier.load` wraps them."""
    info, vectors, label_matrix, center, _ = read_index(index_dir)
    store = open_store(index_dir, info, vectors)  # before the encoder: a collection that is gone fails fast
    encoder = encoder or open_encoder(info["encoder"], device, info["max_seq_length"])
    probe = pad_batch(encode(encoder.tokenizer, ["x"], 8), [0], encoder.tokenizer.pad_token_id or 0)
    dim, want = encoder.backend.features(probe).shape[1], index_dim(info, vectors)
    if dim != want:
        raise LabelwiseError(f"{index_dir}: its vectors have {want} dimensions but the encoder "
                             f"{info['encoder']} gives {dim}; build the index again")
    meta = CheckpointMeta(labels=info["labels"], max_seq_length=info["max_seq_length"], thresholds=info["thresholds"],
                          base_model=str(info["encoder"]), metrics=info.get("metrics", {}),
                          hierarchy_sep=index_separator(info))
    backend = RetrievalBackend(encoder.backend, store, label_matrix, center, info["k"], info["scale"])
    return backend, encoder.tokenizer, meta


def index_separator(info: dict) -> str | None:
    """How the index's label names spell tree paths: its ``hierarchy_sep`` (None: flat), ``##`` for an index
    written before it was stored."""
    return info.get("hierarchy_sep", DEFAULT_SEP)


def index_dim(info: dict, vectors: np.ndarray | None) -> int:
    return int(vectors.shape[1]) if vectors is not None else int(info["dim"])


def open_store(index_dir, info: dict, vectors: np.ndarray | None) -> VectorStore:
    """Where the index's vectors are: a Milvus collection (``vector_db`` in index.json; checked against the
    index), else the folder's vectors, searched exactly or, for an ``approximate`` index, with faiss."""
    db = info.get("vector_db")
    if db:
        return MilvusStore(resolve_uri(index_dir, db["uri"]), db["collection"]).check(
            size=info["size"], dim=index_dim(info, vectors), encoder=str(info["encoder"]), where=str(index_dir))
    return FaissStore(vectors) if info["approximate"] else ExactStore(vectors)


def label_matrix_of(rows: list[dict], labels: list[str]) -> np.ndarray:
    index = {l: i for i, l in enumerate(labels)}
    matrix = np.zeros((len(rows), len(labels)), dtype=np.uint8)
    for r, row in enumerate(rows):
        matrix[r, [index[l] for l in row["labels"]]] = 1
    return matrix


def write_index(index_dir, info: dict, vectors: np.ndarray | None, label_matrix: np.ndarray, center: np.ndarray,
                rows: list[dict], fill: Callable[[Path], None] | None = None) -> None:
    """Write the folder (atomically); ``vectors`` None when they are in Milvus. ``fill(folder)`` writes the
    folder's own Milvus Lite database into the new folder first (it is swapped in with the rest)."""
    from safetensors.numpy import save_file

    tensors = {"labels": np.ascontiguousarray(label_matrix), "center": center.astype(np.float32)}
    if vectors is not None:
        tensors["vectors"] = np.ascontiguousarray(vectors)
    try:
        with atomic_dir(index_dir, INDEX) as tmp:
            if fill is not None:
                fill(tmp)
            save_file(tensors, str(tmp / VECTORS_FILE))
            (tmp / TEXTS_FILE).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                          encoding="utf-8")
            atomic_write_json(tmp / INDEX_FILE, info)
    finally:  # this process's server of the folder's database would go on reading the one replaced
        release_lite(resolve_uri(index_dir, LITE_DB))


def read_index(index_dir) -> tuple[dict, np.ndarray | None, np.ndarray, np.ndarray, list[dict]]:
    """(info, vectors (None when they are in Milvus), label matrix, center, rows); one line for a damaged index."""
    from safetensors.numpy import load_file

    folder = Path(index_dir)
    if not (folder / INDEX_FILE).exists():
        raise LabelwiseError(f"{folder}: not a labelwise index (no {INDEX_FILE}); build one with `labelwise index`")
    again = "a damaged index: build it again (labelwise index)"
    info = read_json_file(folder / INDEX_FILE, again)  # every damaged file: one line naming it
    missing = [k for k in ("encoder", "labels", "k", "scale", "thresholds", "max_seq_length", "approximate", "size")
               if not isinstance(info, dict) or k not in info]
    if missing:
        raise damaged(folder / INDEX_FILE, f"lacks {', '.join(missing)}", again)
    db = info.get("vector_db")
    sep = info.get("hierarchy_sep", DEFAULT_SEP)
    if sep is not None and not (isinstance(sep, str) and sep):
        raise damaged(folder / INDEX_FILE, f"its hierarchy_sep is {sep!r}, not a separator such as \"##\" (or null)",
                      again)
    if db is not None and not (isinstance(db, dict) and isinstance(db.get("uri"), str)
                               and isinstance(db.get("collection"), str) and isinstance(info.get("dim"), int)):
        raise damaged(folder / INDEX_FILE, "its vector_db needs a uri, a collection and the index's dim", again)
    for name in (VECTORS_FILE, TEXTS_FILE):
        if not (folder / name).is_file():
            raise damaged(folder / name, "not found", again)
    if db is not None and is_embedded(db["uri"]) and not (folder / db["uri"]).is_dir():
        raise damaged(folder / db["uri"], "not found (the index's Milvus Lite database)", again)
    try:
        tensors = load_file(str(folder / VECTORS_FILE))
        vectors = None if info.get("vector_db") else tensors["vectors"]
        label_matrix, center = tensors["labels"], tensors["center"]
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise damaged(folder / VECTORS_FILE, f"unreadable ({brief(err)})", again) from None
    try:
        rows = [json.loads(line) for line in (folder / TEXTS_FILE).read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError) as err:
        raise damaged(folder / TEXTS_FILE, f"unreadable ({brief(err)})", again) from None
    if info.get("format_version") not in (FORMAT_VERSION, MILVUS_FORMAT):
        raise LabelwiseError(f"{folder}: index format {info.get('format_version')}, this labelwise reads "
                             f"{FORMAT_VERSION} and {MILVUS_FORMAT}; build it again")
    sizes = {len(label_matrix), len(rows), info.get("size")}
    shapes = label_matrix.ndim == 2 and label_matrix.shape[1] == len(info["labels"])
    if vectors is not None:  # in Milvus, the collection's size is checked when it opens
        sizes.add(len(vectors))
        shapes = shapes and vectors.ndim == 2
    if len(sizes) != 1 or not shapes:
        raise LabelwiseError(f"{folder}: damaged index (vectors, labels and texts.jsonl disagree in size); "
                             "build it again")
    return info, vectors, label_matrix, center, rows


__all__ = ["Encoder", "RetrievalBackend", "index_separator", "open_encoder", "open_index", "open_store", "read_index",
           "vote", "write_index"]
