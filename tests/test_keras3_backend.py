"""yt_bias.keras3 on the Keras 3 backend of this process, checked against numpy and the tf-keras path.

The plain test run executes this module in its own process on Keras 3's TensorFlow backend (Keras
3 and the tf-keras parts side by side, as the tf-keras tests have already loaded them);
tests/test_keras3.py runs it again in a fresh process with ``KERAS_BACKEND=jax`` (and ``torch`` where
PyTorch is installed).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402

from yt_bias.keras3 import CorrectedRetrieval, OracleFrequency, StreamingFrequencyEstimator, softmax_loss  # noqa: E402
from yt_bias.keras3.frequency import sharing_counts  # noqa: E402
from yt_bias.keras3.hashing import hash_keys  # noqa: E402
from yt_bias.keras3.source import CallableFrequency, FrequencySource  # noqa: E402

BACKEND = keras.backend.backend()
MASK32 = (1 << 32) - 1


# ---------------------------------------------------------------- independent numpy references
def numpy_buckets(ids, keys, hash_size):
    """MurmurHash3's fmix32 of (id XOR key) in uint32 arithmetic, low 31 bits mod H: [m, n]."""
    x = np.asarray(ids).astype(np.int64).astype(np.uint32)
    rows = []
    for key in keys:
        h = x ^ np.uint32(key & MASK32)
        h ^= h >> np.uint32(16)
        h = (h.astype(np.uint64) * 0x85EBCA6B & MASK32).astype(np.uint32)
        h ^= h >> np.uint32(13)
        h = (h.astype(np.uint64) * 0xC2B2AE35 & MASK32).astype(np.uint32)
        h ^= h >> np.uint32(16)
        rows.append((h & np.uint32(0x7FFFFFFF)).astype(np.int64) % hash_size)
    return np.stack(rows)


class NumpyEstimator:
    """Algorithms 2 and 3 of the paper, bucket by bucket in a Python loop (float32, as the layers)."""

    def __init__(self, hash_size, num_hashes, alpha, initial_interval, estimand, bias_correction):
        self.alpha, self.b0, self.estimand, self.bias_correction = np.float32(alpha), np.float32(initial_interval), estimand, bias_correction
        self.A = np.zeros((num_hashes, hash_size), np.int64)
        self.B = np.full((num_hashes, hash_size), self.b0, np.float32)
        self.hits = np.zeros((num_hashes, hash_size), np.int64)
        self.step = 0

    def update(self, buckets):
        self.step += 1
        keep = np.float32(1.0) - self.alpha
        for i, row in enumerate(buckets):
            for b, c in zip(*np.unique(row, return_counts=True)):
                gap = np.float32(self.step - self.A[i, b])
                old = self.B[i, b]
                if self.estimand == "expected_count":  # c moving-average steps of gap / c
                    decay = keep ** np.float32(c)
                    new, inc = decay * old + (np.float32(1) - decay) * gap / np.float32(c), c
                else:  # one update per step however many rows hit the bucket
                    new, inc = keep * old + self.alpha * gap, 1
                if self.bias_correction:
                    if self.A[i, b] == 0:
                        new, inc = old, 0
                    self.hits[i, b] += inc
                self.B[i, b], self.A[i, b] = new, self.step
        return self.read(buckets)

    def read(self, buckets):
        intervals = np.stack([self.B[i, row] for i, row in enumerate(buckets)])
        if self.bias_correction:
            n = np.stack([self.hits[i, row] for i, row in enumerate(buckets)])
            # 1 - (1 - alpha)^n rounded once to float32 (numpy's float32 expm1 is less accurate than the backends').
            weight = (-np.expm1(np.maximum(n, 1) * math.log1p(-float(self.alpha)))).astype(np.float32)
            intervals = np.where(n > 0, (intervals - (1 - weight) * self.b0) / weight, intervals)
        floor = 1.0 if self.estimand == "inclusion" else 1e-6
        return (1.0 / np.maximum(intervals.max(axis=0), floor)).astype(np.float32)


