"""Exact top-K: every item scored, excluded items removed, ties to the lower item index.

:func:`top_k` ranks any scores (given chunk by chunk of queries), :func:`inner_product_top_k`
the inner products of query and item embeddings (the dense [queries, items] scores of one chunk
of queries at a time; :func:`~yt_bias.retrieval.blocks.blockwise_top_k` bounds the memory over
items too), :func:`popularity_top_k` the most-popular ranking (every query gets the items by
descending count, less its exclusions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from yt_bias._keras import tf


def top_k(
    scores_fn: Callable[[int, int], np.ndarray],
    num_queries: int,
    num_items: int,
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Top-k item indices per query, with excluded items removed: [num_queries, min(k, num_items)] int64.

    Args:
      scores_fn: (start, stop) -> [stop - start, num_items] scores of those queries.
      num_queries, num_items: the sizes.
      k: results per query (capped at num_items).
      exclude: per query, item indices that may not be returned (where fewer than k items remain,
        the missing ranks are -1).
      chunk: queries scored at once.
    """
    k = min(k, num_items)
    result = np.zeros((num_queries, k), np.int64)
    for start in range(0, num_queries, chunk):
        stop = min(start + chunk, num_queries)
        scores = np.array(scores_fn(start, stop), dtype=np.float32, copy=True)
        if exclude is not None:
            rows = [np.full(len(exclude[q]), q - start) for q in range(start, stop)]
            cols = [exclude[q] for q in range(start, stop)]
            if rows:
                scores[np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)] = -np.inf
        top = tf.math.top_k(scores, k=k)
        # Fewer than k items left after the exclusion: the excluded ones are no result (-1), never a hit.
        result[start:stop] = np.where(np.isneginf(top.values.numpy()), -1, top.indices.numpy())
    return result


def inner_product_top_k(
    query_embeddings: np.ndarray, item_embeddings: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Top-k items by inner product per query (:func:`top_k` over ``queries @ items.T``).

    Args:
      query_embeddings: [num_queries, d].
      item_embeddings: [num_items, d].
      k: results per query (capped at num_items).
      exclude: per query, item indices it may not return.
    Raises:
      ValueError: the two do not share d.
    """
    if np.ndim(query_embeddings) != 2 or np.ndim(item_embeddings) != 2 or np.shape(query_embeddings)[1] != np.shape(item_embeddings)[1]:
        raise ValueError(
            f"query_embeddings [num_queries, d] and item_embeddings [num_items, d] must share d; received "
            f"{np.shape(query_embeddings)} and {np.shape(item_embeddings)}."
        )
    items_t = tf.constant(np.asarray(item_embeddings, np.float32).T)
    queries = tf.constant(np.asarray(query_embeddings, np.float32))
    return top_k(lambda a, b: tf.matmul(queries[a:b], items_t).numpy(), len(query_embeddings), len(item_embeddings), k, exclude)


def popularity_top_k(counts: np.ndarray, num_queries: int, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The most-popular ranking: per query the items by descending ``counts``, its excluded items removed.

    Args:
      counts: [num_items] the popularity of each item (e.g. its training interactions).
      num_queries: how many queries.
      k: results per query (capped at num_items).
      exclude: per query, item indices it may not return.
    """
    counts = np.asarray(counts, np.float32)
    return top_k(lambda a, b: np.broadcast_to(counts, (b - a, len(counts))), num_queries, len(counts), k, exclude)
