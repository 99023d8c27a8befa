"""The correction's estimand: what p estimates must match the candidate columns the softmax sees."""

import dataclasses

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import keras, tf
from yt_bias.core.frequency import OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.model import unique_columns
from yt_bias.data.dataset import REWARD, batch_frequencies
from yt_bias.data.loading import load_dataset
from yt_bias.training.train import build_model

SMOKE = config_lib.smoke()


def algorithm2_per_example(batches, hash_size, alpha, b0, buckets_of, spread=True):
    """Algorithm 2 as a loop over every example of every batch (one hash).

    ``spread=False``: the paper's loop (the first row of a bucket sees the gap, the others 0);
    ``spread=True``: each of the bucket's c rows of the step sees gap / c.
    """
    a = np.zeros(hash_size, np.int64)
    b = np.full(hash_size, b0, np.float64)
    for t, batch in enumerate(batches, start=1):
        hashed = [buckets_of[item] for item in batch]
        counts = {h: hashed.count(h) for h in hashed}
        gaps = {h: t - a[h] for h in counts}
        for h in hashed:
            gap = gaps[h] / counts[h] if spread else t - a[h]
            b[h] = (1 - alpha) * b[h] + alpha * gap
            a[h] = t
    return a, b


def _bucket_map(estimator, items):
    buckets = estimator.buckets(tf.constant(items, tf.int64)).numpy()[0]
    return dict(zip(items, buckets.tolist()))


def test_expected_count_update_is_the_per_example_loop_with_the_gap_spread_over_rows():
    rng = np.random.default_rng(0)
    items = list(range(50))
    est = StreamingFrequencyEstimator(64, alpha=0.05, initial_interval=20.0, estimand="expected_count")
    buckets_of = _bucket_map(est, items)
    q = 1.0 / np.arange(1, 51) ** 1.2
    q /= q.sum()
    batches = [rng.choice(50, size=16, p=q) for _ in range(60)]  # with replacement: many repeats
    for batch in batches:
        est.update(tf.constant(batch, tf.int64))
    a, b = algorithm2_per_example(batches, 64, 0.05, 20.0, buckets_of)
    np.testing.assert_array_equal(est.last_step.numpy()[0], a)
    np.testing.assert_allclose(est.interval.numpy()[0], b, rtol=2e-5)
    # The paper's literal loop (gap, 0, 0, ...) differs only inside steps with repeats.
    _, literal = algorithm2_per_example(batches, 64, 0.05, 20.0, buckets_of, spread=False)
    repeated = [h for h in set(buckets_of.values()) if abs(literal[h] - b[h]) > 1e-6]
    assert repeated


def test_without_repeats_both_estimands_equal_algorithm2():
    batches = [np.array([1, 2, 3]), np.array([2, 4, 5]), np.array([1, 5, 6])]
    inclusion = StreamingFrequencyEstimator(256, alpha=0.1, estimand="inclusion")
    count = StreamingFrequencyEstimator(256, alpha=0.1, estimand="expected_count")
    for batch in batches:
        inclusion.update(tf.constant(batch, tf.int64))
        count.update(tf.constant(batch, tf.int64))
    np.testing.assert_allclose(inclusion.interval.numpy(), count.interval.numpy(), rtol=1e-6)


def test_periodic_stream_with_duplicates_reads_exact_rates():
    # Item 7: 3 rows in every step (3 per batch); item 8: 2 rows every 4th step (0.5 per batch).
    count = StreamingFrequencyEstimator(1024, alpha=0.05, initial_interval=10.0, estimand="expected_count")
    inclusion = StreamingFrequencyEstimator(1024, alpha=0.05, initial_interval=10.0, estimand="inclusion")
    for t in range(1, 801):
        batch = [7, 7, 7, 1000 + t] + ([8, 8] if t % 4 == 0 else [])
        count.update(tf.constant(batch, tf.int64))
        inclusion.update(tf.constant(batch, tf.int64))
    p_count = count.probability(tf.constant([7, 8], tf.int64)).numpy()
    p_incl = inclusion.probability(tf.constant([7, 8], tf.int64)).numpy()
    np.testing.assert_allclose(p_count, [3.0, 0.5], rtol=0.02)
    np.testing.assert_allclose(p_incl, [1.0, 0.25], rtol=0.02)


