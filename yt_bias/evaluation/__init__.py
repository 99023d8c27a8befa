"""Offline evaluation: exact Recall@K / NDCG@K over the whole corpus, in blocks when it is large, next-day metrics.

* :mod:`~yt_bias.evaluation.exact`: the protocol (held-out positives, seen-item exclusion), metrics, popularity bands.
* :mod:`~yt_bias.evaluation.approximate`: Recall@K through ScaNN next to the exact one.
* :mod:`~yt_bias.evaluation.next_day`: train on days up to d, evaluate on day d + 1.

The search itself (embedding, exact and ScaNN top-K) is :mod:`yt_bias.retrieval`'s.

May import: base modules, :mod:`yt_bias.data`, :mod:`yt_bias.core`, :mod:`yt_bias.retrieval`, :mod:`yt_bias.runs`.
"""
