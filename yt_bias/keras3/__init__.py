"""The Keras 3 path (any backend: TensorFlow, JAX; PyTorch untested): estimator, corrected loss, retrieval task.

Select the backend before the first ``import keras`` (``KERAS_BACKEND=jax``). Importing this
package imports Keras 3 and no tf-keras module; on the JAX backend it imports no TensorFlow.
See docs/keras3.md.
"""

from __future__ import annotations

from yt_bias.keras3.frequency import StreamingFrequencyEstimator
from yt_bias.keras3.losses import softmax_loss
from yt_bias.keras3.oracle import OracleFrequency
from yt_bias.keras3.retrieval import CorrectedRetrieval

__all__ = ["CorrectedRetrieval", "OracleFrequency", "StreamingFrequencyEstimator", "softmax_loss"]