def test_zipf_stream_expected_count_tracks_batch_counts_and_inclusion_does_not():
    rng = np.random.default_rng(1)
    n_items, batch = 200, 256
    q = 1.0 / np.arange(1, n_items + 1)
    q /= q.sum()
    count = StreamingFrequencyEstimator(1 << 14, alpha=0.02, initial_interval=5.0, estimand="expected_count")
    inclusion = StreamingFrequencyEstimator(1 << 14, alpha=0.02, initial_interval=5.0, estimand="inclusion")

    @tf.function
    def step(ids):
        count.update(ids)
        inclusion.update(ids)

    for _ in range(1500):
        step(tf.constant(rng.choice(n_items, size=batch, p=q), tf.int64))
    ids = tf.constant(np.arange(10), tf.int64)
    truth = batch * q[:10]  # the expected rows per batch of the 10 most popular items (all > 1)
    est_count = count.probability(ids).numpy()
    np.testing.assert_allclose(est_count, truth, rtol=0.25)
    assert inclusion.probability(ids).numpy().max() <= 1.0
    # The inclusion estimand misses log(B q) nats for the top item.
    assert np.log(est_count[0]) - np.log(inclusion.probability(ids).numpy()[0]) > 0.8 * np.log(truth[0])


def test_bias_correction_first_sighting_does_not_count_the_gap_from_step_zero():
    est = StreamingFrequencyEstimator(1024, alpha=0.01, initial_interval=100.0, bias_correction=True)
    plain = StreamingFrequencyEstimator(1024, alpha=0.01, initial_interval=100.0)
    for _ in range(1000):
        est.update(tf.constant([1], tf.int64))
        plain.update(tf.constant([1], tf.int64))
    est.update(tf.constant([2], tf.int64))  # step 1001: item 2 first seen
    plain.update(tf.constant([2], tf.int64))
    assert est.probability(tf.constant([2], tf.int64)).numpy()[0] == pytest.approx(1 / 100.0)  # B0: no interval yet
    assert plain.probability(tf.constant([2], tf.int64)).numpy()[0] == pytest.approx(1 / (0.99 * 100 + 0.01 * 1001), rel=1e-5)
    for _ in range(9):
        est.update(tf.constant([1], tf.int64))
    est.update(tf.constant([2], tf.int64))  # step 1011: its first observed gap is 10
    assert est.probability(tf.constant([2], tf.int64)).numpy()[0] == pytest.approx(1 / 10.0, rel=1e-4)


def test_probability_is_clipped_at_one_only_for_inclusion():
    count = StreamingFrequencyEstimator(64, alpha=0.5, initial_interval=1.0, estimand="expected_count")
    for _ in range(20):
        count.update(tf.constant([3, 3, 3, 3], tf.int64))
    assert count.probability(tf.constant([3], tf.int64)).numpy()[0] > 2.0
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        OracleFrequency(["a"], [2.0], estimand="inclusion")
    oracle = OracleFrequency(["a", "b"], [2.5, 0.1], estimand="expected_count")
    np.testing.assert_allclose(oracle.probability(tf.constant(["a", "b"])).numpy(), [2.5, 0.1], rtol=1e-6)


def test_batch_frequencies_of_both_estimands():
    counts = np.array([30, 10, 0, 60])
    np.testing.assert_allclose(batch_frequencies(counts, 10, "expected_count"), [3.0, 1.0, 0.0, 6.0])
    incl = batch_frequencies(counts, 10, "inclusion")
    assert np.all(incl <= 1.0) and incl[2] == 0.0 and incl[3] > incl[0] > incl[1]
    # Monte Carlo check of the inclusion probability of item 1 (10 of 100 rows, batches of 10).
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(4), counts)
    hits = np.mean([np.any(rng.permutation(rows)[:10] == 1) for _ in range(4000)])
    assert hits == pytest.approx(incl[1], abs=0.03)


def test_layer_call_updates_only_when_training():
    est = StreamingFrequencyEstimator(64)
    est(tf.constant(["a", "b"]), training=False)
    assert int(est.step.numpy()) == 0
    p = est(tf.constant(["a", "b"]), training=True)
    assert int(est.step.numpy()) == 1 and p.shape == (2,)
    with pytest.raises(ValueError, match="item_ids is empty"):
        est.update([])


