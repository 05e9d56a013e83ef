"""Classifier: texts → probabilities → label names, over a checkpoint (torch), an export (onnx) or a retrieval index.

>>> clf = Classifier.load("checkpoint")
>>> clf.predict(["婚生子杨某甲由原告抚养"], top_k_min=1)[0].labels
['婚后有子女', ...]

A backend only turns padded int64 arrays into logits; tokenising, length-grouped batching, sliding
windows over long texts, thresholds and the never-empty rule live here, once, for every backend.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.data.hierarchy import Hierarchy
from labelwise.errors import BrokenModel, LabelwiseError
from labelwise.evaluation.calibration import apply_temperatures
from labelwise.evaluation.decision import check_decision, check_thresholds, decision_matrix, shown_ids, sigmoid
from labelwise.model.blend import Blend, load_blend
from labelwise.model.checkpoint import CheckpointMeta
from labelwise.predict import backends
from labelwise.predict.batching import LONG_TEXT_MODES, encode, iter_batches, length_grouped_batches, pool_windows
from labelwise.predict.torch_backend import TorchBackend
from labelwise.progress import progress as progress_bar

__all__ = ['BrokenModel', 'Classifier', 'Prediction', 'TorchBackend']

log = logging.getLogger("labelwise")


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


class Classifier:
    """A trained multi-label classifier: predict probabilities and label names for texts."""

    def __init__(self, backend, tokenizer, meta: CheckpointMeta, path: str | os.PathLike | None = None,
                 blend: Blend | None = None):
        self.backend, self.tokenizer, self.meta = backend, tokenizer, meta
        if blend is None and path is not None and getattr(meta, "blend", None):
            blend = load_blend(path, meta)  # the folder's baseline/, as its labelwise.json says
        self.blend = blend  # the linear baseline mixed into the logits (labelwise.model.blend), or None
        calibration = getattr(meta, "calibration", None)
        # per-label temperatures the logits are divided by (labelwise.evaluation.calibration), or None
        self.temperatures = np.asarray(calibration["temperatures"], dtype=np.float32) if calibration else None
        self.labels: list[str] = list(meta.labels)
        self.max_seq_length: int = int(meta.max_seq_length)
        self.path: Path | None = Path(path) if path is not None else None  # the folder it came from, if any
        self._hierarchy: Hierarchy | None = None

    @property
    def hierarchy(self) -> Hierarchy:
        """The label tree the names spell with the checkpoint's ``hierarchy_sep`` (flat when none does).

        Labels that are not a valid tree (a model trained before labelwise read paths) are decided flat."""
        known = getattr(self, "_hierarchy", None)
        if known is None or known.labels != tuple(self.labels):
            try:
                self._hierarchy = Hierarchy.from_labels(self.labels, getattr(self.meta, "hierarchy_sep", "##"))
            except LabelwiseError as err:
                log.warning("%s: the labels do not form a tree (%s); they are decided as flat labels",
                            self.path or "the model", err)
                self._hierarchy = Hierarchy.flat(self.labels)
        return self._hierarchy

    @property
    def thresholds(self) -> np.ndarray:
        """Per-label thresholds stored in the checkpoint (tuned on dev), else 0.5 each."""
        if self.meta.thresholds is None:
            return np.full(len(self.labels), 0.5, dtype=np.float32)
        return np.asarray(self.meta.thresholds, dtype=np.float32)

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", device: str | None = None,
             num_threads: int | None = None, precision: str | None = None, require=(), hints: dict | None = None,
             **backend_options) -> "Classifier":
        """Open any model folder; the one way every command and the service open a model.

        ``backend``: auto (the kind the folder is: a checkpoint, pruned or not → torch; an export → onnx; an
        index from ``labelwise index`` → retrieval; see :mod:`labelwise.predict.backends`), or a kind's name.
        ``precision`` (fp32 | int8 | fp16 ...) picks one of an export's model files; a kind that does not run
        it is refused. ``require``: abilities the caller needs (``features``, ``gradients``), refused in one line
        before anything loads. ``device``: cpu, cuda[:N] or PaddleNLP's gpu[:N]; default a GPU when there is one.
        ``hints``: how it will run, for the kinds that take them (``{"spin_wait": False}``: see ``serve``).
        """
        opened = backends.open_folder(path, backend, device=device, num_threads=num_threads, precision=precision,
                                      require=require, hints=hints, **backend_options)
        return cls(*opened, path=path)

    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write this classifier as a checkpoint folder that :meth:`load` opens (a PyTorch one only)."""
        from labelwise.model.checkpoint import save_checkpoint

        if not isinstance(self.backend, TorchBackend):
            raise LabelwiseError(f"only a PyTorch checkpoint is saved as a folder; this model is a "
                                 f"{self.backend.name} one: copy its folder ({self.path}) instead")
        return save_checkpoint(folder, self.backend.model, self.tokenizer, self.meta, blend=self.blend,
                               overwrite=overwrite)

    # ---- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: str | Sequence[str], batch_size: int = 32, max_seq_length: int | None = None,
                      long_text: str | None = None, stride: int | None = None,
                      progress: bool = False) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)); one string is one text (one row).

        Scores are the model's logits (pooled over windows, blended with the baseline when the model has a blend,
        divided by its per-label temperatures when it is calibrated) through a sigmoid.

        ``long_text``: None or ``auto`` = as the model was trained (``meta.long_text``: truncate, or slide with the
        windows' logits pooled by ``meta.window_pool``); truncate or slide to force one (slide then pools as the
        model was trained, max for a model trained on truncated texts).
        """
        texts = _text_list(texts)
        _check_batch_size(batch_size)
        long_text = self.long_text if long_text in (None, "auto") else long_text
        if long_text not in LONG_TEXT_MODES:
            raise LabelwiseError(f"long_text must be one of auto, {', '.join(LONG_TEXT_MODES)}, got {long_text!r}")
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return probs
        length = self.max_seq_length if max_seq_length is None else self.check_length(max_seq_length)
        encoded = encode(self.tokenizer, texts, length, long_text, stride)
        window_logits = np.zeros((len(encoded.owner), len(self.labels)), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        batches = iter_batches(encoded, batch_size, pad_id)
        if progress:
            total = len(length_grouped_batches(encoded.lengths, batch_size, tight=True))
            batches = progress_bar(batches, "predict", total=total)
        for rows, batch in batches:
            window_logits[rows] = self.backend.logits(batch)
        logits = window_logits if len(encoded.owner) == len(texts) else \
            pool_windows(window_logits, encoded.owner, len(texts), self.window_pool)  # one row per text
        if getattr(self, "blend", None) is not None:
            logits = self.blend.apply(logits, texts)
        if getattr(self, "temperatures", None) is not None:
            logits = apply_temperatures(logits, self.temperatures)
        broken = ~np.isfinite(logits).all(axis=1)
        if broken.any():  # damaged weights give NaN: an error, never a row of empty predictions
            raise BrokenModel(f"{self.path or 'the model'}: it gives NaN or infinite scores for {int(broken.sum())} "
                              f"of {len(texts)} texts (text {int(np.argmax(broken)) + 1} first): its weight files "
                              "are damaged; restore the folder from a copy, or train or export it again")
        return sigmoid(logits).astype(np.float32)

    def check_length(self, max_seq_length: int) -> int:
        """``max_seq_length`` if this model's tokenizer reads that many tokens; one line otherwise."""
        limit = getattr(self.tokenizer, "model_max_length", None)  # a huge number where the tokenizer sets none
        limit = limit if isinstance(limit, int) and limit < 100_000 else None
        whole = isinstance(max_seq_length, (int, np.integer)) and not isinstance(max_seq_length, bool)
        if not whole or max_seq_length < 1 or (limit and max_seq_length > limit):
            most = f"at most {limit}" if limit else "at least 1"
            raise LabelwiseError(f"`max_seq_length` {max_seq_length!r}: this model reads {most} tokens")
        return int(max_seq_length)

    @property
    def long_text(self) -> str:
        """How this model reads a text longer than ``max_seq_length``: truncate, or slide (windows)."""
        return getattr(self.meta, "long_text", "truncate")

    @property
    def window_pool(self) -> str:
        return getattr(self.meta, "window_pool", "max")

    def features(self, texts: Sequence[str], batch_size: int = 32, max_seq_length: int | None = None,
                 progress: bool = False) -> np.ndarray:
        """Pooled representation (input of the final linear layer) of each text; torch backend only.

        Used for sentence-level interpretation, sparse data and representer points. Long texts are
        truncated to max_seq_length.
        """
        if not hasattr(self.backend, "features"):
            raise LabelwiseError(f"{self.path or 'this model'}: its {self.backend.name} backend gives no text "
                                 "vectors; use a PyTorch checkpoint, or an export made with --features")
        texts = _text_list(texts)
        _check_batch_size(batch_size)
        encoded = encode(self.tokenizer, texts, self.max_seq_length if max_seq_length is None
                         else self.check_length(max_seq_length))
        out = None
        batches = iter_batches(encoded, batch_size, self.tokenizer.pad_token_id or 0)
        if progress:
            total = len(length_grouped_batches(encoded.lengths, batch_size, tight=True))
            batches = progress_bar(batches, "features", total=total)
        for rows, batch in batches:
            feats = self.backend.features(batch)
            if out is None:
                out = np.zeros((len(texts), feats.shape[1]), dtype=np.float32)
            out[rows] = feats
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def predict(self, texts: str | Sequence[str], threshold: float | Sequence[float] | None = None,
                top_k_min: int = 0, top_k_max: int | None = None, hierarchy: str = "consistent",
                **proba_options) -> list[Prediction]:
        """Label names with their probabilities, one :class:`Prediction` per text (one string: a list of one).

        ``threshold``: None → the checkpoint's tuned thresholds; else one number or one per label, in [0, 1].
        ``hierarchy`` (label trees): consistent | leaves | none (:mod:`labelwise.evaluation.decision`).
        """
        check_decision(threshold, len(self.labels), top_k_min, top_k_max, hierarchy)  # before the model runs
        probs = self.predict_proba(texts, **proba_options)
        return self.decode(probs, threshold, top_k_min, top_k_max, hierarchy)

    def decode(self, probs: np.ndarray, threshold=None, top_k_min: int = 0,
               top_k_max: int | None = None, hierarchy: str = "consistent") -> list[Prediction]:
        """Predictions from probabilities (rows of :meth:`predict_proba`), as :meth:`predict` makes them."""
        thresholds = self.thresholds if threshold is None else check_thresholds(threshold, len(self.labels))
        probs = np.asarray(probs)
        tree = self.hierarchy
        decisions = decision_matrix(probs, thresholds, top_k_min, top_k_max, tree, hierarchy)  # as `evaluate` counts
        out = []
        for row, ids in zip(probs, shown_ids(probs, decisions, tree, hierarchy)):
            out.append(Prediction([self.labels[j] for j in ids], [round(float(row[j]), 6) for j in ids],
                                  {label: round(float(p), 6) for label, p in zip(self.labels, row)}))
        return out