def stream(num_steps=25, batch=16, vocabulary=40, seed=0):
    """Zipf-like integer IDs: many repeats within a batch."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocabulary + 1)
    return [rng.choice(vocabulary, size=batch, p=weights / weights.sum()).astype(np.int32) * 7919 - 5000 for _ in range(num_steps)]


# ---------------------------------------------------------------- the estimator
def test_buckets_match_the_numpy_hash():
    ids = np.array([0, 1, -1, 2**31 - 1, -(2**31), 123456789, 7, 7], np.int32)
    est = StreamingFrequencyEstimator(1000, num_hashes=3, seed=5)
    got = np.asarray(ops.convert_to_numpy(est.buckets(ids)))
    np.testing.assert_array_equal(got, numpy_buckets(ids, hash_keys(5, 3), 1000))
    assert len(set(map(tuple, got))) == 3  # three different hash functions


CASES = [("expected_count", False, 1), ("expected_count", True, 3), ("inclusion", False, 3), ("inclusion", True, 1)]


@pytest.mark.parametrize("estimand,bias_correction,num_hashes", CASES)
def test_estimator_equals_numpy_algorithms_and_the_tf_keras_estimator(estimand, bias_correction, num_hashes):
    from yt_bias.core.frequency import StreamingFrequencyEstimator as TfKerasEstimator

    # 13 buckets for 40 IDs: collisions in every step. B0 near the gaps keeps the debiased read
    # (B - (1 - w) B0) / w well conditioned: with B0 far off it amplifies float32 rounding (FMA or not) past 1e-6.
    hash_size, alpha, b0 = 13, 0.3, 1.0
    est = StreamingFrequencyEstimator(hash_size, num_hashes, alpha, b0, seed=3, bias_correction=bias_correction, estimand=estimand)
    ref = NumpyEstimator(hash_size, num_hashes, alpha, b0, estimand, bias_correction)
    legacy = TfKerasEstimator(hash_size, num_hashes, alpha, b0, bias_correction=bias_correction, estimand=estimand)
    keys = hash_keys(3, num_hashes)
    collided = 0
    for ids in stream():
        buckets = numpy_buckets(ids, keys, hash_size)
        collided += len(np.unique(buckets[0])) < len(np.unique(ids))
        got = np.asarray(ops.convert_to_numpy(est(ids, training=True)))
        want = ref.update(buckets)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        legacy.update_buckets(buckets)
        np.testing.assert_allclose(got, legacy.probability_of_buckets(buckets).numpy(), rtol=1e-6)
    assert collided > 0
    arrays, legacy_arrays = est.logical_arrays(), legacy.logical_arrays()
    np.testing.assert_array_equal(arrays["A"], ref.A)
    np.testing.assert_allclose(arrays["B"], ref.B, rtol=1e-6)
    np.testing.assert_allclose(arrays["B"], legacy_arrays["B"].numpy(), rtol=1e-6)
    if bias_correction:
        np.testing.assert_array_equal(arrays["hits"], ref.hits)
    probe = np.arange(40, dtype=np.int32) * 7919 - 5000
    np.testing.assert_allclose(np.asarray(ops.convert_to_numpy(est.probability(probe))),
                               ref.read(numpy_buckets(probe, keys, hash_size)), rtol=1e-6)
    lower, upper = (1e-12, 1.0) if estimand == "inclusion" else (1e-12, np.inf)
    np.testing.assert_allclose(np.asarray(ops.convert_to_numpy(est.log_q(probe))),
                               np.log(np.clip(ref.read(numpy_buckets(probe, keys, hash_size)), lower, upper)), rtol=1e-6)
    assert int(arrays["step"]) == 25


def test_duplicates_in_a_batch_are_exact_whatever_their_order():
    ids = np.array([5, 9, 5, 5, 2, 9], np.int32)
    p = []
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 4, 0, 2, 1]):
        est = StreamingFrequencyEstimator(64, num_hashes=2, alpha=0.5, initial_interval=4.0)
        est(ids[order], training=True)
        p.append(np.asarray(ops.convert_to_numpy(est.probability(np.array([5, 9, 2], np.int32)))))
    np.testing.assert_array_equal(p[0], p[1])
    # One step from B0 = 4 with gap 1: item 5 (3 rows): 0.5^3 * 4 + (1 - 0.5^3) / 3 = 0.79167 -> p = 1.263.
    np.testing.assert_allclose(p[0][0], 1 / (0.125 * 4 + 0.875 / 3), rtol=1e-6)


def _compiled_text(function, argument) -> str:
    """The optimised HLO of ``function(argument)`` compiled with XLA on this process's backend."""
    if BACKEND == "jax":
        import jax

        return jax.jit(function).lower(argument).compile().as_text()
    import tensorflow as tf

    return tf.function(function, jit_compile=True).experimental_get_compiler_ir(tf.constant(argument))(stage="optimized_hlo")


