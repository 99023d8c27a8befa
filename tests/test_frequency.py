import numpy as np
import pytest

from yt_bias import OracleFrequency, StreamingFrequencyEstimator, total_variation_error
from yt_bias._keras import keras, tf
from yt_bias.core.frequency import DEFAULT_ESTIMAND, FrequencySource, log_p


def test_item_seen_every_k_steps_converges_to_one_over_k():
    estimator = StreamingFrequencyEstimator(hash_size=4096, alpha=0.05)
    update = tf.function(estimator.update)
    for step in range(1, 2001):
        ids = [f"other_{step}"]
        if step % 4 == 0:
            ids.append("every_4")
        if step % 10 == 0:
            ids.append("every_10")
        update(tf.constant(ids))
    p = estimator.probability(tf.constant(["every_4", "every_10"])).numpy()
    np.testing.assert_allclose(p, [1 / 4, 1 / 10], rtol=0.02)


def test_algorithm_2_by_hand():
    estimator = StreamingFrequencyEstimator(hash_size=100, alpha=0.5, initial_interval=10.0)
    estimator.update(tf.constant(["a"]))  # t=1: B = 0.5*10 + 0.5*(1-0) = 5.5
    np.testing.assert_allclose(estimator.probability(tf.constant(["a"])).numpy(), [1 / 5.5], rtol=1e-6)
    estimator.update(tf.constant(["b"]))  # t=2
    estimator.update(tf.constant(["a"]))  # t=3: B = 0.5*5.5 + 0.5*(3-1) = 3.75
    np.testing.assert_allclose(estimator.probability(tf.constant(["a"])).numpy(), [1 / 3.75], rtol=1e-6)
    assert int(estimator.step.numpy()) == 3


def test_duplicates_in_one_batch_count_once_for_inclusion_and_each_for_expected_count():
    once = StreamingFrequencyEstimator(hash_size=100, alpha=0.5, estimand="inclusion")
    twice = StreamingFrequencyEstimator(hash_size=100, alpha=0.5, estimand="inclusion")
    count = StreamingFrequencyEstimator(hash_size=100, alpha=0.5)  # default: expected_count
    for _ in range(5):
        once.update(tf.constant(["a", "b"]))
        twice.update(tf.constant(["a", "a", "a", "b"]))
        count.update(tf.constant(["a", "a", "a", "b"]))
    np.testing.assert_allclose(once.probability(tf.constant(["a"])), twice.probability(tf.constant(["a"])))
    assert count.estimand == "expected_count"
    assert count.probability(tf.constant(["a"])).numpy()[0] > 2.5  # about 3 rows per batch


def test_integer_and_string_ids_hash_alike():
    estimator = StreamingFrequencyEstimator(hash_size=1000, alpha=0.3)
    for _ in range(20):
        estimator.update(tf.constant([7, 8], tf.int64))
    np.testing.assert_allclose(
        estimator.probability(tf.constant([7], tf.int64)).numpy(), estimator.probability(tf.constant(["7"])).numpy()
    )


def _stream_error(hash_size, num_hashes, steps=400, num_items=400, batch=20, seed=0):
    rng = np.random.default_rng(seed)
    q = np.arange(1, num_items + 1, dtype=float) ** -1.0
    q /= q.sum()
    estimator = StreamingFrequencyEstimator(hash_size=hash_size, num_hashes=num_hashes, alpha=0.05, initial_interval=1.0)
    hits = np.zeros(num_items)
    update = tf.function(estimator.update)
    for _ in range(steps):
        items = rng.choice(num_items, size=batch, replace=False, p=q)
        hits[items] += 1
        update(tf.constant(items, tf.int64))
    true = hits / steps
    seen = true > 0
    estimated = estimator.probability(tf.constant(np.arange(num_items), tf.int64)).numpy()
    return total_variation_error(estimated[seen], true[seen], batch), estimated[seen], true[seen]


def test_tiny_hash_overestimates_and_more_hashes_help_at_equal_memory():
    error_big, _, _ = _stream_error(hash_size=8192, num_hashes=1)
    error_one, estimated_one, true = _stream_error(hash_size=64, num_hashes=1)
    error_four_same_per_hash, _, _ = _stream_error(hash_size=64, num_hashes=4)
    # Collisions make buckets hit more often than their items: rare items are over-estimated.
    rare = true < np.quantile(true, 0.5)
    assert np.mean(estimated_one[rare] - true[rare]) > 0
    assert error_one > 2 * error_big
    # m hashes with the max of gaps undo part of it (the equal-memory study is in test_simulation).
    assert error_four_same_per_hash < error_one


