"""The blockwise corrected softmax against the dense one: values and gradients, every option."""

import numpy as np
import pytest

from yt_bias._keras import keras, tf
from yt_bias.core.blockwise_softmax import blockwise_softmax_loss
from yt_bias.core.losses import corrected_softmax_loss, softmax_loss

B, N, D = 13, 29, 6
RNG = np.random.default_rng(0)
U = RNG.normal(size=(B, D)).astype(np.float32)
V = RNG.normal(size=(N, D)).astype(np.float32)
LOG_Q = np.log(RNG.uniform(0.01, 1.0, size=N)).astype(np.float32)
LOG_Q_2D = np.log(RNG.uniform(0.01, 1.0, size=(B, N))).astype(np.float32)
IDS = RNG.integers(0, 6, size=N).astype(str)  # many duplicates: accidental hits
MASK = RNG.uniform(size=(B, N)) < 0.6
POSITIVES = RNG.integers(0, N, size=B).astype(np.int32)
REWARDS = np.array([0.0, 1.0, 2.0, 0.0, 0.5] + [1.0] * (B - 5), np.float32)

CASES = {
    "plain": dict(),
    "log_q [N]": dict(log_q=LOG_Q),
    "log_q [B, N] + rewards with zeros": dict(log_q=LOG_Q_2D, rewards=REWARDS),
    "accidental hits, uncorrected positive": dict(
        log_q=LOG_Q, candidate_ids=IDS, remove_accidental_hits=True, correct_positive=False
    ),
    "mask + positive_index (N > B)": dict(log_q=LOG_Q_2D, candidate_mask=MASK, positive_index=POSITIVES),
    "everything, per example": dict(
        log_q=LOG_Q_2D,
        rewards=REWARDS,
        positive_index=POSITIVES,
        candidate_ids=IDS,
        remove_accidental_hits=True,
        candidate_mask=MASK,
        correct_positive=False,
        reduce=False,
    ),
}


def _value_and_gradients(loss_fn, kwargs):
    u, v, log_q = tf.constant(U), tf.constant(V), tf.constant(kwargs.get("log_q", LOG_Q))
    kwargs = dict(kwargs)
    if "log_q" in kwargs:
        kwargs["log_q"] = log_q
    with tf.GradientTape() as tape:
        tape.watch([u, v, log_q])
        loss = loss_fn(u, v, 0.2, **kwargs)
        # A non-uniform upstream gradient for the per-example case.
        total = tf.reduce_sum(loss * tf.range(1.0, B + 1.0)) if loss.shape.rank == 1 else loss
    grad_u, grad_v, grad_log_q = tape.gradient(total, [u, v, log_q])
    return loss.numpy(), grad_u.numpy(), grad_v.numpy(), grad_log_q