def test_sharing_counts_compile_to_memory_linear_in_the_batch():
    """The per-row bucket counts equal numpy's, and XLA's program holds no [n, n] array (a pairwise
    comparison needs n^2 memory: 69 GB for a batch of 65536 under TensorFlow's jit_compile)."""
    n = 4096
    buckets = np.random.default_rng(0).integers(0, 1500, size=n).astype(np.int32)  # most buckets repeat
    _, inverse, counts = np.unique(buckets, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(sharing_counts(buckets))), counts[inverse])
    np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(sharing_counts(buckets[:1]))), [1])
    if BACKEND not in ("jax", "tensorflow"):
        return  # no XLA program to read on this backend
    text = _compiled_text(sharing_counts, buckets)
    assert f"[{n}]" in text
    assert f"[{n},{n}]" not in text and f"[1,{n},{n}]" not in text


if BACKEND == "jax":

    def test_a_jitted_step_updates_the_arrays_in_place():
        """The compiled step (state donated, as Keras 3's JAX trainer does) copies no hash-sized array."""
        import jax

        est = StreamingFrequencyEstimator(1 << 16, num_hashes=2, bias_correction=True)
        variables = est.non_trainable_variables

        def step(values, ids):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
                p = est(ids, training=True)
            return [scope.get_current_value(v) for v in variables], p

        ids = np.arange(64, dtype=np.int32) % 50
        compiled = jax.jit(step, donate_argnums=0).lower([v.value for v in variables], ids).compile().as_text()
        size = f"[{2 << 16}]"
        assert size in compiled  # the arrays are in the step
        copies = [line for line in compiled.splitlines() if " copy(" in line and size in line]
        assert not copies, copies


