"""A bounded-memory synthetic generator that writes training and test shards chunk by chunk.

The corpus is drawn once and kept in memory (one row per item: category, tags, standardised log
views, a latent vector and a Zipf popularity ``pop_j ~ rank_j ** -popularity_exponent`` with
shuffled ranks), as in :mod:`yt_bias.data.synthetic`. Interactions are drawn per chunk of at most
``chunk_rows`` rows, so the memory held never grows with the number of interactions:

* each chunk has its own new users (IDs unique over the whole data set), each with a main
  category, a region correlated with it, a latent vector near its category centre and a number
  of interactions;
* a user's item is drawn from its main category's items by popularity with probability
  ``category_share`` and from the whole corpus by popularity otherwise (inverse-CDF draws: cheap
  for millions of items, where the in-memory generator's full softmax over the corpus is not);
* the reward is 1 with probability ``sigmoid(4 <u, v_j>)``; the history bag holds the user's
  earlier items within the chunk, most recent first; ``activity`` is the user's log volume;
* each user's last interaction goes to the test shards, the others to the training shards, in a
  random order within the chunk (readers mix whole row blocks, not rows).

Text columns are drawn as bytes (``numpy.bytes_``) so the shard writer stores them without
re-encoding.

Layout under ``out``: ``part-*.tfrecord`` (training rows), ``test/part-*.tfrecord`` (test rows),
``items.npz`` and ``features.json`` (:mod:`yt_bias.data.shards`), and ``manifest.json`` with the
generator's settings (:mod:`yt_bias.data.manifest`: written in a temporary folder, renamed into
place when complete).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from yt_bias.config import SyntheticConfig
from yt_bias.data.dataset import ITEM_INDEX, REWARD
from yt_bias.data.manifest import DataFolderReport, DataFolderWriter
from yt_bias.data.ranges import dense_ranges, merge_ranges
from yt_bias.data.shards import TEST_DIR, ShardWriter, write_items
from yt_bias.data.synthetic import synthetic_features

# The most items the generator accepts: its corpus (about 200 bytes an item with the draw tables)
# is held in memory.
MAX_ITEMS = 50_000_000


@dataclasses.dataclass
class GenerationReport(DataFolderReport):
    """What a generation run wrote: the :class:`~yt_bias.data.manifest.DataFolderReport` fields and how it drew them.

    Attributes:
      num_users: users drawn.
      chunks: chunks drawn.
      max_chunk_rows: the most interaction rows held in memory at once (one chunk).
    """

    num_users: int
    chunks: int
    max_chunk_rows: int


def _corpus(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, k = config.num_items, config.latent_dim
    centres = rng.normal(size=(config.num_categories, k))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    category = rng.integers(config.num_categories, size=n)
    vectors = (centres[category] + 0.5 * rng.normal(size=(n, k)) / np.sqrt(k)).astype(np.float32)
    popularity = (rng.permutation(n) + 1).astype(np.float64) ** -config.popularity_exponent
    popularity /= popularity.sum()
    tag_choice = np.argsort(rng.random((n, config.tags_per_category)), axis=1)[:, :3]
    tags = np.char.add(np.char.add(np.char.add("tag_", category.astype(str)[:, None]), "_"), tag_choice.astype(str))
    log_views = np.log(popularity * n * 1000.0) + 0.3 * rng.normal(size=n)
    log_views = (log_views - log_views.mean()) / max(log_views.std(), 1e-12)
    # Items sorted by category, with the cumulative popularity in that order: one inverse-CDF table
    # serves both the global draw and the per-category draws (a sub-range of it).
    order = np.argsort(category, kind="stable")
    cumulative = np.cumsum(popularity[order])
    bounds = np.searchsorted(category[order], np.arange(config.num_categories + 1))
    before = np.concatenate([[0.0], cumulative])[bounds]
    return {
        "item_id": np.char.add("item_", np.arange(n).astype(str)),
        "category": np.char.add("cat_", category.astype(str)),
        "tags": tags,
        "log_views": log_views.astype(np.float32)[:, None],
        "_item_id_bytes": np.char.add(b"item_", np.arange(n).astype(np.bytes_)),
        "_category_bytes": np.char.add(b"cat_", category.astype(np.bytes_)),
        "_tags_bytes": tags.astype(np.bytes_),
        "_vectors": vectors,
        "_centres": centres,
        "_order": order,
        "_cumulative": cumulative,
        "_cat_low": before[:-1],
        "_cat_mass": np.diff(before),
    }


def _draw_items(corpus: dict, main: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Per row: an item of category ``main[row]`` (prob ``share``) or of the corpus, by popularity."""
    cumulative = corpus["_cumulative"]
    total = cumulative[-1]
    in_category = (rng.random(len(main)) < share) & (corpus["_cat_mass"][main] > 0)
    low = np.where(in_category, corpus["_cat_low"][main], 0.0)
    mass = np.where(in_category, corpus["_cat_mass"][main], total)
    position = np.searchsorted(cumulative, low + rng.random(len(main)) * mass, side="right")
    return corpus["_order"][np.minimum(position, len(cumulative) - 1)]


