"""Two-stage recommendation: retrieve top-N with a two-tower model, re-rank with the ranking model.

End-to-end evaluation: each request's clicked item is the target; the recall stage scores the whole
corpus exactly (the user's training items excluded, as in :mod:`yt_bias.evaluation.exact`) and keeps
its top N; the ranking stage scores the first ``depth`` of them with the request's user features,
the candidate's item features, a fixed serving context (slot 0, the widest slate) and, if it reads
it, the recall stage's score of the candidate, and re-orders them by

    ranker logit + blend * retrieval logit        (blend >= 0; retrieval logit = <u, v> / tau)

keeping the retrieval order below ``depth``. Recall@K and NDCG@K are computed on the retrieval order
and on the re-ranked order of the same candidates, so the difference is the ranking stage's.
:func:`validation_split` holds out the last requests of each user's training period, on which the
blend weight, the depth and the ranker variant are chosen (never on the test clicks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset
from yt_bias.evaluation.exact import ndcg_at_k, recall_at_k
from yt_bias.ranking.model import POSITION, RETRIEVAL_SCORE, SLATE_SIZE, RankingModel, predict_ctr, uses_retrieval_score
from yt_bias.ranking.recall import inner_products, retrieval_logits, retrieve

__all__ = [
    "evaluate_two_stage",
    "order_metrics",
    "ranker_logits",
    "rerank",
    "retrieval_logits",
    "retrieve",
    "sample_queries",
    "two_stage_order",
    "validation_split",
]


def validation_split(dataset: RecDataset, per_user: int = 2) -> RecDataset:
    """The training period split in two: ``train`` = each user's training requests but the last
    ``per_user`` (by ``timestamp``, then row order), ``test`` = those last requests (the validation
    requests, with their slates and clicks). The test split of ``dataset`` is not used.

    Raises:
      ValueError: ``per_user`` < 1, or no user keeps a training request.
    """
    if isinstance(per_user, bool) or not isinstance(per_user, int) or per_user < 1:
        raise ValueError(f"per_user (validation requests per user) must be an integer >= 1; received {per_user!r}.")
    train = {name: np.asarray(values) for name, values in dataset.train.items()}
    keys = train[QUERY_KEY].astype(str)
    times = np.asarray(train["timestamp"], np.float64) if "timestamp" in train else np.zeros(len(keys))
    order = np.lexsort((np.arange(len(keys)), times, keys))  # by key, then time, then row
    sorted_keys = keys[order]
    first = np.searchsorted(sorted_keys, sorted_keys, side="left")
    last = np.searchsorted(sorted_keys, sorted_keys, side="right")
    held = np.zeros(len(keys), bool)
    held[order] = (last - np.arange(len(keys))) <= per_user
    held[order[(last - first) <= per_user]] = False  # a user with too few requests keeps them all for training
    if held.all() or not held.any():
        raise ValueError(f"validation_split: per_user={per_user} leaves {int((~held).sum())} training and {int(held.sum())} validation requests.")
    fit = {name: values[~held] for name, values in train.items()}
    validation = {name: values[held] for name, values in train.items()}
    return RecDataset(dataset.name + "/validation", dataset.features, dataset.items, fit, validation, dataset.truth)


def ranker_logits(
    ranker: RankingModel,
    dataset: RecDataset,
    queries: Mapping[str, np.ndarray],
    candidates: np.ndarray,
    retriever=None,
    chunk: int = 256,
) -> np.ndarray:
    """The ranker's logit of each candidate at the serving context (slot 0, the widest slate):
    [num_queries, n] float64.

    Raises:
      ValueError: the ranker reads the recall stage's score and ``retriever`` is None.
    """
    if uses_retrieval_score(ranker) and retriever is None:
        raise ValueError(
            f"the ranker reads the feature '{RETRIEVAL_SCORE}'; expected retriever=<the recall-stage model>, received None."
        )
    num_queries, n = candidates.shape
    feature = inner_products(retriever, dataset, queries, candidates) if uses_retrieval_score(ranker) else None
    width = next(s for s in ranker.specs if s.name == POSITION).vocabulary
    slate_size = np.log(np.float32(len(width)))
    logits = np.empty((num_queries, n))
    for start in range(0, num_queries, chunk):
        stop = min(start + chunk, num_queries)
        rows = np.repeat(np.arange(start, stop), n)
        items = candidates[start:stop].reshape(-1)
        examples = {spec.name: np.asarray(queries[spec.name])[rows] for spec in dataset.features.query}
        examples.update({spec.name: np.asarray(dataset.items[spec.name])[items] for spec in dataset.features.item})
        examples[POSITION] = np.full(len(rows), "0")
        examples[SLATE_SIZE] = np.full((len(rows), 1), slate_size, np.float32)
        if feature is not None:
            examples[RETRIEVAL_SCORE] = feature[start:stop].reshape(-1, 1)
        p = np.clip(predict_ctr(ranker, examples).reshape(stop - start, n), 1e-7, 1 - 1e-7)
        logits[start:stop] = np.log(p) - np.log1p(-p)
    return logits


def two_stage_order(
    candidates: np.ndarray,
    ranker_scores: np.ndarray,
    retrieval_scores: np.ndarray | None = None,
    blend: float = 0.0,
    depth: int | None = None,
) -> np.ndarray:
    """The first ``depth`` candidates re-ordered by ``ranker_scores + blend * retrieval_scores``, best
    first, followed by the rest in retrieval order: [num_queries, n].

    Args:
      candidates: [num_queries, n] in retrieval order; ranker_scores, retrieval_scores: [num_queries, >= depth].
      depth: how many of the retrieval order the ranker re-orders (None: all n).
    """
    depth = candidates.shape[1] if depth is None else depth
    if not 1 <= depth <= candidates.shape[1]:
        raise ValueError(f"depth must be in [1, {candidates.shape[1]}] (the candidates retrieved); received {depth}.")
    if blend < 0:
        raise ValueError(f"blend must be >= 0; received {blend}.")
    if blend and retrieval_scores is None:
        raise ValueError(f"blend={blend} needs retrieval_scores [num_queries, n]; received None.")
    scores = np.asarray(ranker_scores)[:, :depth]
    if blend:
        scores = scores + blend * np.asarray(retrieval_scores)[:, :depth]
    order = np.argsort(-scores, axis=1, kind="stable")
    head = np.take_along_axis(candidates[:, :depth], order, axis=1)
    return np.concatenate([head, candidates[:, depth:]], axis=1)


def rerank(
    ranker: RankingModel,
    dataset: RecDataset,
    queries: Mapping[str, np.ndarray],
    candidates: np.ndarray,
    chunk: int = 256,
    blend: float = 0.0,
    retrieval_scores: np.ndarray | None = None,
    retriever=None,
) -> np.ndarray:
    """Candidates re-ordered by the ranker's logit (plus ``blend`` * ``retrieval_scores``), best first:
    [num_queries, n] int64 (see :func:`ranker_logits` and :func:`two_stage_order`)."""
    if blend and retrieval_scores is None:
        raise ValueError(f"blend={blend} needs retrieval_scores [num_queries, n]; received None.")
    logits = ranker_logits(ranker, dataset, queries, candidates, retriever, chunk)
    return two_stage_order(candidates, logits, retrieval_scores, blend)


def order_metrics(top: np.ndarray, targets: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Recall@K and NDCG@K of one ordered list per query."""
    return {**recall_at_k(top, targets, ks), **ndcg_at_k(top, targets, ks)}


