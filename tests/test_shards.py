"""Sharded TFRecord data: round trip, per-worker sharding, the bounded-memory generator, training
on files from the command line, and blockwise exact top-k."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from yt_bias.config import SyntheticConfig
from yt_bias.data import synthetic_shards
from yt_bias.data.dataset import ITEM_INDEX, REWARD, make_tf_dataset
from yt_bias.data.shards import ShardError, ShardWriter, count_rows, read_items, read_shards, write_items, write_shards
from yt_bias.data.synthetic import generate
from yt_bias.retrieval.blocks import blockwise_top_k
from yt_bias.retrieval.exact import top_k


@pytest.fixture(scope="module")
def small():
    return generate(SyntheticConfig(num_users=40, num_items=120, interactions_per_user=8, seed=3))


def _collect(dataset) -> dict[str, np.ndarray]:
    batches = list(dataset)
    return {name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]}


def test_round_trip_equals_the_in_memory_examples(small, tmp_path):
    examples = small.examples("train")
    paths = write_shards(examples, str(tmp_path), rows_per_shard=70, chunk_rows=50)
    count = len(examples[REWARD])
    assert len(paths) == -(-count // 70)
    write_items(str(tmp_path), small.features, small.items)
    features, items = read_items(str(tmp_path))
    assert features == small.features
    assert all(np.array_equal(items[n], small.items[n]) for n in small.items)

    read = _collect(read_shards(str(tmp_path / "*.tfrecord"), features, 64, shuffle_buffer=0, drop_remainder=False))
    reference = _collect(make_tf_dataset(examples, 64, shuffle=False, drop_remainder=False))
    assert sorted(read) == sorted(reference)
    for name in reference:
        assert read[name].dtype == reference[name].dtype, name
        assert read[name].shape == reference[name].shape, name
        np.testing.assert_array_equal(read[name], reference[name], err_msg=name)

    shuffled = _collect(read_shards(str(tmp_path), features, 32, shuffle_buffer=100, seed=1))
    assert len(shuffled[REWARD]) == (count // 32) * 32
    assert not np.array_equal(shuffled[ITEM_INDEX], reference[ITEM_INDEX][: len(shuffled[ITEM_INDEX])])


def test_every_row_is_read_by_exactly_one_worker(small, tmp_path):
    examples = small.examples("train")
    count = len(examples[REWARD])
    examples[ITEM_INDEX] = np.arange(count, dtype=np.int64)  # a row ID
    write_shards(examples, str(tmp_path), rows_per_shard=45)
    pattern = str(tmp_path / "*.tfrecord")
    seen = []
    for worker in range(3):
        rows = _collect(
            read_shards(pattern, small.features, 16, shuffle_buffer=50, num_workers=3, worker_index=worker, drop_remainder=False)
        )
        seen.append(rows[ITEM_INDEX])
    assert all(len(s) > 0 for s in seen)
    everything = np.concatenate(seen)
    assert len(everything) == count
    np.testing.assert_array_equal(np.sort(everything), np.arange(count))
    with pytest.raises(ValueError, match="worker_index"):
        read_shards(pattern, small.features, 16, num_workers=3, worker_index=3)


def test_missing_and_damaged_files_name_the_file(small, tmp_path):
    with pytest.raises(ShardError, match="no shard files match"):
        read_shards(str(tmp_path / "*.tfrecord"), small.features, 8)
    with pytest.raises(ShardError, match="features.json"):
        read_items(str(tmp_path))
    bad = tmp_path / "part-00000.tfrecord"
    bad.write_bytes(b"this is not a TFRecord file at all")
    with pytest.raises(ShardError, match="part-00000.tfrecord"):
        read_shards(str(tmp_path), small.features, 8)
    examples = small.examples("train")
    del examples["region"]
    write_shards(examples, str(tmp_path / "partial"), rows_per_shard=1000)
    with pytest.raises(ShardError, match=r"partial/part-00000.tfrecord.*region|region.*partial/part-00000.tfrecord"):
        read_shards(str(tmp_path / "partial"), small.features, 8)
    with pytest.raises(ValueError, match="already holds"):
        ShardWriter(str(tmp_path / "partial"), 10)


def test_generator_writes_all_rows_in_bounded_chunks(tmp_path, monkeypatch):
    held = []
    real_chunk = synthetic_shards._chunk

    def recording_chunk(*args, **kwargs):
        rows, user = real_chunk(*args, **kwargs)
        held.append(max(len(v) for v in rows.values()))
        return rows, user

    monkeypatch.setattr(synthetic_shards, "_chunk", recording_chunk)
    report = synthetic_shards.generate_shards(str(tmp_path), 150, 2500, rows_per_shard=400, chunk_rows=300, seed=5)
    assert report.num_train + report.num_test == 2500
    assert max(held) <= 300 and report.max_chunk_rows == max(held)
    assert len(held) == report.chunks >= 2500 // 300
    assert count_rows(str(tmp_path / "*.tfrecord")) == report.num_train
    assert count_rows(str(tmp_path / "test")) == report.num_test
    features, items = read_items(str(tmp_path))
    assert len(items["item_id"]) == 150 and len(set(items["item_id"].tolist())) == 150
    rows = _collect(read_shards(str(tmp_path), features, 100, shuffle_buffer=0, drop_remainder=False))
    counts = np.bincount(rows[ITEM_INDEX], minlength=150)
    assert counts.max() > 5 * np.median(counts)  # Zipf popularity: a few items dominate
    # Training rows are written in a random order within a chunk, not grouped by user.
    assert np.mean(rows["user_id"][1:] == rows["user_id"][:-1]) < 0.75  # about 0.5 with 2 users a chunk; 0.95 grouped
    # The history bag holds only the user's earlier items: the row with h items of history follows
    # (in the user's time order) the row with h - 1, whose item is the history's first entry.
    test_rows = _collect(read_shards(str(tmp_path / "test"), features, 100, shuffle_buffer=0, drop_remainder=False))
    user = np.concatenate([rows["user_id"], test_rows["user_id"]])
    item = np.concatenate([rows["item_id"], test_rows["item_id"]])
    history = np.concatenate([rows["history"], test_rows["history"]])
    length = (history != b"").sum(axis=1)
    checked = 0
    for u in np.unique(user)[:20]:
        mine = np.flatnonzero(user == u)
        by_length = {int(length[i]): i for i in mine}
        for h, i in by_length.items():
            if 1 <= h < features.query[2].max_len and h - 1 in by_length:
                assert history[i, 0] == item[by_length[h - 1]]
                checked += 1
    assert checked > 20


def test_cli_generate_then_train_on_files(tmp_path):
    from yt_bias.cli import main

    data = str(tmp_path / "data")
    assert (
        main(
            [
                "data",
                "generate",
                "--out",
                data,
                "--items",
                "120",
                "--interactions",
                "1500",
                "--shard-rows",
                "500",
                "--chunk-rows",
                "400",
            ]
        )
        == 0
    )
    workdir = str(tmp_path / "run")
    argv = ["train", "--data-files", f"{data}/*.tfrecord", "--workdir", workdir]
    for setting in ("train.epochs=1", "train.batch_size=64", "train.verbose=0", "eval.ks=[10,20]", "model.hidden_units=[16]"):
        argv += ["--set", setting]
    assert main(argv) == 0
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["num_items"] == 120 and metrics["steps"] > 0
    assert 0.0 <= metrics["recall@10"] <= metrics["recall@20"] <= 1.0 and metrics["num_test_positives"] > 0
    assert np.isfinite(metrics["loss_history"]).all()
    with open(os.path.join(workdir, "run.json")) as f:
        assert json.load(f)["status"] == "complete"
    assert main(["train", "--data-files", str(tmp_path / "none" / "*.tfrecord"), "--workdir", str(tmp_path / "r2")]) == 2


@pytest.mark.parametrize("item_block,query_block", [(64, 50), (7, 300), (1000, 1), (13, 17)])
def test_blockwise_top_k_equals_top_k(item_block, query_block, tmp_path):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(300, 8)).astype(np.float32)
    items = rng.normal(size=(1000, 8)).astype(np.float32)
    exclude = [rng.choice(1000, rng.integers(0, 30), replace=False) for _ in range(300)]
    exclude[0] = np.arange(995)  # fewer than k items left: -1 ranks
    expected = top_k(lambda a, b: queries[a:b] @ items.T, 300, 1000, 20, exclude)
    got = blockwise_top_k(queries, items, 20, exclude, item_block=item_block, query_block=query_block)
    np.testing.assert_array_equal(got, expected)
    assert (got[0, 5:] == -1).all()
    np.save(tmp_path / "items.npy", items)
    mapped = blockwise_top_k(queries, np.load(tmp_path / "items.npy", mmap_mode="r"), 20, item_block=item_block)
    np.testing.assert_array_equal(mapped, top_k(lambda a, b: queries[a:b] @ items.T, 300, 1000, 20))
    with pytest.raises(ValueError, match="item_block"):
        blockwise_top_k(queries, items, 5, item_block=0)