def test_update_and_probability_work_inside_tf_function():
    estimator = StreamingFrequencyEstimator(hash_size=128, num_hashes=2)

    @tf.function
    def step(ids):
        estimator.update(ids)
        return estimator.probability(ids)

    for _ in range(3):
        p = step(tf.constant(["x", "y"]))
    assert p.shape == (2,)
    assert int(estimator.step.numpy()) == 3


def test_checkpoint_round_trip(tmp_path):
    estimator = StreamingFrequencyEstimator(hash_size=256, num_hashes=2, alpha=0.2)
    for i in range(30):
        estimator.update(tf.constant([f"i{i % 7}", f"j{i % 3}"]))
    path = tf.train.Checkpoint(estimator=estimator).save(str(tmp_path / "ckpt"))
    restored = StreamingFrequencyEstimator(hash_size=256, num_hashes=2, alpha=0.2)
    tf.train.Checkpoint(estimator=restored).restore(path).assert_consumed()
    np.testing.assert_array_equal(restored.interval.numpy(), estimator.interval.numpy())
    np.testing.assert_array_equal(restored.last_step.numpy(), estimator.last_step.numpy())
    assert restored.step.numpy() == estimator.step.numpy() == 30


def test_state_is_in_a_keras_model_checkpoint(tmp_path):
    class Holder(keras.Model):
        def __init__(self):
            super().__init__()
            self.frequency = StreamingFrequencyEstimator(hash_size=64)

        def call(self, ids):
            return self.frequency.probability(ids)

    model = Holder()
    for _ in range(5):
        model.frequency.update(tf.constant(["a"]))
    model.save_weights(str(tmp_path / "weights"))
    other = Holder()
    other.load_weights(str(tmp_path / "weights"))
    np.testing.assert_array_equal(other.frequency.interval.numpy(), model.frequency.interval.numpy())
    assert other.frequency.step.numpy() == 5
    assert all(not v.trainable for v in model.frequency.weights)


def test_get_config_round_trip():
    estimator = StreamingFrequencyEstimator(hash_size=77, num_hashes=3, alpha=0.25, initial_interval=50.0, seed=9)
    clone = StreamingFrequencyEstimator.from_config(estimator.get_config())
    for field in ("hash_size", "num_hashes", "alpha", "initial_interval", "seed"):
        assert getattr(clone, field) == getattr(estimator, field)
    ids = tf.constant(["a", "b", "c"])
    np.testing.assert_array_equal(clone.buckets(ids).numpy(), estimator.buckets(ids).numpy())
    oracle = OracleFrequency(["a", "b"], [0.5, 0.25], estimand="inclusion")
    assert OracleFrequency.from_config(oracle.get_config()).estimand == "inclusion"
    np.testing.assert_allclose(OracleFrequency.from_config(oracle.get_config()).probability(tf.constant(["b", "zz"])), [0.25, 1e-6])


