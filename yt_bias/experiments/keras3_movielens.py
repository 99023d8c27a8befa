"""MovieLens-100K on Keras 3 (JAX backend): plain in-batch softmax vs :class:`yt_bias.keras3.CorrectedRetrieval`.

The protocol and the model of the TFRS drop-in table (:mod:`yt_bias.experiments.tfrs_drop_in`),
written for Keras 3 and keras-rs users: a temporal split of the ratings, every training rating a
positive, the held-out ratings >= 4 as test queries, exact top-K over all items with the user's
training items excluded; a user-ID and a movie-ID embedding tower (32 wide; IDs become integer
indices in the input pipeline, index 0 for a user without training ratings, as the tutorial's
``StringLookup``), Adagrad(0.1) with a near-zero initial accumulator, 6 epochs of full batches of
512 in a per-seed order. Variants: ``plain`` (the in-batch softmax, no correction, as
``tfrs.tasks.Retrieval()``), ``corrected`` (``CorrectedRetrieval()``: the streaming estimator with
its defaults, -log p on every logit, batch mean), and the most-popular baseline.

Run it with ``KERAS_BACKEND=jax`` (or any Keras 3 backend): the module imports Keras 3, never
tf-keras. ``python -m yt_bias.experiments.keras3_movielens --data DIR --out results.json`` runs
the comparison and writes its numbers (the ``keras3`` report section calls it so).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from yt_bias.config import DataConfig
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset
from yt_bias.data.loading import detect_source, load_dataset
from yt_bias.experiments.results import recall_table

VARIANTS = ("plain", "corrected")
DEFAULT_KS = (10, 50, 100)
SEEDS = (0, 1, 2)
EPOCHS = 6
BATCH_SIZE = 512
EMBEDDING_DIMENSION = 32
LEARNING_RATE = 0.1


def load_ratings(data_dir: str, test_fraction: float = 0.2, min_rating_positive: float = 4.0) -> RecDataset:
    """MovieLens-100K with the temporal split of the TFRS drop-in table (the same DataConfig)."""
    config = DataConfig(source=detect_source(data_dir), path=data_dir, split="temporal", test_fraction=test_fraction,
                        reward="threshold", min_rating_positive=min_rating_positive)
    return load_dataset(config)


def user_vocabulary(dataset: RecDataset) -> np.ndarray:
    """The sorted distinct user IDs with training ratings (the tutorial's user vocabulary)."""
    return np.unique(np.asarray(dataset.train[QUERY_KEY]).astype(str))


def user_indices(vocabulary: np.ndarray, keys) -> np.ndarray:
    """1 + the position of each key in ``vocabulary``; 0 for a key outside it (int32)."""
    keys = np.asarray(keys).astype(str)
    position = np.searchsorted(vocabulary, keys)
    found = (position < len(vocabulary)) & (vocabulary[np.minimum(position, len(vocabulary) - 1)] == keys)
    return np.where(found, position + 1, 0).astype(np.int32)


def build_model(variant: str, num_users: int, num_items: int):
    """The two-tower model of ``variant`` (a ``keras.Model``; the loss in ``compute_loss``, keras-rs style)."""
    import keras

    from yt_bias.keras3 import CorrectedRetrieval, softmax_loss

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}; received {variant!r}.")

    class TwoTower(keras.Model):
        def __init__(self):
            super().__init__()
            self.user_model = keras.layers.Embedding(num_users + 1, EMBEDDING_DIMENSION)
            self.movie_model = keras.layers.Embedding(num_items + 1, EMBEDDING_DIMENSION)
            self.task = CorrectedRetrieval() if variant == "corrected" else None

        def call(self, x):
            return self.user_model(x["user"]), self.movie_model(x["movie"])

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            query, candidates = y_pred
            if self.task is None:
                return softmax_loss(query, candidates)
            return self.task(query, candidates, candidate_ids=x["movie"], training=training)

    return TwoTower()


