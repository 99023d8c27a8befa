"""The ranking stage and two-stage evaluation.

* :mod:`~yt_bias.ranking.recall`: the recall stage's top-N and scores, as the ranking stage reads them.
* :mod:`~yt_bias.ranking.model`: a pCTR model (DCN-v2 cross layer + MLP) trained on impressions or on the
  retriever's own candidates, pointwise or listwise.
* :mod:`~yt_bias.ranking.two_stage`: retrieve top-N with the two-tower model, re-rank with the ranking model
  (optionally blended with the retrieval logit, to a chosen depth); the validation split.

May import: base modules, :mod:`yt_bias.data`, :mod:`yt_bias.core`, :mod:`yt_bias.evaluation`.
"""
