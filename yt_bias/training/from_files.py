"""Training on sharded TFRecord files: ``fit_on_files(config, pattern, workdir) -> metrics``.

The interactions never have to fit in memory: batches stream from the shards (:func:`~yt_bias.data.shards.read_shards`),
the item corpus comes from the items table beside them, and held-out queries (the ``test/`` shards
beside the training shards, when present) are embedded batch by batch and ranked over the whole
corpus with :func:`~yt_bias.retrieval.blocks.blockwise_top_k`. The model, optimizer and
estimator are the ones :func:`yt_bias.training.train.build_model` builds for in-memory data; the workdir is
a regular run directory (export, index and query read it).

What differs from :func:`yt_bias.training.train.train_and_evaluate`: the exact training frequencies are
not known without a pass over the data, so the ``correct-sfx-oracle`` variant and the estimator's
error against them are not available; the test queries exclude no items (``eval.exclude_seen``
is not applied); the feature widths are the ones in the shards' ``features.json``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import ExperimentConfig
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset
from yt_bias.data.manifest import check_data_folder
from yt_bias.data.shards import SHARD_SUFFIX, count_rows, read_items, read_shards, shard_files, shard_summary
from yt_bias.data.synthetic_shards import TEST_DIR
from yt_bias.training.divergence import DivergenceGuard
from yt_bias.evaluation.exact import check_ks, recall_at_k
from yt_bias.retrieval.blocks import blockwise_top_k
from yt_bias.retrieval.embedding import embed
from yt_bias.training.run_directory import RunDirectory
from yt_bias.training.train import _strategy_scope, build_model, checkpoint_for


def shard_directory(pattern: str) -> str:
    """The directory that holds the items table of a shard pattern (the pattern's folder)."""
    return pattern if os.path.isdir(pattern) else os.path.dirname(pattern) or "."


def corpus_dataset(directory: str, name: str | None = None) -> RecDataset:
    """A :class:`RecDataset` of the items table beside the shards, with no interactions in memory."""
    features, items = read_items(directory)
    empty = {spec.name: np.zeros((0, *spec.shape), np.float32 if spec.kind == "dense" else np.str_) for spec in features.query}
    empty.update({ITEM_INDEX: np.zeros(0, np.int64), REWARD: np.zeros(0, np.float32), QUERY_KEY: np.zeros(0, np.str_)})
    return RecDataset(name or f"shards:{directory}", features, items, dict(empty), dict(empty))


def epoch_batches(pattern, batch_size: int, rows: int | None = None) -> int:
    """The full batches of one pass over the shards of ``pattern``: ``rows // batch_size``.

    ``rows`` (the shards' row count, e.g. from a data set's manifest) saves the count; without it
    the rows are counted from the shards' records (:func:`~yt_bias.data.shards.count_rows`).

    Raises:
      ValueError: the shards hold fewer rows than one batch.
    """
    rows = count_rows(pattern) if rows is None else int(rows)
    if rows < batch_size:
        raise ValueError(f"train.batch_size={batch_size} is larger than the {rows} rows of the shards {pattern!r}.")
    return rows // batch_size


def sized_shards(pattern, features, batch_size: int, shuffle_buffer: int, seed: int, rows: int | None = None):
    """:func:`~yt_bias.data.shards.read_shards` with its number of batches declared (``assert_cardinality``).

    Keras then knows the epoch's length (the progress bar shows a total and time left), re-reads
    the files each epoch, and stops after exactly :func:`epoch_batches` steps, so the optimizer's
    ``iterations`` equals the batches trained; a pass that yields another number of batches
    fails instead of passing silently.
    """
    batches = epoch_batches(pattern, batch_size, rows)
    data = read_shards(pattern, features, batch_size, shuffle_buffer, seed=seed)
    return data.apply(tf.data.experimental.assert_cardinality(batches)), batches


def _check_config(config: ExperimentConfig) -> None:
    if config.variant == "correct-sfx-oracle":
        raise ValueError(
            "variant='correct-sfx-oracle' needs the exact training frequencies, which sharded files do not provide; "
            "use 'correct-sfx' (streaming estimator) or 'plain-sfx'."
        )
    negatives = getattr(config, "negatives", None)
    if negatives is not None and not negatives.is_default:
        raise ValueError(
            "negatives: sharded training supports in-batch negatives only; leave the 'negatives' section at its defaults."
        )


def _traced(tower):
    """``tower(batch, training=False)`` as a tf.function.

    Called eagerly, a Keras layer walks all its tracked attributes on every call (to clear its
    losses), including an ID vocabulary: seconds per call with a million items. Traced, the walk
    happens once per input shape.
    """
    return tf.function(lambda batch: tower(batch, training=False), reduce_retracing=True)


def query_embeddings(
    model, pattern, features, batch_size: int = 4096, max_queries: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The query tower's embeddings of the positive rows (reward > 0) of shards, in written order.

    Args:
      model: a trained two-tower model.
      pattern: the shards (glob, directory or list of files).
      features: their feature config.
      batch_size: rows embedded at once.
      max_queries: stop after this many positive rows (None: all): a fixed sample, the first
        positives in written order.
    Returns:
      (queries [n, d] float32, targets [n] int64: each row's item index).
    Raises:
      ValueError: the shards hold no positive row.
    """
    queries, targets, count = [], [], 0
    names = [spec.name for spec in features.query]
    query_tower = _traced(model.query_tower)
    for batch in read_shards(pattern, features, batch_size, shuffle_buffer=0, drop_remainder=False):
        keep = batch[REWARD].numpy() > 0
        if max_queries is not None:
            keep &= np.cumsum(keep) <= max_queries - count
        if not keep.any():
            if max_queries is not None and count >= max_queries:
                break
            continue
        rows = {n: tf.boolean_mask(batch[n], keep) for n in names}
        queries.append(query_tower(rows).numpy())
        targets.append(batch[ITEM_INDEX].numpy()[keep])
        count += int(keep.sum())
        if max_queries is not None and count >= max_queries:
            break
    if not queries:
        raise ValueError(f"evaluation: the shards {pattern!r} hold no row with reward > 0.")
    return np.concatenate(queries), np.concatenate(targets)


def evaluate_files(
    model, corpus: RecDataset, pattern, ks, batch_size: int = 4096, item_block: int = 65536, max_queries: int | None = None
) -> dict[str, Any]:
    """Recall@K of ``model`` on the positive rows of the shards of ``pattern``, over the whole corpus.

    Queries are embedded one batch at a time; ranking is exact and blockwise (no item is excluded).

    Args:
      model: a trained two-tower model.
      corpus: the items table (:func:`corpus_dataset`).
      pattern: the held-out shards.
      ks: the cut-offs.
      batch_size: rows embedded at once.
      item_block: items scored at once.
      max_queries: evaluate the first this many positive rows only (None: all).
    Returns:
      ``{"recall@K": ..., "num_test_positives": n}``.
    Raises:
      ValueError: the shards hold no positive row, or a K is outside [1, num_items].
    """
    check_ks(ks, corpus.num_items)
    items = embed(model.item_tower, corpus.items, batch_size)
    queries, targets = query_embeddings(model, pattern, corpus.features, batch_size, max_queries)
    top = blockwise_top_k(queries, items, max(ks), item_block=item_block)
    metrics = recall_at_k(top, targets, ks)
    metrics["num_test_positives"] = int(len(targets))
    return metrics


def fit_on_files(
    config: ExperimentConfig,
    pattern: str,
    workdir: str | None = None,
    mode: str = "overwrite",
    eval_pattern: str | None = None,
    shuffle_buffer: int = 10000,
    steps_per_epoch: int | None = None,
    max_eval_queries: int | None = None,
) -> dict[str, Any]:
    """Trains ``config`` on the TFRecord shards of ``pattern`` and evaluates it; returns (and saves) the metrics.

    Args:
      config: the experiment (``data`` is not read: the shards are the data).
      pattern: a glob of training shards (``DIR/*.tfrecord``) or their directory; ``items.npz`` and
        ``features.json`` lie in the same directory.
      workdir: where run.json, config, corpus snapshot, checkpoint, TensorBoard logs and
        metrics.json go; nothing is written if None.
      mode: when ``workdir`` holds another run: 'overwrite' or 'refuse'.
      eval_pattern: shards of held-out queries (default: ``DIR/test/*.tfrecord`` when it exists;
        no evaluation otherwise).
      shuffle_buffer: rows in the reader's shuffle buffer.
      steps_per_epoch: batches per epoch (default: one pass over the shards).
      max_eval_queries: evaluate the first this many positive held-out rows (None: all).
    Returns:
      ``{"name", "variant", "recall@K"..., "train_seconds", "steps", "loss_history", "num_items", ...}``.
    Raises:
      ShardError: missing or damaged shards or items table (the message names the file).
      ValueError: the oracle variant or non-default negatives, which need the data in memory.
      RunConflict: ``workdir`` holds another run and ``mode='refuse'``.
    """
    _check_config(config)
    directory = shard_directory(pattern)
    corpus = corpus_dataset(directory)
    files = shard_files(pattern)  # fails early, naming the pattern, when nothing matches
    # Shards, items table and manifest checked against each other before training (rows: from the manifest).
    data_check = check_data_folder(directory, files, corpus.num_items)
    if eval_pattern is None:
        test_dir = os.path.join(directory, TEST_DIR)
        if os.path.isdir(test_dir) and any(f.endswith(SHARD_SUFFIX) for f in os.listdir(test_dir)):
            eval_pattern = os.path.join(test_dir, f"*{SHARD_SUFFIX}")
            check_data_folder(directory, shard_files(eval_pattern), corpus.num_items)
    if eval_pattern is not None:
        check_ks(config.eval.ks, corpus.num_items)
    if workdir:
        extra = {"data_files": {**shard_summary(pattern), **data_check}, "dense_ranges": data_check["dense_ranges"] or {}}
        with RunDirectory.start(workdir, config, corpus, mode=mode, extra=extra) as run:
            metrics = _fit(config, corpus, pattern, eval_pattern, shuffle_buffer, steps_per_epoch, workdir, run, max_eval_queries,
                           data_check["rows"])
            run.finish(metrics)
        return metrics
    return _fit(config, corpus, pattern, eval_pattern, shuffle_buffer, steps_per_epoch, None, None, max_eval_queries, data_check["rows"])


def _fit(
    config, corpus, pattern, eval_pattern, shuffle_buffer, steps_per_epoch, workdir, run, max_eval_queries, rows=None
) -> dict[str, Any]:
    keras.utils.set_random_seed(config.train.seed)
    with _strategy_scope(config):
        model = build_model(config, corpus)
    if steps_per_epoch is not None:
        data = read_shards(pattern, corpus.features, config.train.batch_size, shuffle_buffer, seed=config.train.seed).repeat()
    else:
        # The epoch's length from the manifest's row counts (counted from the shards without one).
        data, _ = sized_shards(pattern, corpus.features, config.train.batch_size, shuffle_buffer, config.train.seed, rows)
    callbacks: list[keras.callbacks.Callback] = [
        DivergenceGuard(hint=f"Lower train.learning_rate (now {config.train.learning_rate:g}).")
    ]
    if workdir:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=os.path.join(workdir, "tensorboard"), update_freq="epoch", profile_batch=0)
        )
    start = time.perf_counter()
    history = model.fit(
        data, epochs=config.train.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=config.train.verbose
    )
    losses = [float(v) for v in history.history["loss"]]
    metrics: dict[str, Any] = {"name": config.name, "variant": config.variant, "data_files": pattern}
    metrics["train_seconds"] = round(time.perf_counter() - start, 2)
    metrics["steps"] = int(model.optimizer.iterations.numpy())
    metrics["loss_history"] = losses
    metrics["num_items"] = corpus.num_items
    if run is not None:
        run.commit_checkpoint(checkpoint_for(model).save(os.path.join(run.checkpoint_dir, "ckpt")))
    if eval_pattern is not None:
        metrics.update(evaluate_files(model, corpus, eval_pattern, config.eval.ks, max_queries=max_eval_queries))
    return metrics
