"""Classifier: texts → probabilities → label names, over a checkpoint (torch) or an export (onnx).

>>> clf = Classifier.load("checkpoint")
>>> clf.predict(["婚生子杨某甲由原告抚养"], top_k_min=1)[0].labels
['婚后有子女', ...]

A backend only turns padded int64 arrays into logits; tokenising, length-grouped batching, sliding
windows over long texts, thresholds and the never-empty rule live here, once, for every backend.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .batching import LONG_TEXT_MODES, encode, iter_batches
from .errors import LabelwiseError
from .models import CheckpointMeta, detect_backend, load_checkpoint, read_meta
from .progress import progress as progress_bar

__all__ = ["Classifier", "Prediction", "TorchBackend", "decide", "sigmoid", "resolve_device", "check_thresholds"]


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


def _text_list(texts) -> list[str]:
    """A single string is one text (as a pipeline takes it), not a sequence of characters."""
    return [texts] if isinstance(texts, str) else list(texts)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise LabelwiseError(f"batch_size must be a positive whole number of texts, got {batch_size!r}")


@dataclass
class Prediction:
    labels: list[str]
    scores: list[float]  # probability of each predicted label, same order (highest first)
    probabilities: dict[str, float] = field(default_factory=dict)  # every label

    def to_json(self) -> dict:
        return {"labels": self.labels, "scores": self.scores, "probabilities": self.probabilities}


def decide(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray,
           top_k_min: int = 0, top_k_max: int | None = None) -> list[list[int]]:
    """Chosen label ids per row, highest probability first.

    A label is chosen when its probability reaches its threshold; then at least ``top_k_min`` (the
    most probable ones, even below threshold) and at most ``top_k_max`` labels are kept.
    """
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


class TorchBackend:
    """Runs a transformers model in PyTorch (eager, no grad)."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", num_threads: int | None = None):
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model, self.device = model.to(device).eval(), device
        import inspect

        self.input_names = set(inspect.signature(self.model.forward).parameters)

    def _run(self, method, batch: dict[str, np.ndarray]) -> np.ndarray:
        """``method`` of the model on the batch's tensors (the inputs its forward takes), as float32 numpy."""
        import torch

        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items() if k in self.input_names}
        with torch.inference_mode():
            return method(**inputs).float().cpu().numpy()

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(lambda **inputs: self.model(**inputs).logits, batch)

    def head(self):
        """The final linear layer (hidden → labels): its input is the text's pooled representation."""
        return self.model.head

    def features(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled representation of each row: the input of the final linear layer."""
        return self._run(self.model.pooled, batch)


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "gpu" or device.startswith("gpu:"):
        if not torch.cuda.is_available():
            raise LabelwiseError(f"`device` {device}: no GPU is available here; set `device` to cpu")
        return device.replace("gpu", "cuda")
    return device


class Classifier:
    """A trained multi-label classifier: predict probabilities and label names for texts."""

    def __init__(self, backend, tokenizer, meta: CheckpointMeta, path: str | os.PathLike | None = None):
        self.backend, self.tokenizer, self.meta = backend, tokenizer, meta
        self.labels: list[str] = list(meta.labels)
        self.max_seq_length: int = int(meta.max_seq_length)
        self.path: Path | None = Path(path) if path is not None else None  # the folder it came from, if any

    @property
    def thresholds(self) -> np.ndarray:
        """Per-label thresholds stored in the checkpoint (tuned on dev), else 0.5 each."""
        if self.meta.thresholds is None:
            return np.full(len(self.labels), 0.5, dtype=np.float32)
        return np.asarray(self.meta.thresholds, dtype=np.float32)

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", device: str | None = None,
             num_threads: int | None = None, **backend_options) -> "Classifier":
        """Load a checkpoint folder (torch) or an export folder (onnx). ``backend``: auto|torch|onnx."""
        path = Path(path)
        if backend == "auto":
            backend = detect_backend(path)
        elif not path.is_dir():
            raise LabelwiseError(f"{path}: model folder not found")
        if backend == "torch":
            model, tokenizer, meta = load_checkpoint(path)
            return cls(TorchBackend(model, resolve_device(device), num_threads), tokenizer, meta, path)
        if backend == "onnx":
            try:
                from .runtime_onnx import OnnxBackend, load_tokenizer
            except ImportError as err:
                raise LabelwiseError(f"the onnx backend needs onnxruntime: pip install 'labelwise[onnx]' ({err})")
            meta = read_meta(path)
            return cls(OnnxBackend.load(path, device=device, num_threads=num_threads, **backend_options),
                       load_tokenizer(path), meta, path)
        raise LabelwiseError(f"unknown backend {backend!r}; use torch or onnx")

    # ---- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: str | Sequence[str], batch_size: int = 32, max_seq_length: int | None = None,
                      long_text: str = "truncate", stride: int | None = None,
                      progress: bool = False) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)); one string is one text (one row).

        Sliding windows take the max per label.
        """
        texts = _text_list(texts)
        _check_batch_size(batch_size)
        if long_text not in LONG_TEXT_MODES:
            raise LabelwiseError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {long_text!r}")
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return probs
        encoded = encode(self.tokenizer, texts, max_seq_length or self.max_seq_length, long_text, stride)
        window_probs = np.zeros((len(encoded.owner), len(self.labels)), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        batches = iter_batches(encoded, batch_size, pad_id)
        if progress:
            batches = progress_bar(batches, "predict", total=-(-len(encoded.owner) // batch_size))
        for rows, batch in batches:
            window_probs[rows] = sigmoid(self.backend.logits(batch))
        np.maximum.at(probs, encoded.owner, window_probs)
        return probs

    def features(self, texts: Sequence[str], batch_size: int = 32, max_seq_length: int | None = None,
                 progress: bool = False) -> np.ndarray:
        """Pooled representation (input of the final linear layer) of each text; torch backend only.

        Used for sentence-level interpretation, sparse data and representer points. Long texts are
        truncated to max_seq_length.
        """
        if not hasattr(self.backend, "features"):
            raise LabelwiseError("features need a PyTorch checkpoint, not an ONNX export")
        texts = _text_list(texts)
        _check_batch_size(batch_size)
        encoded = encode(self.tokenizer, texts, max_seq_length or self.max_seq_length)
        out = None
        batches = iter_batches(encoded, batch_size, self.tokenizer.pad_token_id or 0)
        if progress:
            batches = progress_bar(batches, "features", total=-(-len(texts) // batch_size))
        for rows, batch in batches:
            feats = self.backend.features(batch)
            if out is None:
                out = np.zeros((len(texts), feats.shape[1]), dtype=np.float32)
            out[rows] = feats
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def predict(self, texts: str | Sequence[str], threshold: float | Sequence[float] | None = None,
                top_k_min: int = 0, top_k_max: int | None = None, **proba_options) -> list[Prediction]:
        """Label names with their probabilities, one :class:`Prediction` per text (one string: a list of one).

        ``threshold``: None → the checkpoint's tuned thresholds; else one number or one per label, in [0, 1].
        """
        if threshold is not None:
            check_thresholds(threshold, len(self.labels))  # before the model runs
        probs = self.predict_proba(texts, **proba_options)
        return self.decode(probs, threshold, top_k_min, top_k_max)

    def decode(self, probs: np.ndarray, threshold=None, top_k_min: int = 0,
               top_k_max: int | None = None) -> list[Prediction]:
        """Predictions from probabilities (rows of :meth:`predict_proba`), as :meth:`predict` makes them."""
        thresholds = self.thresholds if threshold is None else check_thresholds(threshold, len(self.labels))
        out = []
        for row, ids in zip(probs, decide(probs, thresholds, top_k_min, top_k_max)):
            out.append(Prediction([self.labels[j] for j in ids], [round(float(row[j]), 6) for j in ids],
                                  {label: round(float(p), 6) for label, p in zip(self.labels, row)}))
        return out
