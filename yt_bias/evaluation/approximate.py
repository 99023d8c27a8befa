"""Approximate evaluation with ScaNN, and its measured recall loss against exact retrieval.

At a million items and more, exact Recall@K scores every query against every item
(:func:`yt_bias.evaluation.blocks.blockwise_top_k`: bounded memory, but O(queries * items) work).
:func:`scann_top_k` answers the same top-K with a ScaNN searcher (a k-means tree over the items,
anisotropic quantization scoring, exact re-scoring of the best candidates), and
:func:`approximate_evaluation` reports its Recall@K next to the exact one: the *recall loss*
(exact minus ScaNN, per K) and the *neighbour recall* (the share of the exact top-K that ScaNN
returns), so the approximation's cost on the metric is measured, not assumed.

The searcher is built here with ``scann``'s numpy interface (``scann.scann_ops_pybind``); the
serving index (a layer above) builds its own for export.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from yt_bias.evaluation.exact import recall_at_k

SCANN_HINT = "pip install scann==1.4.2 (wheels exist for Linux x86-64 and aarch64 only)"


def scann_settings(
    num_items: int,
    num_leaves: int = 0,
    num_leaves_to_search: int = 0,
    reorder: int = 500,
    training_sample_size: int = 250_000,
    dimensions_per_block: int = 2,
    anisotropic_quantization_threshold: float = 0.2,
) -> dict:
    """ScaNN settings for ``num_items`` items, automatic values (0) resolved.

    Args:
      num_items: corpus size (>= 2).
      num_leaves: k-means leaves (0: round(sqrt(num_items))).
      num_leaves_to_search: leaves searched per query (0: a tenth of the leaves, at least 1).
      reorder: candidates re-scored exactly (0: none).
      training_sample_size: items the tree and quantizer are trained on.
      dimensions_per_block: dimensions per anisotropic-quantization block.
      anisotropic_quantization_threshold: ScaNN's threshold (the inner products that matter).
    Returns:
      The resolved settings.
    Raises:
      ValueError: a size below its minimum, or more leaves searched than there are.
    """
    for name, value, low in (
        ("num_items", num_items, 2),
        ("num_leaves", num_leaves, 0),
        ("num_leaves_to_search", num_leaves_to_search, 0),
        ("reorder", reorder, 0),
        ("training_sample_size", training_sample_size, 1),
        ("dimensions_per_block", dimensions_per_block, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; received {value!r}.")
    leaves = min(num_leaves or max(2, round(math.sqrt(num_items))), num_items)
    to_search = num_leaves_to_search or max(1, math.ceil(leaves / 10))
    if to_search > leaves:
        raise ValueError(f"num_leaves_to_search must be <= num_leaves ({leaves}); received {to_search}.")
    return {
        "num_leaves": int(leaves),
        "num_leaves_to_search": int(to_search),
        "reorder": int(min(reorder, num_items)),
        "training_sample_size": int(min(training_sample_size, num_items)),
        "dimensions_per_block": int(dimensions_per_block),
        "anisotropic_quantization_threshold": float(anisotropic_quantization_threshold),
    }


def _import_scann():
    try:
        import scann  # noqa: PLC0415 (optional, heavy)
    except ImportError as error:
        raise ImportError(f"approximate evaluation needs ScaNN: {SCANN_HINT} ({error})") from None
    return scann


def scann_top_k(
    query_embeddings: np.ndarray, item_embeddings: np.ndarray, k: int, settings: dict | None = None
) -> tuple[np.ndarray, dict]:
    """Top-k items by inner product per query from a ScaNN searcher built on ``item_embeddings``.

    Args:
      query_embeddings: [num_queries, d] float32.
      item_embeddings: [num_items, d] float32 (held in memory while the searcher is built).
      k: results per query (1 <= k <= num_items).
      settings: :func:`scann_settings` (None: its defaults for this corpus).
    Returns:
      (top [num_queries, k] int64 item indices, best first; ``{"build_seconds", "search_seconds",
      **settings}``).
    Raises:
      ValueError: mismatched shapes or a k outside [1, num_items].
      ImportError: ScaNN is not installed.
    """
    queries = np.ascontiguousarray(query_embeddings, dtype=np.float32)
    items = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"query_embeddings [num_queries, d] and item_embeddings [num_items, d] must share d; received "
            f"{queries.shape} and {items.shape}."
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(items):
        raise ValueError(f"k must be an integer in [1, num_items={len(items)}]; received {k!r}.")
    settings = dict(settings or scann_settings(len(items)))
    scann = _import_scann()
    start = time.perf_counter()
    builder = scann.scann_ops_pybind.builder(items, int(k), "dot_product")
    builder = builder.tree(
        num_leaves=settings["num_leaves"],
        num_leaves_to_search=settings["num_leaves_to_search"],
        training_sample_size=settings["training_sample_size"],
    ).score_ah(
        settings["dimensions_per_block"], anisotropic_quantization_threshold=settings["anisotropic_quantization_threshold"]
    )
    if settings["reorder"]:
        builder = builder.reorder(max(settings["reorder"], int(k)))
    searcher = builder.build()
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    neighbours, _ = searcher.search_batched(queries, final_num_neighbors=int(k))
    search_seconds = time.perf_counter() - start
    top = np.asarray(neighbours, dtype=np.int64)
    return top, {"build_seconds": round(build_seconds, 2), "search_seconds": round(search_seconds, 2), **settings}


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
        :func:`~yt_bias.evaluation.blocks.blockwise_top_k`).
      settings: ScaNN settings (:func:`scann_settings`; None: its defaults).
    Returns:
      ``{"scann_recall@K", "exact_recall@K", "recall_loss@K" (exact - ScaNN), "neighbour_recall@K",
      "build_seconds", "search_seconds", **settings}``.
    Raises:
      ValueError: mismatched shapes, or a K outside [1, num_items].
    """
    from yt_bias.evaluation.blocks import blockwise_top_k

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