def _chunk(
    config: SyntheticConfig, corpus: dict, first_user: int, num_users: int, cap: int, share: float, rng: np.random.Generator
):
    """One chunk's rows, grouped by user in time order (users ``first_user`` ...), at most ``cap`` rows per user.

    Returns:
      (rows, user): column name -> array, and each row's user (0 ... num_users - 1).
    """
    k = config.latent_dim
    main = rng.integers(config.num_categories, size=num_users)
    region = np.where(rng.random(num_users) < 0.7, main % config.num_regions, rng.integers(config.num_regions, size=num_users))
    user_vectors = corpus["_centres"][main] + 0.3 * rng.normal(size=(num_users, k)) / np.sqrt(k)
    user_vectors /= np.linalg.norm(user_vectors, axis=1, keepdims=True)
    activity = rng.lognormal(0.0, 0.5, size=num_users)
    counts = np.clip(np.round(activity / activity.mean() * config.interactions_per_user), 2, cap).astype(np.int64)
    user = np.repeat(np.arange(num_users), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(user)) - starts[user]
    items = _draw_items(corpus, main[user], share, rng)
    affinity = np.einsum("ij,ij->i", user_vectors[user], corpus["_vectors"][items])
    reward = (rng.random(len(items)) < 1.0 / (1.0 + np.exp(-4.0 * affinity))).astype(np.float32)
    names = corpus["_item_id_bytes"][items]  # text columns as bytes: the shard writer stores them as they are
    history = np.full((len(items), config.history_length), b"", dtype=names.dtype)
    for back in range(1, config.history_length + 1):  # column back-1: the item `back` rows earlier
        valid = position >= back
        history[valid, back - 1] = names[np.flatnonzero(valid) - back]
    volume = np.log1p(counts[user] - 1) - np.log1p(config.interactions_per_user - 1)
    rows = {
        "user_id": np.char.add(b"user_", (first_user + user).astype(np.bytes_)),
        "region": np.char.add(b"region_", region[user].astype(np.bytes_)),
        "history": history,
        "activity": volume.astype(np.float32)[:, None],
        "item_id": names,
        "category": corpus["_category_bytes"][items],
        "tags": corpus["_tags_bytes"][items],
        "log_views": corpus["log_views"][items],
        ITEM_INDEX: items.astype(np.int64),
        REWARD: reward,
    }
    return rows, user


