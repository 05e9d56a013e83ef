"""Exact nearest-neighbour search over unit vectors, in chunks (retrieval, interpretation, sparse data)."""
from __future__ import annotations

import numpy as np

__all__ = ['top_k_cosine', 'top_k_dot', 'unit_rows']


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (float32)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def top_k_cosine(queries: np.ndarray, keys: np.ndarray, k: int,
                 chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` most cosine-similar key rows: (indices, scores), best first."""
    return top_k_dot(unit_rows(queries), unit_rows(keys), k, chunk_size)


def top_k_dot(queries: np.ndarray, keys: np.ndarray, k: int,
              chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k_cosine` for rows already at unit length (no pass over the keys to normalise them)."""
    k = min(k, len(keys))
    indices = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    if k == 0:
        return indices, scores
    for start in range(0, len(queries), chunk_size):
        sims = queries[start:start + chunk_size] @ keys.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        indices[start:start + chunk_size] = np.take_along_axis(part, order, axis=1)
        scores[start:start + chunk_size] = np.take_along_axis(part_scores, order, axis=1)
    return indices, scores