def test_independent_hashes_differ():
    estimator = StreamingFrequencyEstimator(hash_size=1 << 20, num_hashes=3)
    buckets = estimator.buckets(tf.constant([f"item{i}" for i in range(50)])).numpy()
    assert not np.array_equal(buckets[0], buckets[1]) and not np.array_equal(buckets[1], buckets[2])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hash_size=0), "hash_size must be an integer >= 1; received 0"),
        (dict(hash_size=10, alpha=0.0), r"alpha must be in \(0, 1\]; received 0.0"),
        (dict(hash_size=10, alpha=1.5), r"alpha must be in \(0, 1\]; received 1.5"),
        (dict(hash_size=10, num_hashes=0), "num_hashes must be an integer >= 1"),
        (dict(hash_size=10, initial_interval=-1.0), "initial_interval must be finite and > 0"),
            (dict(hash_size=10, initial_interval=float("inf")), "initial_interval must be finite and > 0"),
            (dict(hash_size=10, seed=2**62), "seed must be an integer >= 0"),
            (dict(hash_size=10, estimand="count"), "estimand must be one of"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamingFrequencyEstimator(**kwargs)


def test_bad_batches_raise_clear_errors():
    estimator = StreamingFrequencyEstimator(hash_size=10)
    with pytest.raises(ValueError, match="item_ids is empty"):
        estimator.update(tf.constant([], tf.string))
    with pytest.raises(ValueError, match="empty string"):
        estimator.update(tf.constant(["a", ""]))
    with pytest.raises(ValueError, match=r"1-D tensor \[batch_size\]"):
        estimator.update(tf.constant([["a"]]))
    with pytest.raises(TypeError, match="strings or integers; received dtype float32"):
        estimator.update(tf.constant([1.5]))
    update = tf.function(estimator.update)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty string"):
        update(tf.constant(["", "b"]))


def test_oracle_rejects_bad_tables():
    with pytest.raises(ValueError, match="in \\(0, 1\\] for estimand='inclusion'"):
        OracleFrequency(["a"], [1.5], estimand="inclusion")
    with pytest.raises(ValueError, match="in \\(0, inf\\) for estimand='expected_count'"):
        OracleFrequency(["a"], [0.0])
    with pytest.raises(ValueError, match="one length"):
        OracleFrequency(["a", "b"], [0.5])


@pytest.mark.parametrize("bias_correction", [False, True])
def test_sharded_estimator_equals_unsharded(bias_correction):
    """num_shards=3: bucket b in shard b % 3; same probabilities and logical A/B (hits) as one variable."""
    kwargs = dict(hash_size=97, num_hashes=2, alpha=0.1, initial_interval=7.0, seed=1, bias_correction=bias_correction)
    whole = StreamingFrequencyEstimator(**kwargs)
    sharded = StreamingFrequencyEstimator(num_shards=3, **kwargs)
    assert [v.name.split(":")[0] for v in whole.weights][:3] == ["global_step", "A", "B"]  # unchanged names
    assert [tuple(v.shape) for v in sharded.state_variables()[1:4]] == [(2, 33), (2, 32), (2, 32)]
    rng = np.random.default_rng(0)
    update_whole, update_sharded = tf.function(whole.update), tf.function(sharded.update)
    for step in range(80):
        ids = tf.constant(rng.integers(0, 300, size=16), tf.int64)
        update_whole(ids)
        if step % 2:
            update_sharded(ids)
        else:
            sharded.update(ids)  # eager and graph updates alike
    ids = tf.constant(np.arange(300), tf.int64)
    np.testing.assert_array_equal(sharded.probability(ids).numpy(), whole.probability(ids).numpy())
    np.testing.assert_array_equal(tf.function(sharded.probability)(ids).numpy(), tf.function(whole.probability)(ids).numpy())
    want, got = whole.logical_arrays(), sharded.logical_arrays()
    assert sorted(got) == sorted(want) == sorted(["step", "A", "B"] + (["hits"] if bias_correction else []))
    for name in want:
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy())
    assert int(got["step"]) == 80 and want["A"].numpy().max() == 80
    np.testing.assert_array_equal(want["A"].numpy(), whole.last_step.numpy())


def test_sharded_estimator_config_and_checkpoint(tmp_path):
    estimator = StreamingFrequencyEstimator(hash_size=50, num_hashes=2, alpha=0.2, num_shards=4)
    assert StreamingFrequencyEstimator(hash_size=50).get_config()["num_shards"] == 1
    clone = StreamingFrequencyEstimator.from_config(estimator.get_config())
    assert clone.num_shards == 4 and len(clone.state_variables()) == 1 + 2 * 4
    for i in range(20):
        estimator.update(tf.constant([f"i{i % 7}", f"j{i % 3}"]))
    path = tf.train.Checkpoint(estimator=estimator).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(estimator=clone).restore(path).assert_consumed()
    for name, value in estimator.logical_arrays().items():
        np.testing.assert_array_equal(clone.logical_arrays()[name].numpy(), value.numpy())
    with pytest.raises(ValueError, match="num_shards must be an integer >= 1"):
        StreamingFrequencyEstimator(hash_size=10, num_shards=0)
    with pytest.raises(ValueError, match="num_shards must be <= hash_size"):
        StreamingFrequencyEstimator(hash_size=10, num_shards=11)


# ----------------------------------------------------------------------------- the one contract
def _all_sources():
    from yt_bias.core.frequency_baselines import (
        CumulativeFrequency,
        CurrentDayOracle,
        FixedTableFrequency,
        FrozenFrequency,
        PreviousDayFrequency,
    )
    from yt_bias.integrations.tfrs import CallableFrequency

    return [
        StreamingFrequencyEstimator(64),
        OracleFrequency(["a", "b"], [2.0, 0.5]),
        FrozenFrequency(8),
        CumulativeFrequency(8),
        PreviousDayFrequency(8),
        CurrentDayOracle(8),
        FixedTableFrequency(["a", "a", "b"], 8),
        CallableFrequency(lambda ids: tf.fill(tf.shape(ids), 0.5)),
    ]


