"""Two-stage recommendation: retrieve top-N with a two-tower model, re-rank with the pCTR model.

End-to-end evaluation: each test request's clicked item is the target; the
recall stage scores the whole corpus exactly (seen training items excluded, as in
:mod:`yt_bias.evaluation.exact`) and keeps its top N; the ranking stage scores those N candidates with
the request's user features, the candidate's item features, a fixed serving context (slot 0,
the widest slate) and the recall stage's score of the candidate (a ranker feature), and re-orders
them. Recall@K and NDCG@K are computed on the retrieval order
and on the re-ranked order of the same candidates, so the difference is the ranking stage's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset
from yt_bias.evaluation.exact import exclusion_lists, ndcg_at_k, recall_at_k
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import top_k
from yt_bias.ranking.model import POSITION, RETRIEVAL_SCORE, SLATE_SIZE, RankingModel, predict_ctr, uses_retrieval_score


def retrieve(model, dataset: RecDataset, queries: dict[str, np.ndarray], n: int, exclude_seen: bool = True) -> np.ndarray:
    """Top-``n`` corpus indices per query row by exact inner product: [num_queries, n] int64."""
    if n < 1:
        raise ValueError(f"n (candidates to retrieve) must be >= 1; received {n}.")
    q = embed(model.query_tower, queries)
    v = embed(model.item_tower, dataset.items)
    exclude = exclusion_lists(dataset, queries[QUERY_KEY]) if exclude_seen else None
    return top_k(lambda a, b: q[a:b] @ v.T, len(q), len(v), n, exclude)


def retrieval_logits(model, dataset: RecDataset, queries: dict[str, np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """The recall stage's logits ``<u, v> / tau`` of each candidate: [num_queries, n] float32."""
    return _inner_products(model, dataset, queries, candidates) / float(getattr(model, "temperature", 1.0))


def _inner_products(model, dataset: RecDataset, queries: dict[str, np.ndarray], candidates: np.ndarray) -> np.ndarray:
    q = embed(model.query_tower, queries)
    v = embed(model.item_tower, dataset.items)
    return np.einsum("qd,qnd->qn", q, v[candidates])


def rerank(
    ranker: RankingModel,
    dataset: RecDataset,
    queries: dict[str, np.ndarray],
    candidates: np.ndarray,
    chunk: int = 256,
    blend: float = 0.0,
    retrieval_scores: np.ndarray | None = None,
    retriever=None,
) -> np.ndarray:
    """Candidates re-ordered by predicted CTR, best first: [num_queries, n] int64.

    The ranker scores each candidate with the request's user features, the candidate's item features,
    the serving context (slot 0, the widest slate) and, if it reads it, the recall stage's score
    ``<u, v>`` (computed with ``retriever``).

    Args:
      blend: 0 (default) orders by the pCTR logit alone; > 0 orders by
        ``logit(pCTR) + blend * retrieval_scores`` (a score-level blend with the recall stage's logit).
      retriever: the recall-stage model; required when the ranker reads ``retrieval_score``.
    """
    if blend and retrieval_scores is None:
        raise ValueError(f"blend={blend} needs retrieval_scores [num_queries, n]; received None.")
    if uses_retrieval_score(ranker) and retriever is None:
        raise ValueError(
            f"the ranker reads the feature '{RETRIEVAL_SCORE}'; expected retriever=<the recall-stage model>, received None."
        )
    num_queries, n = candidates.shape
    feature = _inner_products(retriever, dataset, queries, candidates) if uses_retrieval_score(ranker) else None
    width = next(s for s in ranker.specs if s.name == POSITION).vocabulary
    slate_size = np.log(np.float32(len(width)))
    reordered = np.empty_like(candidates)
    for start in range(0, num_queries, chunk):
        stop = min(start + chunk, num_queries)
        rows = np.repeat(np.arange(start, stop), n)
        items = candidates[start:stop].reshape(-1)
        examples = {spec.name: np.asarray(queries[spec.name])[rows] for spec in dataset.features.query}
        examples.update({spec.name: np.asarray(dataset.items[spec.name])[items] for spec in dataset.features.item})
        examples[POSITION] = np.full(len(rows), "0")
        examples[SLATE_SIZE] = np.full((len(rows), 1), slate_size, np.float32)
        if feature is not None:
            examples[RETRIEVAL_SCORE] = feature[start:stop].reshape(-1, 1).astype(np.float32)
        p = np.clip(predict_ctr(ranker, examples).reshape(stop - start, n), 1e-7, 1 - 1e-7)
        scores = np.log(p) - np.log1p(-p)
        if blend:
            scores = scores + blend * retrieval_scores[start:stop]
        order = np.argsort(-scores, axis=1, kind="stable")
        reordered[start:stop] = np.take_along_axis(candidates[start:stop], order, axis=1)
    return reordered


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
    retrieval order ("retrieval/..."), re-ranked by the pCTR model ("two_stage/...") and, with
    ``blend`` > 0, by pCTR logit + ``blend`` * retrieval logit ("two_stage_blend/...").

    Args:
      num_candidates: N, the recall stage's output size (K must be <= N).
      max_queries: evaluate a seeded random subset of the test requests (None: all).
      blend: weight of the retrieval logit in the blended order (0: no blended order).
    """
    if max(ks) > num_candidates:
        raise ValueError(f"ks must be <= num_candidates ({num_candidates}); received {list(ks)}.")
    queries = {name: np.asarray(values) for name, values in dataset.test.items()}
    if max_queries is not None and max_queries < len(queries[ITEM_INDEX]):
        keep = np.sort(np.random.default_rng(seed).choice(len(queries[ITEM_INDEX]), max_queries, replace=False))
        queries = {name: values[keep] for name, values in queries.items()}
    targets = queries[ITEM_INDEX]
    candidates = retrieve(retriever, dataset, queries, num_candidates, exclude_seen)
    orders = [("retrieval", candidates), ("two_stage", rerank(ranker, dataset, queries, candidates, retriever=retriever))]
    if blend:
        logits = retrieval_logits(retriever, dataset, queries, candidates)
        orders.append(
            (
                "two_stage_blend",
                rerank(ranker, dataset, queries, candidates, blend=blend, retrieval_scores=logits, retriever=retriever),
            )
        )
    result = {
        "num_queries": len(targets),
        "num_candidates": num_candidates,
        f"recall@{num_candidates}": recall_at_k(candidates, targets, (num_candidates,))[f"recall@{num_candidates}"],
    }
    result["blend"] = blend
    for name, top in orders:
        for key, value in {**recall_at_k(top, targets, ks), **ndcg_at_k(top, targets, ks)}.items():
            result[f"{name}/{key}"] = value
    return result
