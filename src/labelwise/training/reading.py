"""How a model reads its texts: the token budget per window, and whether long texts are cut or read in windows.

``labelwise train`` leaves ``max_seq_length`` and ``long_text`` to the data when they are not given
(:func:`plan_reading`):

* ``max_seq_length``: the smallest of 128, 256 and 512 (within what the encoder reads) that holds 90% of the
  training texts whole; when none does, 128 — long documents are then read in windows of 128 tokens. Batches are
  padded to their longest text, so a limit above the texts' lengths costs nothing.
* ``long_text`` auto: windows (``slide``) when at least ``LONG_SHARE`` of the training texts are longer than
  ``max_seq_length``, else truncation — short-text data (divorce, GoEmotions) trains exactly as before.

With windows a text becomes overlapping windows (a quarter of a window's tokens overlap); the model's logits for
the text are the max (or mean) of its windows' logits, in training as in prediction
(:func:`labelwise.predict.batching.pool_windows`). A training batch holds whole texts, at most ``batch_size``
windows (one text longer than that is a batch of its own), so a step costs what a step of short texts costs and
the recipe's step count (:mod:`labelwise.training.recipe`) is a compute budget in windows, not in documents.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from labelwise.predict.batching import Encoded, encode

log = logging.getLogger("labelwise")

LENGTHS = (128, 256, 512)  # candidate max_seq_length values, shortest first
WHOLE_SHARE = 0.9  # max_seq_length auto: the shortest candidate that holds this share of the texts whole
LONG_SHARE = 0.1  # long_text auto: windows when at least this share of the texts are longer than max_seq_length


@dataclass
class Reading:
    max_seq_length: int
    long_text: str  # truncate | slide
    texts: int
    long_share: float  # of the training texts, longer than max_seq_length
    windows: int  # rows one epoch reads (= texts when truncating)
    reason: str

    def to_json(self) -> dict:
        return {"max_seq_length": self.max_seq_length, "long_text": self.long_text, "texts": self.texts,
                "long_share": round(self.long_share, 4), "windows": self.windows, "reason": self.reason}


def token_lengths(tokenizer, texts: list[str]) -> np.ndarray:
    """Each text's length in tokens, special tokens included, uncut."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    ids = tokenizer(texts, add_special_tokens=True, truncation=False, padding=False,
                    return_attention_mask=False, verbose=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def encoder_limit(tokenizer, model) -> int:
    """The most tokens the encoder reads (its position embeddings, or the tokenizer's own limit)."""
    limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 100_000]
    return min(limits) if limits else 512


def plan_reading(tokenizer, texts: list[str], max_seq_length: int | None, long_text: str, limit: int
                 ) -> tuple[Reading, Encoded]:
    """``max_seq_length`` and ``long_text`` for these training texts (the given ones, else the data's: module doc),
    and the texts encoded that way."""
    lengths = token_lengths(tokenizer, texts)
    why = []
    if max_seq_length is None:
        fits = [n for n in LENGTHS if n <= limit] or [limit]
        whole = float(np.quantile(lengths, WHOLE_SHARE)) if len(lengths) else 0.0
        max_seq_length = next((n for n in fits if whole <= n), min(fits))
        held = "held whole" if whole <= max_seq_length else "too long for any window: read in windows"
        why.append(f"max_seq_length {max_seq_length}: 90% of the texts have ≤ {whole:.0f} tokens ({held})")
    long_share = float(np.mean(lengths > max_seq_length)) if len(lengths) else 0.0
    if long_text == "auto":
        long_text = "slide" if long_share >= LONG_SHARE else "truncate"
        why.append(f"long_text {long_text}: {100 * long_share:.1f}% of the texts are longer than {max_seq_length} "
                   f"tokens ({'≥' if long_text == 'slide' else '<'} {100 * LONG_SHARE:.0f}%)")
    encoded = encode(tokenizer, texts, max_seq_length, long_text)
    reading = Reading(max_seq_length, long_text, len(texts), long_share, len(encoded.owner),
                      "; ".join(why) or "as given")
    return reading, encoded


def window_batches(encoded: Encoded, n_texts: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Texts in random order, cut into batches of at most ``batch_size`` windows (whole texts; a text with more
    windows is a batch alone)."""
    counts = np.bincount(encoded.owner, minlength=n_texts)
    batches, current, size = [], [], 0
    for t in rng.permutation(n_texts):
        if current and size + counts[t] > batch_size:
            batches.append(np.asarray(current))
            current, size = [], 0
        current.append(t)
        size += int(counts[t])
    if current:
        batches.append(np.asarray(current))
    return batches


class WindowIndex:
    """Which rows of an :class:`Encoded` belong to each text, for building a batch of whole texts."""

    def __init__(self, encoded: Encoded, n_texts: int):
        order = np.argsort(encoded.owner, kind="stable")
        counts = np.bincount(encoded.owner, minlength=n_texts)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.order = order

    def rows(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(window rows of ``texts``, each row's position in ``texts``)."""
        parts = [self.order[self.starts[t]:self.starts[t + 1]] for t in texts]
        rows = np.concatenate(parts)
        owner = np.repeat(np.arange(len(texts)), [len(p) for p in parts])
        return rows, owner


def pool_window_logits(logits, owner, n_texts: int, how: str):
    """Torch: each text's logits from its windows' (the training twin of ``batching.pool_windows``)."""
    import torch

    index = owner.unsqueeze(1).expand_as(logits)
    if how == "max":
        out = torch.full((n_texts, logits.shape[1]), float("-inf"), dtype=logits.dtype, device=logits.device)
        return out.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
    out = torch.zeros((n_texts, logits.shape[1]), dtype=logits.dtype, device=logits.device)
    return out.scatter_reduce(0, index, logits, reduce="mean", include_self=False)


__all__ = ["LENGTHS", "LONG_SHARE", "Reading", "WindowIndex", "encoder_limit",
           "plan_reading", "pool_window_logits", "token_lengths", "window_batches"]
