"""Turns a :class:`~yt_bias.config.DataConfig` into a :class:`~yt_bias.data.dataset.RecDataset`.

``data.source`` picks the loader: ``synthetic`` (the built-in default), ``movielens`` (GroupLens
ml-100k / ml-1m / CSV releases), ``recbole`` (RecBole atomic files), ``mind`` (MIND's
behaviors.tsv + news.tsv) or ``interactions`` (one CSV / TSV / Parquet file mapped by
``data.columns``); every real source reads ``data.path`` and applies the split, reward rule and
history length of the DataConfig (see :mod:`yt_bias.data.splits`).
"""

from __future__ import annotations

import glob
import os

from yt_bias.data.dataset import RecDataset
from yt_bias.data.impressions import generate_with_impressions
from yt_bias.data.interactions import load_interactions
from yt_bias.data.mind import load_mind
from yt_bias.data.movielens import load_movielens
from yt_bias.data.recbole import load_recbole
from yt_bias.data.synthetic import generate

SOURCES = ("synthetic", "synthetic-impressions", "movielens", "recbole", "mind", "interactions")


def load_dataset(data_config, embedding_dim: int = 32) -> RecDataset:
    """Loads the data set a config names (the built-in synthetic data by default).

    Raises:
      ValueError: an unknown source, a real source without ``data.path``, or a synthetic source
        given settings it does not read (``data.path``, ``data.test_fraction``): they would be
        silently ignored.
    """
    source = data_config.source
    if source in ("synthetic", "synthetic-impressions"):
        _check_synthetic(data_config)
    if source == "synthetic":
        return generate(data_config.synthetic, embedding_dim)
    if source == "synthetic-impressions":  # the synthetic data + logging policy + slate clicks (default ImpressionsConfig)
        return generate_with_impressions(data_config.synthetic, embedding_dim=embedding_dim)
    if source not in SOURCES:
        raise ValueError(f"data.source must be one of {SOURCES}; received {source!r}.")
    if not data_config.path:
        what = "a file" if source == "interactions" else "a directory"
        raise ValueError(f"data.path must name {what} for data.source={source!r}; received {data_config.path!r}.")
    if source == "interactions":
        return load_interactions(data_config.path, data_config, embedding_dim)
    if source == "movielens":
        return load_movielens(data_config.path, data_config, embedding_dim)
    if source == "recbole":
        return load_recbole(data_config.path, data_config, embedding_dim)
    return load_mind(data_config.path, data_config, embedding_dim)


def _check_synthetic(data_config) -> None:
    """Refuses the file sources' settings on the synthetic source, which generates its data and its split."""
    if data_config.path:
        raise ValueError(
            f"data.path={data_config.path!r} is not read by data.source={data_config.source!r} (it generates its data); "
            "set data.source to the file's source (movielens, recbole, mind, interactions) or leave data.path empty."
        )
    default = type(data_config)().test_fraction
    if data_config.test_fraction != default:
        raise ValueError(
            f"data.test_fraction={data_config.test_fraction!r} is not read by data.source={data_config.source!r}, which "
            f"holds out each user's last interaction; leave it at {default} or use a file source."
        )


def detect_source(path: str) -> str:
    """Guesses ``data.source`` from a directory's files (for ``--data PATH`` without ``--format``)."""
    if os.path.isfile(path) and os.path.splitext(path)[1].lower() in (".csv", ".tsv", ".tab", ".parquet", ".pq"):
        return "interactions"
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--data {path!r} is not a directory (or a .csv / .tsv / .parquet interactions file).")
    names = set(os.listdir(path))
    if names & {"u.data", "ratings.dat", "ratings.csv"}:
        return "movielens"
    if glob.glob(os.path.join(path, "*.inter")):
        return "recbole"
    if "behaviors.tsv" in names or glob.glob(os.path.join(path, "*", "behaviors.tsv")):
        return "mind"
    raise ValueError(
        f"--data {path!r}: cannot tell the format from its files {sorted(names)[:10]}; expected "
        "u.data / ratings.dat / ratings.csv (movielens), *.inter (recbole) or behaviors.tsv (mind)."
    )
