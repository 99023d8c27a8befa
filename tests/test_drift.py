"""Drift experiment: past-only frequency tables, drifting days, next-day evaluation, the command end to end."""

from __future__ import annotations

import dataclasses
import json
import os
from math import comb

import numpy as np
import pytest

from yt_bias import cli
from yt_bias.config import DataConfig, ModelConfig, TrainConfig, smoke
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, batch_frequencies
from yt_bias.data.drift import DriftConfig, drift_days, drift_schedule, stream_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.data.synthetic import SyntheticConfig
from yt_bias.retrieval.embedding import embed
from yt_bias.experiments.drift import quick, run_one, warmup_profile
from yt_bias.training.day_by_day import build_frequency_source
from yt_bias.core.frequency_baselines import (
    CumulativeFrequency,
    CurrentDayOracle,
    FixedTableFrequency,
    FrozenFrequency,
    PreviousDayFrequency,
)
from yt_bias.evaluation.next_day import SeenItems, evaluate_next_day, next_day_metrics
from yt_bias.training.train import build_model

B = 2
DAYS = [["a", "a", "b"], ["b", "c"], ["c", "c", "c", "d"]]


def _inclusion(c: int, n: int, b: int = B) -> float:
    """By hand: 1 - C(n - c, b) / C(n, b)."""
    return 1.0 - comb(n - c, b) / comb(n, b)


def _read(source, ids=("a", "b", "c", "d", "new")):
    return dict(zip(ids, source.probability(list(ids)).numpy().tolist()))


def _expected(counts: dict, ids=("a", "b", "c", "d", "new")):
    n = sum(counts.values())
    return {i: _inclusion(counts.get(i, 1), n) for i in ids}  # absent: one pseudo-row (min_count = 1)


@pytest.mark.parametrize(
    "cls, tables",
    [
        # The table each source reads while training day 0, 1, 2 (None: nothing known yet).
        (FrozenFrequency, [None, {"a": 2, "b": 1}, {"a": 2, "b": 1}]),
        (CumulativeFrequency, [None, {"a": 2, "b": 1}, {"a": 2, "b": 2, "c": 1}]),
        (PreviousDayFrequency, [None, {"a": 2, "b": 1}, {"b": 1, "c": 1}]),
        (CurrentDayOracle, [{"a": 2, "b": 1}, {"b": 1, "c": 1}, {"c": 3, "d": 1}]),
    ],
)
def test_table_sources_match_hand_counts(cls, tables):
    source = cls(B, estimand="inclusion", initial_probability=0.01)
    for day, table in zip(DAYS, tables):
        source.start_of_day(day)
        read = _read(source)
        if table is None:
            np.testing.assert_allclose(list(read.values()), 0.01, rtol=1e-6)
        else:
            assert source.counts() == table
            expected = _expected(table)
            np.testing.assert_allclose([read[i] for i in expected], list(expected.values()), rtol=1e-6)
        np.testing.assert_array_equal(source.update(["a", "b"]).numpy(), 0)  # no change within a day
        assert _read(source) == read
        source.end_of_day(day)
    assert cls.uses_future == (cls is CurrentDayOracle)


def test_expected_count_scale_and_fixed_table():
    source = CumulativeFrequency(B, estimand="expected_count")
    for day in DAYS[:2]:
        source.end_of_day(day)
    # Pooled rows a,a,b,b,c (n = 5): B c / n, and a missing item reads one pseudo-row.
    np.testing.assert_allclose(source.probability(["a", "b", "c", "zzz"]).numpy(), [0.8, 0.8, 0.4, 0.4], rtol=1e-6)
    oracle = FixedTableFrequency([i for day in DAYS for i in day], B, estimand="inclusion")
    assert oracle.uses_future and oracle.counts() == {"a": 2, "b": 2, "c": 4, "d": 1}
    np.testing.assert_allclose(oracle.probability(["c", "new"]).numpy(), [_inclusion(4, 9), _inclusion(1, 9)], rtol=1e-6)
    integers = PreviousDayFrequency(B, estimand="inclusion")
    integers.end_of_day(np.array([7, 7, 8]))  # integer IDs are compared in decimal
    np.testing.assert_allclose(integers.probability(np.array([7, 8])).numpy(), [_inclusion(2, 3), _inclusion(1, 3)])
    with pytest.raises(ValueError, match="estimand must be one of"):
        FrozenFrequency(B, estimand="rate")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; received 0"):
        PreviousDayFrequency(0)