def _recall(top: np.ndarray, targets: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    hits = top == np.asarray(targets)[:, None]
    return {f"recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int, exclude: Sequence[np.ndarray]) -> np.ndarray:
    """Top-k item indices by inner product per query, each query's excluded items removed (exact scoring)."""
    from keras import ops

    scores = np.asarray(queries, np.float32) @ np.asarray(items, np.float32).T
    for row, excluded in enumerate(exclude):
        scores[row, excluded] = -np.inf
    _, top = ops.top_k(ops.convert_to_tensor(scores), k=k)
    return np.asarray(ops.convert_to_numpy(top))


def evaluate(query_fn: Callable[[np.ndarray], np.ndarray], item_embeddings: np.ndarray, dataset: RecDataset,
             ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K (and ``warm/recall@K``, ``warm_share``) with the protocol of the TFRS drop-in table.

    Args:
      query_fn: user index [n] int32 -> [n, d] query embeddings.
      item_embeddings: [num_items, d], row j the item of index j.
    """
    positives = dataset.test_positives()
    vocabulary = user_vocabulary(dataset)
    keys = np.asarray(positives[QUERY_KEY]).astype(str)
    index = user_indices(vocabulary, keys)
    seen = dataset.seen_items()
    empty = np.zeros(0, np.int64)
    exclude = [seen.get(key, empty) for key in keys]
    top = exact_top_k(query_fn(index), item_embeddings, max(ks), exclude)
    targets = np.asarray(positives[ITEM_INDEX])
    metrics = _recall(top, targets, ks)
    warm = index > 0
    metrics["warm_share"] = float(warm.mean())
    if warm.any():
        metrics.update({f"warm/{k}": v for k, v in _recall(top[warm], targets[warm], ks).items()})
    return metrics


def evaluate_most_popular(dataset: RecDataset, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """The most-popular baseline (training counts), on the protocol of :func:`evaluate`."""
    counts = dataset.item_counts("train").astype(np.float32)[:, None]
    return evaluate(lambda index: np.ones((len(index), 1), np.float32), counts, dataset, ks)


def train_and_evaluate(variant: str, seed: int, dataset: RecDataset, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                       ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Trains ``variant`` with ``seed`` (initialisation and batch order) and returns its metrics."""
    import keras

    vocabulary = user_vocabulary(dataset)
    users = user_indices(vocabulary, dataset.train[QUERY_KEY])
    movies = (np.asarray(dataset.train[ITEM_INDEX]) + 1).astype(np.int32)
    if not 1 <= batch_size <= len(users):
        raise ValueError(f"batch_size must be in [1, {len(users)}] (the training ratings); received {batch_size}.")
    keras.utils.set_random_seed(seed)
    model = build_model(variant, len(vocabulary), dataset.num_items)
    model.compile(optimizer=keras.optimizers.Adagrad(LEARNING_RATE, initial_accumulator_value=1e-6), jit_compile=True)
    rng = np.random.default_rng(seed)
    full = len(users) // batch_size * batch_size
    for _ in range(epochs):
        order = rng.permutation(len(users))[:full]
        model.fit({"user": users[order], "movie": movies[order]}, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    items = np.asarray(keras.ops.convert_to_numpy(model.movie_model(np.arange(1, dataset.num_items + 1, dtype=np.int32))))
    metrics = evaluate(lambda index: np.asarray(keras.ops.convert_to_numpy(model.user_model(index))), items, dataset, ks)
    if model.task is not None:
        metrics["estimator_steps"] = int(keras.ops.convert_to_numpy(model.task.frequency.step.value))
    return metrics


def run_comparison(dataset: RecDataset, seeds: Sequence[int] = SEEDS, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                   ks: Sequence[int] = DEFAULT_KS, on_result: Callable[[str, int, dict], None] | None = None) -> dict:
    """``{variant: [metrics per seed]}`` for plain and corrected, plus ``"most-popular": [metrics]``."""
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for seed in seeds:
        for variant in VARIANTS:
            metrics = train_and_evaluate(variant, seed, dataset, epochs, batch_size, ks)
            results[variant].append(metrics)
            if on_result is not None:
                on_result(variant, seed, metrics)
    results["most-popular"] = [evaluate_most_popular(dataset, ks)]
    return results


def format_table(results: dict[str, list[dict]], ks: Sequence[int] = DEFAULT_KS, prefix: str = "") -> str:
    """A markdown table of mean ± sample sd (over seeds) of Recall@K per variant (:func:`~yt_bias.experiments.results.recall_table`)."""
    return recall_table(results, ks, prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the ml-100k folder (u.data or RecBole atomic files)")
    parser.add_argument("--out", required=True, help="write {'results', 'backend', 'seconds'} here (JSON)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args(argv)
    import keras

    started = time.time()
    dataset = load_ratings(args.data)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = run_comparison(dataset, seeds, args.epochs, args.batch_size)
    record = {"results": results, "backend": keras.backend.backend(), "keras": keras.__version__,
              "seconds": time.time() - started, "seeds": seeds, "epochs": args.epochs, "batch_size": args.batch_size}
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, args.out)
    print(format_table(results, prefix="warm/"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
