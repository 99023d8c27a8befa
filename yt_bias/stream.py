"""Sequential training, day by day (section 5 of the paper): per-day checkpoints, resume, per-day metrics.

The stream is a list of days, each a dict of training-ready rows (the columns of
:meth:`RecDataset.examples`). Two sources:

* ``generator``: the synthetic (or loaded) data set's training rows, resampled per day with a
  popularity shift: day d draws rows with weights ``exp(shift * (2d/(D-1) - 1) * z_item)`` for a
  fixed random direction ``z`` over items, so item popularity drifts over the days and the
  estimator has to track it (the paper's reason for a streaming estimator).
* ``files``: ``day_*.npz`` files in a directory, read in name order (:func:`write_days` writes them).

:func:`train_stream` trains on the days in order. After each day it saves one checkpoint (model,
optimizer, estimator arrays and the number of completed days) and appends the day's metrics
(loss, estimator TV error against the day's exact per-step probabilities, Recall@K on the
held-out set) to ``stream_state.json``. Run again on the same workdir, it restores the last
completed day and goes on. Each day's shuffle is seeded by ``(train.seed, day index)``, so a
resumed run sees the same batches in the same order as an uninterrupted one: its estimator
arrays are identical, and its model equal up to floating-point non-determinism.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable
from math import lgamma
from typing import Any

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import ExperimentConfig, StreamConfig
from yt_bias.data.dataset import ITEM_INDEX, RecDataset, make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.evaluation import evaluate_model
from yt_bias.frequency import total_variation_error

__all__ = ["STATE_FILE", "day_step_probabilities", "file_days", "generator_days", "train_stream", "write_days"]

STATE_FILE = "stream_state.json"


def generator_days(dataset: RecDataset, stream: StreamConfig, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The days of the generator source: the training rows resampled with a drifting popularity.

    Returns:
      ``stream.days`` dicts of rows (``rows_per_day`` each, default: training rows / days).
    """
    rows = dataset.examples("train")
    count = dataset.num_train
    per_day = stream.rows_per_day or max(1, count // stream.days)
    direction = np.random.default_rng([seed, 7919]).normal(size=dataset.num_items)
    item = np.asarray(rows[ITEM_INDEX])
    days = []
    for d in range(stream.days):
        position = 2.0 * d / (stream.days - 1) - 1.0 if stream.days > 1 else 0.0
        weight = np.exp(stream.popularity_shift * position * direction)[item]
        rng = np.random.default_rng([seed, d])
        index = np.sort(rng.choice(count, size=per_day, replace=per_day > count, p=weight / weight.sum()))
        days.append({name: np.asarray(values)[index] for name, values in rows.items()})
    return days


def write_days(days: list[dict[str, np.ndarray]], directory: str) -> list[str]:
    """Writes days as ``day_000.npz``, ``day_001.npz``, ... (the ``files`` source); returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for d, rows in enumerate(days):
        path = os.path.join(directory, f"day_{d:03d}.npz")
        np.savez(path, **rows)
        paths.append(path)
    return paths


def file_days(directory: str) -> list[dict[str, np.ndarray]]:
    """Reads the ``day_*.npz`` files of ``directory`` in name order.

    Raises:
      FileNotFoundError: no day file.
    """
    paths = sorted(glob.glob(os.path.join(directory, "day_*.npz")))
    if not paths:
        raise FileNotFoundError(f"stream.path={directory!r}: no day_*.npz files (write them with yt_bias.stream.write_days).")
    days = []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            days.append({name: data[name] for name in data.files})
    return days


def day_step_probabilities(item_index: np.ndarray, num_items: int, batch_size: int) -> np.ndarray:
    """Exact probability that each item is in a uniformly shuffled batch of one day: [num_items].

    With n rows of which c_j show item j: ``1 - C(n - c_j, B) / C(n, B)`` (as RecDataset's).
    """
    counts = np.bincount(np.asarray(item_index), minlength=num_items).astype(np.float64)
    n = float(len(item_index))
    b = min(batch_size, len(item_index))

    def log_miss(c: float) -> float:
        if n - c < b:
            return -np.inf
        return lgamma(n - c + 1) - lgamma(n - c - b + 1) - lgamma(n + 1) + lgamma(n - b + 1)

    return 1.0 - np.exp([log_miss(c) for c in counts])


def _stream_days(config: ExperimentConfig, dataset: RecDataset) -> list[dict[str, np.ndarray]]:
    if config.stream.source == "files":
        if not config.stream.path:
            raise ValueError("stream.source='files' needs stream.path, a directory of day_*.npz files.")
        return file_days(config.stream.path)
    return generator_days(dataset, config.stream, seed=config.train.seed)


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def train_stream(
    config: ExperimentConfig,
    workdir: str,
    dataset: RecDataset | None = None,
    on_day_end: Callable[[dict], None] | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Trains on the days in order, checkpointing after each; resumes from ``workdir`` if it holds a run.

    Args:
      config: the experiment; ``config.stream`` says which days.
      workdir: checkpoint/, stream_state.json (completed days and per-day metrics), config.json.
      dataset: the corpus and held-out set (default: loaded from ``config.data``).
      on_day_end: called with each day's metrics after its checkpoint is written.
    Returns:
      The model and ``{"completed_days", "resumed_from", "days": [per-day metrics]}``.
    """
    from yt_bias.train import build_model

    if dataset is None:
        dataset = load_dataset(config.data, config.model.embedding_dim)
    days = _stream_days(config, dataset)
    os.makedirs(workdir, exist_ok=True)
    state_path = os.path.join(workdir, STATE_FILE)
    config_path = os.path.join(workdir, "config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            if json.load(f) != json.loads(json.dumps(config.to_dict())):
                raise ValueError(f"workdir {workdir!r} holds a stream run of another config; use a new workdir.")
    else:
        _write_json(config_path, config.to_dict())

    keras.utils.set_random_seed(config.train.seed)
    model = build_model(config, dataset)
    completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_days")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, completed_days=completed)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoint"), max_to_keep=2)
    history: list[dict] = []
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        with open(state_path, encoding="utf-8") as f:
            history = json.load(f)["days"][: int(completed.numpy())]
    start = int(completed.numpy())
    batch = config.train.batch_size
    for d in range(start, len(days)):
        began = time.perf_counter()
        data = make_tf_dataset(days[d], batch, seed=config.train.seed * 100_003 + d)
        fitted = model.fit(data, epochs=config.stream.epochs_per_day, verbose=config.train.verbose)
        metrics: dict[str, Any] = {"day": d, "loss": float(fitted.history["loss"][-1])}
        metrics["steps"] = config.stream.epochs_per_day * (len(days[d][ITEM_INDEX]) // batch)
        if model.frequency is not None:
            true = day_step_probabilities(days[d][ITEM_INDEX], dataset.num_items, batch)
            estimated = model.frequency.probability(tf.constant(dataset.item_ids)).numpy()
            metrics["estimator_tv_error"] = total_variation_error(estimated, true, batch)
            if hasattr(model.frequency, "step"):
                metrics["estimator_step"] = int(model.frequency.step.numpy())
        metrics.update(evaluate_model(model, dataset, config.eval.ks, config.eval.exclude_seen))
        metrics["seconds"] = round(time.perf_counter() - began, 2)
        completed.assign(d + 1)
        manager.save(checkpoint_number=d + 1)
        history.append(metrics)
        _write_json(state_path, {"completed_days": d + 1, "num_days": len(days), "days": history})
        if on_day_end is not None:
            on_day_end(metrics)
    return model, {"completed_days": len(days), "resumed_from": start, "days": history}
