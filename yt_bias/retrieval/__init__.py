"""Retrieval: the one back end that evaluation, serving, the experiments and the report search with.

* :mod:`~yt_bias.retrieval.embedding`: a tower over a corpus (or queries) in batches.
* :mod:`~yt_bias.retrieval.exact`: exact top-K by inner product (or any score), with per-query
  exclusions, and the most-popular ranking.
* :mod:`~yt_bias.retrieval.blocks`: exact top-K over item blocks in bounded memory.
* :mod:`~yt_bias.retrieval.scann`: ScaNN: the one settings resolver, the one install hint, the
  searcher over numpy embeddings.

May import: base modules, :mod:`yt_bias.data`, :mod:`yt_bias.core`.
"""
