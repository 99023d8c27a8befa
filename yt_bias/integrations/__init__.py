"""Integrations with other libraries.

* :mod:`~yt_bias.integrations.tfrs`: ``CorrectedRetrieval``, the estimator and correction as a
  drop-in for TensorFlow Recommenders' Retrieval task.
* :mod:`~yt_bias.integrations.tfrs_retrieval`: a plain TFRS Retrieval model used as a baseline.

May import: everything below it.
"""

from yt_bias import _keras  # noqa: F401  (Keras 2 before the modules below import TFRS and TensorFlow)