@pytest.fixture(scope="module")
def tiny():
    data = DataConfig(synthetic=SyntheticConfig(num_users=400, num_items=60, interactions_per_user=8, num_categories=3,
                                                history_length=3))
    return load_dataset(data, embedding_dim=4)


def _counts(stream, num_items):
    return np.stack([np.bincount(day[ITEM_INDEX], minlength=num_items) for day in stream.days])


def test_sudden_drift_changes_popularity_at_the_switch_day(tiny):
    config = DriftConfig(kind="sudden", days=4, rows_per_day=800, switch_day=2, shift=2.0)
    log_weights, alive, _, _ = drift_schedule(config, tiny.num_items)
    assert alive.all()
    np.testing.assert_array_equal(log_weights[0], log_weights[1])
    np.testing.assert_array_equal(log_weights[2], log_weights[3])
    np.testing.assert_allclose(log_weights[2], -log_weights[0])
    direction = log_weights[2] / config.shift
    counts = _counts(drift_days(tiny, config), tiny.num_items)
    mean_direction = counts @ direction / counts.sum(axis=1)  # where the drawn items lie along the drift
    assert mean_direction[0] < 0 and mean_direction[1] < 0 and mean_direction[2] > 0 and mean_direction[3] > 0


def test_lifecycle_items_absent_before_birth_and_after_death(tiny):
    config = DriftConfig(kind="lifecycle", days=4, rows_per_day=800, new_fraction=0.25, dead_fraction=0.25)
    stream = drift_days(tiny, config)
    counts = _counts(stream, tiny.num_items)
    new, dead = stream.birth > 0, stream.death < config.days
    assert new.sum() == 15 and dead.sum() == 15 and not (new & dead).any()
    for d in range(config.days):
        assert counts[d, new & (stream.birth > d)].sum() == 0  # not born yet
        assert counts[d, dead & (stream.death <= d)].sum() == 0  # already dead
        # Histories never hold an item before its birth.
        born = set(tiny.item_ids[stream.birth <= d])
        assert set(np.unique(stream.days[d]["history"])) - {""} <= born
    assert (counts[:, new].sum(axis=0) > 0).mean() > 0.8  # born items do get drawn
    # New IDs are not in the vocabulary: they reach the item table through the hashed rows.
    vocabulary = stream_dataset(tiny, stream).features.item[0].vocabulary
    assert len(vocabulary) == tiny.num_items - 15 and not set(vocabulary) & set(tiny.item_ids[new])


def test_periodic_drift_repeats(tiny):
    config = DriftConfig(kind="periodic", days=4, rows_per_day=800, period=3, shift=2.0)
    log_weights, _, _, _ = drift_schedule(config, tiny.num_items)
    np.testing.assert_allclose(log_weights[3], log_weights[0])
    assert np.abs(log_weights[1] - log_weights[0]).max() > 1.0
    counts = _counts(drift_days(tiny, config), tiny.num_items).astype(float)
    share = counts / counts.sum(axis=1, keepdims=True)
    tv = lambda a, b: 0.5 * np.abs(share[a] - share[b]).sum()  # noqa: E731
    assert tv(0, 3) < 0.5 * tv(0, 1)
    none = drift_schedule(dataclasses.replace(config, kind="none"), tiny.num_items)[0]
    assert not none.any()


def test_next_day_evaluation_ranks_the_next_days_rows(tiny):
    config = smoke()
    config = dataclasses.replace(config, model=ModelConfig(embedding_dim=4, hidden_units=(8,)),
                                 train=TrainConfig(batch_size=32, verbose=0))
    stream = drift_days(tiny, DriftConfig(kind="gradual", days=2, rows_per_day=300))
    model = build_model(config, tiny)
    seen = SeenItems()
    seen.add(stream.days[0])
    # Day 1 plus one row repeating a (user, item) pair of day 0: that row is dropped, not ranked.
    day1 = stream.days[1]
    repeat = np.flatnonzero(stream.days[0][REWARD] > 0)[0]
    rows = {name: np.concatenate([day1[name], stream.days[0][name][repeat : repeat + 1]]) for name in day1}
    metrics = evaluate_next_day(model, rows, tiny.items, (5, 20), seen=seen)
    positives = day1[REWARD] > 0
    assert metrics["next_day_queries"] == positives.sum() and metrics["next_day_dropped"] == 1
    # By hand: full scores, the user's day-0 items removed, rank of the target.
    query = embed(model.query_tower, {k: v[positives] for k, v in day1.items()})
    items = embed(model.item_tower, tiny.items)
    scores = query @ items.T
    for row, key in enumerate(day1[QUERY_KEY][positives]):
        scores[row, seen.items(key)] = -np.inf
    targets = day1[ITEM_INDEX][positives]
    rank = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(axis=1)
    np.testing.assert_allclose(metrics["next_day_recall@20"], (rank < 20).mean(), atol=1e-9)
    np.testing.assert_allclose(metrics["next_day_ndcg@5"], np.where(rank < 5, 1 / np.log2(rank + 2), 0).mean(), atol=1e-6)


