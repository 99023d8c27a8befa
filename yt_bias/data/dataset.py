"""The in-memory form every data source produces, and its tf.data pipelines.

A :class:`RecDataset` holds a corpus of items (one row per item, with the item features), and
training and test interactions (query features, the index of the interacted item, a reward, and a
query key such as the user ID that says which training items a test query has already seen).
Synthetic data, MovieLens, RecBole atomic files and MIND all become one of these, so training,
evaluation and serving never depend on where the data came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from math import lgamma

import numpy as np

from yt_bias._keras import tf
from yt_bias.estimands import DEFAULT_ESTIMAND, check_estimand
from yt_bias.features import FeatureConfig, validate_examples

ITEM_INDEX = "item_index"
REWARD = "reward"
QUERY_KEY = "query_key"


def _check_interactions(name: str, data: Mapping[str, np.ndarray], features: FeatureConfig, num_items: int) -> int:
    count = validate_examples(data, features.query, where=name)
    for column in (ITEM_INDEX, REWARD, QUERY_KEY):
        if column not in data:
            raise ValueError(f"{name}: column '{column}' is missing; present: {sorted(data)}.")
        if len(data[column]) != count:
            raise ValueError(f"{name}: column '{column}' has {len(data[column])} rows; expected {count}.")
    index = np.asarray(data[ITEM_INDEX])
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{name}: '{ITEM_INDEX}' must be integers; received dtype {index.dtype}.")
    if count and (index.min() < 0 or index.max() >= num_items):
        raise ValueError(
            f"{name}: '{ITEM_INDEX}' must be in [0, {num_items}); received values in [{index.min()}, {index.max()}]."
        )
    reward = np.asarray(data[REWARD], dtype=np.float64)
    bad = ~np.isfinite(reward) | (reward < 0)
    if bad.any():
        raise ValueError(
            f"{name}: '{REWARD}' must be finite and >= 0; received {reward[bad][:5].tolist()} at rows {np.flatnonzero(bad)[:5].tolist()}."
        )
    return count


def batch_frequencies(counts: np.ndarray, batch_size: int, estimand: str = DEFAULT_ESTIMAND) -> np.ndarray:
    """Exact per-batch frequencies of items with ``counts`` rows among ``sum(counts)`` shuffled rows.

    Args:
      counts: [num_items] rows per item.
      batch_size: B (capped at the number of rows).
      estimand: ``"expected_count"`` (default): ``B c / n``; ``"inclusion"``: ``1 - C(n - c, B) / C(n, B)``,
        the probability of being in a batch of B rows drawn without replacement.
    Returns:
      [num_items] float64.
    """
    check_estimand(estimand)
    counts = np.asarray(counts, dtype=np.float64)
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("batch_frequencies: no rows (all counts are 0).")
    b = min(int(batch_size), int(n))
    if estimand == "expected_count":
        return b * counts / n

    def log_comb_ratio(c: float) -> float:
        # log C(n - c, B) - log C(n, B), in closed form via lgamma.
        if n - c < b:
            return -np.inf
        return lgamma(n - c + 1) - lgamma(n - c - b + 1) - lgamma(n + 1) + lgamma(n - b + 1)

    miss = np.exp([log_comb_ratio(c) for c in counts])
    return 1.0 - miss


@dataclasses.dataclass
class RecDataset:
    """A corpus and its interactions, split into train and test.

    Attributes:
      name: where the data came from.
      features: the feature config of both towers.
      items: item feature name -> [num_items, ...] array; row j describes item j.
      train: training interactions: query features, ``item_index`` [n] int, ``reward`` [n] float,
        ``query_key`` [n] str (whose history it is: the seen-item exclusion key).
      test: held-out interactions, same columns.
      truth: ground truth when known (synthetic data): true popularity, true preferences, ...
    """

    name: str
    features: FeatureConfig
    items: dict[str, np.ndarray]
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    truth: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.num_items = validate_examples(self.items, self.features.item, where="items")
        if self.num_items == 0:
            raise ValueError("items: the corpus is empty; expected at least one item.")
        ids = np.asarray(self.items[self.features.item_id]).astype(str)
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"items: '{self.features.item_id}' must be unique per item; found duplicates.")
        if np.any(ids == ""):
            raise ValueError(f"items: '{self.features.item_id}' has an empty ID.")
        self.num_train = _check_interactions("train", self.train, self.features, self.num_items)
        self.num_test = _check_interactions("test", self.test, self.features, self.num_items)

    @property
    def item_ids(self) -> np.ndarray:
        return np.asarray(self.items[self.features.item_id]).astype(str)

    def examples(self, split: str) -> dict[str, np.ndarray]:
        """Training-ready rows of a split: query features, the item's features, reward, item index."""
        data = {"train": self.train, "test": self.test}[split]
        index = np.asarray(data[ITEM_INDEX])
        rows = {spec.name: np.asarray(data[spec.name]) for spec in self.features.query}
        rows.update({spec.name: np.asarray(self.items[spec.name])[index] for spec in self.features.item})
        rows[REWARD] = np.asarray(data[REWARD], dtype=np.float32)
        rows[ITEM_INDEX] = index.astype(np.int64)
        return rows

    def item_counts(self, split: str = "train") -> np.ndarray:
        """How often each item occurs in a split: [num_items] int."""
        data = {"train": self.train, "test": self.test}[split]
        return np.bincount(np.asarray(data[ITEM_INDEX]), minlength=self.num_items)

    def step_probabilities(self, batch_size: int, estimand: str = DEFAULT_ESTIMAND) -> np.ndarray:
        """Exact per-batch frequency of each item in a uniformly shuffled training batch.

        With n training rows of which c_j show item j and batches of B rows drawn without
        replacement:

        * ``estimand="expected_count"`` (default): its expected number of rows in the batch, ``B c_j / n``;
        * ``estimand="inclusion"``: the probability that item j is in the batch,
          ``1 - C(n - c_j, B) / C(n, B)``.
        """
        counts = self.item_counts("train").astype(np.float64)
        return batch_frequencies(counts, batch_size, estimand)

    def seen_items(self) -> dict[str, np.ndarray]:
        """Query key -> the sorted item indices it interacted with in training."""
        keys = np.asarray(self.train[QUERY_KEY]).astype(str)
        index = np.asarray(self.train[ITEM_INDEX])
        order = np.argsort(keys, kind="stable")
        keys, index = keys[order], index[order]
        unique, starts = np.unique(keys, return_index=True)
        groups = np.split(index, starts[1:])
        return {k: np.unique(g) for k, g in zip(unique.tolist(), groups)}

    def test_positives(self) -> dict[str, np.ndarray]:
        """The test rows with a positive reward (the held-out positives evaluation ranks)."""
        keep = np.asarray(self.test[REWARD]) > 0
        return {name: np.asarray(values)[keep] for name, values in self.test.items()}


