"""CorrectedRetrieval: TFRS's Retrieval call with the streaming estimator and the mean-reduced logQ loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# isort: off
import yt_bias._keras  # noqa: F401  (Keras 2 before TensorFlow: this file also runs as a script, without conftest)
import tensorflow_recommenders as tfrs
# isort: on

from yt_bias._keras import keras, tf
from yt_bias.core.frequency import FrequencySource, OracleFrequency, StreamingFrequencyEstimator
from yt_bias.integrations.tfrs import CorrectedRetrieval

USERS = [f"u{i}" for i in range(20)]
ITEMS = [f"i{i}" for i in range(30)]


class _TutorialModel(tfrs.Model):
    """The TFRS basic-retrieval tutorial's model (ID lookups + embeddings), with the task as an argument."""

    def __init__(self, task, dim: int = 8, seed: int = 0):
        super().__init__()
        init = keras.initializers.RandomUniform(-0.05, 0.05, seed=seed)
        self.user_model = keras.Sequential(
            [
                keras.layers.StringLookup(vocabulary=USERS),
                keras.layers.Embedding(len(USERS) + 1, dim, embeddings_initializer=init),
            ]
        )
        self.item_model = keras.Sequential(
            [
                keras.layers.StringLookup(vocabulary=ITEMS),
                keras.layers.Embedding(len(ITEMS) + 1, dim, embeddings_initializer=init),
            ]
        )
        self.task = task

    def compute_loss(self, features, training=False):
        ids = features["item_id"]
        return self.task(self.user_model(features["user_id"]), self.item_model(ids), candidate_ids=ids, training=training)


def _rows(n: int = 640, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, len(ITEMS) + 1)
    items = rng.choice(len(ITEMS), size=n, p=popularity / popularity.sum())
    return {"user_id": np.asarray(USERS)[rng.integers(0, len(USERS), n)], "item_id": np.asarray(ITEMS)[items]}


def _reference_loss(query, candidates, p, tau, weights=None):
    """By hand: mean_i w_i * -log softmax(q_i . c_j / tau - log p_j)[i]."""
    logits = query @ candidates.T / tau - np.log(p)[None, :]
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    per_query = -np.diag(log_softmax)
    return float(np.mean(per_query * (np.ones(len(query)) if weights is None else weights)))


def test_loss_is_the_mean_corrected_softmax_and_equals_tfrs_mean_reduction():
    rng = np.random.default_rng(1)
    query, cands = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    p = rng.uniform(0.05, 0.9, size=6).astype(np.float32)
    weights = rng.uniform(0.0, 2.0, size=6).astype(np.float32)
    task = CorrectedRetrieval(temperature=0.2, frequency={"hash_size": 64})
    ours = float(task(query, cands, sample_weight=weights, candidate_sampling_probability=p))
    assert ours == pytest.approx(_reference_loss(query, cands, p, 0.2, weights), rel=1e-5)
    mean_tfrs = tfrs.tasks.Retrieval(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, reduction=keras.losses.Reduction.SUM_OVER_BATCH_SIZE),
        temperature=0.2,
    )
    assert ours == pytest.approx(
        float(mean_tfrs(query, cands, sample_weight=weights, candidate_sampling_probability=p)), rel=1e-5
    )
    assert int(task.frequency.step.numpy()) == 0  # a given probability neither updates nor reads the estimator


def test_training_updates_the_estimator_once_and_corrects_with_its_estimate():
    rng = np.random.default_rng(2)
    query, cands = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    ids = tf.constant(["a", "b", "a", "c"])
    task = CorrectedRetrieval(temperature=0.5, frequency={"hash_size": 128, "alpha": 0.5, "initial_interval": 4.0})
    reference = StreamingFrequencyEstimator(128, alpha=0.5, initial_interval=4.0)
    reference.update(ids)
    loss = float(task(query, cands, candidate_ids=ids, training=True))
    p = reference.probability(ids).numpy()
    assert int(task.frequency.step.numpy()) == 1
    np.testing.assert_array_equal(task.frequency.probability(ids).numpy(), p)
    assert loss == pytest.approx(_reference_loss(query, cands, p, 0.5), rel=1e-5)
    # Evaluation reads without updating.
    assert float(task(query, cands, candidate_ids=ids, training=False)) == pytest.approx(loss, rel=1e-6)
    assert int(task.frequency.step.numpy()) == 1


