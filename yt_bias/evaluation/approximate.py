"""Approximate evaluation with ScaNN, and its measured recall loss against exact retrieval.

At a million items and more, exact Recall@K scores every query against every item
(:func:`yt_bias.retrieval.blocks.blockwise_top_k`: bounded memory, but O(queries * items) work).
:func:`~yt_bias.retrieval.scann.scann_top_k` answers the same top-K with a ScaNN searcher (a k-means tree over the items,
anisotropic quantization scoring, exact re-scoring of the best candidates), and
:func:`approximate_evaluation` reports its Recall@K next to the exact one: the *recall loss*
(exact minus ScaNN, per K) and the *neighbour recall* (the share of the exact top-K that ScaNN
returns), so the approximation's cost on the metric is measured, not assumed.

The searcher and its settings are the retrieval back end's (:mod:`yt_bias.retrieval.scann`), the
same settings resolver as the serving index's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yt_bias.evaluation.exact import recall_at_k
from yt_bias.retrieval.blocks import blockwise_top_k
from yt_bias.retrieval.scann import scann_top_k


def neighbour_recall(approximate_top: np.ndarray, exact_top: np.ndarray, k: int) -> float:
    """The mean share of each query's exact top-k that the approximate top-k also holds.

    Args:
      approximate_top, exact_top: [num_queries, >= k] item indices, best first.
      k: the cut-off.
    Returns:
      A number in [0, 1].
    Raises:
      ValueError: the two have different numbers of queries or fewer than k columns.
    """
    if approximate_top.shape[0] != exact_top.shape[0] or min(approximate_top.shape[1], exact_top.shape[1]) < k:
        raise ValueError(
            f"approximate_top and exact_top must be [num_queries, >= {k}] for the same queries; received "
            f"{approximate_top.shape} and {exact_top.shape}."
        )
    a, e = np.sort(approximate_top[:, :k], axis=1), np.sort(exact_top[:, :k], axis=1)
    hits = [np.intersect1d(a[q], e[q], assume_unique=True).size for q in range(len(a))]
    return float(np.mean(hits) / k)


def approximate_evaluation(
    query_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int],
    exact_top: np.ndarray | None = None,
    settings: dict | None = None,
) -> dict:
    """Recall@K through ScaNN next to exact Recall@K, and the loss between them.

    Args:
      query_embeddings: [num_queries, d].
      item_embeddings: [num_items, d].
      targets: [num_queries] the held-out item of each query.
      ks: the cut-offs.
      exact_top: [num_queries, >= max(ks)] the exact top items (None: computed here with
        :func:`~yt_bias.retrieval.blocks.blockwise_top_k`).
      settings: ScaNN settings (:func:`~yt_bias.retrieval.scann.scann_settings`; None: its defaults).
    Returns:
      ``{"scann_recall@K", "exact_recall@K", "recall_loss@K" (exact - ScaNN), "neighbour_recall@K",
      "build_seconds", "search_seconds", **settings}``.
    Raises:
      ValueError: mismatched shapes, or a K outside [1, num_items].
    """
    ks = sorted({int(k) for k in ks})
    targets = np.asarray(targets)
    if len(targets) != len(query_embeddings):
        raise ValueError(f"targets must hold one item per query ({len(query_embeddings)}); received {len(targets)}.")
    if exact_top is None:
        exact_top = blockwise_top_k(query_embeddings, item_embeddings, max(ks))
    approximate, info = scann_top_k(query_embeddings, item_embeddings, max(ks), settings)
    exact_recall = recall_at_k(exact_top, targets, ks)
    scann_recall = recall_at_k(approximate, targets, ks)
    result = dict(info)
    for k in ks:
        result[f"exact_recall@{k}"] = round(float(exact_recall[f"recall@{k}"]), 5)
        result[f"scann_recall@{k}"] = round(float(scann_recall[f"recall@{k}"]), 5)
        result[f"recall_loss@{k}"] = round(float(exact_recall[f"recall@{k}"] - scann_recall[f"recall@{k}"]), 5)
        result[f"neighbour_recall@{k}"] = round(neighbour_recall(approximate, exact_top, k), 5)
    return result
