"""The ranking stage and two-stage evaluation.

* :mod:`~yt_bias.ranking.model`: a pCTR model (DCN-v2 cross layer + MLP) trained on impressions.
* :mod:`~yt_bias.ranking.two_stage`: retrieve top-N with the two-tower model, re-rank with the pCTR model.

May import: base modules, :mod:`yt_bias.data`, :mod:`yt_bias.core`, :mod:`yt_bias.evaluation`.
"""
