"""ScaNN (an optional dependency): the one settings resolver, the one install hint, the searcher over numpy arrays.

A ScaNN searcher partitions the items with a k-means tree (``num_leaves`` leaves, about sqrt(N)),
searches ``num_leaves_to_search`` of them per query (a tenth by default), scores candidates with
anisotropic quantization and re-scores the best ``reorder`` exactly. :func:`scann_settings`
resolves the automatic (0) values for a corpus; :func:`configure_builder` applies them to a
ScaNN builder, the numpy one (:func:`scann_top_k`, approximate evaluation) or the TensorFlow-ops
one (the serving index), so both search with the same settings.
"""

from __future__ import annotations

import math
import time

import numpy as np

SCANN_HINT = "pip install scann==1.4.2 (it needs tensorflow 2.20.*; wheels exist for Linux x86-64 and aarch64 only)"
# The settings scann_settings resolves (its keyword arguments and the keys of what it returns).
SETTING_NAMES = (
    "num_leaves", "num_leaves_to_search", "reorder", "training_sample_size", "dimensions_per_block",
    "anisotropic_quantization_threshold",
)


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
      num_items: corpus size (>= 1).
      num_leaves: k-means leaves (0: round(sqrt(num_items)), at least 2), at most num_items.
      num_leaves_to_search: leaves searched per query (0: a tenth of the leaves, at least 1).
      reorder: candidates re-scored exactly (0: none), at most num_items.
      training_sample_size: items the tree and quantizer are trained on (at most num_items).
      dimensions_per_block: dimensions per anisotropic-quantization block.
      anisotropic_quantization_threshold: ScaNN's threshold (the inner products that matter).
    Returns:
      ``{"num_leaves", "num_leaves_to_search", "reorder", "training_sample_size",
      "dimensions_per_block", "anisotropic_quantization_threshold"}``.
    Raises:
      ValueError: a size below its minimum, or more leaves searched than there are.
    """
    for name, value, low in (
        ("num_items", num_items, 1),
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


def configure_builder(builder, settings: dict, min_reorder: int = 0):
    """A ScaNN builder (numpy or TensorFlow ops) set to a k-means tree, anisotropic hashing and reordering.

    Args:
      builder: ``scann_ops_pybind.builder(...)`` or ``scann_ops.builder(...)``.
      settings: :func:`scann_settings`.
      min_reorder: the reordering pool's floor when reordering (ScaNN returns at most the pool).
    """
    builder = builder.tree(
        num_leaves=settings["num_leaves"],
        num_leaves_to_search=settings["num_leaves_to_search"],
        training_sample_size=settings["training_sample_size"],
    ).score_ah(settings["dimensions_per_block"], anisotropic_quantization_threshold=settings["anisotropic_quantization_threshold"])
    if settings["reorder"]:
        builder = builder.reorder(max(settings["reorder"], int(min_reorder)))
    return builder


def import_scann():
    """ScaNN's numpy interface (``scann.scann_ops_pybind``), or an ImportError saying what to install."""
    try:
        from scann import scann_ops_pybind  # noqa: PLC0415 (optional, heavy)
    except ImportError as error:
        raise ImportError(f"This needs ScaNN, which failed to import ({error}). Install it: {SCANN_HINT}.") from None
    return scann_ops_pybind


def import_scann_ops():
    """Imports ScaNN's TensorFlow ops (registers the ``Scann>*`` op types) or says what to install.

    Raises:
      ImportError: ScaNN is not installed or its ops do not load against this TensorFlow.
    """
    try:
        from scann.scann_ops.py import scann_ops  # noqa: PLC0415 (optional, heavy)
    except Exception as error:  # a missing package, or ops built for another TensorFlow
        raise ImportError(
            f"This needs ScaNN's TensorFlow ops, which failed to import ({error}). Install them: {SCANN_HINT}."
        ) from error
    return scann_ops


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
    scann_ops_pybind = import_scann()
    start = time.perf_counter()
    searcher = configure_builder(scann_ops_pybind.builder(items, int(k), "dot_product"), settings, int(k)).build()
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    neighbours, _ = searcher.search_batched(queries, final_num_neighbors=int(k))
    search_seconds = time.perf_counter() - start
    top = np.asarray(neighbours, dtype=np.int64)
    return top, {"build_seconds": round(build_seconds, 2), "search_seconds": round(search_seconds, 2), **settings}
