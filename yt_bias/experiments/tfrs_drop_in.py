"""The TFRS basic-retrieval tutorial's model, plain vs :class:`~yt_bias.integrations.tfrs.CorrectedRetrieval`.

The model (user-ID and movie-ID ``StringLookup`` + ``Embedding`` towers in a ``tfrs.Model``) is
the caller's: :func:`run_comparison` takes a ``build_model(variant, seed)`` function, trains each
variant on the same batches and evaluates it with the project's protocol: a temporal split,
every rating of a training user a positive for training (as the tutorial), the held-out ratings
>= 4 as test queries, exact top-K over all items with the user's training items excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import DataConfig
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset
from yt_bias.data.loading import detect_source, load_dataset
from yt_bias.evaluation.exact import exclusion_lists, recall_at_k
from yt_bias.experiments.results import recall_table
from yt_bias.retrieval.exact import inner_product_top_k, popularity_top_k

USER = "user_id"
MOVIE = "movie_id"
DEFAULT_KS = (10, 50, 100)


def load_ratings(data_dir: str, test_fraction: float = 0.2, min_rating_positive: float = 4.0) -> RecDataset:
    """MovieLens-100K (``u.data`` + ``u.item``, or RecBole's ``.inter``) with a temporal split.

    Args:
      data_dir: the ``ml-100k`` folder (either format; detected from its files).
      test_fraction: the share of ratings after the time cut.
      min_rating_positive: a held-out rating >= this is a test query.
    """
    config = DataConfig(
        source=detect_source(data_dir),
        path=data_dir,
        split="temporal",
        test_fraction=test_fraction,
        reward="threshold",
        min_rating_positive=min_rating_positive,
    )
    return load_dataset(config)


def vocabularies(dataset: RecDataset) -> tuple[np.ndarray, np.ndarray]:
    """(unique training user IDs, every item ID of the corpus): the tutorial's StringLookup vocabularies."""
    return np.unique(np.asarray(dataset.train[QUERY_KEY]).astype(str)), dataset.item_ids


def training_batches(dataset: RecDataset, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """``{"user_id", "movie_id"}`` batches of every training rating, reshuffled each epoch, full batches only."""
    rows = {
        USER: np.asarray(dataset.train[QUERY_KEY]).astype(str),
        MOVIE: dataset.item_ids[np.asarray(dataset.train[ITEM_INDEX])],
    }
    if batch_size < 1 or batch_size > len(rows[USER]):
        raise ValueError(f"batch_size must be in [1, {len(rows[USER])}] (the training ratings); received {batch_size}.")
    ds = tf.data.Dataset.from_tensor_slices(rows).shuffle(len(rows[USER]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True)


def evaluate(user_model, movie_model, dataset: RecDataset, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K of exact top-K over all items for the held-out positives, training items excluded.

    Returns ``recall@K`` over every held-out positive, and ``warm/recall@K`` over those whose user
    has training ratings (a user-ID tower knows nothing of the others: they share the OOV row), with
    ``warm_share``, the share of such queries.
    """
    positives = dataset.test_positives()
    keys = np.asarray(positives[QUERY_KEY]).astype(str)
    queries = np.asarray(user_model(tf.constant(keys), training=False), np.float32)
    items = np.asarray(movie_model(tf.constant(dataset.item_ids), training=False), np.float32)
    return _metrics(inner_product_top_k(queries, items, max(ks), exclusion_lists(dataset, keys)), dataset, ks)


def evaluate_most_popular(dataset: RecDataset, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """The most-popular baseline (training counts) with the keys and protocol of :func:`evaluate`."""
    positives = dataset.test_positives()
    exclude = exclusion_lists(dataset, positives[QUERY_KEY])
    return _metrics(popularity_top_k(dataset.item_counts("train"), len(exclude), max(ks), exclude), dataset, ks)


def _metrics(top: np.ndarray, dataset: RecDataset, ks: Sequence[int]) -> dict[str, float]:
    """``recall@K``, ``warm_share`` and ``warm/recall@K`` of the top items of each held-out positive."""
    positives = dataset.test_positives()
    targets = np.asarray(positives[ITEM_INDEX])
    metrics = recall_at_k(top, targets, ks)
    warm = np.isin(np.asarray(positives[QUERY_KEY]).astype(str), vocabularies(dataset)[0])
    metrics["warm_share"] = float(warm.mean())
    if warm.any():
        metrics.update({f"warm/{k}": v for k, v in recall_at_k(top[warm], targets[warm], ks).items()})
    return metrics


def run_comparison(
    build_model: Callable[[str, int], keras.Model],
    dataset: RecDataset,
    variants: Sequence[str] = ("plain", "corrected"),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 6,
    batch_size: int = 512,
    learning_rate: float = 0.1,
    initial_accumulator_value: float = 1e-6,
    ks: Sequence[int] = DEFAULT_KS,
    on_result: Callable[[str, int, dict], None] | None = None,
) -> dict[str, list[dict[str, float]]]:
    """Trains ``build_model(variant, seed)`` for each variant and seed; returns the metrics per variant.

    The model must be a ``tfrs.Model`` with ``user_model`` and ``movie_model`` towers. Each seed
    fixes the initialisation (``keras.utils.set_random_seed``) and the batch order, the same for
    every variant. Adagrad with ``learning_rate`` (0.1, as the tutorial) and a near-zero
    ``initial_accumulator_value``: Adagrad's step is then invariant to the scale of the
    gradient, so TFRS's summed loss and CorrectedRetrieval's batch mean train at the same pace
    (Keras's default accumulator of 0.1 makes the mean's B times smaller gradients crawl).

    Returns:
      ``{variant: [metrics of seed 0, seed 1, ...]}``, each metrics dict ``{"recall@K": ...}``.
    """
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for seed in seeds:
        for variant in variants:
            keras.utils.set_random_seed(seed)
            model = build_model(variant, seed)
            model.compile(optimizer=keras.optimizers.Adagrad(learning_rate, initial_accumulator_value=initial_accumulator_value))
            model.fit(training_batches(dataset, batch_size, seed), epochs=epochs, verbose=0)
            metrics = evaluate(model.user_model, model.movie_model, dataset, ks)
            results[variant].append(metrics)
            if on_result is not None:
                on_result(variant, seed, metrics)
    return results


def format_table(results: dict[str, list[dict[str, float]]], ks: Sequence[int] = DEFAULT_KS, prefix: str = "") -> str:
    """A markdown table of mean ± sample std (over seeds) of Recall@K per variant.

    ``prefix="warm/"``: the queries of users with training ratings only.
    """
    return recall_table(results, ks, prefix)