def make_tf_dataset(
    examples: Mapping[str, np.ndarray], batch_size: int, shuffle: bool = True, seed: int = 0, drop_remainder: bool = True
):
    """A tf.data pipeline of batches of dicts (shuffled each epoch, full batches by default).

    Full batches keep the estimator's notion of a step (one batch of B items) exact. The rows are
    drawn batch by batch: one vectorised permutation per pass (a new one each time the dataset is
    iterated, deterministic given ``seed``), then one gather per column and batch, so an epoch
    starts at once instead of first passing every row through a shuffle buffer.
    """
    count = len(next(iter(examples.values())))
    if count == 0:
        raise ValueError("make_tf_dataset: no examples; expected at least one row.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; received {batch_size}.")
    if drop_remainder and count < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {count} examples; lower it or keep the remainder.")
    columns = {name: tf.constant(np.asarray(values)) for name, values in examples.items()}
    num_batches = count // batch_size if drop_remainder else -(-count // batch_size)

    def batches_of(order):
        if drop_remainder:  # a static batch dimension, as batch(drop_remainder=True) gives
            return tf.data.Dataset.range(num_batches).map(lambda i: tf.reshape(order[i * batch_size : (i + 1) * batch_size], [batch_size]))
        return tf.data.Dataset.range(num_batches).map(lambda i: order[i * batch_size : tf.minimum((i + 1) * batch_size, count)])

    if shuffle:  # one random seed per pass: a fresh permutation each time the dataset is iterated
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        orders = seeds.map(
            lambda s: tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=tf.stack([s, seed]))
        )
        indices = orders.flat_map(batches_of)
    else:
        indices = batches_of(tf.range(count, dtype=tf.int64))

    def gather(index):
        return {name: tf.gather(values, index) for name, values in columns.items()}

    return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
