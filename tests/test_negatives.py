"""Negative-sampling strategies: corrections, masks, memory, impressions data, the 2025 loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import keras, tf
from yt_bias.config import NegativesConfig
from yt_bias.core.candidates import BatchView, concat_blocks
from yt_bias.core.cross_batch import CrossBatchMemory
from yt_bias.core.frequency import OracleFrequency
from yt_bias.core.losses import corrected_logq_loss, corrected_softmax_loss
from yt_bias.core.model import TwoTowerModel
from yt_bias.core.negatives import HARD_NEGATIVES, NegativeStrategy, build_strategy, training_examples
from yt_bias.data.dataset import ITEM_INDEX, REWARD
from yt_bias.data.impressions import (
    IMPRESSION_CLICKS,
    IMPRESSIONS,
    ImpressionsConfig,
    add_impressions,
    impression_indices,
)
from yt_bias.data.synthetic import SyntheticConfig, generate

TINY = SyntheticConfig(num_users=60, num_items=40, interactions_per_user=5, num_categories=3, history_length=3)


@pytest.fixture(scope="module")
def data():
    return add_impressions(generate(TINY, embedding_dim=4), ImpressionsConfig(slate_size=5, min_slate_size=3))


def _model(data, negatives=None, frequency=True):
    freq = None
    if frequency:
        p = np.linspace(0.05, 0.5, data.num_items)
        freq = OracleFrequency(data.item_ids, p, name="frequency")
    keras.utils.set_random_seed(0)
    return TwoTowerModel(data.features, hidden_units=(8,), temperature=0.1, frequency=freq, negatives=negatives)


def _batch(examples, n=8):
    return {k: tf.constant(v[:n]) for k, v in examples.items()}


def _candidates(strategy, model, batch, log_q, training=False):
    """The strategy's candidates of one batch, (embeddings [N, d], ids [N], log_q [B, N] or None, mask [B, N]):
    the samplers get the model's item tower and frequency source, never the model."""
    query, items = model(batch, training=training)
    view = BatchView(batch, query, items, batch["item_id"], log_q)
    candidates = concat_blocks(strategy.sample(view, model.item_tower, model.frequency, training), view.batch_size)
    return candidates.embeddings, candidates.ids, candidates.log_q, candidates.mask


def _with_strategy(model, strategy):
    """``model`` with ``strategy`` as its negatives (same towers, same weights)."""
    model.negatives = strategy
    return model


def test_impressions_structure(data):
    plain = generate(TINY, embedding_dim=4)
    organic = data.truth["impressions"]["organic_item_index"]
    for split in ("train", "test"):
        rows = getattr(data, split)
        for name, values in getattr(plain, split).items():  # the generator's request context is unchanged
            if name not in (ITEM_INDEX, "reward"):
                np.testing.assert_array_equal(np.asarray(values), np.asarray(rows[name]))
        np.testing.assert_array_equal(organic[split], getattr(plain, split)[ITEM_INDEX])
        names, clicks = rows[IMPRESSIONS], rows[IMPRESSION_CLICKS]
        assert names.shape == clicks.shape == (len(rows[ITEM_INDEX]), 5)
        own = data.item_ids[rows[ITEM_INDEX]]
        assert np.all((names == own[:, None]).sum(axis=1) == 1)  # the clicked item is shown exactly once
        np.testing.assert_array_equal(clicks[names == own[:, None]], 1.0)
        assert np.all((clicks == 1).sum(axis=1) == 1)  # exactly one click per request (slate MNL)
        assert np.all((names == "") == (clicks == -1))  # "" padding <-> label -1
        assert np.all((names != "").sum(axis=1) >= 3)
        shown = names[names != ""]
        assert len(np.unique(shown)) > 1
        for row in range(len(names)):  # distinct items per slate
            assert len(set(names[row][names[row] != ""])) == (names[row] != "").sum()
    # the policy never shows (so the user never clicks) an item the user already consumed
    seen = data.seen_items()
    assert not any(i in set(seen.get(k, np.zeros(0)).tolist()) for k, i in zip(data.test["query_key"], data.test[ITEM_INDEX]))
    negatives = impression_indices(data, "train", label=0.0)
    assert np.all(negatives != data.train[ITEM_INDEX][:, None])
    assert (negatives >= 0).sum() > 0


