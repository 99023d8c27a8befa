"""MovieLens in the GroupLens formats: ml-100k, ml-1m, and the CSV releases (ml-20m, ml-25m, ml-latest).

Which format a directory holds is detected from its files:

* ``u.data`` (+ ``u.item``, ``u.user``, optional ``u.genre``): ml-100k. u.data is
  ``user \\t item \\t rating \\t timestamp``; u.item is ``id|title|release date|video date|url|19 genre
  flags`` (latin-1); u.user is ``id|age|gender|occupation|zip``.
* ``ratings.dat`` (+ ``movies.dat``, ``users.dat``): ml-1m, ``::``-separated, latin-1.
* ``ratings.csv`` (+ ``movies.csv``): ml-20m, ml-25m, ml-latest(-small); header line, UTF-8, quoted titles.

Features: item genres (bag), title tokens (hashed bag), release year (categorical); user age
bucket, gender, occupation and zip-code prefix where the release has users; and the history bag
and split of :mod:`yt_bias.data.splits`.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from yt_bias.data.dataset import RecDataset
from yt_bias.data import splits

FORMATS = ("ml-100k", "ml-1m", "ml-csv")
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_AGE_BUCKETS = ((18, "under18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))


def detect_format(path: str) -> str:
    """'ml-100k', 'ml-1m' or 'ml-csv' from the files in ``path``; FileNotFoundError if none fits."""
    for fmt, marker in (("ml-100k", "u.data"), ("ml-1m", "ratings.dat"), ("ml-csv", "ratings.csv")):
        if os.path.isfile(os.path.join(path, marker)):
            return fmt
    raise FileNotFoundError(
        f"{path}: no MovieLens ratings file; expected one of u.data (ml-100k), ratings.dat (ml-1m) "
        f"or ratings.csv (ml-20m/ml-25m/ml-latest)."
    )


def age_bucket(age: float) -> str:
    """ML-1M's age groups for a numeric age (ml-100k gives ages in years)."""
    for upper, label in _AGE_BUCKETS:
        if age < upper:
            return label
    return "56+"


def _file(path: str, name: str) -> str:
    full = os.path.join(path, name)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"{full} is missing (MovieLens needs it next to the ratings file).")
    return full


def _interactions(path: str, sep: str, encoding: str, header: bool) -> splits.Interactions:
    users, items, ratings, times = [], [], [], []
    for line, fields in splits.read_rows(path, sep, num_fields=4, encoding=encoding, skip_header=header):
        users.append(splits.require_id(fields[0], path, line, "user"))
        items.append(splits.require_id(fields[1], path, line, "item"))
        ratings.append(splits.parse_number(fields[2], path, line, "rating"))
        times.append(splits.parse_number(fields[3], path, line, "timestamp"))
    if not users:
        raise ValueError(f"{path}: no ratings; expected at least one line.")
    return splits.Interactions(users, items, times, ratings)


def _item_table(ids: list[str], titles: list[str], genres: list[list[str]], years: list[str], source: str) -> tuple:
    if len(set(ids)) != len(ids):
        seen, dup = set(), None
        for i in ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise ValueError(f"{source}: item ID {dup!r} appears more than once; expected one line per movie.")
    items = {
        "item_id": np.asarray(ids, dtype=str),
        "genres": splits.pad_bags(genres),
        "title": splits.pad_bags([splits.title_tokens(t) for t in titles]),
        "year": np.asarray(years, dtype=str),
    }
    specs = (
        splits.bag_spec("genres", items["genres"]),
        splits.bag_spec("title", items["title"], hashed_buckets=splits.TITLE_BUCKETS),
        splits.categorical_spec("year", items["year"]),
    )
    return items, specs


def _ml100k(path: str):
    genre_names = list(ML100K_GENRES)
    genre_file = os.path.join(path, "u.genre")
    if os.path.isfile(genre_file):
        genre_names = [fields[0] for _, fields in splits.read_rows(genre_file, "|", num_fields=2, encoding="latin-1")]
    item_file = _file(path, "u.item")
    ids, titles, genres, years = [], [], [], []
    for line, fields in splits.read_rows(item_file, "|", num_fields=5 + len(genre_names), encoding="latin-1"):
        flags = fields[5:]
        if any(f not in ("0", "1") for f in flags):
            raise ValueError(f"{item_file}:{line}: genre flags must be 0 or 1; received {flags}.")
        ids.append(splits.require_id(fields[0], item_file, line, "movie id"))
        titles.append(fields[1])
        genres.append([g for g, f in zip(genre_names, flags) if f == "1"])
        release = fields[2].strip()
        years.append(release[-4:] if len(release) >= 4 and release[-4:].isdigit() else splits.title_year(fields[1]))
    items, item_specs = _item_table(ids, titles, genres, years, item_file)
    user_file = _file(path, "u.user")
    user_rows = []
    for line, fields in splits.read_rows(user_file, "|", num_fields=5, encoding="latin-1"):
        age = splits.parse_number(fields[1], user_file, line, "age")
        user_id = splits.require_id(fields[0], user_file, line, "user id")
        user_rows.append((user_id, age_bucket(age), fields[2], fields[3], fields[4].strip()[:1]))
    interactions = _interactions(_file(path, "u.data"), "\t", "latin-1", header=False)
    return interactions, items, item_specs, _user_table(user_rows)


