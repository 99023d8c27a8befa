"""Hostile inputs to the model's parts: the frequency estimators and the losses name what is wrong,
eagerly and inside a graph, instead of a raw TensorFlow error or a silent 0.0 loss."""

from __future__ import annotations

import numpy as np
import pytest

from yt_bias._keras import tf
from yt_bias.core.frequency import OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.losses import corrected_logq_loss, corrected_softmax_loss


def test_a_negative_estimator_step_is_refused_on_update():
    estimator = StreamingFrequencyEstimator(64)
    estimator.update(tf.constant(["a", "b"]))
    estimator.step.assign(-3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="global step must be >= 0"):
        estimator.update(tf.constant(["a", "b"]))


def test_oracle_with_duplicate_ids_names_them():
    with pytest.raises(ValueError, match=r"item_ids must be unique .* e\.g\. \['a'\]"):
        OracleFrequency(["a", "b", "a"], [0.1, 0.2, 0.3])


def test_an_empty_batch_fails_in_a_graph_too():
    loss = tf.function(corrected_softmax_loss, input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4])])
    assert np.isfinite(float(loss(tf.ones([2, 4]), tf.ones([2, 4]))))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        loss(tf.zeros([0, 4]), tf.zeros([3, 4]))
    with pytest.raises(ValueError, match="empty batch"):  # eagerly, as before
        corrected_softmax_loss(tf.zeros([0, 4]), tf.zeros([3, 4]))


def test_logq_loss_positive_index_out_of_range_is_named():
    query, candidates = tf.ones([2, 4]), tf.ones([3, 4])
    log_q = tf.math.log(tf.fill([3], 0.1))
    with pytest.raises(ValueError, match=r"positive_index must be in \[0, num_candidates\) = \[0, 3\); received \[7\]"):
        corrected_logq_loss(query, candidates, log_q=log_q, positive_index=[0, 7])
    assert np.isfinite(float(corrected_logq_loss(query, candidates, log_q=log_q, positive_index=[0, 2])))
