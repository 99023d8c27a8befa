"""Scale paths: ScaNN evaluation against exact (recall loss measured), a loaded data set converted
to shards and trained on from the command line, and the shard format's checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias.data.dataset import ITEM_INDEX, REWARD
from yt_bias.data.loading import load_dataset
from yt_bias.data.shards import ShardError, ShardWriter, check_shard, count_rows, read_items, read_shards
from yt_bias.evaluation.approximate import approximate_evaluation, neighbour_recall
from yt_bias.retrieval.blocks import blockwise_top_k
from yt_bias.retrieval.scann import scann_settings, scann_top_k


def _clustered(num_items=4000, num_queries=300, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    items = (centres[rng.integers(40, size=num_items)] + 0.3 * rng.normal(size=(num_items, dim))).astype(np.float32)
    queries = (centres[rng.integers(40, size=num_queries)] + 0.3 * rng.normal(size=(num_queries, dim))).astype(np.float32)
    return queries, items


def test_scann_searching_every_leaf_with_full_reorder_is_exact():
    queries, items = _clustered()
    exact = blockwise_top_k(queries, items, 20)
    settings = scann_settings(len(items), num_leaves=20, num_leaves_to_search=20, reorder=len(items))
    top, info = scann_top_k(queries, items, 20, settings)
    assert top.shape == (300, 20) and info["num_leaves_to_search"] == 20
    assert neighbour_recall(top, exact, 20) > 0.999


def test_approximate_evaluation_reports_the_loss_against_exact():
    queries, items = _clustered()
    targets = blockwise_top_k(queries, items, 30)[:, 25]  # a target ranked 26th exactly: near the K boundary
    settings = scann_settings(len(items), num_leaves=64, num_leaves_to_search=2, reorder=0)
    result = approximate_evaluation(queries, items, targets, [10, 50], settings=settings)
    assert result["exact_recall@10"] == 0.0 and result["exact_recall@50"] == 1.0
    # A coarse searcher (2 of 64 leaves, no exact re-scoring) misses neighbours, and the loss says so.
    assert result["neighbour_recall@50"] < 0.95
    assert result["recall_loss@50"] == pytest.approx(result["exact_recall@50"] - result["scann_recall@50"], abs=1e-4)
    assert result["recall_loss@50"] > 0
    with pytest.raises(ValueError, match="num_leaves_to_search"):
        scann_settings(1000, num_leaves=10, num_leaves_to_search=11)
    with pytest.raises(ValueError, match="must share d"):
        scann_top_k(queries[:, :3], items, 5)
    with pytest.raises(ValueError, match="targets"):
        approximate_evaluation(queries, items, targets[:5], [10])


def test_convert_a_loaded_data_set_then_train_on_its_shards(tmp_path):
    from yt_bias.cli import main

    data = str(tmp_path / "shards")
    assert main(["data", "convert", "--preset", "smoke", "--out", data, "--shard-rows", "1000"]) == 0
    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    features, items = read_items(data)
    assert features == dataset.features and np.array_equal(items["item_id"], dataset.items["item_id"])
    assert count_rows(os.path.join(data, "*.tfrecord")) == dataset.num_train
    assert count_rows(os.path.join(data, "test")) == dataset.num_test
    read = list(read_shards(data, features, 10**6, shuffle_buffer=0, drop_remainder=False))[0]
    train = dataset.examples("train")
    # The same rows in another order (a permutation written): compare as sorted row keys.
    key = lambda rows: np.sort(rows["user_id"].astype(str).astype(object) + "|" + rows[ITEM_INDEX].astype(str))  # noqa: E731
    np.testing.assert_array_equal(key({n: v.numpy() for n, v in read.items()}), key(train))
    workdir = str(tmp_path / "run")
    argv = ["train", "--preset", "smoke", "--data-files", f"{data}/*.tfrecord", "--workdir", workdir, "--set", "train.epochs=1"]
    assert main(argv) == 0
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["num_test_positives"] == int((dataset.examples("test")[REWARD] > 0).sum())
    assert 0.0 <= metrics["recall@10"] <= metrics["recall@50"] <= 1.0


def test_a_column_of_the_wrong_dtype_or_shape_is_named(tmp_path):
    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    rows = {n: v[:50] for n, v in dataset.examples("train").items()}
    bad = dict(rows, activity=rows["activity"][:, :0]) if "activity" in rows else None
    spec = next(s for s in dataset.features.query if s.kind == "bag")
    bad = dict(rows, **{spec.name: rows[spec.name][:, :1]})  # a bag of the wrong width
    with ShardWriter(str(tmp_path / "a"), 100) as writer:
        writer.write(bad)
    with pytest.raises(ShardError, match=rf"column '{spec.name}': expected dtype string and row shape \[{spec.max_len}\]; received dtype string and row shape \[1\]"):
        check_shard(writer.paths[0], dataset.features)
    wrong_type = dict(rows, **{REWARD: rows[ITEM_INDEX]})  # reward always stored float32: fine
    with ShardWriter(str(tmp_path / "b"), 100) as writer:
        writer.write(wrong_type)
    assert check_shard(writer.paths[0], dataset.features, records=None) == 50
    dense = dict(rows, **{ITEM_INDEX: rows[ITEM_INDEX].astype(np.float32)})  # a float item index
    with ShardWriter(str(tmp_path / "c"), 100) as writer:
        writer.write(dense)
    with pytest.raises(ShardError, match="column 'item_index': expected dtype int64"):
        read_shards(str(tmp_path / "c"), dataset.features, 8)