def test_unique_columns():
    ids = tf.constant(["x", "y", "x", "z", "y"])
    unique_ids, column, first_row = unique_columns(ids)
    assert unique_ids.numpy().tolist() == [b"x", b"y", b"z"]
    assert column.numpy().tolist() == [0, 1, 0, 2, 1]
    assert first_row.numpy().tolist() == [0, 1, 3]


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(SMOKE.data, SMOKE.model.embedding_dim)


def _log_softmax_loss(query, items, log_q, positive_index, tau, rewards):
    logits = query @ items.T / tau - log_q[None, :]
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    per = lse - logits[np.arange(len(query)), positive_index]
    return float(np.mean(rewards * per))


@pytest.mark.parametrize(
    "estimand,candidates", [("expected_count", "rows"), ("inclusion", "unique"), ("inclusion", "rows")]
)
def test_train_step_loss_equals_hand_computation_with_log_p(dataset, estimand, candidates):
    """The reported loss of one train_step equals the corrected softmax with the estimator's log p.

    It fails if the correction is dropped, applied to the wrong items, read before the update,
    clipped at 1 for expected counts, or if the unique columns do not line up with their rows.
    """
    config = dataclasses.replace(
        SMOKE,
        variant="correct-sfx",
        estimator=dataclasses.replace(SMOKE.estimator, estimand=estimand, hash_size=1 << 12, alpha=0.5, initial_interval=3.0),
        model=dataclasses.replace(SMOKE.model, candidates=candidates, allow_unpaired_estimand=True),
    )
    model = build_model(config, dataset)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    examples = dataset.examples("train")
    # A batch where one item repeats several times.
    item_index = examples["item_index"]
    popular = np.bincount(item_index).argmax()
    rows = np.concatenate([np.flatnonzero(item_index == popular)[:5], np.arange(27)])
    batch = {k: tf.constant(v[rows]) for k, v in examples.items()}
    batch[REWARD] = tf.constant(np.linspace(0.5, 1.5, len(rows)).astype(np.float32))
    ids = batch[dataset.features.item_id]
    # A known state: two earlier steps with this batch's items, so p differs across items.
    model.frequency.update(ids[:10])
    model.frequency.update(ids)
    reference = StreamingFrequencyEstimator(1 << 12, alpha=0.5, initial_interval=3.0, estimand=estimand)
    reference.update(ids[:10])
    reference.update(ids)
    reference.update(ids)  # what train_step does before reading
    p = reference.probability(ids).numpy()
    query, items = (t.numpy() for t in model(batch, training=True))
    rewards = batch[REWARD].numpy()
    if candidates == "unique":
        _, column, first = (t.numpy() for t in unique_columns(ids))
        expected = _log_softmax_loss(query, items[first], np.log(p[first]), column, config.model.temperature, rewards)
    else:
        expected = _log_softmax_loss(query, items, np.log(p), np.arange(len(rows)), config.model.temperature, rewards)
    model.loss_tracker.reset_state()
    reported = float(model.train_step(batch)["loss"])
    assert reported == pytest.approx(expected, rel=1e-4)
    if estimand == "expected_count":
        assert p.max() > 1.0  # the repeated item's expected count, not clipped
    plain = _log_softmax_loss(query, items, np.zeros(len(rows)), np.arange(len(rows)), config.model.temperature, rewards)
    assert abs(plain - expected) > 1e-3


def test_known_exclusion_removes_earlier_test_items_but_never_the_target(dataset):
    from yt_bias.evaluation.exact import evaluate_most_popular, exclusions_for

    positives = dataset.test_positives()
    train_lists = exclusions_for(dataset, positives, "train")
    known_lists = exclusions_for(dataset, positives, "known")
    assert exclusions_for(dataset, positives, "none") is None
    grew = 0
    for train_items, known, target in zip(train_lists, known_lists, positives["item_index"]):
        assert set(train_items.tolist()) - {int(target)} <= set(known.tolist())
        assert target not in known
        grew += len(known) > len(train_items)
    assert grew > 0  # some queries have earlier test-period items
    # Removing non-target items can only move a target up: recall never drops.
    train_recall = evaluate_most_popular(dataset, (10, 50), exclude="train")
    known_recall = evaluate_most_popular(dataset, (10, 50), exclude="known")
    assert all(known_recall[k] >= train_recall[k] for k in train_recall)
    with pytest.raises(ValueError, match="eval.exclude"):
        exclusions_for(dataset, positives, "everything")


