"""The model's core: towers, frequency estimators, the corrected softmax loss, negatives, the two-tower model.

* :mod:`~yt_bias.core.towers`: feature-driven query and item towers with shared tables.
* :mod:`~yt_bias.core.frequency`: the streaming step-interval frequency estimator (its one protocol,
  shared with the oracle, and its own cross-replica update); :mod:`~yt_bias.core.frequency_baselines`:
  count-based sources compared with it.
* :mod:`~yt_bias.core.losses` (dense) and :mod:`~yt_bias.core.blockwise_softmax` (memory-linear):
  the one corrected softmax loss; :mod:`~yt_bias.core.loss_inputs`: the checks both share.
* :mod:`~yt_bias.core.negatives`: samplers that return typed blocks of extra candidates.
* :mod:`~yt_bias.core.model`: :class:`~yt_bias.core.model.TwoTowerModel`, its train step.

May import: the base modules (``config``, ``features``, ``_keras``) and :mod:`yt_bias.data`.
"""
