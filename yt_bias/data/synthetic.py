"""The built-in default data: a seeded generator of a realistic, popularity-skewed corpus.

Generative story (all seeded, nothing downloaded):

* Items belong to one of ``num_categories`` categories; each has a latent vector near its
  category centre, 3 tags drawn from its category's tag pool, and a power-law popularity
  ``pop_j ~ rank_j ** -popularity_exponent`` (ranks shuffled, so ID order says nothing).
* Users have latent interests (a mix of 1-3 category centres), a region correlated with their
  main interest, and an activity level (as a feature: the volume of their training-period
  interactions only, so it never reveals the test period).
* A user's next item is drawn, among items they have not consumed yet, with probability
  ``P(j | u) ~ pop_j ** popularity_weight * exp(affinity_scale * <u, v_j>)``: popularity and
  personal taste both matter, which is exactly where logQ correction makes a difference.
* Each interaction gets a timestamp, a reward (1 = a full watch, with a probability rising with
  affinity; 0 = a short watch) and the user's ``history_length`` previous items (the paper's
  bag of recent watches, never including the future).
* Split in time: interactions before the ``train_fraction`` quantile of time train, later ones test.

The ground truth (popularity, latent vectors, per-user true preferences) is kept in
``RecDataset.truth`` for evaluation.
"""

from __future__ import annotations

import numpy as np

from yt_bias.config import SyntheticConfig
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset
from yt_bias.features import FeatureConfig, FeatureSpec


def synthetic_features(config: SyntheticConfig, embedding_dim: int = 32) -> FeatureConfig:
    """The feature config of the synthetic data (one item-ID table shared by history and item)."""
    item_vocabulary = tuple(f"item_{j}" for j in range(config.num_items))
    item_table = dict(dim=embedding_dim, vocabulary=item_vocabulary, buckets=64, table="item")
    return FeatureConfig(
        query=(
            FeatureSpec("user_id", "id", dim=embedding_dim, buckets=max(1024, config.num_users)),
            FeatureSpec(
                "region", "categorical", dim=8, vocabulary=tuple(f"region_{r}" for r in range(config.num_regions)), buckets=1
            ),
            FeatureSpec("history", "bag", max_len=config.history_length, **item_table),
            FeatureSpec("activity", "dense", width=1),
        ),
        item=(
            FeatureSpec("item_id", "id", **item_table),
            FeatureSpec(
                "category", "categorical", dim=8, vocabulary=tuple(f"cat_{c}" for c in range(config.num_categories)), buckets=1
            ),
            FeatureSpec(
                "tags",
                "bag",
                dim=8,
                max_len=3,
                buckets=1,
                vocabulary=tuple(f"tag_{c}_{t}" for c in range(config.num_categories) for t in range(config.tags_per_category)),
            ),
            FeatureSpec("log_views", "dense", width=1),
        ),
        item_id="item_id",
    )


