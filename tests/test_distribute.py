"""MirroredStrategy over 2 logical CPU devices: the estimator's contract and one-device equivalence."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from yt_bias._keras import keras, tf
from yt_bias.training.distribute import configure_logical_cpus, gathered_batch_loss, make_strategy, update_estimator

try:  # Must run before TensorFlow initialises its devices (true unless another module ran ops at import).
    _NUM_CPUS = configure_logical_cpus(2)
except RuntimeError:
    _NUM_CPUS = len(tf.config.list_logical_devices("CPU"))

from yt_bias import config as config_lib
from yt_bias.config import DistributeConfig
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.core.frequency import StreamingFrequencyEstimator
from yt_bias.training.train import build_model


def _rerun_in_fresh_process(request) -> None:
    """TensorFlow's devices were initialised before this module could split the CPU: run the test alone."""
    env = dict(os.environ, YT_BIAS_FRESH_PROCESS="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{request.node.name}"],
        check=False, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def _mirrored():
    # One strategy per process: a second MirroredStrategy restarts the collective instance keys, which
    # then clash with the first one's in TensorFlow's collective executor.
    return make_strategy(DistributeConfig(strategy="mirrored")) if _NUM_CPUS >= 2 else None


@pytest.fixture
def strategy(request, _mirrored):
    if _NUM_CPUS < 2:
        assert not os.environ.get("YT_BIAS_FRESH_PROCESS"), "could not split the CPU into 2 logical devices"
        _rerun_in_fresh_process(request)
        return None
    assert _mirrored.num_replicas_in_sync == 2
    return _mirrored


def _arrays(estimator) -> tuple[int, np.ndarray, np.ndarray]:
    return int(estimator.step.numpy()), estimator.last_step.numpy(), estimator.interval.numpy()


def test_estimator_update_runs_once_per_global_step_on_the_union(strategy):
    if strategy is None:
        return
    batches = [np.array([f"item_{i}" for i in row]) for row in np.random.default_rng(0).integers(0, 50, size=(12, 8))]
    reference = StreamingFrequencyEstimator(256, num_hashes=2, alpha=0.1, initial_interval=10.0, seed=3)
    for ids in batches:
        reference.update(tf.constant(ids))
    with strategy.scope():
        estimator = StreamingFrequencyEstimator(256, num_hashes=2, alpha=0.1, initial_interval=10.0, seed=3)

    @tf.function
    def step(ids_a, ids_b):
        def replica_fn():
            replica = tf.distribute.get_replica_context()
            ids = tf.cond(tf.equal(replica.replica_id_in_sync_group, 0), lambda: ids_a, lambda: ids_b)
            update_estimator(estimator, ids)
            return estimator.probability(ids)

        return strategy.run(replica_fn)

    for ids in batches:
        step(tf.constant(ids[:4]), tf.constant(ids[4:]))
    want = _arrays(reference)
    assert want[0] == len(batches)
    for copy in estimator.interval.values:  # every device's copy holds the union's update, applied once
        np.testing.assert_array_equal(copy.numpy(), want[2])
    for copy in estimator.last_step.values:
        np.testing.assert_array_equal(copy.numpy(), want[1])
    for copy in estimator.step.values:
        assert int(copy.numpy()) == len(batches)


def _smoke(**distribute):
    config = config_lib.smoke()
    config = config_lib.override(config, "train.optimizer=sgd")
    config = config_lib.override(config, "train.learning_rate=0.5")
    return config.__class__(**{**config.__dict__, "distribute": DistributeConfig(**distribute)})


def _train(config, dataset, steps, strategy=None, weights=None):
    keras.utils.set_random_seed(0)
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    data = make_tf_dataset(dataset.examples("train"), config.train.batch_size, shuffle=False).take(steps)
    with scope:
        model = build_model(config, dataset)
        model(next(iter(data)))  # builds the towers' variables
    if weights is not None:
        for variable, value in zip(model.trainable_variables, weights):
            variable.assign(value)
    initial = [v.numpy() for v in model.trainable_variables]
    model.fit(data, epochs=1, verbose=0)
    return model, initial


