"""Tokenise once, then build padded batches grouped by length (no torch here: plain numpy).

Padding every batch to ``max_seq_length`` wastes most of the work on short texts (CAIL2019 divorce
averages ~55 tokens against 128). Sorting by length and padding to the longest text of each batch
avoids that; for training, batches are shuffled after grouping so the order stays random.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

LONG_TEXT_MODES = ("truncate", "slide")
WINDOW_POOLS = ("max", "mean")  # how the windows' logits of one text become its logits
PAD_SLACK_TOKENS, PAD_SLACK_FRACTION = 8, 0.1  # inference batches: padding allowed per row


@dataclass
class Encoded:
    """Token ids of each (window of a) text, and which text each row belongs to."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    owner: np.ndarray  # row → index of the original text (several rows per text when sliding)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def encode(tokenizer, texts: Sequence[str], max_length: int, long_text: str = "truncate",
           stride: int | None = None) -> Encoded:
    """Tokenise ``texts``; with ``long_text='slide'`` a long text becomes overlapping windows."""
    if long_text not in LONG_TEXT_MODES:
        raise ValueError(f"long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")
    texts = list(texts)
    kwargs = dict(truncation=True, max_length=max_length, padding=False, return_attention_mask=False)
    if long_text == "slide":
        stride = window_stride(max_length) if stride is None else stride
        out = tokenizer(texts, return_overflowing_tokens=True, stride=stride, **kwargs)
        owner = np.asarray(out["overflow_to_sample_mapping"], dtype=np.int64)
    else:
        out = tokenizer(texts, **kwargs)
        owner = np.arange(len(texts), dtype=np.int64)
    type_ids = out.get("token_type_ids")
    return Encoded(list(out["input_ids"]), list(type_ids) if type_ids is not None else None, owner)


def window_stride(max_length: int) -> int:
    """Tokens two neighbouring windows of a long text share: a quarter of the window."""
    return max(1, max_length // 4)


def pool_windows(window_logits: np.ndarray, owner: np.ndarray, n_texts: int, how: str = "max") -> np.ndarray:
    """Each text's logits from its windows' (rows of ``window_logits``, text ``owner[row]``): the max or the mean.

    Training pools the same way (:func:`labelwise.training.reading.pool_window_logits`), so a model reads a long
    text at prediction time as it learnt to."""
    if how not in WINDOW_POOLS:
        raise ValueError(f"window pool must be one of {WINDOW_POOLS}, got {how!r}")
    out = np.zeros((n_texts, window_logits.shape[1]), dtype=np.float32)
    if how == "max":
        out.fill(-np.inf)
        np.maximum.at(out, owner, window_logits)
        return out
    np.add.at(out, owner, window_logits)
    return out / np.maximum(np.bincount(owner, minlength=n_texts), 1)[:, None]


def pad_batch(encoded: Encoded, rows: Sequence[int], pad_id: int = 0,
              pad_to: int | None = None) -> dict[str, np.ndarray]:
    """int64 arrays input_ids / attention_mask (/ token_type_ids) for ``rows``, padded to the longest."""
    width = pad_to or max(len(encoded.input_ids[r]) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64) if encoded.token_type_ids is not None else None
    for i, r in enumerate(rows):
        seq = encoded.input_ids[r]
        ids[i, :len(seq)] = seq
        mask[i, :len(seq)] = 1
        if types is not None:
            types[i, :len(seq)] = encoded.token_type_ids[r]
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def length_grouped_batches(lengths: np.ndarray, batch_size: int, *, shuffle: bool = False,
                           rng: np.random.Generator | None = None, group_factor: int = 50,
                           tight: bool = False) -> list[np.ndarray]:
    """Row indices split into batches of similar length.

    Without shuffle: sorted by length (longest first), for inference; with ``tight``, a batch also ends
    where padding the next row would add more than max(8 tokens, 10%) of the batch's longest row. With
    shuffle: rows are shuffled, cut into pools of ``group_factor`` batches, each pool sorted by length and
    cut into batches, and the batches shuffled: near-random order, but little padding.
    """
    n = len(lengths)
    if n == 0:
        return []
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        if not tight:
            return [order[i:i + batch_size] for i in range(0, n, batch_size)]
        return _tight_batches(order, lengths, batch_size)
    rng = rng or np.random.default_rng()
    order = rng.permutation(n)
    pool = batch_size * group_factor
    batches = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _tight_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cut rows sorted longest first into batches whose padding stays small.

    A server gathers texts of any length; padding them all to the longest can double the work on a CPU,
    where the cost per token barely falls with batch size (benchmarks/RESULTS.md, serving).
    """
    batches, start = [], 0
    for i in range(1, len(order) + 1):
        longest = lengths[order[start]]
        if i == len(order) or i - start == batch_size or \
                longest - lengths[order[i]] > max(PAD_SLACK_TOKENS, PAD_SLACK_FRACTION * longest):
            batches.append(order[start:i])
            start = i
    return batches


def iter_batches(encoded: Encoded, batch_size: int, pad_id: int = 0,
                 pad_to: int | None = None) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Inference batches (longest first, little padding): yields (row indices, padded arrays)."""
    for rows in length_grouped_batches(encoded.lengths, batch_size, tight=True):
        yield rows, pad_batch(encoded, rows, pad_id, pad_to)
