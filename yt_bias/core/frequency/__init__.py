"""Frequency sources for the logQ correction: the contract, the streaming estimator (section 4 of the paper) and the oracle.

* :mod:`~yt_bias.core.frequency.source`: :class:`FrequencySource`, the base every source
  subclasses (estimand, update-then-read, the clipped ``log q``, the day hooks), ID handling and
  the TV error of section 6.1.
* :mod:`~yt_bias.core.frequency.streaming`: :class:`StreamingFrequencyEstimator` (Algorithms 2
  and 3, both estimands, sharded state for parameter servers, optional bias correction, one
  update per global step under tf.distribute).
* :mod:`~yt_bias.core.frequency.oracle`: :class:`OracleFrequency`, exact probabilities from a table.
"""

from yt_bias.core.frequency.oracle import OracleFrequency
from yt_bias.core.frequency.source import (
    DEFAULT_ESTIMAND,
    ESTIMANDS,
    FrequencySource,
    check_estimand,
    log_p,
    total_variation_error,
)
from yt_bias.core.frequency.streaming import (
    MAX_SEED,
    MAX_STEP,
    StreamingFrequencyEstimator,
    estimator_from_settings,
    update_once_per_global_step,
)

__all__ = [
    "DEFAULT_ESTIMAND",
    "ESTIMANDS",
    "MAX_SEED",
    "MAX_STEP",
    "FrequencySource",
    "OracleFrequency",
    "StreamingFrequencyEstimator",
    "check_estimand",
    "estimator_from_settings",
    "log_p",
    "total_variation_error",
    "update_once_per_global_step",
]
