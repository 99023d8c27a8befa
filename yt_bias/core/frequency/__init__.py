"""Frequency sources for the logQ correction: the streaming estimator (section 4 of the paper) and the oracle.

* :mod:`~yt_bias.core.frequency.source`: the estimands, the :class:`FrequencySource` protocol
  (``estimand``, ``update(ids)``, ``probability(ids)``), ID handling, the TV error of section 6.1.
* :mod:`~yt_bias.core.frequency.streaming`: :class:`StreamingFrequencyEstimator` (Algorithms 2
  and 3, both estimands, sharded state for parameter servers, optional bias correction).
* :mod:`~yt_bias.core.frequency.replicas`: its one-update-per-global-step under tf.distribute.
* :mod:`~yt_bias.core.frequency.oracle`: :class:`OracleFrequency`, exact probabilities from a table.
"""

from yt_bias.core.frequency.oracle import OracleFrequency
from yt_bias.core.frequency.replicas import update_once_per_global_step
from yt_bias.core.frequency.source import ESTIMANDS, FrequencySource, check_estimand, total_variation_error
from yt_bias.core.frequency.streaming import MAX_SEED, MAX_STEP, StreamingFrequencyEstimator, estimator_from_settings

__all__ = [
    "ESTIMANDS",
    "MAX_SEED",
    "MAX_STEP",
    "FrequencySource",
    "OracleFrequency",
    "StreamingFrequencyEstimator",
    "check_estimand",
    "estimator_from_settings",
    "total_variation_error",
    "update_once_per_global_step",
]