def test_synthetic_activity_uses_the_training_period_only():
    from yt_bias.data.synthetic import SyntheticConfig, generate

    small = SyntheticConfig(num_users=300, num_items=200, interactions_per_user=12)
    data = generate(small)
    users = np.concatenate([data.train["user_id"], data.test["user_id"]])
    activity = np.concatenate([data.train["activity"][:, 0], data.test["activity"][:, 0]])
    train_volume = {u: c for u, c in zip(*np.unique(data.train["user_id"], return_counts=True))}
    expected = np.log1p([train_volume.get(u, 0) for u in users]) - np.log1p(12 * small.train_fraction)
    np.testing.assert_allclose(activity, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- pairing and the one log-q read
def test_config_refuses_an_unpaired_estimand_naming_both_fields():
    with pytest.raises(ValueError, match=r"model.candidates='rows' does not pair with estimator.estimand='inclusion': "
                                         r"expected model.candidates='unique'.*model.allow_unpaired_estimand=true"):
        config_lib.override(SMOKE, "estimator.estimand=inclusion")
    with pytest.raises(ValueError, match=r"model.candidates='unique' does not pair with estimator.estimand='expected_count'"):
        config_lib.override(SMOKE, "model.candidates=unique")
    # Applied together, a paired change passes; plain-sfx has no estimand to pair; the flag opts in.
    assert config_lib.override(SMOKE, "model.candidates=unique", "estimator.estimand=inclusion").model.candidates == "unique"
    assert config_lib.override(SMOKE, "variant=plain-sfx", "estimator.estimand=inclusion").variant == "plain-sfx"
    unpaired = config_lib.override(SMOKE, "estimator.estimand=inclusion", "model.allow_unpaired_estimand=true")
    assert (unpaired.estimator.estimand, unpaired.model.candidates) == ("inclusion", "rows")
    with pytest.raises(ValueError, match="estimator.estimand must be one of"):
        config_lib.override(SMOKE, "estimator.estimand=rate")


def test_the_estimand_study_opts_in_to_its_unpaired_pairing_only():
    from yt_bias.estimands import PAIRED_CANDIDATES
    from yt_bias.experiments.estimand import method_config, method_names

    for method in method_names()[1:]:
        config = method_config(SMOKE, method)
        paired = PAIRED_CANDIDATES[config.estimator.estimand] == config.model.candidates
        assert config.model.allow_unpaired_estimand, method
        assert paired == (not method.startswith("inclusion+rows")), method


def test_model_and_corrected_retrieval_read_one_log_q(dataset):
    from yt_bias.integrations.tfrs import CorrectedRetrieval

    ids = tf.constant(dataset.item_ids[:6])
    p = np.array([3.0, 0.5, 1.5, 1e-30, 2.0, 0.25], np.float32)
    oracle = OracleFrequency(dataset.item_ids[:6], np.maximum(p, 1e-20), estimand="expected_count")
    model = build_model(SMOKE, dataset, frequency=oracle)
    expected = np.log(np.maximum(p, 1e-12))  # no upper clip for expected counts
    np.testing.assert_allclose(model.sampling_log_q(ids, update=True).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(oracle.log_q(ids, update=False).numpy(), expected, rtol=1e-5)
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    task = CorrectedRetrieval(frequency=oracle, temperature=0.5)
    given = CorrectedRetrieval(frequency=oracle, temperature=0.5)
    # The task's read equals the loss given log q's probabilities explicitly, clipped the same way.
    assert float(task(q, c, candidate_ids=ids, training=True)) == pytest.approx(
        float(given(q, c, candidate_sampling_probability=np.exp(expected), candidate_ids=ids)), rel=1e-5)
    with pytest.raises(TypeError, match="FrequencySource"):
        build_model(SMOKE, dataset, frequency=keras.layers.Dense(1))
    with pytest.raises(TypeError, match="FrequencySource"):
        CorrectedRetrieval(frequency=keras.layers.Dense(1))