def _split_last(rows: dict, user: np.ndarray, limit: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """The first ``limit`` rows, split into (train, test): each user's last kept row is its test row.

    The training rows come back in a random order (readers mix whole row blocks, so rows grouped by
    user would put a user's rows side by side in a batch); the test rows in user order.
    """
    rows = {name: values[:limit] for name, values in rows.items()}
    user = user[:limit]
    is_test = np.append(user[1:] != user[:-1], True)
    train = rng.permutation(np.flatnonzero(~is_test))
    return {n: v[train] for n, v in rows.items()}, {n: v[is_test] for n, v in rows.items()}


def generate_shards(
    out: str,
    num_items: int,
    num_interactions: int,
    rows_per_shard: int = 100_000,
    chunk_rows: int = 50_000,
    seed: int = 0,
    interactions_per_user: int = 30,
    category_share: float = 0.7,
    embedding_dim: int = 32,
    overwrite: bool = False,
) -> GenerationReport:
    """Writes about ``num_interactions`` synthetic interactions over ``num_items`` items to shards.

    Args:
      out: the output folder: new or empty (or, with ``overwrite``, a previous data folder, replaced
        whole); never a training run's workdir. Written in a temporary folder beside it and
        renamed into place when complete.
      num_items: corpus size.
      num_interactions: interactions to write (train and test together; exact).
      rows_per_shard: rows per TFRecord file.
      chunk_rows: the most interaction rows drawn and held at once.
      seed: the random seed (same arguments, same files).
      interactions_per_user: the mean number of interactions of a user.
      category_share: the probability that an interaction is drawn from the user's main category.
      embedding_dim: the embedding width written into ``features.json``.
      overwrite: replace a previous data folder at ``out``.
    Returns:
      A :class:`GenerationReport`.
    Raises:
      ValueError: a size outside its range (``num_items`` at most :data:`MAX_ITEMS`), a negative
        ``seed`` or ``category_share`` outside [0, 1].
      DataFolderError: ``out`` may not be written (checked before anything is written).
    """
    for name, value, low in (
        ("num_items", num_items, 2),
        ("num_interactions", num_interactions, 2),
        ("rows_per_shard", rows_per_shard, 1),
        ("chunk_rows", chunk_rows, 2),
        ("interactions_per_user", interactions_per_user, 2),
        ("embedding_dim", embedding_dim, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; received {value!r}.")
    if num_items > MAX_ITEMS:
        raise ValueError(
            f"num_items must be at most {MAX_ITEMS:,} (the corpus is held in memory, about 200 bytes an item); "
            f"received {num_items:,}."
        )
    if not 0.0 <= category_share <= 1.0:
        raise ValueError(f"category_share must be in [0, 1]; received {category_share!r}.")
    settings = {
        "generator": "yt_bias.data.synthetic_shards.generate_shards",
        "num_items": num_items,
        "num_interactions": num_interactions,
        "rows_per_shard": rows_per_shard,
        "chunk_rows": chunk_rows,
        "seed": seed,
        "interactions_per_user": interactions_per_user,
        "category_share": category_share,
        "embedding_dim": embedding_dim,
    }
    with DataFolderWriter(out, overwrite) as folder:
        report = _generate(folder.path, settings)
        manifest = folder.commit(
            synthetic_features(_synthetic_config(settings), embedding_dim),
            {"train": report.pop("train_rows"), "test": report.pop("test_rows")},
            settings,
            report.pop("dense_ranges"),
        )
    return GenerationReport.of_folder(out, manifest, **report)


def _synthetic_config(settings: dict) -> SyntheticConfig:
    return SyntheticConfig(
        num_items=settings["num_items"],
        num_users=1,
        interactions_per_user=min(settings["interactions_per_user"], settings["num_items"] - 1),
        seed=settings["seed"],
    )


def _generate(out: str, settings: dict) -> dict:
    """Writes the items table and the shards into ``out``; returns the draw's counts and each shard's rows."""
    num_interactions, rows_per_shard, chunk_rows = settings["num_interactions"], settings["rows_per_shard"], settings["chunk_rows"]
    category_share, seed, embedding_dim = settings["category_share"], settings["seed"], settings["embedding_dim"]
    config = _synthetic_config(settings)
    rng = np.random.default_rng(seed)
    corpus = _corpus(config, rng)
    features = synthetic_features(config, embedding_dim)
    write_items(out, features, {name: value for name, value in corpus.items() if not name.startswith("_")})
    # At most chunk_rows rows per chunk: users_per_chunk users of at most `cap` rows each.
    users_per_chunk = max(1, chunk_rows // (4 * config.interactions_per_user))
    cap = chunk_rows // users_per_chunk
    written = users = chunks = max_rows = 0
    ranges: dict = {}
    with ShardWriter(out, rows_per_shard) as train, ShardWriter(os.path.join(out, TEST_DIR), rows_per_shard) as test:
        while written < num_interactions:
            rows, user = _chunk(config, corpus, users, users_per_chunk, cap, category_share, rng)
            max_rows = max(max_rows, len(user))
            train_rows, test_rows = _split_last(rows, user, num_interactions - written, rng)
            del rows, user
            train.write(train_rows)
            ranges = merge_ranges(ranges, dense_ranges(train_rows, features.query))
            test.write(test_rows)
            written += len(train_rows[REWARD]) + len(test_rows[REWARD])
            users += users_per_chunk
            chunks += 1
    return {
        "num_users": users,
        "chunks": chunks,
        "max_chunk_rows": max_rows,
        "train_rows": dict(train.file_rows),
        "test_rows": dict(test.file_rows),
        "dense_ranges": ranges,
    }
