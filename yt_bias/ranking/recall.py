"""The recall stage as the ranking stage sees it: top-N retrieval and the two-tower score of given pairs.

``<u, v>`` is the towers' inner product (before the temperature); the recall stage's logit is
``<u, v> / tau``. Both stages of :mod:`yt_bias.ranking.two_stage`, and the ranker's training
examples drawn from the retriever's own candidates (:mod:`yt_bias.ranking.model`), use these.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from yt_bias.data.dataset import QUERY_KEY, RecDataset
from yt_bias.evaluation.exact import exclusion_lists
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import top_k


def retrieve(model, dataset: RecDataset, queries: Mapping[str, np.ndarray], n: int, exclude_seen: bool = True) -> np.ndarray:
    """Top-``n`` corpus indices per query row by exact inner product (the user's training items
    excluded with ``exclude_seen``): [num_queries, n] int64."""
    if n < 1:
        raise ValueError(f"n (candidates to retrieve) must be >= 1; received {n}.")
    q = embed(model.query_tower, queries)
    v = embed(model.item_tower, dataset.items)
    exclude = exclusion_lists(dataset, queries[QUERY_KEY]) if exclude_seen else None
    return top_k(lambda a, b: q[a:b] @ v.T, len(q), len(v), n, exclude)


def inner_products(model, dataset: RecDataset, queries: Mapping[str, np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """``<u, v>`` of each query row with each of its candidates: [num_queries, n] float32."""
    q = embed(model.query_tower, queries)
    v = embed(model.item_tower, dataset.items)
    return np.einsum("qd,qnd->qn", q, v[candidates]).astype(np.float32)


def retrieval_logits(model, dataset: RecDataset, queries: Mapping[str, np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """The recall stage's logits ``<u, v> / tau`` of each candidate: [num_queries, n] float32."""
    return inner_products(model, dataset, queries, candidates) / float(getattr(model, "temperature", 1.0))


def retrieval_scores(
    model, dataset: RecDataset, queries: Mapping[str, np.ndarray], rows: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """``<u, v>`` of each (query row, item) pair: [n, 1] float32."""
    q = embed(model.query_tower, queries)
    v = embed(model.item_tower, dataset.items)
    return np.einsum("nd,nd->n", q[rows], v[items]).astype(np.float32)[:, None]