def test_estimator_errors_name_the_field():
    with pytest.raises(ValueError, match="alpha must be in"):
        StreamingFrequencyEstimator(8, alpha=0.0)
    with pytest.raises(ValueError, match="hash_size must be an integer >= 1"):
        StreamingFrequencyEstimator(0)
    with pytest.raises(ValueError, match="estimand must be one of"):
        StreamingFrequencyEstimator(8, estimand="count")
    est = StreamingFrequencyEstimator(8)
    with pytest.raises(TypeError, match="item_ids must be integers .*received dtype float32"):
        est(np.array([1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match=r"item_ids must be \[batch_size\] or \[batch_size, 1\]"):
        est(np.zeros((2, 3), np.int32))


# ---------------------------------------------------------------- the loss
def _grad(fn, *args):
    """(value, [d value / d arg]) on this process's backend."""
    if BACKEND == "jax":
        import jax

        value, grads = jax.value_and_grad(lambda *a: fn(*a), argnums=tuple(range(len(args))))(*map(ops.convert_to_tensor, args))
        return np.asarray(value), [np.asarray(g) for g in grads]
    if BACKEND == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        value = fn(*tensors)
        value.backward()
        return value.detach().numpy(), [t.grad.numpy() for t in tensors]
    import tensorflow as tf

    tensors = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = fn(*tensors)
    return value.numpy(), [g.numpy() for g in tape.gradient(value, tensors)]


def _tf_keras_loss(query, candidates, log_q, ids, rewards, remove):
    from yt_bias._keras import tf
    from yt_bias.core.losses import softmax_loss as tf_keras_softmax_loss

    tensors = [tf.constant(query), tf.constant(candidates), tf.constant(log_q)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = tf_keras_softmax_loss(tensors[0], tensors[1], temperature=0.2, log_q=tensors[2], rewards=tf.constant(rewards),
                                      candidate_ids=tf.constant(ids), remove_accidental_hits=remove, implementation="dense")
    return value.numpy(), [g.numpy() for g in tape.gradient(value, tensors)]


@pytest.mark.parametrize("implementation", ["dense", "blockwise"])
@pytest.mark.parametrize("remove", [False, True])
def test_loss_and_gradients_equal_the_tf_keras_loss(implementation, remove):
    rng = np.random.default_rng(1)
    batch, num, dim = 6, 11, 5  # 5 extra candidates; block size 4 leaves a padded last block
    query = rng.normal(size=(batch, dim)).astype(np.float32)
    candidates = rng.normal(size=(num, dim)).astype(np.float32)
    log_q = np.log(rng.uniform(0.05, 3.0, size=num)).astype(np.float32)
    ids = np.array([3, 8, 3, 1, 8, 8, 4, 3, 9, 1, 2], np.int32)  # duplicates among positives and extras
    rewards = rng.uniform(0.0, 2.0, size=batch).astype(np.float32)

    def loss(q, c, lq):
        return softmax_loss(q, c, temperature=0.2, log_q=lq, rewards=rewards, candidate_ids=ids[:, None],
                            remove_accidental_hits=remove, implementation=implementation, block_size=4)

    value, grads = _grad(loss, query, candidates, log_q)
    want_value, want_grads = _tf_keras_loss(query, candidates, log_q, ids, rewards, remove)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_accidental_hits_are_masked_with_2d_ids_and_duplicates():
    rng = np.random.default_rng(2)
    query = rng.normal(size=(4, 3)).astype(np.float32)
    candidates = rng.normal(size=(4, 3)).astype(np.float32)
    ids = np.array([[7], [2], [7], [7]], np.int64)  # rows 0, 2, 3 are the same item
    logits = query @ candidates.T
    same = (ids[:, 0][:, None] == ids[:, 0][None, :]) & ~np.eye(4, dtype=bool)
    masked = np.where(same, -np.inf, logits)
    want = np.mean(np.log(np.exp(masked).sum(1)) - np.diag(logits))
    for implementation in ("dense", "blockwise"):
        got = softmax_loss(query, candidates, candidate_ids=ids, remove_accidental_hits=True, implementation=implementation, block_size=3)
        np.testing.assert_allclose(float(got), want, rtol=1e-6)
    plain = float(softmax_loss(query, candidates))
    assert abs(plain - want) > 1e-3  # the mask changed the loss


def test_corrected_retrieval_equals_the_tf_keras_task_and_reads_its_source():
    from yt_bias._keras import tf
    from yt_bias.integrations.tfrs import CorrectedRetrieval as TfKerasRetrieval

    rng = np.random.default_rng(4)
    query, candidates = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(8, 4)).astype(np.float32)
    ids = np.array([1, 2, 1, 3, 4, 5, 6, 1], np.int32)
    p = rng.uniform(0.1, 2.5, size=8).astype(np.float32)  # expected counts: some above 1
    weights = rng.uniform(0.5, 1.5, size=5).astype(np.float32)
    ours = CorrectedRetrieval(temperature=0.1, remove_accidental_hits=True)
    theirs = TfKerasRetrieval(temperature=0.1, remove_accidental_hits=True)
    got = float(ours(query, candidates, sample_weight=weights, candidate_sampling_probability=p, candidate_ids=ids))
    want = float(theirs(tf.constant(query), tf.constant(candidates), sample_weight=tf.constant(weights),
                        candidate_sampling_probability=tf.constant(p), candidate_ids=tf.constant(ids)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    oracle = OracleFrequency(ids[[0, 1, 3, 4, 5, 6]], p[[0, 1, 3, 4, 5, 6]], estimand="expected_count")
    via_oracle = CorrectedRetrieval(frequency=oracle, temperature=0.1)
    via_callable = CorrectedRetrieval(frequency=lambda i: oracle.probability(i), temperature=0.1)
    a = float(via_oracle(query, candidates, candidate_ids=ids, training=True))
    np.testing.assert_allclose(a, float(via_callable(query, candidates, candidate_ids=ids)), rtol=1e-6)
    with pytest.raises(ValueError, match="needs candidate_ids"):
        ours(query, candidates)
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        ours(query, candidates, sample_weight=-weights, candidate_ids=ids)


class _CountingSource(FrequencySource):
    """A source of the test's own: p = 1 / (1 + steps so far); only update and probability are its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = self.add_weight(name="steps", shape=(), dtype="float32", initializer="zeros", trainable=False)

    def update(self, item_ids):
        self.steps.assign(self.steps.value + 1.0)
        return self.steps.value

    def probability(self, item_ids):
        return ops.full((ops.shape(item_ids)[0],), 1.0) / (1.0 + self.steps.value)


def test_a_custom_frequency_source_subclass_is_updated_then_read_by_the_task():
    rng = np.random.default_rng(5)
    query, candidates = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    ids = np.array([3, 1, 4, 1], np.int32)
    source = _CountingSource(estimand="inclusion")
    task = CorrectedRetrieval(frequency=source, temperature=0.5)
    assert task.frequency is source and task.estimand == "inclusion"
    trained = float(task(query, candidates, candidate_ids=ids, training=True))  # one step, then p = 1/2
    assert float(ops.convert_to_numpy(source.steps.value)) == 1.0
    reference = CorrectedRetrieval(temperature=0.5)
    want = float(reference(query, candidates, candidate_sampling_probability=np.full(4, 0.5, np.float32)))
    np.testing.assert_allclose(trained, want, rtol=1e-6)
    task(query, candidates, candidate_ids=ids, training=False)  # a read: no step
    assert float(ops.convert_to_numpy(source.steps.value)) == 1.0
    # the base orders the update against the read both ways, and clips log p on the estimand's scale
    np.testing.assert_allclose(ops.convert_to_numpy(source.update_and_probability(ids, read_after_update=False)), [0.5] * 4)
    np.testing.assert_allclose(ops.convert_to_numpy(source.log_q(ids, update=True)), [math.log(1 / 4)] * 4, rtol=1e-6)
    assert source.get_config()["estimand"] == "inclusion"
    clip = _CountingSource(estimand="inclusion")
    np.testing.assert_allclose(ops.convert_to_numpy(clip.log_of(np.array([4.0, 1e-30], np.float32))), [0.0, math.log(1e-12)], rtol=1e-6)
    count = _CountingSource()  # the default estimand, expected_count: no upper clip
    assert count.estimand == "expected_count"
    np.testing.assert_allclose(ops.convert_to_numpy(count.log_of(np.array([4.0], np.float32))), [math.log(4.0)], rtol=1e-6)


def test_a_wrong_estimand_or_a_source_outside_the_contract_is_refused():
    with pytest.raises(ValueError, match=r"estimand must be one of \['expected_count', 'inclusion'\]; received 'counts'"):
        _CountingSource(estimand="counts")
    with pytest.raises(ValueError, match="estimand must be one of .*received 'counts'"):
        CorrectedRetrieval(frequency={"hash_size": 8, "estimand": "counts"})
    with pytest.raises(ValueError, match="estimand must be one of"):
        OracleFrequency([1, 2], [0.5, 0.5], estimand="probability")
    with pytest.raises(TypeError, match="FrequencySource layer .*received Dense"):
        CorrectedRetrieval(frequency=keras.layers.Dense(1))  # a layer that is not a source
    with pytest.raises(TypeError, match="FrequencySource layer .*received int"):
        CorrectedRetrieval(frequency=3)


def test_a_plain_callable_is_wrapped_once_as_a_read_only_source():
    calls = []

    def read(ids):
        calls.append(1)
        return np.full(4, 2.0, np.float32)

    task = CorrectedRetrieval(frequency=read)
    assert isinstance(task.frequency, CallableFrequency) and task.estimand == "expected_count"
    ids = np.array([3, 1, 4, 1], np.int32)
    np.testing.assert_allclose(ops.convert_to_numpy(task.frequency.log_q(ids, update=True)), [math.log(2.0)] * 4, rtol=1e-6)
    assert len(calls) == 1
    with pytest.raises(NotImplementedError, match="plain callable frequency source cannot be serialised"):
        task.get_config()


# ---------------------------------------------------------------- training, saving, config
@keras.saving.register_keras_serializable(package="yt_bias_tests")
class TwoTower(keras.Model):
    """A keras-rs-style two-tower model: ID embeddings, the task in ``compute_loss``."""

    def __init__(self, task, **kwargs):
        super().__init__(**kwargs)
        self.users = keras.layers.Embedding(20, 8)
        self.items = keras.layers.Embedding(400, 8)
        self.task = task

    def call(self, x):
        return self.users(x["user"]), self.items(x["item"])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        query, candidates = y_pred
        return self.task(query, candidates, candidate_ids=x["item"], training=training)

    def get_config(self):
        return {**super().get_config(), "task": keras.saving.serialize_keras_object(self.task)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("task")), **config)


@pytest.fixture(scope="module")
def fitted():
    """One fit (jit_compile=True) shared by the tests below: the step compiles once per backend."""
    return _fit(jit_compile=True)


def _fit(jit_compile):
    keras.utils.set_random_seed(0)
    items = np.concatenate([np.abs(ids) % 400 for ids in stream(num_steps=5, batch=16)]).astype(np.int32)
    users = np.arange(len(items), dtype=np.int32) % 20
    task = CorrectedRetrieval(frequency={"hash_size": 31, "num_hashes": 2, "alpha": 0.2, "initial_interval": 10.0}, temperature=0.5)
    model = TwoTower(task)
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), jit_compile=jit_compile)
    history = model.fit({"user": users, "item": items}, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model, items, history


def test_fit_updates_the_estimator_inside_the_compiled_train_step(fitted):
    model, items, history = fitted
    est = model.task.frequency
    ref = NumpyEstimator(31, 2, 0.2, 10.0, "expected_count", False)
    for batch in items.reshape(5, 16):
        ref.update(numpy_buckets(batch, hash_keys(0, 2), 31))
    arrays = est.logical_arrays()
    assert int(arrays["step"]) == 5
    np.testing.assert_array_equal(arrays["A"], ref.A)
    np.testing.assert_allclose(arrays["B"], ref.B, rtol=1e-6)
    assert np.isfinite(history.history["loss"]).all()


def test_save_and_load_keep_the_estimator_state_and_config(fitted, tmp_path):
    model, items, _ = fitted
    path = str(tmp_path / "two_tower.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    before, after = model.task.frequency.logical_arrays(), loaded.task.frequency.logical_arrays()
    assert before.keys() == after.keys() and int(after["step"]) == 5
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    probe = items[:16]
    np.testing.assert_array_equal(ops.convert_to_numpy(model.task.frequency(probe, training=False)),
                                  ops.convert_to_numpy(loaded.task.frequency(probe, training=False)))
    np.testing.assert_array_equal(ops.convert_to_numpy(model.items(probe)), ops.convert_to_numpy(loaded.items(probe)))
    config = model.task.get_config()
    clone = CorrectedRetrieval.from_config(config)
    assert clone.get_config() == config
    assert clone.frequency.get_config() == model.task.frequency.get_config()
    assert (clone.frequency.hash_size, clone.frequency.num_hashes, clone.frequency.alpha) == (31, 2, 0.2)
    est = StreamingFrequencyEstimator(50, num_hashes=2, alpha=0.3, initial_interval=7.0, seed=4, bias_correction=True,
                                      estimand="inclusion", name="f")
    copy = StreamingFrequencyEstimator.from_config(est.get_config())
    ids = np.array([1, 2, 2, 9], np.int32)
    for _ in range(3):
        np.testing.assert_array_equal(ops.convert_to_numpy(est(ids, training=True)), ops.convert_to_numpy(copy(ids, training=True)))


def test_the_auto_crossover_is_the_tf_keras_one():
    from yt_bias.core.losses import BLOCKWISE_FROM_CANDIDATES
    from yt_bias.keras3 import losses

    assert losses.BLOCKWISE_FROM_CANDIDATES == BLOCKWISE_FROM_CANDIDATES
