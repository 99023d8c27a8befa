"""MIND (Microsoft News Dataset): ``behaviors.tsv`` with real impressions, and ``news.tsv``.

``behaviors.tsv``: ``impression_id \\t user_id \\t time \\t history \\t impressions`` with time like
``11/15/2019 8:55:22 AM``, history the space-separated news clicked before the logging period,
impressions ``N123-1 N456-0 ...`` (1 = clicked). ``news.tsv``: ``news_id \\t category \\t
subcategory \\t title \\t abstract \\t url \\t title_entities \\t abstract_entities``.

``data.path`` is one such directory, or a directory whose sub-directories are (e.g.
``MINDsmall_train/`` and ``MINDsmall_dev/``); all parts are pooled and then split by the DataConfig
protocol (a temporal split puts the dev days after the train days).

Every click is an interaction (r = 1). The shown-but-not-clicked news of the same impression are
kept per row in the column ``impressions`` [n, MAX_IMPRESSIONS] (padded with '') for the
strategies that use them. The history column fills the user's bag before their first click of
the data (``prior_history`` of :func:`~yt_bias.data.splits.build_dataset`). Item features:
category, subcategory (categorical) and title tokens (hashed bag).
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from yt_bias.data.dataset import RecDataset
from yt_bias.data import splits

MAX_IMPRESSIONS = 20
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def find_parts(path: str) -> list[str]:
    """The directories under ``path`` (itself included) that hold behaviors.tsv and news.tsv."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data.path {path!r} is not a directory; expected MIND's behaviors.tsv and news.tsv.")
    candidates = [path] + sorted(os.path.join(path, d) for d in os.listdir(path))
    parts = [d for d in candidates if os.path.isfile(os.path.join(d, "behaviors.tsv"))]
    if not parts:
        raise FileNotFoundError(f"{path}: no behaviors.tsv in it or in its sub-directories.")
    for part in parts:
        if not os.path.isfile(os.path.join(part, "news.tsv")):
            raise FileNotFoundError(f"{os.path.join(part, 'news.tsv')} is missing (MIND needs it next to behaviors.tsv).")
    return parts


def _news(path: str, table: dict[str, tuple[str, str, list[str]]]) -> None:
    for line, fields in splits.read_rows(path, "\t", num_fields=8, encoding="utf-8"):
        news_id = splits.require_id(fields[0], path, line, "news_id")
        title = splits.title_tokens(fields[3], splits.TITLE_TOKENS)
        table.setdefault(news_id, (fields[1].strip(), fields[2].strip(), title))


def _behaviors(path: str, news: dict, rows: dict, prior: dict) -> None:
    for line, fields in splits.read_rows(path, "\t", num_fields=5, encoding="utf-8"):
        user = splits.require_id(fields[1], path, line, "user_id")
        try:
            time = datetime.datetime.strptime(fields[2].strip(), TIME_FORMAT).timestamp()
        except ValueError:
            raise ValueError(
                f"{path}:{line}: field 'time' must look like 11/15/2019 8:55:22 AM; received {fields[2]!r}."
            ) from None
        clicked, shown = [], []
        for entry in fields[4].split():
            news_id, _, label = entry.rpartition("-")
            if label not in ("0", "1") or not news_id:
                raise ValueError(
                    f"{path}:{line}: impression {entry!r} must look like N123-1 or N123-0 (MIND's test "
                    f"set has no labels and cannot be used)."
                )
            if news_id not in news:
                raise ValueError(f"{path}:{line}: impression news {news_id!r} is not in news.tsv.")
            (clicked if label == "1" else shown).append(news_id)
        history = fields[3].split()
        if user not in prior or time < prior[user][0]:
            prior[user] = (time, history)
        for news_id in clicked:
            rows["user"].append(user)
            rows["item"].append(news_id)
            rows["time"].append(time)
            rows["impressions"].append(shown[:MAX_IMPRESSIONS])


def load_mind(path: str, config, embedding_dim: int = 32) -> RecDataset:
    """Loads MIND (one part or several pooled) into a :class:`RecDataset` with ``config``'s protocol.

    Raises:
      FileNotFoundError: missing files. ValueError: a malformed line (file:line named).
    """
    parts = find_parts(path)
    news: dict[str, tuple[str, str, list[str]]] = {}
    for part in parts:
        _news(os.path.join(part, "news.tsv"), news)
    rows: dict[str, list] = {"user": [], "item": [], "time": [], "impressions": []}
    prior: dict[str, tuple[float, list[str]]] = {}
    for part in parts:
        _behaviors(os.path.join(part, "behaviors.tsv"), news, rows, prior)
    if not rows["user"]:
        raise ValueError(f"{path}: no clicked impressions in behaviors.tsv; expected at least one N123-1.")
    ids = sorted(news)
    items = {
        "item_id": np.asarray(ids, dtype=str),
        "category": np.asarray([news[i][0] for i in ids], dtype=str),
        "subcategory": np.asarray([news[i][1] for i in ids], dtype=str),
        "title": splits.pad_bags([news[i][2] for i in ids], splits.TITLE_TOKENS),
    }
    item_specs = (
        splits.categorical_spec("category", items["category"]),
        splits.categorical_spec("subcategory", items["subcategory"]),
        splits.bag_spec("title", items["title"], hashed_buckets=splits.TITLE_BUCKETS),
    )
    interactions = splits.Interactions(rows["user"], rows["item"], rows["time"], None)
    extra = {"impressions": splits.pad_bags(rows["impressions"], MAX_IMPRESSIONS)}
    name = f"mind:{os.path.basename(os.path.normpath(path))}"
    return splits.build_dataset(
        name,
        interactions,
        items,
        item_specs,
        config,
        embedding_dim,
        prior_history={u: h for u, (_, h) in prior.items()},
        extra_columns=extra,
    )
