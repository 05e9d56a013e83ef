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
anything: their rows vote from the next query on. ``load_index`` returns an ordinary
:class:`~labelwise.inference.Classifier`, so predict, evaluate and serve take an index like a model.
Search is exact (one matrix product per batch) unless ``approximate`` (faiss HNSW, ``pip install faiss-cpu``).
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .analysis.similarity import top_k_dot, unit_rows
from .data import Example, load_dataset, multi_hot, read_examples, read_label_words
from .errors import LabelwiseError
from .inference import Classifier, TorchBackend, resolve_device
from .io_utils import atomic_dir, atomic_write_json, check_outputs
from .metrics import evaluate_predictions, tune_thresholds
from .models import CheckpointMeta, build_model, detect_backend, is_checkpoint, load_checkpoint

log = logging.getLogger("labelwise")

INDEX_FILE, VECTORS_FILE, TEXTS_FILE = "index.json", "vectors.safetensors", "texts.jsonl"
FORMAT_VERSION = 1
K_CHOICES = (5, 10, 20, 50)  # k="auto" picks the best on dev (macro-F1 at tuned thresholds)
SCALE = 20.0  # vote weights: softmax(SCALE × cosine) over the k neighbours
EPS = 1e-6


def load_encoder(source: str, device: str | None = None, max_seq_length: int = 128) -> Classifier:
    """A Classifier whose ``features`` embed texts: a checkpoint's pooled vectors, an export's (ONNX Runtime,
    exported with ``features``), or a bare encoder's."""
    if Path(source).is_dir() and detect_backend(source) == "onnx":
        encoder = Classifier.load(source, backend="onnx", device=device)
        if encoder.backend.features_name is None:
            raise LabelwiseError(f"{source}: this export has no features output; export again with --features")
        return encoder
    device = resolve_device(device)
    if Path(source).is_dir() and is_checkpoint(source):
        model, tokenizer, meta = load_checkpoint(source, device)
    else:
        with warnings.catch_warnings():  # a head of zero labels: torch warns that initialising it is a no-op
            warnings.simplefilter("ignore", UserWarning)
            model, tokenizer, pooling = build_model(source, [], "auto")
        meta = CheckpointMeta(labels=[], max_seq_length=max_seq_length, base_model=source, pooling=pooling)
    return Classifier(TorchBackend(model.eval(), device), tokenizer, meta)


