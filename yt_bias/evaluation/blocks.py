"""Exact top-k retrieval over a large corpus in bounded memory.

:func:`blockwise_top_k` scores a block of queries against a block of items at a time and keeps a
running top-k per query, so it never holds the dense [queries, items] score matrix: its working
memory is O(query_block * (item_block + k)) floats. The result equals
:func:`yt_bias.evaluation.exact.top_k` on the same scores (ties between equal scores aside).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(name: str, value: int, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; received {value!r}.")
    return int(value)


def _merge(
    best_scores: np.ndarray, best_index: np.ndarray, scores: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of the running best and one block's scores (``offset``: the block's first item)."""
    block_k = min(k, scores.shape[1])
    part = (
        np.argpartition(-scores, block_k - 1, axis=1)[:, :block_k]
        if block_k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    )
    all_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, axis=1)], axis=1)
    all_index = np.concatenate([best_index, part.astype(np.int64) + offset], axis=1)
    # Highest score first; among equal scores the lower item index first (as a full sort would).
    order = np.lexsort((all_index, -all_scores), axis=1)[:, :k]
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_index, order, axis=1)


def blockwise_top_k(
    query_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
    item_block: int = 65536,
    query_block: int = 4096,
) -> np.ndarray:
    """Top-k items by inner product per query, excluded items removed: [num_queries, k] int64.

    Args:
      query_embeddings: [num_queries, d].
      item_embeddings: [num_items, d] (an array, or a memory-mapped ``np.load(..., mmap_mode="r")``:
        only one block of it is read at a time).
      k: results per query (capped at num_items).
      exclude: per query, item indices it may not return; where fewer than k items remain the
        missing ranks are -1, as in :func:`yt_bias.evaluation.exact.top_k`.
      item_block: items scored at once.
      query_block: queries scored at once.
    Returns:
      Item indices, best first.
    Raises:
      ValueError: mismatched shapes, a non-positive k or block size, or a wrong number of exclusion lists.
    """
    queries = np.asarray(query_embeddings, dtype=np.float32)
    if queries.ndim != 2 or item_embeddings.ndim != 2 or queries.shape[1] != item_embeddings.shape[1]:
        raise ValueError(
            f"query_embeddings [num_queries, d] and item_embeddings [num_items, d] must share d; received "
            f"{queries.shape} and {item_embeddings.shape}."
        )
    num_queries, num_items = queries.shape[0], item_embeddings.shape[0]
    if num_items == 0:
        raise ValueError("item_embeddings: the corpus is empty; expected at least one item.")
    k = min(_check("k", k), num_items)
    item_block, query_block = _check("item_block", item_block), _check("query_block", query_block)
    if exclude is not None and len(exclude) != num_queries:
        raise ValueError(f"exclude must hold one list per query ({num_queries}); received {len(exclude)}.")
    result = np.full((num_queries, k), -1, np.int64)
    for q_start in range(0, num_queries, query_block):
        q_stop = min(q_start + query_block, num_queries)
        block_queries = queries[q_start:q_stop]
        rows = q_stop - q_start
        best_scores = np.full((rows, 0), -np.inf, np.float32)
        best_index = np.zeros((rows, 0), np.int64)
        if exclude is not None:
            excluded = [np.asarray(exclude[q], np.int64) for q in range(q_start, q_stop)]
            ex_rows = (
                np.concatenate([np.full(len(e), r, np.int64) for r, e in enumerate(excluded)]) if rows else np.zeros(0, np.int64)
            )
            ex_cols = np.concatenate(excluded) if rows else np.zeros(0, np.int64)
        for i_start in range(0, num_items, item_block):
            i_stop = min(i_start + item_block, num_items)
            scores = block_queries @ np.asarray(item_embeddings[i_start:i_stop], dtype=np.float32).T
            if exclude is not None and len(ex_cols):
                inside = (ex_cols >= i_start) & (ex_cols < i_stop)
                scores[ex_rows[inside], ex_cols[inside] - i_start] = -np.inf
            best_scores, best_index = _merge(best_scores, best_index, scores, i_start, k)
        result[q_start:q_stop] = np.where(np.isneginf(best_scores), -1, best_index)
    return result