def test_organic_click_model_keeps_the_generator_rows():
    plain = generate(TINY, embedding_dim=4)
    data = add_impressions(plain, ImpressionsConfig(slate_size=5, min_slate_size=3, click_model="organic"))
    for split in ("train", "test"):
        for name, values in getattr(plain, split).items():
            np.testing.assert_array_equal(np.asarray(values), np.asarray(getattr(data, split)[name]))


def test_slate_clicks_follow_the_true_utility():
    """Under the multinomial logit the clicked item has the best true utility of its slate far more
    often than chance (1 / slate size), and the policy's items are clicked too (not only the organic one)."""
    from yt_bias.data.synthetic import true_preference_scores

    data = add_impressions(generate(SyntheticConfig(num_users=200, num_items=100, interactions_per_user=8), embedding_dim=4))
    slates = impression_indices(data, "train", label=None)
    users = np.char.replace(data.train["user_id"].astype(str), "user_", "").astype(int)
    utility = true_preference_scores(data, users)
    scores = np.where(slates >= 0, np.take_along_axis(utility, np.maximum(slates, 0), axis=1), -np.inf)
    clicked_slot = np.argmax(data.train[IMPRESSION_CLICKS], axis=1)
    best = np.mean(np.argmax(scores, axis=1) == clicked_slot)
    chance = np.mean(1.0 / (slates >= 0).sum(axis=1))
    assert best > chance + 0.2
    organic = data.truth["impressions"]["organic_item_index"]["train"]
    assert 0.05 < np.mean(organic == data.train[ITEM_INDEX]) < 0.95