@pytest.mark.parametrize("block_size", [1, 7, 29, 64])
@pytest.mark.parametrize("case", list(CASES))
def test_blockwise_equals_dense_value_and_gradients(case, block_size):
    kwargs = CASES[case]
    dense = _value_and_gradients(corrected_softmax_loss, kwargs)
    blockwise = _value_and_gradients(lambda *a, **k: blockwise_softmax_loss(*a, block_size=block_size, **k), kwargs)
    for name, expected, received in zip(("loss", "d/du", "d/dv"), dense[:3], blockwise[:3]):
        scale = max(1.0, float(np.max(np.abs(expected))))
        np.testing.assert_allclose(received, expected, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
    assert np.abs(dense[1]).max() > 1e-3  # the gradients compared are not trivially zero
    if "log_q" in kwargs and np.ndim(kwargs["log_q"]) == 1:  # exact for an [N] log_q
        np.testing.assert_allclose(blockwise[3].numpy(), dense[3].numpy(), rtol=1e-5, atol=1e-6)
    elif "log_q" in kwargs:  # [B, N]: not computed, but no crash
        assert blockwise[3] is None


def test_hand_computed_value():
    u = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    v = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    p = np.array([0.5, 0.25], np.float32)
    loss = blockwise_softmax_loss(u, v, 1.0, log_q=np.log(p), reduce=False, block_size=1).numpy()
    np.testing.assert_allclose(loss, [np.log(1.0 + 2.0 / np.e), np.log(1.5)], rtol=1e-6)


def test_inside_tf_function_with_unknown_batch_size():
    spec = tf.TensorSpec([None, D], tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None], tf.float32)])
    def step(u, v, log_q):
        with tf.GradientTape() as tape:
            tape.watch([u, v])
            loss = softmax_loss(u, v, 0.2, log_q=log_q, implementation="auto", block_size=5)
        return loss, tape.gradient(loss, [u, v])

    loss, grads = step(U, V[:B], LOG_Q[:B])
    u, v = tf.constant(U), tf.constant(V[:B])
    with tf.GradientTape() as tape:
        tape.watch([u, v])
        expected = corrected_softmax_loss(u, v, 0.2, log_q=LOG_Q[:B])
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5)
    for received, wanted in zip(grads, tape.gradient(expected, [u, v])):
        np.testing.assert_allclose(received.numpy(), wanted.numpy(), rtol=1e-5, atol=1e-6)


def test_trains_a_keras_variable_like_the_dense_loss():
    start = tf.constant(RNG.normal(size=(B, D)).astype(np.float32))
    results = []
    for fn in (corrected_softmax_loss, lambda *a, **k: blockwise_softmax_loss(*a, block_size=4, **k)):
        u = tf.Variable(start)
        optimizer = keras.optimizers.SGD(0.5)
        for _ in range(5):
            with tf.GradientTape() as tape:
                loss = fn(u, V[:B], 0.5, log_q=LOG_Q[:B])
            optimizer.apply_gradients([(tape.gradient(loss, u), u)])
        results.append((float(loss), u.numpy()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-5)


def test_under_mirrored_strategy():
    devices = tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:1]])
    with strategy.scope():
        u = tf.Variable(U)

    def replica_step():
        with tf.GradientTape() as tape:
            loss = blockwise_softmax_loss(u, V, 0.2, log_q=LOG_Q, block_size=8)
        return loss, tape.gradient(loss, u)

    loss, grad = strategy.run(tf.function(replica_step))
    dense, dense_u, _, _ = _value_and_gradients(corrected_softmax_loss, dict(log_q=LOG_Q))
    np.testing.assert_allclose(strategy.experimental_local_results(loss)[0].numpy(), dense, rtol=1e-5)
    np.testing.assert_allclose(strategy.experimental_local_results(grad)[0].numpy(), dense_u, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block_size", [0, -3, 2.5, True])
def test_bad_block_size(block_size):
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        blockwise_softmax_loss(U, V, log_q=LOG_Q, block_size=block_size)


def test_dispatcher_rejects_unknown_implementation_and_picks_by_size():
    with pytest.raises(ValueError, match="implementation must be one of"):
        softmax_loss(U, V, implementation="sparse")
    for implementation in ("dense", "blockwise", "auto"):
        value = softmax_loss(U, V, 0.2, log_q=LOG_Q, implementation=implementation, block_size=3)
        np.testing.assert_allclose(value.numpy(), corrected_softmax_loss(U, V, 0.2, log_q=LOG_Q).numpy(), rtol=1e-5)


def test_options_after_rewards_are_keyword_only_and_a_misspelt_option_fails():
    from yt_bias.core import blockwise_softmax, losses

    u, v = RNG.normal(size=(3, D)).astype("float32"), RNG.normal(size=(5, D)).astype("float32")
    with pytest.raises(TypeError):  # options after rewards are keyword-only: a shifted positional call fails loudly
        blockwise_softmax.blockwise_softmax_loss(u, v, 0.2, None, None, [0, 1, 2])
    with pytest.raises(TypeError, match="block_sise"):
        losses.softmax_loss(u, v, block_sise=4)
