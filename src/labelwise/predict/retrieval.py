"""Retrieval-based classification: a text takes the labels of its nearest labelled texts (PaddleNLP's retrieval route).

``build_index("checkpoint", "data", "index")`` embeds the training texts (and each label's name, as a text with
that one label) with a checkpoint's or a sentence encoder's pooled vectors, picks k and per-label thresholds on
dev, and writes a plain folder::

    index/
      index.json           encoder, labels, k, scale, thresholds, how it was built, dev metrics
      vectors.safetensors  vectors [rows, dim] (centred, unit length, float32), labels [rows, labels] (uint8, 0/1),
                           center [dim] (subtracted from every vector, queries included)
      texts.jsonl          one {"text", "labels", "source"} per row: what each vector is

Vectors are centred (the mean of the indexed unit vectors is subtracted, then they are scaled to unit length
again): sentence encoders put all texts in a narrow cone, and centring spreads the cosines that the vote
weighs. A text's score for a label is the similarity-weighted vote of its k nearest rows (weights: softmax of
scale × cosine), between 0 and 1. ``add_to_index`` appends examples, new labels included, without training
anything: their rows vote from the next query on. The folder opens as an ordinary
:class:`~labelwise.Classifier` (``Classifier.load(index_dir)``), so predict, evaluate and serve take an index like a model.
Search is exact (one matrix product per batch) unless ``approximate`` (faiss HNSW, ``pip install faiss-cpu``).
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.files import atomic_dir, atomic_write_json
from labelwise.model.checkpoint import CheckpointMeta, detect_backend, is_checkpoint, load_checkpoint, read_meta
from labelwise.model.device import resolve_device
from labelwise.model.encoders import build_model
from labelwise.predict.batching import encode, pad_batch
from labelwise.predict.search import top_k_dot, unit_rows
from labelwise.predict.torch_backend import TorchBackend

log = logging.getLogger("labelwise")

INDEX_FILE, VECTORS_FILE, TEXTS_FILE = "index.json", "vectors.safetensors", "texts.jsonl"
FORMAT_VERSION = 1
K_CHOICES = (5, 10, 20, 50)  # k="auto" picks the best on dev (macro-F1 at tuned thresholds)
SCALE = 20.0  # vote weights: softmax(SCALE × cosine) over the k neighbours
EPS = 1e-6


class Encoder(NamedTuple):
    """What embeds texts for an index: a backend with ``features``, its tokenizer, and its metadata."""

    backend: object
    tokenizer: object
    meta: CheckpointMeta


def open_encoder(source: str, device: str | None = None, max_seq_length: int = 128) -> Encoder:
    """The encoder whose pooled vectors an index holds: a checkpoint's, an export's (ONNX Runtime, exported with
    ``features``), or a bare sentence encoder's (a model name or folder)."""
    if Path(source).is_dir() and detect_backend(source) == "onnx":
        from labelwise.predict.onnx_backend import OnnxBackend, load_tokenizer

        backend = OnnxBackend.load(source, device=device)
        if backend.features_name is None:
            raise LabelwiseError(f"{source}: this export has no features output; export again with --features")
        return Encoder(backend, load_tokenizer(source), read_meta(source))
    device = resolve_device(device)
    if Path(source).is_dir() and is_checkpoint(source):
        model, tokenizer, meta = load_checkpoint(source, device)
    else:
        with warnings.catch_warnings():  # a head of zero labels: torch warns that initialising it is a no-op
            warnings.simplefilter("ignore", UserWarning)
            model, tokenizer, pooling = build_model(source, [], "auto")
        meta = CheckpointMeta(labels=[], max_seq_length=max_seq_length, base_model=source, pooling=pooling)
    return Encoder(TorchBackend(model.eval(), device), tokenizer, meta)