def test_synthetic_impressions_source_trains_with_hard_negatives(tmp_path):
    from yt_bias.cli import main

    code = main(
        [
            "train",
            "--preset",
            "smoke",
            "--set",
            "data.source=synthetic-impressions",
            "--set",
            "negatives.impressions=hard-negative",
            "--workdir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0 and (tmp_path / "run" / "metrics.json").exists()
    from yt_bias.config import DataConfig
    from yt_bias.data.loading import load_dataset

    dataset = load_dataset(DataConfig(source="synthetic-impressions", synthetic=TINY), embedding_dim=4)
    assert IMPRESSIONS in dataset.train and dataset.name == "synthetic+impressions"


def test_impressions_config_errors():
    with pytest.raises(ValueError, match="min_slate_size must be <= slate_size"):
        ImpressionsConfig(slate_size=4, min_slate_size=5)
    with pytest.raises(ValueError, match="slate_size must be an integer >= 2"):
        ImpressionsConfig(slate_size=1)
    with pytest.raises(ValueError, match="click_model must be one of"):
        ImpressionsConfig(click_model="cascade")
    with pytest.raises(ValueError, match="position_bias must be >= 0"):
        ImpressionsConfig(position_bias=-1.0)


def test_negatives_config_errors():
    with pytest.raises(ValueError, match="impressions must be one of"):
        NegativesConfig(impressions="both")
    with pytest.raises(ValueError, match="in_batch=False needs another source"):
        NegativesConfig(in_batch=False)
    with pytest.raises(ValueError, match="mixed_uniform must be an integer >= 0"):
        NegativesConfig(mixed_uniform=-1)
    assert config_lib.override(config_lib.smoke(), "negatives.loss=corrected-logq-2025").negatives.loss == "corrected-logq-2025"


def test_default_config_keeps_the_paper_path(data):
    assert build_strategy(NegativesConfig(), data, 8) is None
    assert isinstance(build_strategy(NegativesConfig(mixed_uniform=4), data, 8), NegativeStrategy)


def test_explicit_in_batch_strategy_equals_the_plain_loss(data):
    examples = data.examples("train")
    batch = _batch(examples)
    model = _model(data)
    strategy = NegativeStrategy(data.items, in_batch=True)
    log_q = model.sampling_log_q(batch["item_id"], update=False)
    expected = model.batch_loss(batch, log_q, training=False)
    got = _with_strategy(model, strategy).batch_loss(batch, log_q, training=False)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)


def test_random_negatives_correction_is_a_constant_and_changes_nothing(data):
    batch = _batch(data.examples("train"))
    model = _model(data)
    strategy = NegativeStrategy(data.items, in_batch=False, uniform_per_query=3)
    log_q = model.sampling_log_q(batch["item_id"], update=False)
    query, _ = model(batch)
    tf.random.set_seed(3)
    emb, _, lq, mask = _candidates(strategy, model, batch, log_q)
    assert emb.shape[0] == 8 + 8 * 3
    np.testing.assert_allclose(lq.numpy(), np.log(3 / data.num_items), rtol=1e-5)
    m = mask.numpy()
    assert m[:, :8].sum() == 8 and np.all(np.diag(m[:, :8]))  # only each query's own positive
    assert np.all(m[:, 8:].sum(axis=1) == 3) and m[0, 8:11].all() and not m[1, 8:11].any()
    corrected = corrected_softmax_loss(query, emb, 0.1, log_q=lq, candidate_mask=mask)
    uncorrected = corrected_softmax_loss(query, emb, 0.1, log_q=None, candidate_mask=mask)
    np.testing.assert_allclose(corrected.numpy(), uncorrected.numpy(), rtol=1e-5)


def test_mixed_uses_the_mixture_proposal(data):
    batch = _batch(data.examples("train"))
    model = _model(data)
    strategy = NegativeStrategy(data.items, mixed_uniform=5)
    log_q = model.sampling_log_q(batch["item_id"], update=False)
    emb, ids, lq, mask = _candidates(strategy, model, batch, log_q)
    assert emb.shape[0] == 13 and mask.numpy().all()
    p = model.frequency.probability(ids).numpy()
    np.testing.assert_allclose(lq.numpy()[0], np.log(p + 5 / data.num_items), rtol=1e-5)
    np.testing.assert_allclose(lq.numpy()[3], lq.numpy()[0])


def test_cross_batch_memory_fifo_and_warmup():
    memory = CrossBatchMemory(size=4, dim=2, warmup_steps=2)
    assert not memory.valid().numpy().any()
    memory.push(tf.constant([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]), tf.constant([1, 2, 3]))
    assert not memory.valid().numpy().any()  # warm-up: one push < 2
    memory.push(tf.constant([[4.0, 0.0], [5.0, 0.0]]), tf.constant([4, 5]))
    np.testing.assert_array_equal(memory.valid().numpy(), [True] * 4)
    np.testing.assert_array_equal(memory.item_index.numpy(), [5, 2, 3, 4])  # slot 0 overwritten, oldest first
    np.testing.assert_array_equal(memory.embeddings.numpy()[:, 0], [5, 2, 3, 4])
    with pytest.raises(ValueError, match="size must be >= 1"):
        CrossBatchMemory(size=0, dim=2)


def test_cross_batch_strategy_adds_memory_after_warmup(data):
    examples = data.examples("train")
    strategy = NegativeStrategy(data.items, memory_size=16, memory_warmup_steps=1, embedding_dim=8)
    model = _model(data, negatives=strategy)
    for step in range(3):
        batch = _batch({k: v[8 * step :] for k, v in examples.items()})
        log_q = model.sampling_log_q(batch["item_id"], update=False)
        _, ids, lq, mask = _candidates(strategy, model, batch, log_q, training=True)
        used = mask.numpy()[:, 8:].sum(axis=1)
        assert np.all(used == min(8 * step, 16))
        model.batch_loss(batch, log_q, training=True)  # the training loss enqueues the batch
    # batch and memory columns share one factor (1 + filled / B) on top of p_j
    p = model.frequency.probability(ids).numpy()
    np.testing.assert_allclose(lq.numpy()[0], np.log(p * (1 + 16 / 8)), rtol=1e-5)


def test_hard_negatives_are_masked_to_their_query(data):
    examples = training_examples(NegativesConfig(impressions="hard-negative"), data)
    assert examples[HARD_NEGATIVES].shape == (data.num_train, 5)
    batch = _batch(examples)
    model = _model(data)
    strategy = NegativeStrategy(data.items, hard_negatives=True, hard_negative_log_q=-2.0)
    log_q = model.sampling_log_q(batch["item_id"], update=False)
    _, ids, lq, mask = _candidates(strategy, model, batch, log_q)
    shown = examples[HARD_NEGATIVES][:8]
    m = mask.numpy()[:, 8:]
    assert m.shape == (8, 8 * 5)
    for i in range(8):
        np.testing.assert_array_equal(m[i, 5 * i : 5 * i + 5], shown[i] >= 0)
        assert m[i].sum() == (shown[i] >= 0).sum()
        slots = np.flatnonzero(shown[i] >= 0)
        got = ids.numpy()[8 + 5 * i + slots].astype(str)
        np.testing.assert_array_equal(got, data.item_ids[shown[i][slots]])
    np.testing.assert_allclose(lq.numpy()[:, 8:], -2.0)
    with pytest.raises(ValueError, match="hard_negative_index"):
        _candidates(strategy, model, _batch(data.examples("train")), log_q)


def test_mined_hard_negatives_are_the_top_scoring_non_positive_items(data):
    examples = data.examples("train")
    batch = _batch(examples)
    model = _model(data)
    strategy = NegativeStrategy(data.items, mined_hard_per_query=3)
    log_q = model.sampling_log_q(batch["item_id"], update=False)
    query, _ = model(batch)
    emb, ids, lq, mask = _candidates(strategy, model, batch, log_q)
    assert emb.shape[0] == 8 + 8 * 3
    corpus = model.item_tower({k: tf.constant(v) for k, v in data.items.items()}, training=False).numpy()
    scores = query.numpy() @ corpus.T
    positives = examples["item_id"][:8]
    ids = ids.numpy().astype(str)
    m, lq = mask.numpy(), lq.numpy()
    p = model.frequency.probability(tf.constant(ids)).numpy()
    mined_any_in_batch = False
    for i in range(8):
        own = data.item_ids == positives[i]
        expected = np.argsort(-np.where(own, -np.inf, scores[i]), kind="stable")[:3]
        got = ids[8 + 3 * i : 8 + 3 * i + 3]
        assert positives[i] not in got
        assert set(got) == set(data.item_ids[expected])  # the k best non-positive items of query i
        np.testing.assert_allclose(np.sort(scores[i][np.isin(data.item_ids, got)]), np.sort(scores[i][expected]), rtol=1e-5)
        assert m[i, 8 + 3 * i : 8 + 3 * i + 3].all() and m[i, 8:].sum() == 3  # masked to their own query
        # log q = log(expected count): mined columns 1 + p_j; in-batch columns p_j (+1 if also mined for i)
        np.testing.assert_allclose(lq[i, 8 + 3 * i : 8 + 3 * i + 3], np.log(1 + p[8 + 3 * i : 8 + 3 * i + 3]), rtol=1e-5)
        also_mined = np.isin(ids[:8], got)
        mined_any_in_batch |= bool(also_mined.any())
        np.testing.assert_allclose(lq[i, :8], np.log(p[:8] + also_mined), rtol=1e-5)
    assert mined_any_in_batch  # the +1 case above was exercised (40 items, 8 positives, top 3 each)
    # The mined block is differentiable through the item tower (re-embedded with gradient).
    with tf.GradientTape() as tape:
        loss = _with_strategy(model, strategy).batch_loss(batch, log_q, training=True)
    grads = tape.gradient(loss, model.item_tower.trainable_variables)
    assert np.isfinite(loss.numpy()) and all(g is not None for g in grads)


def test_mined_hard_negatives_from_a_pool(data):
    batch = _batch(data.examples("train"))
    model = _model(data)
    strategy = NegativeStrategy(data.items, mined_hard_per_query=2, mined_pool=10)
    log_q = model.sampling_log_q(batch["item_id"], update=False)
    tf.random.set_seed(1)
    _, ids, lq, mask = _candidates(strategy, model, batch, log_q)
    ids = ids.numpy().astype(str)
    mined = ids[8:].reshape(8, 2)
    assert not np.any(mined == batch["item_id"].numpy().astype(str)[:, None])
    p = model.frequency.probability(tf.constant(ids[8:])).numpy()
    own = np.concatenate([lq.numpy()[i, 8 + 2 * i : 10 + 2 * i] for i in range(8)])
    np.testing.assert_allclose(own, np.log(p + 10 / data.num_items), rtol=1e-5)  # inclusion P/N
    with pytest.raises(ValueError, match="mined_pool must be <= the corpus size"):
        NegativeStrategy(data.items, mined_hard_per_query=2, mined_pool=data.num_items + 1)
    with pytest.raises(ValueError, match="mined_hard_per_query must be < the mining pool"):
        NegativeStrategy(data.items, mined_hard_per_query=data.num_items)
    with pytest.raises(ValueError, match="mined_pool must be 0"):
        NegativesConfig(mined_hard_per_query=3, mined_pool=3)
    with pytest.raises(ValueError, match="mined_pool must be 0"):
        NegativesConfig(mined_pool=8)
    assert isinstance(build_strategy(NegativesConfig(mined_hard_per_query=2), data, 8), NegativeStrategy)
    assert NegativesConfig(in_batch=False, mined_hard_per_query=2).mined_hard_per_query == 2


def test_weak_positive_rows(data):
    config = NegativesConfig(impressions="weak-positive", impression_reward=0.25)
    examples = training_examples(config, data)
    shown = impression_indices(data, "train", label=None)
    extra = int(((shown >= 0) & (shown != data.train[ITEM_INDEX][:, None])).sum())
    assert len(examples[ITEM_INDEX]) == data.num_train + extra
    np.testing.assert_allclose(examples[REWARD][data.num_train :], 0.25)  # no extra clicks by default
    np.testing.assert_array_equal(examples["item_id"], data.item_ids[examples[ITEM_INDEX]])


def test_corrected_logq_2025_matches_numpy():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
    log_q = np.log(np.array([0.2, 0.5, 0.1], np.float32))
    ids = np.array(["a", "b", "a"])  # column 2 repeats query 0's positive "a"
    got = corrected_logq_loss(u, v, 1.0, log_q, candidate_ids=ids, reduce=False).numpy()
    s = u @ v.T
    expected = []
    for i in range(2):
        q_pos = np.exp(log_q[i])
        logits = []
        for j in range(3):
            if j == i:
                logits.append(s[i, j])  # positive: no correction
            elif ids[j] == ids[i]:
                continue  # the positive's duplicate is dropped
            else:
                logits.append(s[i, j] - (log_q[j] - np.log1p(-q_pos)))
        p_hat = np.exp(s[i, i]) / np.exp(logits).sum()
        expected.append(-(1 - p_hat) * np.log(p_hat))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_corrected_logq_gradient_weight_is_stopped():
    u = tf.Variable([[1.0, 0.0]])
    v = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    with tf.GradientTape() as tape:
        loss = corrected_logq_loss(u, v, 1.0, np.log([0.5, 0.5]).astype(np.float32))
    grad = tape.gradient(loss, u).numpy()
    # d/du of -(w) log P with w constant = -w * (v_pos - E[v])
    logits = np.array([1.0, 0.0 - (np.log(0.5) - np.log(0.5))])
    p = np.exp(logits) / np.exp(logits).sum()
    w = 1 - p[0]
    np.testing.assert_allclose(grad, -w * (v.numpy()[0] - p @ v.numpy())[None, :], rtol=1e-5)


def test_every_strategy_trains(data):
    from yt_bias.training.train import fit

    base = dataclasses.replace(
        config_lib.smoke(),
        model=config_lib.ModelConfig(embedding_dim=4, hidden_units=(8,)),
        train=config_lib.TrainConfig(batch_size=32, epochs=1, verbose=0),
    )
    for negatives in (
        NegativesConfig(in_batch=False, uniform_per_query=2),
        NegativesConfig(mixed_uniform=8),
        NegativesConfig(memory_size=32, memory_warmup_steps=1),
        NegativesConfig(impressions="weak-positive"),
        NegativesConfig(impressions="hard-negative"),
        NegativesConfig(loss="corrected-logq-2025"),
        NegativesConfig(mined_hard_per_query=3),
        NegativesConfig(mined_hard_per_query=2, mined_pool=16),
    ):
        model, info = fit(dataclasses.replace(base, negatives=negatives), data)
        assert np.isfinite(info["loss_history"][0]) and info["loss_history"][0] > 0
        # weak positives change the training rows only; the others add candidates through a strategy
        assert (model.negatives is None) == (negatives.impressions == "weak-positive")