def test_every_source_follows_one_contract_with_one_default_estimand():
    for source in _all_sources():
        assert isinstance(source, FrequencySource), type(source).__name__
        assert source.estimand == DEFAULT_ESTIMAND == "expected_count", type(source).__name__
        ids = tf.constant(["a", "b"])
        log_q = source.log_q(ids, update=True)
        assert log_q.shape == (2,) and np.all(np.isfinite(log_q.numpy())), type(source).__name__
        source.start_of_day(["a"])  # the day hooks exist on every source (no-ops unless a table keeps days)
        source.end_of_day(["a"])
    with pytest.raises(TypeError, match="abstract"):
        FrequencySource()


def test_log_q_clips_on_the_estimands_scale():
    ids = tf.constant(["big", "zero"])
    counts = OracleFrequency(["big", "zero"], [3.0, 1e-30], estimand="expected_count")
    np.testing.assert_allclose(counts.log_q(ids).numpy(), [np.log(3.0), np.log(1e-12)], rtol=1e-6)
    inclusion = OracleFrequency(["big", "zero"], [1.0, 1e-30], estimand="inclusion")
    np.testing.assert_allclose(inclusion.log_of(tf.constant([3.0, 0.0])).numpy(), [0.0, np.log(1e-12)], rtol=1e-6)
    np.testing.assert_allclose(log_p(tf.constant([3.0]), "expected_count").numpy(), [np.log(3.0)], rtol=1e-6)
    with pytest.raises(ValueError, match="estimand must be one of"):
        log_p(tf.constant([1.0]), "rate")


@pytest.mark.parametrize("read_after_update", [True, False])
def test_log_q_with_update_is_one_step_read_after_or_before(read_after_update):
    source = StreamingFrequencyEstimator(128, alpha=0.5, initial_interval=4.0)
    ids = tf.constant(["a", "b", "a"])
    before = source.probability(ids).numpy()
    log_q = source.log_q(ids, update=True, read_after_update=read_after_update).numpy()
    assert int(source.step.numpy()) == 1
    after = source.probability(ids).numpy()
    np.testing.assert_allclose(np.exp(log_q), after if read_after_update else before, rtol=1e-6)
    assert not np.allclose(before, after)
    source.log_q(ids, update=False)
    graph = tf.function(lambda ids, update: source.log_q(ids, update=update))
    graph(ids, tf.constant(False))
    assert int(source.step.numpy()) == 1  # reads never update, eager or traced
    graph(ids, tf.constant(True))
    assert int(source.step.numpy()) == 2


class _CountingSource(FrequencySource):
    """A source of the test's own: p = 1 / (1 + steps so far); only update and probability are its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = tf.Variable(0.0, trainable=False)

    def update(self, item_ids):
        return self.steps.assign_add(1.0)

    def probability(self, item_ids):
        return tf.fill(tf.shape(item_ids), 1.0 / (1.0 + self.steps))


def test_the_base_class_orders_a_sources_own_update_against_the_read():
    source = _CountingSource(estimand="inclusion")
    ids = tf.constant(["a", "b"])
    np.testing.assert_allclose(source.update_and_probability(ids).numpy(), [0.5, 0.5])  # read after the update
    np.testing.assert_allclose(source.update_and_probability(ids, read_after_update=False).numpy(), [0.5, 0.5])
    assert float(source.steps.numpy()) == 2.0
    np.testing.assert_allclose(source(ids, training=False).numpy(), [1 / 3, 1 / 3], rtol=1e-6)
    assert float(source.steps.numpy()) == 2.0


def test_no_capability_probes_on_frequency_sources():
    """Every caller uses the contract: no hasattr/getattr on a frequency source anywhere in the package, Keras 3 path included."""
    import pathlib
    import re

    import yt_bias

    probe = re.compile(
        r"\b(?:hasattr|getattr)\(\s*[\w.]*(?:frequency|source|estimator)\b|getattr\([^)]*\"estimand\""
        r"|signature\(\s*[\w.]*(?:frequency|source|estimator)\.call\b"  # does its call take ``training``?
    )
    root = pathlib.Path(yt_bias.__file__).parent
    paths = sorted(root.rglob("*.py"))
    # Both paths are scanned: the tf-keras packages and the Keras 3 path (its own FrequencySource base).
    scanned = {path.relative_to(root).as_posix() for path in paths}
    assert {"core/model.py", "integrations/tfrs.py", "keras3/retrieval.py", "keras3/source.py"} <= scanned
    found = [
        f"{path.relative_to(root).as_posix()}:{n}"
        for path in paths
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if probe.search(line)
    ]
    assert found == []
    assert probe.search('return str(getattr(self.frequency, "estimand", DEFAULT_ESTIMAND))')  # the check can fail
    assert probe.search('if hasattr(source, "update") and hasattr(source, "probability"):')
    assert probe.search('"training" in inspect.signature(source.call).parameters')