def test_run_one_evaluates_each_day_on_the_following_day():
    config = quick()
    config = dataclasses.replace(config, drift=dataclasses.replace(config.drift, kind="lifecycle", days=3))
    base = load_dataset(config.base.data, config.base.model.embedding_dim)
    stream = drift_days(base, config.drift)
    dataset = stream_dataset(base, stream)
    days = run_one(config, dataset, stream, "previous-day", seed=0)
    assert [d["day"] for d in days] == [0, 1, 2] and "next_day_queries" not in days[2]
    for d in range(2):
        following = stream.days[d + 1]
        assert days[d]["next_day_queries"] == int((following[REWARD] > 0).sum())  # day d + 1's positive rows
    assert days[0]["warmup"] and not days[1]["warmup"]  # a past-only table has nothing on day 0
    np.testing.assert_allclose(days[0]["tv_error"], days[0]["tv_error_b0_guess"], rtol=1e-5)
    assert build_frequency_source("none", config.base, dataset, stream.days) is None
    with pytest.raises(ValueError, match="Unknown frequency source 'stream-x'"):
        build_frequency_source("stream-x", config.base, dataset, stream.days)


def test_experiment_drift_quick_end_to_end(tmp_path):
    workdir = str(tmp_path / "drift")
    argv = ["experiment", "drift", "--quick", "--workdir", workdir, "--seeds", "0", "1", "--kinds", "sudden",
            "--sources", "stream-a0.1", "oracle-all-days", "--days", "2"]
    assert cli.main(argv) == 0
    for name in ("drift.md", "drift.json", "drift.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    with open(os.path.join(workdir, "drift.json"), encoding="utf-8") as f:
        results = json.load(f)
    assert len(results["runs"]) == 4 and len(results["summary"]) == 2
    for row in results["summary"]:
        assert 0.0 <= row["next_day_recall"] <= 1.0 and row["seeds"] == 2
    reference = next(r for r in results["summary"] if r["source"] == "stream-a0.1")
    assert reference["diff_vs_reference"] == 0.0
    with open(os.path.join(workdir, "drift.md"), encoding="utf-8") as f:
        assert "oracle-all-days (oracle)" in f.read()


def test_warmup_profile_and_next_day_metrics_edges(tiny):
    stream = drift_days(tiny, DriftConfig(kind="none", days=3, rows_per_day=320))
    profile = warmup_profile(stream.days, tiny.num_items, 32, alpha=0.01, initial_interval=100.0)
    weights = [row["b0_weight_end"] for row in profile]
    assert 0.0 < weights[2] < weights[1] < weights[0] < 1.0  # B0 fades as steps accumulate
    truth = batch_frequencies(np.bincount(stream.days[1][ITEM_INDEX], minlength=tiny.num_items), 32, "inclusion")
    np.testing.assert_allclose(profile[1]["tv_error_zero"], truth.sum() / 64)
    config = dataclasses.replace(smoke(), model=ModelConfig(embedding_dim=4, hidden_units=(8,)))
    model = build_model(config, tiny)
    assert next_day_metrics(model, stream.days, 2, tiny.items, (10,)) == {}  # no day after the last
    no_keys = [{k: v for k, v in day.items() if k != QUERY_KEY} for day in stream.days]
    metrics = next_day_metrics(model, no_keys, 0, tiny.items, (10,))
    assert metrics["next_day_exclude_seen"] is False and metrics["next_day_queries"] == (stream.days[1][REWARD] > 0).sum()