def sample_queries(data: Mapping[str, np.ndarray], max_queries: int | None, seed: int) -> dict[str, np.ndarray]:
    """The split's rows as arrays, a seeded random subset of ``max_queries`` of them (None: all)."""
    queries = {name: np.asarray(values) for name, values in data.items()}
    if max_queries is not None and max_queries < len(queries[ITEM_INDEX]):
        keep = np.sort(np.random.default_rng(seed).choice(len(queries[ITEM_INDEX]), max_queries, replace=False))
        queries = {name: values[keep] for name, values in queries.items()}
    return queries


def evaluate_two_stage(
    retriever,
    ranker: RankingModel,
    dataset: RecDataset,
    num_candidates: int = 100,
    ks: Sequence[int] = (10, 50),
    exclude_seen: bool = True,
    max_queries: int | None = None,
    seed: int = 0,
    blend: float = 0.0,
) -> dict[str, float]:
    """Recall@K and NDCG@K of the test clicks, on the same queries and the same top-N candidates:
    retrieval order ("retrieval/..."), re-ranked by the ranker ("two_stage/...") and, with
    ``blend`` > 0, by ranker logit + ``blend`` * retrieval logit ("two_stage_blend/...").

    Args:
      num_candidates: N, the recall stage's output size (K must be <= N).
      max_queries: evaluate a seeded random subset of the test requests (None: all).
      blend: weight of the retrieval logit in the blended order (0: no blended order).
    """
    if max(ks) > num_candidates:
        raise ValueError(f"ks must be <= num_candidates ({num_candidates}); received {list(ks)}.")
    queries = sample_queries(dataset.test, max_queries, seed)
    targets = queries[ITEM_INDEX]
    candidates = retrieve(retriever, dataset, queries, num_candidates, exclude_seen)
    logits = ranker_logits(ranker, dataset, queries, candidates, retriever)
    orders = [("retrieval", candidates), ("two_stage", two_stage_order(candidates, logits))]
    if blend:
        recall = retrieval_logits(retriever, dataset, queries, candidates)
        orders.append(("two_stage_blend", two_stage_order(candidates, logits, recall, blend)))
    result = {
        "num_queries": len(targets),
        "num_candidates": num_candidates,
        f"recall@{num_candidates}": recall_at_k(candidates, targets, (num_candidates,))[f"recall@{num_candidates}"],
        "blend": blend,
    }
    for name, top in orders:
        for key, value in order_metrics(top, targets, ks).items():
            result[f"{name}/{key}"] = value
    return result
