"""The model's core: towers, frequency estimators, the corrected softmax loss, negatives, the two-tower model.

* :mod:`~yt_bias.core.towers`: feature-driven query and item towers with shared tables.
* :mod:`~yt_bias.core.frequency`: the streaming step-interval frequency estimator (its one protocol,
  shared with the oracle, and its own cross-replica update); :mod:`~yt_bias.core.frequency_baselines`:
  count-based sources compared with it.
* :mod:`~yt_bias.core.losses` (dense) and :mod:`~yt_bias.core.blockwise_softmax` (memory-linear):
  the one corrected softmax loss; :mod:`~yt_bias.core.loss_inputs`: the checks both share.
* :mod:`~yt_bias.core.candidates`: :class:`~yt_bias.core.candidates.CandidateBlock`, the typed block
  of candidates (embeddings, IDs, masks, expected counts) that every sampler returns, and the one
  rule that turns stacked blocks into log q.
* :mod:`~yt_bias.core.samplers` and :mod:`~yt_bias.core.cross_batch`: one sampler per source of
  candidates (in-batch, uniform / mixed, impressions, mined hard negatives, cross-batch memory);
  each receives the item tower and the frequency source, never the model.
* :mod:`~yt_bias.core.negatives`: a strategy, the ordered set of samplers a config asks for.
* :mod:`~yt_bias.core.model`: :class:`~yt_bias.core.model.TwoTowerModel`, its train step.

May import: the base modules (``config``, ``features``, ``_keras``) and :mod:`yt_bias.data`.
"""
