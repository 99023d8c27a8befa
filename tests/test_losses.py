import math

import numpy as np
import pytest

from yt_bias._keras import tf
from yt_bias.core.blockwise_softmax import blockwise_softmax_loss
from yt_bias.core.losses import corrected_softmax_logits, corrected_softmax_loss, log_probability

U = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
V = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
P = np.array([0.5, 0.25], np.float32)


def test_hand_computed_corrected_loss():
    # logits - log p: row 0 = [1 + log 2, log 4], row 1 = [log 2, log 4]; the positive is the diagonal.
    loss_0 = math.log(1.0 + 2.0 / math.e)  # log(e^(1+log2) + 4) - (1 + log 2)
    loss_1 = math.log(1.5)  # log(2 + 4) - log 4
    loss = corrected_softmax_loss(U, V, temperature=1.0, log_q=log_probability(P), reduce=False)
    np.testing.assert_allclose(loss.numpy(), [loss_0, loss_1], rtol=1e-6)
    mean = corrected_softmax_loss(U, V, temperature=1.0, log_q=log_probability(P))
    np.testing.assert_allclose(mean.numpy(), (loss_0 + loss_1) / 2, rtol=1e-6)


def test_temperature_divides_scores_but_not_the_correction():
    tau = 0.5
    logits, _ = corrected_softmax_logits(U, V, temperature=tau, log_q=log_probability(P))
    expected = U @ V.T / tau - np.log(P)[None, :]
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-6)


def test_uniform_probability_leaves_the_loss_unchanged():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    plain = corrected_softmax_loss(u, v, temperature=0.1)
    uniform = corrected_softmax_loss(u, v, temperature=0.1, log_q=log_probability(np.full(5, 0.3)))
    np.testing.assert_allclose(uniform.numpy(), plain.numpy(), rtol=1e-5)
    skewed = corrected_softmax_loss(u, v, temperature=0.1, log_q=log_probability(np.linspace(0.01, 0.9, 5)))
    assert abs(float(skewed) - float(plain)) > 1e-3


def test_rewards_weight_examples_and_the_batch_mean_divides_by_batch_size():
    per_example = corrected_softmax_loss(U, V, log_q=log_probability(P), reduce=False).numpy()
    weighted = corrected_softmax_loss(U, V, log_q=log_probability(P), rewards=[2.0, 0.0])
    np.testing.assert_allclose(weighted.numpy(), 2.0 * per_example[0] / 2, rtol=1e-6)
    zero = corrected_softmax_loss(U, V, log_q=log_probability(P), rewards=[0.0, 0.0])
    assert float(zero) == 0.0


def test_accidental_hits_are_masked():
    v = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    u = np.eye(3, dtype=np.float32)
    ids = tf.constant(["a", "a", "b"])
    masked = corrected_softmax_loss(u, v, candidate_ids=ids, remove_accidental_hits=True, reduce=False).numpy()
    unmasked = corrected_softmax_loss(u, v, reduce=False).numpy()
    # Row 0's positive is item "a"; column 1 is also "a" and is removed from its softmax.
    np.testing.assert_allclose(masked[0], math.log(math.e + 1.0) - 1.0, rtol=1e-6)
    assert masked[0] < unmasked[0]
    np.testing.assert_allclose(masked[2], unmasked[2], rtol=1e-6)  # "b" has no duplicate


def test_candidate_mask_and_uncorrected_positive():
    mask = np.array([[True, False], [True, True]])
    loss = corrected_softmax_loss(U, V, candidate_mask=mask, reduce=False).numpy()
    assert loss[0] == pytest.approx(0.0, abs=1e-6)  # only the positive remains
    logits, _ = corrected_softmax_logits(U, V, log_q=log_probability(P), correct_positive=False)
    np.testing.assert_allclose(np.diag(logits.numpy()), np.diag(U @ V.T), rtol=1e-6)