def centred(features: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Unit vectors minus the index's center, at unit length again."""
    return unit_rows(unit_rows(features) - center)


def vote(neighbours: np.ndarray, sims: np.ndarray, label_matrix: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """Scores [queries, labels]: each label's share of the softmax(scale × cosine) weight of the neighbours."""
    weights = np.exp(scale * (sims - sims[:, :1]))
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("qk,qkl->ql", weights, label_matrix[neighbours].astype(np.float32))


class RetrievalBackend:
    """A Classifier backend: embed the batch with the encoder backend, find the k nearest index rows, return the logits of their vote."""

    name = "retrieval"

    def __init__(self, encoder, vectors: np.ndarray, label_matrix: np.ndarray, center: np.ndarray,
                 k: int, scale: float = SCALE, approximate: bool = False):
        self.encoder, self.vectors, self.label_matrix, self.center = encoder, vectors, label_matrix, center
        self.k, self.scale = k, scale
        self.search = _faiss_search(vectors) if approximate else None

    def neighbours(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows to raw pooled ``features`` (centred here, as the index was)."""
        queries = centred(features, self.center)
        if self.search is not None:
            return self.search(queries, k)
        return top_k_dot(queries, self.vectors, k)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        neighbours, sims = self.neighbours(self.encoder.features(batch), self.k)
        scores = np.clip(vote(neighbours, sims, self.label_matrix, self.scale), EPS, 1 - EPS)
        return np.log(scores / (1 - scores))


def _faiss_search(vectors: np.ndarray):
    try:
        import faiss
    except ImportError:
        raise LabelwiseError("an approximate index needs faiss: pip install faiss-cpu, or 'labelwise[ann]' (or leave "
                             "`approximate` off: "
                             "exact search is fast up to about a million vectors)") from None
    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 100
    index.add(np.ascontiguousarray(vectors))

    def search(queries: np.ndarray, k: int):
        sims, ids = index.search(np.ascontiguousarray(queries), min(k, len(vectors)))
        return ids, sims

    return search


def open_index(index_dir: str | os.PathLike, *, device: str | None = None, encoder: Encoder | None = None
               ) -> tuple[RetrievalBackend, object, CheckpointMeta]:
    """(backend, tokenizer, meta) of an index folder; :meth:`labelwise.Classifier.load` wraps them."""
    info, vectors, label_matrix, center, _ = read_index(index_dir)
    encoder = encoder or open_encoder(info["encoder"], device, info["max_seq_length"])
    probe = pad_batch(encode(encoder.tokenizer, ["x"], 8), [0], encoder.tokenizer.pad_token_id or 0)
    dim = encoder.backend.features(probe).shape[1]
    if dim != vectors.shape[1]:
        raise LabelwiseError(f"{index_dir}: its vectors have {vectors.shape[1]} dimensions but the encoder "
                             f"{info['encoder']} gives {dim}; build the index again")
    meta = CheckpointMeta(labels=info["labels"], max_seq_length=info["max_seq_length"], thresholds=info["thresholds"],
                          base_model=str(info["encoder"]), metrics=info.get("metrics", {}))
    backend = RetrievalBackend(encoder.backend, vectors, label_matrix, center, info["k"], info["scale"],
                               info["approximate"])
    return backend, encoder.tokenizer, meta


def label_matrix_of(rows: list[dict], labels: list[str]) -> np.ndarray:
    index = {l: i for i, l in enumerate(labels)}
    matrix = np.zeros((len(rows), len(labels)), dtype=np.uint8)
    for r, row in enumerate(rows):
        matrix[r, [index[l] for l in row["labels"]]] = 1
    return matrix


def write_index(index_dir, info: dict, vectors: np.ndarray, label_matrix: np.ndarray, center: np.ndarray,
           rows: list[dict]) -> None:
    from safetensors.numpy import save_file

    with atomic_dir(index_dir) as tmp:
        save_file({"vectors": vectors, "labels": label_matrix, "center": center.astype(np.float32)},
                  str(tmp / VECTORS_FILE))
        (tmp / TEXTS_FILE).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        atomic_write_json(tmp / INDEX_FILE, info)


def read_index(index_dir) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    from safetensors.numpy import load_file

    folder = Path(index_dir)
    if not (folder / INDEX_FILE).exists():
        raise LabelwiseError(f"{folder}: not a labelwise index (no {INDEX_FILE}); build one with `labelwise index`")
    try:
        info = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / VECTORS_FILE))
        vectors, label_matrix, center = tensors["vectors"], tensors["labels"], tensors["center"]
        rows = [json.loads(line) for line in (folder / TEXTS_FILE).read_text(encoding="utf-8").splitlines()]
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise LabelwiseError(f"{folder}: damaged index ({type(err).__name__}: {err}); build it again") from None
    if info.get("format_version") != FORMAT_VERSION:
        raise LabelwiseError(f"{folder}: index format {info.get('format_version')}, this labelwise reads "
                             f"{FORMAT_VERSION}; build it again")
    sizes = {len(vectors), len(label_matrix), len(rows), info.get("size")}
    if len(sizes) != 1 or label_matrix.shape[1] != len(info["labels"]):
        raise LabelwiseError(f"{folder}: damaged index (vectors, labels and texts.jsonl disagree in size); "
                             "build it again")
    return info, vectors, label_matrix, center, rows


__all__ = ["open_index", "open_encoder", "Encoder", "vote", "RetrievalBackend", "read_index", "write_index"]