def test_accidental_hits_oracle_estimand_and_callable_sources():
    rng = np.random.default_rng(3)
    query, cands = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    ids = tf.constant(["a", "b", "a", "c"])
    oracle = OracleFrequency(["a", "b", "c"], [0.5, 0.25, 0.25])
    with_hits = CorrectedRetrieval(frequency=oracle, temperature=0.3, remove_accidental_hits=True)
    tfrs_hits = tfrs.tasks.Retrieval(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, reduction=keras.losses.Reduction.SUM_OVER_BATCH_SIZE),
        temperature=0.3,
        remove_accidental_hits=True,
    )
    p = oracle.probability(ids)
    assert float(with_hits(query, cands, candidate_ids=ids, training=True)) == pytest.approx(
        float(tfrs_hits(query, cands, candidate_ids=ids, candidate_sampling_probability=p)), rel=1e-5
    )
    # An expected count above 1 is not clipped to 1.
    counts = OracleFrequency(["a", "b", "c"], [2.0, 1.0, 1.0], estimand="expected_count")
    task = CorrectedRetrieval(frequency=counts, temperature=0.3)
    expected = _reference_loss(query, cands, np.array([2.0, 1.0, 2.0, 1.0]), 0.3)
    assert float(task(query, cands, candidate_ids=ids)) == pytest.approx(expected, rel=1e-5)
    # A plain callable is read as given.
    fixed = CorrectedRetrieval(frequency=lambda x: tf.fill(tf.shape(x), 0.1), temperature=0.3)
    assert float(fixed(query, cands, candidate_ids=ids, training=True)) == pytest.approx(
        _reference_loss(query, cands, np.full(4, 0.1), 0.3), rel=1e-5
    )
    with pytest.raises(NotImplementedError, match="callable"):
        fixed.get_config()


class _UpdateProbabilityLayer(FrequencySource):
    """A user frequency source with only ``update(ids)`` and ``probability(ids)`` of its own."""

    def __init__(self):
        super().__init__()
        self.inner = StreamingFrequencyEstimator(64, alpha=0.5, initial_interval=4.0)

    def update(self, ids):
        return self.inner.update(ids)

    def probability(self, ids):
        return self.inner.probability(ids)


def test_a_layer_with_update_and_probability_is_updated_once_per_training_call():
    source = _UpdateProbabilityLayer()
    task = CorrectedRetrieval(frequency=source, temperature=0.5)
    ids = tf.constant(["a", "b", "a", "c"])
    q = tf.random.stateless_normal([4, 3], seed=[1, 2])
    task(q, q, candidate_ids=ids, training=True)
    task(q, q, candidate_ids=ids, training=False)
    task(q, q, candidate_ids=ids, training=True)
    assert int(source.inner.step.numpy()) == 2


def test_bad_arguments_are_named():
    task = CorrectedRetrieval(frequency={"hash_size": 16})
    q = tf.zeros([2, 3])
    with pytest.raises(ValueError, match="candidate_ids"):
        task(q, q)
    with pytest.raises(ValueError, match="rank-3"):
        task(tf.zeros([2, 2, 3]), q, candidate_ids=tf.constant(["a", "b"]))
    with pytest.raises(ValueError, match="temperature"):
        CorrectedRetrieval(temperature=0.0)
    with pytest.raises(TypeError, match="frequency"):
        CorrectedRetrieval(frequency=3)


