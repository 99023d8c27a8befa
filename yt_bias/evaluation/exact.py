"""Exact retrieval evaluation over the full item corpus.

What is measured, precisely (the search itself is :mod:`yt_bias.retrieval`'s): each held-out positive interaction (test row with reward > 0) is
one query; all items of the corpus are scored exactly (batched matmul, no approximate search),
the items that the query's user already interacted with in training are removed by default, and
Recall@K is the fraction of queries whose held-out item is among the top K. With one positive
per query this is also the hit rate; it is not TFRS's FactorizedTopK (which keeps seen items).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import inner_product_top_k, popularity_top_k

DEFAULT_KS = (10, 50, 100, 300)


EXCLUDE_MODES = ("train", "known", "none")


def exclusion_lists(dataset: RecDataset, query_keys: np.ndarray) -> list[np.ndarray]:
    """For each query, the item indices its key interacted with in training."""
    seen = dataset.seen_items()
    empty = np.zeros(0, np.int64)
    return [seen.get(key, empty) for key in np.asarray(query_keys).astype(str)]


def known_item_lists(dataset: RecDataset, queries: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """For each test query, every item its key interacted with before it, from any period.

    The training items of the key, plus the key's test-period items strictly earlier than the
    query (by ``timestamp`` when the split has one, then by row order). The query's own target is
    never excluded (a re-consumed item stays a possible hit).
    """
    keys = np.asarray(queries[QUERY_KEY]).astype(str)
    targets = np.asarray(queries[ITEM_INDEX])
    test_keys = np.asarray(dataset.test[QUERY_KEY]).astype(str)
    test_items = np.asarray(dataset.test[ITEM_INDEX])
    n_test = len(test_keys)
    test_times = np.asarray(dataset.test["timestamp"], np.float64) if "timestamp" in dataset.test else np.arange(n_test, dtype=np.float64)
    query_times = np.asarray(queries["timestamp"], np.float64) if "timestamp" in queries else None
    if query_times is None:
        raise ValueError("eval.exclude='known' needs a 'timestamp' column in the queries; the split has none.")
    by_key: dict[str, list[int]] = {}
    for row, key in enumerate(test_keys.tolist()):
        by_key.setdefault(key, []).append(row)
    seen = dataset.seen_items()
    empty = np.zeros(0, np.int64)
    out = []
    for key, time, target in zip(keys.tolist(), query_times.tolist(), targets.tolist()):
        rows = by_key.get(key, [])
        earlier = [test_items[r] for r in rows if test_times[r] < time]
        known = np.union1d(seen.get(key, empty), np.asarray(earlier, np.int64))
        out.append(known[known != target])
    return out


def exclusions_for(dataset: RecDataset, queries: Mapping[str, np.ndarray], mode: str = "train") -> list[np.ndarray] | None:
    """The items each query may not retrieve, by ``eval.exclude``.

    ``"train"``: the key's training items; ``"known"``: every item the key interacted with before
    the query, from any period (:func:`known_item_lists`); ``"none"``: nothing (returns None).
    """
    if mode == "none":
        return None
    if mode == "train":
        return exclusion_lists(dataset, queries[QUERY_KEY])
    if mode == "known":
        return known_item_lists(dataset, queries)
    raise ValueError(f"eval.exclude must be one of {list(EXCLUDE_MODES)}; received {mode!r}.")


def check_ks(ks: Sequence[int], num_items: int) -> None:
    """Raises ValueError when a K of ``eval.ks`` is not in [1, num_items] (Recall@K would be meaningless)."""
    bad = [k for k in ks if not 1 <= k <= num_items]
    if bad:
        raise ValueError(f"eval.ks: every K must be in [1, {num_items}] (the corpus size); received {list(ks)}.")


def recall_at_k(top_indices: np.ndarray, targets: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Fraction of queries whose target is in their top K, for each K."""
    targets = np.asarray(targets)
    if len(targets) == 0:
        raise ValueError("recall_at_k: no queries to evaluate (no held-out positives).")
    hits = top_indices == targets[:, None]
    return {f"recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def evaluate_embeddings(
    query_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    targets: np.ndarray,
    exclude: Sequence[np.ndarray] | None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Recall@K of exact inner-product retrieval."""
    return recall_at_k(inner_product_top_k(query_embeddings, item_embeddings, max(ks), exclude), targets, ks)


def evaluate_model(
    model, dataset: RecDataset, ks: Sequence[int] = DEFAULT_KS, exclude_seen: bool = True, exclude: str = "train"
) -> dict[str, float]:
    """Recall@K of a trained two-tower model on the held-out positives of ``dataset``.

    ``exclude`` ("train" | "known") says which items are removed when ``exclude_seen``.
    """
    check_ks(ks, dataset.num_items)
    positives = dataset.test_positives()
    queries = embed(model.query_tower, positives)
    items = embed(model.item_tower, dataset.items)
    excluded = exclusions_for(dataset, positives, exclude if exclude_seen else "none")
    return evaluate_embeddings(queries, items, positives[ITEM_INDEX], excluded, ks)


def evaluate_most_popular(
    dataset: RecDataset,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_seen: bool = True,
    exclude: str = "train",
    bands: np.ndarray | None = None,
) -> dict[str, float]:
    """The most-popular baseline (training counts) on the same protocol as :func:`evaluate_model`.

    Returns Recall@K; with ``bands`` (:func:`popularity_bands`) every metric of :func:`retrieval_metrics`.
    """
    check_ks(ks, dataset.num_items)
    positives = dataset.test_positives()
    excluded = exclusions_for(dataset, positives, exclude if exclude_seen else "none")
    top = popularity_top_k(dataset.item_counts("train"), len(positives[ITEM_INDEX]), max(ks), excluded)
    if bands is None:
        return recall_at_k(top, positives[ITEM_INDEX], ks)
    return retrieval_metrics(top, positives[ITEM_INDEX], dataset.num_items, bands, ks)


# ----------------------------------------------------------------------------- metrics beyond Recall@K
BANDS = ("head", "torso", "tail")


def ndcg_at_k(top_indices: np.ndarray, targets: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """NDCG@K with one relevant item per query: mean of 1 / log2(rank + 1) over hits within K (rank from 1).

    Args:
      top_indices: [num_queries, >= max(ks)] retrieved item indices, best first.
      targets: [num_queries] the held-out item of each query.
    """
    targets = np.asarray(targets)
    if len(targets) == 0:
        raise ValueError("ndcg_at_k: no queries to evaluate (no held-out positives).")
    hits = top_indices == targets[:, None]
    gains = 1.0 / np.log2(np.arange(2, top_indices.shape[1] + 2))
    return {f"ndcg@{k}": float((hits[:, :k] * gains[:k]).sum(axis=1).mean()) for k in ks}


def coverage_at_k(top_indices: np.ndarray, num_items: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Catalogue coverage@K: the share of the corpus that appears in at least one query's top K."""
    if num_items < 1:
        raise ValueError(f"coverage_at_k: num_items must be >= 1; received {num_items}.")
    top_indices = np.asarray(top_indices)
    return {f"coverage@{k}": float(len(np.setdiff1d(np.unique(top_indices[:, :k]), [-1])) / num_items) for k in ks}


def popularity_bands(train_counts: np.ndarray, shares: tuple[float, float] = (1 / 3, 2 / 3)) -> np.ndarray:
    """Band of each item by training frequency: [num_items] str in ('head', 'torso', 'tail').

    Items sorted by training count (most frequent first): the head holds the most popular items that
    together make the first ``shares[0]`` of training interactions, the torso the next ones up to
    ``shares[1]``, the tail the rest (never-trained items included).
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    if not 0 < shares[0] < shares[1] < 1:
        raise ValueError(f"popularity_bands: shares must satisfy 0 < s0 < s1 < 1; received {shares}.")
    order = np.argsort(-counts, kind="stable")
    before = np.r_[0.0, np.cumsum(counts[order])[:-1]] / max(counts.sum(), 1.0)  # share of interactions before it
    band = np.empty(len(counts), dtype=object)
    band[order] = np.where(before < shares[0], "head", np.where(before < shares[1], "torso", "tail"))
    band[counts == 0] = "tail"
    return band.astype(str)


def recall_by_band(
    top_indices: np.ndarray, targets: np.ndarray, bands: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Recall@K of the queries whose held-out item is in each popularity band (NaN for an empty band).

    Returns ``{"recall@K/head": ..., "recall@K/torso": ..., "recall@K/tail": ..., "share/head": ...}``
    where ``share/band`` is the fraction of queries whose target is in that band.
    """
    targets = np.asarray(targets)
    target_band = np.asarray(bands)[targets]
    hits = top_indices == targets[:, None]
    result = {}
    for band in BANDS:
        rows = target_band == band
        result[f"share/{band}"] = float(rows.mean()) if len(rows) else float("nan")
        for k in ks:
            result[f"recall@{k}/{band}"] = float(hits[rows, :k].any(axis=1).mean()) if rows.any() else float("nan")
    return result


def retrieval_metrics(
    top_indices: np.ndarray, targets: np.ndarray, num_items: int, bands: np.ndarray | None = None, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Recall@K, NDCG@K, coverage@K and (with ``bands``) Recall@K per popularity band, in one dict."""
    metrics = recall_at_k(top_indices, targets, ks)
    metrics.update(ndcg_at_k(top_indices, targets, ks))
    metrics.update(coverage_at_k(top_indices, num_items, ks))
    if bands is not None:
        metrics.update(recall_by_band(top_indices, targets, bands, ks))
    return metrics
