"""The generic interactions loader: CSV / TSV / Parquet files with a column mapping, and its errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from cli_args import TINY_MODEL, set_args
from yt_bias.config import ColumnsConfig, DataConfig
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD
from yt_bias.data.loading import detect_source, load_dataset

# (user, item, stars, time, genre, price, tags, age): u1 watches a, b, c, d in time; u2 b, c, a; u3 b, c.
ROWS = [
    ("u1", "b", 4, 200, "drama", 9.5, "x|y", 30),
    ("u1", "a", 5, 100, "comedy", 5.0, "x", 30),
    ("u1", "c", 2, 300, "drama", 7.0, "", 31),
    ("u1", "d", 4, 400, "action", 3.0, "y|z", 31),
    ("u2", "b", 5, 150, "drama", 9.5, "x|y", 40),
    ("u2", "c", 3, 250, "drama", 7.0, "", 40),
    ("u2", "a", 4, 450, "comedy", 5.0, "x", 40),
    ("u3", "b", 1, 120, "drama", 9.5, "x|y", 22),
    ("u3", "c", 5, 130, "drama", 7.0, "", 22),
]
HEADER = ("uid", "movie", "stars", "ts", "genre", "price", "tags", "age")
MAPPING = ColumnsConfig(
    user="uid", item="movie", time="ts", rating="stars", item_features="genre, price, tags:bag", user_features="age:categorical"
)


def _write_text(path, sep: str, rows=ROWS, header=HEADER, bom: bool = False, encoding: str = "utf-8") -> str:
    lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(("\ufeff" if bom else "") + "\n".join(lines) + "\n")
    return str(path)


def _config(path, columns=MAPPING, **kwargs) -> DataConfig:
    return DataConfig(source="interactions", path=str(path), columns=columns, **{"history_length": 3, **kwargs})


def _by_user_time(split: dict) -> list[tuple]:
    return sorted(zip(split[QUERY_KEY].tolist(), split["timestamp"].tolist(), split[ITEM_INDEX].tolist(), split[REWARD].tolist()))


def test_csv_with_bom_features_rewards_and_temporal_split(tmp_path):
    path = _write_text(tmp_path / "events.csv", ",", bom=True)
    assert detect_source(path) == "interactions"
    data = load_dataset(_config(path))
    assert data.name == "interactions:events"
    assert data.item_ids.tolist() == ["a", "b", "c", "d"]
    # Item features from each item's latest row; numbers are dense (standardised), tags a bag.
    assert data.items["genre"].tolist() == ["comedy", "drama", "drama", "action"]
    price = data.items["price"][:, 0]
    np.testing.assert_allclose(price, (np.array([5.0, 9.5, 7.0, 3.0]) - 6.125) / np.std([5.0, 9.5, 7.0, 3.0]), rtol=1e-5)
    assert data.items["tags"].tolist() == [["x", ""], ["x", "y"], ["", ""], ["y", "z"]]
    kinds = {spec.name: spec.kind for spec in data.features.item}
    assert kinds == {"item_id": "id", "genre": "categorical", "price": "dense", "tags": "bag"}
    assert {spec.name: spec.kind for spec in data.features.query}["age"] == "categorical"
    # u1's age is that of their latest row (31), on train and test rows alike.
    assert set(data.train["age"][data.train[QUERY_KEY] == "u1"].tolist()) == {"31"}
    # Temporal split at the 0.8 quantile of time (ts 330 -> 400 and 450 held out); r = 1 for stars >= 4.
    assert sorted(data.test["timestamp"].tolist()) == [400.0, 450.0]
    assert _by_user_time(data.test) == [("u1", 400.0, 3, 1.0), ("u2", 450.0, 0, 1.0)]
    assert data.num_train == 7 and float(data.train[REWARD].sum()) == 4.0
    # History bag of u1's test row: the three previous items, most recent first.
    row = int(np.flatnonzero(data.test[QUERY_KEY] == "u1")[0])
    assert data.test["history"][row].tolist() == ["c", "b", "a"]


def test_tsv_and_parquet_give_the_same_dataset_as_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    csv_data = load_dataset(_config(_write_text(tmp_path / "e.csv", ",")))
    tsv_data = load_dataset(_config(_write_text(tmp_path / "e.tsv", "\t")))
    columns = {name: [row[j] for row in ROWS] for j, name in enumerate(HEADER)}
    columns["tags"] = [t.split("|") if t else [] for t in columns["tags"]]  # a list column becomes a bag
    pq.write_table(pa.table(columns), str(tmp_path / "e.parquet"))
    parquet_data = load_dataset(_config(tmp_path / "e.parquet"))
    for other in (tsv_data, parquet_data):
        assert other.item_ids.tolist() == csv_data.item_ids.tolist()
        for split in ("train", "test"):
            a, b = getattr(csv_data, split), getattr(other, split)
            assert sorted(a) == sorted(b)
            for key in a:
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"{split}/{key}")
        for key in csv_data.items:
            np.testing.assert_array_equal(csv_data.items[key], other.items[key], err_msg=key)


def test_reward_column_iso_dates_and_implicit_feedback(tmp_path):
    rows = [
        ("u1", "a", "0.5", "2024-05-01T10:00:00"),
        ("u1", "b", "0", "2024-05-02"),
        ("u2", "a", "2.5", "2024-05-03 08:00"),
        ("u2", "b", "1", "2024-05-04"),
        ("u3", "a", "1", "2024-05-05"),
    ]
    path = _write_text(tmp_path / "w.csv", ",", rows=rows, header=("user_id", "item_id", "watch", "when"))
    reward = ColumnsConfig(time="when", reward="watch")
    data = load_dataset(_config(path, reward, test_fraction=0.2))
    assert sorted(data.train[REWARD].tolist()) == [0.0, 0.5, 1.0, 2.5]  # as given, not thresholded
    assert data.test[REWARD].tolist() == [1.0]
    implicit = load_dataset(_config(path, ColumnsConfig(time="when"), test_fraction=0.2))
    assert set(implicit.train[REWARD].tolist()) == {1.0}
    no_time = load_dataset(_config(path, ColumnsConfig(time=""), split="random", test_fraction=0.4))
    assert no_time.num_train == 3 and no_time.num_test == 2


@pytest.mark.parametrize(
    "rows, header, columns, message",
    [
        (
            [("u1", "a", "4", "100"), ("u1", "b", "five", "200")],
            HEADER[:4],
            None,
            r"e\.csv:line 3, column 'stars': expected a number; received 'five'",
        ),
        ([("u1", "a", "4", "100"), ("", "b", "4", "200")], HEADER[:4], None, r"e\.csv:line 3, column 'uid': empty"),
        (
            [("u1", "a", "4", "100"), ("u1", "b", "4", "yesterday")],
            HEADER[:4],
            None,
            r"line 3, column 'ts': expected a number or an ISO 8601",
        ),
        ([("u1", "a", "4", "100"), ("u1", "b", "4")], HEADER[:4], None, r"e\.csv:line 3: expected 4 fields"),
        ([("u1", "a", "4", "100")], ("user", "movie", "stars", "ts"), None, r"data\.columns\.user='uid' is not a column"),
        (
            [("u1", "a", "4", "100")],
            HEADER[:4],
            ColumnsConfig(user="uid", item="movie", time="ts", rating="stars", reward="stars"),
            "exclusive",
        ),
        (
            [("u1", "a", "4", "100")],
            HEADER[:4],
            ColumnsConfig(user="uid", item="movie", time="ts", item_features="uid"),
            r"item_features lists 'uid', which is already data\.columns\.user",
        ),
        (
            [("u1", "a", "4", "100")],
            HEADER[:4],
            ColumnsConfig(user="uid", item="movie", time="ts", item_features="stars:embedding"),
            "expected one of",
        ),
    ],
)
def test_malformed_rows_name_file_line_and_column(tmp_path, rows, header, columns, message):
    path = _write_text(tmp_path / "e.csv", ",", rows=rows, header=header)
    columns = columns or ColumnsConfig(user="uid", item="movie", time="ts", rating="stars")
    with pytest.raises(ValueError, match=message):
        load_dataset(_config(path, columns))


def test_encoding_errors_name_the_file_and_latin1_reads(tmp_path):
    rows = [("u1", "café", "4", "100"), ("u2", "b", "4", "200"), ("u2", "café", "4", "300")]
    path = _write_text(tmp_path / "latin.csv", ",", rows=rows, header=HEADER[:4], encoding="latin-1")
    columns = ColumnsConfig(user="uid", item="movie", time="ts", rating="stars")
    with pytest.raises(ValueError, match=r"latin\.csv:line 2: not valid utf-8 text.*data\.columns\.encoding"):
        load_dataset(_config(path, columns))
    data = load_dataset(_config(path, dataclasses.replace(columns, encoding="latin-1"), split="random", test_fraction=0.34))
    assert "café" in data.item_ids.tolist()


def test_parquet_errors_name_the_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"uid": ["u1", "u2", None], "movie": ["a", "b", "c"], "ts": [1.0, 2.0, 3.0]})
    pq.write_table(table, str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match=r"bad\.parquet:row 3, column 'uid': empty"):
        load_dataset(_config(tmp_path / "bad.parquet", ColumnsConfig(user="uid", item="movie", time="ts")))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"junk\.parquet: not a readable Parquet file"):
        load_dataset(_config(tmp_path / "junk.parquet"))


def test_cli_trains_on_a_csv_file(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{rng.integers(0, 15)}", int(rng.integers(1, 6)), 1000 * u + t) for u in range(20) for t in range(6)]
    path = _write_text(tmp_path / "log.csv", ",", rows=rows, header=("user", "item", "rating", "time"))
    workdir = tmp_path / "run"
    data = set_args("data.source=interactions", f"data.path={path}")
    data += set_args(*(f"data.columns.{column}={column}" for column in ("user", "item", "time", "rating")))
    train = set_args("train.epochs=1", "train.batch_size=16", "train.verbose=0")
    command = [sys.executable, "-m", "yt_bias", "train", "--workdir", str(workdir), "--variant", "correct-sfx"]
    command += data + train + TINY_MODEL
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert os.path.isfile(workdir / "metrics.json")