def _gumbel_order(logits: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws without replacement, in draw order, from softmax(logits) (Gumbel top-k)."""
    keys = logits + rng.gumbel(size=logits.shape)
    top = np.argpartition(-keys, count)[:count]
    return top[np.argsort(-keys[top])]


def generate(config: SyntheticConfig = SyntheticConfig(), embedding_dim: int = 32) -> RecDataset:  # noqa: B008 (frozen)
    """Generates the default data set (deterministic for a given config)."""
    rng = np.random.default_rng(config.seed)
    n_items, n_users, k = config.num_items, config.num_users, config.latent_dim

    centres = rng.normal(size=(config.num_categories, k))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    category = rng.integers(config.num_categories, size=n_items)
    item_vectors = centres[category] + 0.5 * rng.normal(size=(n_items, k)) / np.sqrt(k)
    rank = rng.permutation(n_items) + 1
    popularity = rank.astype(np.float64) ** -config.popularity_exponent
    popularity /= popularity.sum()
    tags = np.stack(
        [np.array([f"tag_{c}_{t}" for t in rng.choice(config.tags_per_category, 3, replace=False)]) for c in category]
    )
    log_views = np.log(popularity * n_items * 1000.0) + 0.3 * rng.normal(size=n_items)
    log_views = (log_views - log_views.mean()) / log_views.std()

    main_interest = rng.integers(config.num_categories, size=n_users)
    user_vectors = centres[main_interest].copy()
    extra = rng.integers(0, 3, size=n_users)
    for u in np.flatnonzero(extra):
        others = rng.integers(config.num_categories, size=extra[u])
        user_vectors[u] += 0.6 * centres[others].sum(axis=0)
    user_vectors += 0.3 * rng.normal(size=(n_users, k)) / np.sqrt(k)
    user_vectors /= np.linalg.norm(user_vectors, axis=1, keepdims=True)
    region = np.where(
        rng.random(n_users) < 0.7, main_interest % config.num_regions, rng.integers(config.num_regions, size=n_users)
    )
    activity = rng.lognormal(0.0, 0.5, size=n_users)
    counts = np.clip(np.round(activity / activity.mean() * config.interactions_per_user), 2, n_items - 1).astype(int)

    log_pop = config.popularity_weight * np.log(popularity)
    users, items, times = [], [], []
    for u in range(n_users):
        logits = log_pop + config.affinity_scale * item_vectors @ user_vectors[u]
        chosen = _gumbel_order(logits, counts[u], rng)
        users.append(np.full(counts[u], u))
        items.append(chosen)
        times.append(np.sort(rng.random(counts[u])))
    users = np.concatenate(users)
    items = np.concatenate(items)
    times = np.concatenate(times)
    affinity = np.einsum("ij,ij->i", user_vectors[users], item_vectors[items])
    reward = (rng.random(len(items)) < 1.0 / (1.0 + np.exp(-4.0 * affinity))).astype(np.float32)

    # Each row's history: the user's previous items (rows are grouped by user, in time order).
    item_names = np.array([f"item_{j}" for j in range(n_items)])
    history = np.full((len(items), config.history_length), "", dtype=object)
    start = 0
    for u in range(n_users):
        n = counts[u]
        names = item_names[items[start : start + n]]
        for i in range(1, n):
            past = names[max(0, i - config.history_length) : i][::-1]
            history[start + i, : len(past)] = past
        start += n

    rows = {
        "user_id": np.array([f"user_{u}" for u in users]),
        "region": np.array([f"region_{r}" for r in region[users]]),
        "history": history.astype(str),
        ITEM_INDEX: items.astype(np.int64),
        REWARD: reward,
        QUERY_KEY: np.array([f"user_{u}" for u in users]),
        "timestamp": times,
    }
    cut = np.quantile(times, config.train_fraction)
    is_train = times < cut
    # Activity: the user's volume in the training period only (the test period's volume is the future).
    train_volume = np.bincount(users[is_train], minlength=n_users).astype(np.float32)
    expected_volume = config.interactions_per_user * config.train_fraction
    rows["activity"] = (np.log1p(train_volume[users]) - np.log1p(expected_volume)).astype(np.float32)[:, None]
    train = {name: values[is_train] for name, values in rows.items()}
    test = {name: values[~is_train] for name, values in rows.items()}
    items_table = {
        "item_id": item_names,
        "category": np.array([f"cat_{c}" for c in category]),
        "tags": tags,
        "log_views": log_views.astype(np.float32)[:, None],
    }
    truth = {
        "popularity": popularity,
        "item_vectors": item_vectors,
        "user_vectors": user_vectors,
        "popularity_weight": config.popularity_weight,
        "affinity_scale": config.affinity_scale,
    }
    return RecDataset("synthetic", synthetic_features(config, embedding_dim), items_table, train, test, truth)


def true_preference_scores(dataset: RecDataset, user_index: np.ndarray) -> np.ndarray:
    """The generator's true log-preference ``log P(j | u)`` (up to a constant): [len(users), num_items]."""
    truth = dataset.truth
    return truth["popularity_weight"] * np.log(truth["popularity"])[None, :] + truth["affinity_scale"] * (
        truth["user_vectors"][user_index] @ truth["item_vectors"].T
    )
