"""Next-day evaluation of day-by-day training: after day d, rank day d + 1's interactions.

The paper evaluates sequential training on held-out data of the days that follow. Here each
positive row (reward > 0) of the next day is one query (its query features as logged that day);
every candidate item is scored exactly by the two towers; with ``exclude_seen`` the items the
query's key interacted with on the days trained so far are removed from its ranking, and rows
whose target is one of those items are dropped (they could never be retrieved) and counted in
``next_day_dropped``. Recall@K and NDCG@K over the remaining rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD
from yt_bias.evaluation.exact import ndcg_at_k, recall_at_k
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import top_k

__all__ = ["SeenItems", "evaluate_next_day", "next_day_metrics"]


class SeenItems:
    """The items each query key has interacted with on the days trained so far."""

    def __init__(self) -> None:
        self._seen: dict[str, set[int]] = {}

    def add(self, rows: Mapping[str, np.ndarray]) -> None:
        """Records a day's rows (their ``query_key`` and ``item_index`` columns).

        Raises:
          ValueError: the rows have no ``query_key`` column.
        """
        if QUERY_KEY not in rows:
            raise ValueError(f"rows need a '{QUERY_KEY}' column to track seen items; present: {sorted(rows)}.")
        for key, item in zip(np.asarray(rows[QUERY_KEY]).astype(str).tolist(), np.asarray(rows[ITEM_INDEX]).tolist()):
            self._seen.setdefault(key, set()).add(int(item))

    def items(self, key: str) -> np.ndarray:
        """The sorted item indices ``key`` has seen: [k] int64."""
        return np.array(sorted(self._seen.get(key, ())), np.int64)

    def contains(self, keys: Sequence[str], items: Sequence[int]) -> np.ndarray:
        """Whether each (key, item) pair was seen: [n] bool."""
        return np.array([int(j) in self._seen.get(k, ()) for k, j in zip(np.asarray(keys).astype(str), items)], bool)


def evaluate_next_day(
    model,
    rows: Mapping[str, np.ndarray],
    items: Mapping[str, np.ndarray],
    ks: Sequence[int],
    seen: SeenItems | None = None,
    candidates: np.ndarray | None = None,
) -> dict[str, float]:
    """Recall@K and NDCG@K of ``model`` on the positive rows of the next day.

    Args:
      model: a trained two-tower model (``query_tower``, ``item_tower``).
      rows: the next day's rows (query features, ``item_index``, ``reward``; ``query_key`` with ``seen``).
      items: the item table (item features, row j = item j).
      ks: the cut-offs K.
      seen: the items of the days trained so far per query key, excluded (None: exclude nothing).
      candidates: [num_items] bool, the items that can be retrieved (e.g. those alive that day);
        None: all. Rows whose target is not a candidate are dropped.
    Returns:
      ``{"next_day_recall@K", "next_day_ndcg@K", "next_day_queries", "next_day_dropped"}``.
    Raises:
      ValueError: no positive row is left to evaluate.
    """
    keep = np.asarray(rows[REWARD]) > 0
    targets = np.asarray(rows[ITEM_INDEX])
    num_items = len(next(iter(items.values())))
    allowed = np.ones(num_items, bool) if candidates is None else np.asarray(candidates, bool)
    if allowed.shape != (num_items,):
        raise ValueError(f"candidates must be [num_items={num_items}] booleans; received shape {allowed.shape}.")
    keep &= allowed[targets]
    if seen is not None:
        keep &= ~seen.contains(rows[QUERY_KEY], targets)
    dropped = int((np.asarray(rows[REWARD]) > 0).sum() - keep.sum())
    if not keep.any():
        raise ValueError("evaluate_next_day: no positive row of the next day is left to evaluate.")
    queries = embed(model.query_tower, {name: np.asarray(v)[keep] for name, v in rows.items()})
    pool = np.flatnonzero(allowed)
    position = np.full(num_items, -1, np.int64)
    position[pool] = np.arange(len(pool))
    item_embeddings = embed(model.item_tower, {name: np.asarray(v)[pool] for name, v in items.items()})
    exclude = None
    if seen is not None:
        keys = np.asarray(rows[QUERY_KEY]).astype(str)[keep]
        exclude = []
        for key in keys.tolist():
            mapped = position[seen.items(key)]
            exclude.append(mapped[mapped >= 0])
    scores_t = item_embeddings.T

    def scores(start: int, stop: int) -> np.ndarray:
        return queries[start:stop] @ scores_t

    top = top_k(scores, len(queries), len(pool), max(ks), exclude)
    mapped_targets = position[targets[keep]]
    metrics = {f"next_day_{name}": value for name, value in recall_at_k(top, mapped_targets, ks).items()}
    metrics.update({f"next_day_{name}": value for name, value in ndcg_at_k(top, mapped_targets, ks).items()})
    metrics.update(next_day_queries=int(keep.sum()), next_day_dropped=dropped)
    return metrics


def next_day_metrics(
    model, days: Sequence[Mapping[str, np.ndarray]], d: int, items: Mapping[str, np.ndarray], ks: Sequence[int],
    exclude_seen: bool = True, candidates: np.ndarray | None = None,
) -> dict[str, float]:
    """:func:`evaluate_next_day` of a model trained on ``days[: d + 1]``, on ``days[d + 1]``.

    Seen items are those of ``days[: d + 1]``; they are excluded only if every one of those days
    and the next has a ``query_key`` column (``next_day_exclude_seen`` says whether they were).
    ``candidates``: [num_items] bool, the items retrievable on day d + 1 (None: all).

    Returns:
      The metrics; ``{}`` after the last day; ``{"next_day_queries": 0, ...}`` if no row is left.
    """
    if d + 1 >= len(days):
        return {}
    rows = days[d + 1]
    seen = None
    if exclude_seen and all(QUERY_KEY in day for day in days[: d + 2]):
        seen = SeenItems()
        for day in days[: d + 1]:
            seen.add(day)
    flag = {"next_day_exclude_seen": seen is not None}
    positives = np.asarray(rows[REWARD]) > 0
    if seen is not None:
        positives &= ~seen.contains(rows[QUERY_KEY], np.asarray(rows[ITEM_INDEX]))
    if candidates is not None:
        positives &= np.asarray(candidates, bool)[np.asarray(rows[ITEM_INDEX])]
    if not positives.any():
        return dict(flag, next_day_queries=0, next_day_dropped=int((np.asarray(rows[REWARD]) > 0).sum()))
    return dict(flag, **evaluate_next_day(model, rows, items, ks, seen=seen, candidates=candidates))