def test_mirrored_training_matches_one_device(strategy):
    """With negatives gathered across replicas, 2 replicas compute the one-device gradients of the global batch."""
    if strategy is None:
        return
    config = _smoke(strategy="mirrored", gather_negatives_across_replicas=True)
    dataset = load_dataset(config.data, config.model.embedding_dim)
    steps = 8
    single, initial = _train(config, dataset, steps)
    mirrored, _ = _train(config, dataset, steps, strategy=strategy, weights=initial)

    # The estimator consumed each global batch once: arrays identical to one device, step = global steps.
    s_step, s_a, s_b = _arrays(single.frequency)
    m_step, m_a, m_b = _arrays(mirrored.frequency)
    assert s_step == m_step == steps
    np.testing.assert_array_equal(m_a, s_a)
    np.testing.assert_array_equal(m_b, s_b)

    trained = [v.numpy() for v in single.trainable_variables]
    deltas = [np.abs(v.numpy() - s).max() for v, s in zip(mirrored.trainable_variables, trained)]
    moved = max(np.abs(s - i).max() for s, i in zip(trained, initial))
    assert moved > 1e-2  # training did change the weights
    assert max(deltas) < 1e-4, deltas


def test_gathered_loss_equals_one_device_loss(strategy):
    if strategy is None:
        return
    config = _smoke(strategy="mirrored", gather_negatives_across_replicas=True)
    dataset = load_dataset(config.data, config.model.embedding_dim)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(config, dataset)
    batch = next(iter(make_tf_dataset(dataset.examples("train"), 64, shuffle=False)))
    log_q = tf.math.log(tf.linspace(0.01, 0.5, 64))
    one_device = float(model.batch_loss(batch, log_q, training=False))
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((batch, log_q)))
    run = tf.function(lambda b, q: strategy.run(lambda b, q: gathered_batch_loss(model, b, q, training=False), args=(b, q)))
    per_replica = run(*next(iter(dist)))
    local = [float(v) for v in strategy.experimental_local_results(per_replica)]
    assert np.mean(local) == pytest.approx(one_device, rel=1e-5)
    assert abs(local[0] - local[1]) > 1e-6  # each replica scores its own queries


def test_strategy_config_errors():
    with pytest.raises(ValueError, match="distribute.strategy must be one of"):
        DistributeConfig(strategy="tpu")
    with pytest.raises(ValueError, match="needs a cluster"):
        make_strategy(DistributeConfig(strategy="parameter_server"))
    with pytest.raises(ValueError, match="at least one 'ps' task"):
        make_strategy(DistributeConfig(strategy="parameter_server"),
                      {"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}, "task": {"type": "chief"}})


def test_estimator_num_shards_follows_the_partitioner_settings():
    from yt_bias.training.distribute import estimator_num_shards

    ps = DistributeConfig(strategy="parameter_server", min_shard_bytes=1024)
    assert estimator_num_shards(ps, num_ps=2, hash_size=1024) == 2  # 8 KiB array: one shard per PS
    assert estimator_num_shards(ps, num_ps=4, hash_size=256) == 2  # 2 KiB array: 2 shards of >= 1 KiB
    assert estimator_num_shards(ps, num_ps=4, hash_size=64) == 1  # small: whole
    assert estimator_num_shards(DistributeConfig(strategy="parameter_server", max_shards=3, min_shard_bytes=1),
                                num_ps=8, hash_size=100, num_hashes=2) == 3
    assert estimator_num_shards(DistributeConfig(strategy="parameter_server", estimator_shards=5), 2, 1 << 16) == 5
    assert estimator_num_shards(DistributeConfig(strategy="mirrored", min_shard_bytes=1), 2, 1 << 16) == 1
    with pytest.raises(ValueError, match="estimator_shards"):
        DistributeConfig(estimator_shards=-1)


def test_model_with_sharded_estimator_trains_like_the_unsharded_one():
    from yt_bias.training.train import build_model as build_model_with_estimator_shards

    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    data = make_tf_dataset(dataset.examples("train"), config.train.batch_size, shuffle=False).take(5)
    arrays = []
    for shards in (1, 2):
        keras.utils.set_random_seed(0)
        model = build_model_with_estimator_shards(config, dataset, shards)
        assert model.frequency.num_shards == shards
        model.fit(data, epochs=1, verbose=0)
        arrays.append({k: v.numpy() for k, v in model.frequency.logical_arrays().items()})
    assert arrays[0]["step"] == arrays[1]["step"] == 5
    for name in ("A", "B"):
        np.testing.assert_array_equal(arrays[1][name], arrays[0][name])
