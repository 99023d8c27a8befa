"""Offline evaluation: exact Recall@K / NDCG@K over the whole corpus, in blocks when it is large, next-day metrics.

* :mod:`~yt_bias.evaluation.exact`: the protocol (held-out positives, seen-item exclusion), metrics, popularity bands.
* :mod:`~yt_bias.evaluation.blocks`: exact top-K over item blocks in bounded memory.
* :mod:`~yt_bias.evaluation.next_day`: train on days up to d, evaluate on day d + 1.

May import: base modules, :mod:`yt_bias.data`, :mod:`yt_bias.core`.
"""