def centred(features: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Unit vectors minus the index's center, at unit length again."""
    return unit_rows(unit_rows(features) - center)


def vote(neighbours: np.ndarray, sims: np.ndarray, label_matrix: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """Scores [queries, labels]: each label's share of the softmax(scale × cosine) weight of the neighbours."""
    weights = np.exp(scale * (sims - sims[:, :1]))
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("qk,qkl->ql", weights, label_matrix[neighbours].astype(np.float32))


class RetrievalBackend:
    """A Classifier backend: embed the batch, find the k nearest index rows, return the logits of their vote."""

    name = "retrieval"

    def __init__(self, encoder: Classifier, vectors: np.ndarray, label_matrix: np.ndarray, center: np.ndarray,
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
        neighbours, sims = self.neighbours(self.encoder.backend.features(batch), self.k)
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
    encoder = load_encoder(params_path, device)
    rows = _rows(ds.train, words, "train")
    log.info("indexing %d texts with %s", len(rows), params_path)
    raw = unit_rows(encoder.features([r["text"] for r in rows], batch_size=batch_size, progress=progress))
    center = raw.mean(0)
    vectors = centred(raw, center)
    label_matrix = _label_matrix(rows, ds.labels)
    chosen_k, thresholds, metrics = _tune(encoder, vectors, label_matrix, center, ds.labels, ds.dev, k, batch_size)
    info = {"format_version": FORMAT_VERSION, "encoder": _encoder_ref(params_path), "labels": ds.labels, "k": chosen_k,
            "scale": SCALE, "thresholds": thresholds, "max_seq_length": encoder.max_seq_length,
            "approximate": approximate, "size": len(rows), "dim": int(vectors.shape[1]), "metrics": metrics,
            "built_from": str(Path(dataset_dir).resolve()), "build_seconds": round(time.perf_counter() - start, 1)}
    _write(index_dir, info, vectors, label_matrix, center, rows)
    return load_index(index_dir, device=device, encoder=encoder)


def add_to_index(index_dir: str, data_file: str, *, batch_size: int = 32, device: str | None = None,
                 progress: bool = True) -> tuple[int, list[str]]:
    """Append the examples of ``data_file`` (train.txt format; new labels allowed); (rows added, new labels)."""
    info, vectors, label_matrix, center, rows = _read(index_dir)
    examples = read_examples(data_file, labels=None)
    new_labels = [l for l in dict.fromkeys(l for e in examples for l in e.labels) if l not in info["labels"]]
    labels = info["labels"] + new_labels
    encoder = load_encoder(info["encoder"], device, info["max_seq_length"])
    added = _rows(examples, None, f"added from {Path(data_file).name}")
    new_vectors = centred(encoder.features([r["text"] for r in added], batch_size=batch_size, progress=progress),
                          center)
    label_matrix = np.concatenate([np.pad(label_matrix, ((0, 0), (0, len(new_labels)))),
                                   _label_matrix(added, labels)])
    if info["thresholds"] is not None:  # new labels start at the median of the tuned ones
        info["thresholds"] += [round(float(np.median(info["thresholds"])), 4)] * len(new_labels)
    info.update(labels=labels, size=len(rows) + len(added))
    _write(index_dir, info, np.concatenate([vectors, new_vectors]), label_matrix, center, rows + added)
    return len(added), new_labels


def load_index(index_dir: str, *, device: str | None = None, encoder: Classifier | None = None) -> Classifier:
    """An index folder as a :class:`~labelwise.inference.Classifier` (labels, thresholds, predict, serve)."""
    info, vectors, label_matrix, center, _ = _read(index_dir)
    encoder = encoder or load_encoder(info["encoder"], device, info["max_seq_length"])
    dim = encoder.features(["x"]).shape[1]
    if dim != vectors.shape[1]:
        raise LabelwiseError(f"{index_dir}: its vectors have {vectors.shape[1]} dimensions but the encoder "
                             f"{info['encoder']} gives {dim}; build the index again")
    meta = CheckpointMeta(labels=info["labels"], max_seq_length=info["max_seq_length"], thresholds=info["thresholds"],
                          base_model=str(info["encoder"]), metrics=info.get("metrics", {}))
    backend = RetrievalBackend(encoder, vectors, label_matrix, center, info["k"], info["scale"], info["approximate"])
    return Classifier(backend, encoder.tokenizer, meta, path=index_dir)


def _encoder_ref(params_path: str) -> str:
    """A checkpoint folder by absolute path (the index lives elsewhere); a model name as given."""
    return str(Path(params_path).resolve()) if Path(params_path).is_dir() else params_path


def _label_matrix(rows: list[dict], labels: list[str]) -> np.ndarray:
    index = {l: i for i, l in enumerate(labels)}
    matrix = np.zeros((len(rows), len(labels)), dtype=np.uint8)
    for r, row in enumerate(rows):
        matrix[r, [index[l] for l in row["labels"]]] = 1
    return matrix


def _write(index_dir, info: dict, vectors: np.ndarray, label_matrix: np.ndarray, center: np.ndarray,
           rows: list[dict]) -> None:
    from safetensors.numpy import save_file

    with atomic_dir(index_dir) as tmp:
        save_file({"vectors": vectors, "labels": label_matrix, "center": center.astype(np.float32)},
                  str(tmp / VECTORS_FILE))
        (tmp / TEXTS_FILE).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        atomic_write_json(tmp / INDEX_FILE, info)


def _read(index_dir) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
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


__all__ = ["build_index", "add_to_index", "load_index", "vote", "RetrievalBackend", "load_encoder"]
