"""Integrations with other libraries.

* :mod:`~yt_bias.integrations.tfrs`: ``CorrectedRetrieval``, the estimator and correction as a
  drop-in for TensorFlow Recommenders' Retrieval task.
* :mod:`~yt_bias.integrations.tfrs_retrieval`: a plain TFRS Retrieval model used as a baseline.

May import: everything below it.
"""
