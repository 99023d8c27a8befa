import numpy as np
import pytest

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset, make_tf_dataset
from yt_bias.data.synthetic import SyntheticConfig, generate

SMALL = SyntheticConfig(num_users=200, num_items=150, interactions_per_user=10, num_categories=4, history_length=5, seed=3)


def test_generator_is_deterministic_and_seeded():
    a, b = generate(SMALL), generate(SMALL)
    np.testing.assert_array_equal(a.train[ITEM_INDEX], b.train[ITEM_INDEX])
    c = generate(SyntheticConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(a.train[ITEM_INDEX][:50], c.train[ITEM_INDEX][:50])


def test_split_is_in_time_and_history_never_sees_the_future():
    data = generate(SMALL)
    assert data.train["timestamp"].max() < data.test["timestamp"].min()
    names = data.items["item_id"]
    for split in (data.train, data.test):
        for row in range(0, len(split[ITEM_INDEX]), 7):
            user, time = split[QUERY_KEY][row], split["timestamp"][row]
            history = [h for h in split["history"][row] if h]
            assert names[split[ITEM_INDEX][row]] not in history  # never the item itself (no leak)
            earlier = set()
            for s in (data.train, data.test):
                mask = (s[QUERY_KEY] == user) & (s["timestamp"] < time)
                earlier |= set(names[s[ITEM_INDEX][mask]])
            assert set(history) <= earlier


def test_popularity_is_skewed_and_ground_truth_is_kept():
    data = generate(SMALL)
    counts = np.sort(data.item_counts())[::-1]
    assert counts[:15].sum() > 0.25 * counts.sum()  # the top 10% of items take a large share
    assert data.truth["popularity"].shape == (150,)
    assert 0 < data.train[REWARD].mean() < 1


def test_step_probabilities_are_exact_inclusion_probabilities():
    data = generate(SMALL)
    p = data.step_probabilities(32, "inclusion")
    counts = data.item_counts()
    assert np.all((p >= 0) & (p <= 1))
    assert p.sum() <= 32 + 1e-9  # at most B distinct items per batch
    approx = 1 - (1 - counts / data.num_train) ** 32
    np.testing.assert_allclose(p, approx, atol=0.01)


def test_bad_records_raise_errors_that_name_the_field():
    data = generate(SMALL)
    train = dict(data.train)
    train[REWARD] = train[REWARD].copy()
    train[REWARD][3] = np.nan
    with pytest.raises(ValueError, match="'reward' must be finite and >= 0.*rows \\[3\\]"):
        RecDataset("bad", data.features, data.items, train, data.test)
    train = dict(data.train)
    train[ITEM_INDEX] = train[ITEM_INDEX] + 1000
    with pytest.raises(ValueError, match="'item_index' must be in \\[0, 150\\)"):
        RecDataset("bad", data.features, data.items, train, data.test)
    train = {k: v for k, v in data.train.items() if k != "history"}
    with pytest.raises(ValueError, match="feature 'history' is missing"):
        RecDataset("bad", data.features, data.items, train, data.test)
    with pytest.raises(ValueError, match="interactions_per_user"):
        SyntheticConfig(num_items=10, interactions_per_user=10)


def test_pipeline_batches_are_full_and_shaped():
    data = generate(SMALL)
    ds = make_tf_dataset(data.examples("train"), batch_size=16)
    batch = next(iter(ds))
    assert batch["history"].shape == (16, 5) and batch["item_id"].shape == (16,)
    with pytest.raises(ValueError, match="batch_size 100000 is larger"):
        make_tf_dataset(data.examples("train"), batch_size=100000)