def test_extreme_probabilities_stay_finite():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    for p in ([0.0, 1e-30, 1.0, 1.0 + 1e-7], [1.0, 1.0, 1.0, 1.0]):
        loss = corrected_softmax_loss(u, v, temperature=0.01, log_q=log_probability(p))
        assert np.isfinite(loss.numpy())
    with tf.GradientTape() as tape:
        uu = tf.Variable(u)
        loss = corrected_softmax_loss(uu, v, temperature=0.01, log_q=log_probability([0.0, 1.0, 0.5, 1e-30]))
    assert np.all(np.isfinite(tape.gradient(loss, uu).numpy()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(query_embeddings=np.zeros((0, 3)), candidate_embeddings=np.zeros((0, 3))), "empty batch"),
        (dict(query_embeddings=U, candidate_embeddings=np.zeros((2, 4))), "one width; received 3 and 4"),
        (dict(query_embeddings=U[0], candidate_embeddings=V), r"\[batch_size, dim\]"),
        (dict(query_embeddings=U, candidate_embeddings=V, log_q=[0.0, 0.0, 0.0]), "log_q must be"),
        (dict(query_embeddings=U, candidate_embeddings=V, rewards=[1.0]), r"rewards must be \[batch_size\]"),
        (dict(query_embeddings=U, candidate_embeddings=V, rewards=[1.0, float("nan")]), "NaN, inf or negative"),
        (dict(query_embeddings=U, candidate_embeddings=V, rewards=[1.0, -1.0]), "NaN, inf or negative"),
        (dict(query_embeddings=U, candidate_embeddings=V, temperature=0.0), "temperature must be > 0"),
        (dict(query_embeddings=U, candidate_embeddings=V, remove_accidental_hits=True), "needs candidate_ids"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        corrected_softmax_loss(**kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, -1e-30])
def test_bad_rewards_fail_inside_a_graph(bad):
    fn = tf.function(lambda r: corrected_softmax_loss(U, V, rewards=r))
    with pytest.raises(tf.errors.InvalidArgumentError, match="rewards must be finite and >= 0"):
        fn(tf.constant([1.0, bad]))
    assert np.isfinite(float(fn(tf.constant([1.0, 0.0]))))  # zero is a valid reward


def _both_losses():
    return [corrected_softmax_loss, lambda *a, **k: blockwise_softmax_loss(*a, block_size=1, **k)]


@pytest.mark.parametrize("loss_fn", _both_losses(), ids=["dense", "blockwise"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(log_q=[0.0, float("nan")]), "log_q must be finite"),
        (dict(log_q=[0.0, -float("inf")]), "log_q must be finite.*log 0"),
        (dict(log_q=[[0.0, float("inf")], [0.0, 0.0]]), "log_q must be finite"),
        (dict(positive_index=[0, 2]), r"positive_index must be in \[0, num_candidates\) = \[0, 2\); received \[2\]"),
        (dict(positive_index=[-1, 0]), r"positive_index must be in \[0, num_candidates\).*received \[-1\]"),
    ],
)
def test_bad_log_q_and_positive_index_raise_eagerly(loss_fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        loss_fn(U, V, **kwargs)


@pytest.mark.parametrize("loss_fn", _both_losses(), ids=["dense", "blockwise"])
def test_fewer_candidates_than_queries_without_positive_index(loss_fn):
    with pytest.raises(ValueError, match="expected num_candidates >= batch_size; received 1 candidates for 2 queries"):
        loss_fn(U, V[:1])
    # With explicit positives, fewer candidates than queries is fine.
    assert np.isfinite(loss_fn(U, V[:1], positive_index=[0, 0]).numpy())


@pytest.mark.parametrize("loss_fn", _both_losses(), ids=["dense", "blockwise"])
def test_bad_log_q_and_positive_index_fail_inside_a_graph(loss_fn):
    spec = tf.TensorSpec([None, 3], tf.float32)
    with_log_q = tf.function(lambda u, v, lq: loss_fn(u, v, log_q=lq), input_signature=[spec, spec, tf.TensorSpec([None])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="log_q must be finite"):
        with_log_q(U, V, tf.constant([0.0, -float("inf")]))
    with_index = tf.function(lambda p: loss_fn(U, V, positive_index=p), input_signature=[tf.TensorSpec([2], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="positive_index must be < num_candidates"):
        with_index(tf.constant([0, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="positive_index must be >= 0"):
        with_index(tf.constant([-1, 0]))
    assert np.isfinite(with_index(tf.constant([1, 0])).numpy())
    fewer = tf.function(lambda u, v: loss_fn(u, v), input_signature=[spec, spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected num_candidates >= batch_size"):
        fewer(U, V[:1])
