"""Hostile inputs to the data loaders and the data config: each is a clear error naming the file,
line or row, and field, never a silently wrong data set."""

from __future__ import annotations

import pytest

from yt_bias import config as config_lib
from yt_bias.config import ColumnsConfig, DataConfig
from yt_bias.data.loading import load_dataset

COLUMNS = ColumnsConfig(user="uid", item="movie", time="ts")


def _interactions(path, **kwargs) -> DataConfig:
    return DataConfig(source="interactions", path=str(path), columns=COLUMNS, **{"history_length": 3, **kwargs})


def test_parquet_item_id_nan_is_refused_not_an_item_called_nan(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"uid": ["u1", "u1", "u2", "u2"], "movie": [1.0, float("nan"), 2.0, 1.0], "ts": [1, 2, 3, 4]})
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=r"log\.parquet:row 2, column 'movie': empty; expected an ID \(data\.columns\.item\)"):
        load_dataset(_interactions(path, split="random", test_fraction=0.25))


@pytest.mark.parametrize("bad_line", [1, 2, 302])
def test_an_encoding_error_names_its_line(tmp_path, bad_line):
    lines = ["uid,movie,ts"] + [f"u{i % 7},m{i % 11},{i}" for i in range(400)]
    lines[bad_line - 1] = lines[bad_line - 1] + ",\udcff"  # one undecodable byte on that line
    path = tmp_path / "log.csv"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    with pytest.raises(ValueError, match=rf"log\.csv:line {bad_line}: not valid utf-8 text") as caught:
        load_dataset(_interactions(path))
    assert "data.columns.encoding" in str(caught.value)


def test_an_encoding_error_in_movielens_movies_csv_names_its_line(tmp_path):
    root = tmp_path / "ml-latest-small"
    root.mkdir()
    movies = ["movieId,title,genres"] + [f"{i},Movie {i} (1999),Drama" for i in range(1, 400)]
    movies[301] = movies[301].replace("Movie", "Movi\udce9")
    (root / "movies.csv").write_bytes("\n".join(movies).encode("utf-8", "surrogateescape") + b"\n")
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,4.0,2\n")
    with pytest.raises(ValueError, match=r"movies\.csv:302: not valid UTF-8 text"):
        load_dataset(DataConfig(source="movielens", path=str(root)))


def test_a_header_only_recbole_inter_names_the_file(tmp_path):
    root = tmp_path / "toy"
    root.mkdir()
    (root / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n")
    with pytest.raises(ValueError, match=r"toy\.inter: no interactions after the header line"):
        load_dataset(DataConfig(source="recbole", path=str(root)))


@pytest.mark.parametrize(
    "assignment,needles",
    [
        ("train.seed=-1", ["train.seed", "-1", ">= 0"]),
        ("model.embedding_dim=0", ["model.embedding_dim", "0", ">= 1"]),
        ("data.test_fraction=1.5", ["data.test_fraction", "(0, 1)", "1.5"]),
    ],
)
def test_config_fields_are_named(assignment, needles):
    with pytest.raises(ValueError) as caught:
        config_lib.override(config_lib.smoke(), assignment)
    for needle in needles:
        assert needle in str(caught.value), (needle, str(caught.value))


@pytest.mark.parametrize(
    "assignment,needles",
    [
        ("data.path=/some/file.csv", ["data.path='/some/file.csv'", "data.source='synthetic'"]),
        ("data.test_fraction=0.5", ["data.test_fraction=0.5", "data.source='synthetic'"]),
    ],
)
def test_the_synthetic_source_refuses_what_it_would_ignore(assignment, needles):
    config = config_lib.override(config_lib.smoke(), assignment)  # order-free: checked when the data is loaded
    with pytest.raises(ValueError) as caught:
        load_dataset(config.data, config.model.embedding_dim)
    for needle in needles:
        assert needle in str(caught.value), (needle, str(caught.value))