def test_config_round_trip_keeps_the_estimator_settings():
    task = CorrectedRetrieval(
        frequency={"hash_size": 256, "num_hashes": 2, "alpha": 0.05, "estimand": "expected_count"},
        temperature=0.07,
        remove_accidental_hits=True,
        name="corrected",
    )
    config = json.loads(json.dumps(task.get_config()))
    again = CorrectedRetrieval.from_config(config)
    assert again.name == "corrected" and again._temperature == 0.07 and again._remove_accidental_hits
    e = again.frequency
    assert (e.hash_size, e.num_hashes, e.alpha, e.estimand) == (256, 2, 0.05, "expected_count")


def test_fit_in_a_tfrs_model_counts_steps_and_metrics():
    rows = _rows(320)
    ds = tf.data.Dataset.from_tensor_slices(rows).batch(32)
    candidates = tf.data.Dataset.from_tensor_slices(np.asarray(ITEMS)).batch(16)
    task = CorrectedRetrieval(frequency={"hash_size": 512, "alpha": 0.1}, temperature=0.1)
    model = _TutorialModel(task)
    # candidate_ids given: the metric is ID-based (as TFRS's), so the candidate index carries the IDs.
    index = candidates.map(lambda ids: (ids, model.item_model(ids)))
    task.factorized_metrics = [tfrs.metrics.FactorizedTopK(candidates=index, ks=(5,))]
    model.compile(optimizer=keras.optimizers.Adagrad(0.1))
    model.evaluate(ds.take(1), verbose=0)  # builds the towers
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(ds, epochs=2, verbose=0)
    assert int(task.frequency.step.numpy()) == 20  # 10 batches x 2 epochs, one update each
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.abs(w.numpy() - b).max() > 1e-4 for w, b in zip(model.trainable_weights, before))
    metrics = model.evaluate(ds, return_dict=True, verbose=0)
    assert int(task.frequency.step.numpy()) == 20  # evaluation does not update
    assert 0.0 < metrics["factorized_top_k/top_5_categorical_accuracy"] <= 1.0
    # The estimator's state is part of the model's checkpoint.
    assert any(v is task.frequency.step for v in model.variables)


# ----------------------------------------------------------------------------- MirroredStrategy (subprocess)
def _train_and_dump(strategy_name: str) -> dict:
    """Fits the tutorial model on fixed batches; returns the estimator's step and arrays."""
    from yt_bias.training.distribute import configure_logical_cpus

    if strategy_name == "mirrored":
        assert configure_logical_cpus(2) == 2
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    else:
        strategy = tf.distribute.get_strategy()
    rows = _rows(640, seed=5)
    ds = tf.data.Dataset.from_tensor_slices(rows).batch(32, drop_remainder=True)
    with strategy.scope():
        task = CorrectedRetrieval(frequency={"hash_size": 64, "num_hashes": 2, "alpha": 0.1}, temperature=0.1)
        model = _TutorialModel(task)
        model.compile(optimizer=keras.optimizers.Adagrad(0.1))
    model.fit(ds, epochs=2, verbose=0)
    arrays = task.frequency.logical_arrays()
    return {
        "replicas": strategy.num_replicas_in_sync,
        "step": int(arrays["step"].numpy()),
        "A": arrays["A"].numpy().tolist(),
        "B": arrays["B"].numpy().tolist(),
    }


def test_mirrored_strategy_updates_once_per_global_step_like_one_device():
    results = {}
    for name in ("mirrored", "default"):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        run = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True, timeout=300, env=env, check=False)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        results[name] = json.loads(run.stdout.strip().splitlines()[-1])
    mirrored, single = results["mirrored"], results["default"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["step"] == single["step"] == 40  # 20 global batches x 2 epochs
    np.testing.assert_array_equal(np.array(mirrored["A"]), np.array(single["A"]))
    np.testing.assert_allclose(np.array(mirrored["B"]), np.array(single["B"]), rtol=0, atol=0)


if __name__ == "__main__":
    print(json.dumps(_train_and_dump(sys.argv[1])))