def _ml1m(path: str):
    movie_file = _file(path, "movies.dat")
    ids, titles, genres, years = [], [], [], []
    for line, fields in splits.read_rows(movie_file, "::", num_fields=3, encoding="latin-1"):
        ids.append(splits.require_id(fields[0], movie_file, line, "MovieID"))
        titles.append(fields[1])
        genres.append([g for g in fields[2].split("|") if g and g != "(no genres listed)"])
        years.append(splits.title_year(fields[1]))
    items, item_specs = _item_table(ids, titles, genres, years, movie_file)
    user_rows = None
    user_file = os.path.join(path, "users.dat")
    if os.path.isfile(user_file):
        user_rows = []
        for line, fields in splits.read_rows(user_file, "::", num_fields=5, encoding="latin-1"):
            user_rows.append(
                (
                    splits.require_id(fields[0], user_file, line, "UserID"),
                    f"age_{fields[2]}",
                    fields[1],
                    f"occupation_{fields[3]}",
                    fields[4].strip()[:1],
                )
            )
    interactions = _interactions(_file(path, "ratings.dat"), "::", "latin-1", header=False)
    return interactions, items, item_specs, _user_table(user_rows) if user_rows else (None, ())


def _ml_csv(path: str):
    movie_file = _file(path, "movies.csv")
    ids, titles, genres, years = [], [], [], []
    with open(movie_file, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        rows = []
        try:
            header = next(reader, None)
            for fields in reader:
                rows.append((reader.line_num, fields))
        except UnicodeDecodeError as error:
            line, error = splits.undecodable_line(movie_file, "utf-8-sig") or ("?", error)  # the reader decodes ahead
            raise ValueError(f"{movie_file}:{line}: not valid UTF-8 text ({error.reason} at byte {error.start + 1} of the line).") from None
        except csv.Error as error:
            raise ValueError(f"{movie_file}:{reader.line_num}: malformed CSV ({error}).") from None
        if header is None or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
            raise ValueError(f"{movie_file}:1: expected the header movieId,title,genres; received {header}.")
        for line, fields in rows:
            if not fields:
                continue
            if len(fields) != 3:
                raise ValueError(f"{movie_file}:{line}: expected 3 CSV fields (movieId,title,genres); received {len(fields)}.")
            ids.append(splits.require_id(fields[0], movie_file, line, "movieId"))
            titles.append(fields[1])
            genres.append([g for g in fields[2].split("|") if g and g != "(no genres listed)"])
            years.append(splits.title_year(fields[1]))
    items, item_specs = _item_table(ids, titles, genres, years, movie_file)
    ratings_file = _file(path, "ratings.csv")
    header = next((fields for _, fields in splits.read_rows(ratings_file, ",", encoding="utf-8")), [])
    header = [h.strip() for h in header]
    if header[:4] != ["userId", "movieId", "rating", "timestamp"]:
        raise ValueError(f"{ratings_file}:1: expected the header userId,movieId,rating,timestamp; received {header}.")
    interactions = _interactions(ratings_file, ",", "utf-8", header=True)
    return interactions, items, item_specs, (None, ())


def _user_table(rows: list[tuple]) -> tuple[dict, tuple]:
    columns = list(zip(*rows))
    users = {
        "user_id": np.asarray(columns[0], dtype=str),
        "age": np.asarray(columns[1], dtype=str),
        "gender": np.asarray(columns[2], dtype=str),
        "occupation": np.asarray(columns[3], dtype=str),
        "zip_prefix": np.asarray(columns[4], dtype=str),
    }
    specs = tuple(splits.categorical_spec(name, users[name]) for name in ("age", "gender", "occupation", "zip_prefix"))
    return users, specs


def load_movielens(path: str, config, embedding_dim: int = 32, fmt: str | None = None) -> RecDataset:
    """Loads a GroupLens MovieLens directory into a :class:`RecDataset` with ``config``'s protocol.

    Args:
      path: the unzipped release directory (e.g. ``ml-100k/``).
      config: a :class:`~yt_bias.config.DataConfig` (split, reward rule, history length).
      fmt: 'ml-100k', 'ml-1m' or 'ml-csv'; detected from the files when None.
    Raises:
      FileNotFoundError: a required file is missing. ValueError: a malformed line (file:line named).
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data.path {path!r} is not a directory; expected an unzipped MovieLens release.")
    fmt = fmt or detect_format(path)
    readers = {"ml-100k": _ml100k, "ml-1m": _ml1m, "ml-csv": _ml_csv}
    if fmt not in readers:
        raise ValueError(f"MovieLens format must be one of {FORMATS}; received {fmt!r}.")
    interactions, items, item_specs, (users, user_specs) = readers[fmt](path)
    name = f"movielens:{os.path.basename(os.path.normpath(path))}"
    return splits.build_dataset(
        name, interactions, items, item_specs, config, embedding_dim, users=users, user_specs=user_specs
    )
