"""Hostile arguments to ``CorrectedRetrieval``: each a ValueError naming the argument, never a silent
non-update, a silent clip or Keras's "Keyword argument not understood"."""

from __future__ import annotations

import pytest

from yt_bias._keras import tf

pytest.importorskip("tensorflow_recommenders")

from yt_bias.integrations.tfrs import CorrectedRetrieval  # noqa: E402

QUERY = tf.constant([[1.0, 0.0], [0.0, 1.0]])
IDS = tf.constant(["a", "b"])


@pytest.mark.parametrize("training", [None, "yes", 2])
def test_training_must_be_a_bool(training):
    task = CorrectedRetrieval()
    with pytest.raises(ValueError, match=f"training must be True or False .*received {training!r}"):
        task(QUERY, QUERY, candidate_ids=IDS, training=training)
    assert int(task.frequency.step.numpy()) == 0
    task(QUERY, QUERY, candidate_ids=IDS, training=True)  # the flag as tfrs.Model.train_step passes it
    task(QUERY, QUERY, candidate_ids=IDS)  # omitted: inference, no update
    assert int(task.frequency.step.numpy()) == 1


def test_negative_or_nan_sampling_probability_is_refused():
    task = CorrectedRetrieval()
    with pytest.raises(ValueError, match=r"candidate_sampling_probability must be finite and >= 0; received -0\.5"):
        task(QUERY, QUERY, candidate_sampling_probability=tf.constant([0.1, -0.5]))
    graph = tf.function(lambda p: task(QUERY, QUERY, candidate_sampling_probability=p))
    with pytest.raises(tf.errors.InvalidArgumentError, match="candidate_sampling_probability must be finite and >= 0"):
        graph(tf.constant([0.1, float("nan")]))


@pytest.mark.parametrize("temperature", [float("inf"), 0.0, -1.0, True])
def test_temperature_must_be_finite_and_positive(temperature):
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        CorrectedRetrieval(temperature=temperature)


def test_an_unknown_estimator_argument_is_named():
    with pytest.raises(ValueError, match=r"frequency: unknown StreamingFrequencyEstimator argument\(s\) \['hash_sise'\]"):
        CorrectedRetrieval(frequency={"hash_sise": 1024})
    assert CorrectedRetrieval(frequency={"hash_size": 1024, "alpha": 0.05}).frequency.alpha == pytest.approx(0.05)
