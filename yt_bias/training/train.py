"""Training and evaluation of one configuration: ``train_and_evaluate(config, workdir) -> metrics``.

Called by the CLI, the notebooks, the experiments and the tests. It writes, under ``workdir``:
``config.json``, ``features.json``, ``items.npz`` (the item corpus it trained on), ``run.json``
(the run's fingerprint and status), ``checkpoint/`` (model, optimizer and estimator state),
``tensorboard/`` (loss and the estimator's error against the true frequencies) and
``metrics.json`` (only when training finished with finite loss and weights).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import ExperimentConfig
from yt_bias.core.model import TwoTowerModel
from yt_bias.core.negatives import training_examples
from yt_bias.data.dataset import RecDataset, make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.evaluation.exact import check_ks, evaluate_model
from yt_bias.runs.model import build_model
from yt_bias.training.distribute import make_strategy
from yt_bias.training.divergence import DivergenceGuard
from yt_bias.training.run_directory import RunDirectory, estimator_tv_error, model_checkpoint


def _train_examples(config: ExperimentConfig, dataset: RecDataset) -> dict:
    """``dataset.examples('train')``, plus the impression columns or rows a strategy needs."""
    negatives = getattr(config, "negatives", None)
    if negatives is None or negatives.impressions == "none":
        return dataset.examples("train")
    return training_examples(negatives, dataset)


def estimator_error(model: TwoTowerModel, dataset: RecDataset, batch_size: int) -> float | None:
    """TV error ``(1/2B) sum |p_hat - p|`` of the model's sampling probabilities over the corpus.

    Measured by :func:`yt_bias.training.run_directory.estimator_tv_error` against the exact
    frequencies of ``dataset``'s training rows, on the scale of the source's estimand.

    Returns:
      The error, or None for a model without a frequency source.
    """
    return estimator_tv_error(model.frequency, dataset.item_ids, dataset.item_counts("train"), batch_size)


class EstimatorErrorLogger(keras.callbacks.Callback):
    """Adds the estimator's TV error against the exact training frequencies to the epoch logs."""

    def __init__(self, dataset: RecDataset, batch_size: int, log_dir: str | None = None):
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "estimator")) if log_dir else None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        error = estimator_error(self.model, self.dataset, self.batch_size)
        if error is None:
            return
        if logs is not None:
            logs["estimator_tv_error"] = error
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.scalar("estimator_tv_error", error, step=epoch)
                self.writer.flush()


def _strategy_scope(config: ExperimentConfig):
    """The scope of ``config.distribute.strategy`` for model.fit (mirrored kinds); a no-op by default."""
    if config.distribute.strategy in ("mirrored", "multi_worker_mirrored"):
        return make_strategy(config.distribute).scope()
    if config.distribute.strategy == "parameter_server":
        raise ValueError(
            "distribute.strategy='parameter_server' trains through the cluster entry point: "
            "python -m yt_bias.cli.cluster_task (see docs/distributed.md)."
        )
    return contextlib.nullcontext()


def checkpoint_for(model: TwoTowerModel) -> tf.train.Checkpoint:
    """The run directory's checkpoint layout of a trained model (:func:`~yt_bias.training.run_directory.model_checkpoint`)."""
    return model_checkpoint(model)


def fit(
    config: ExperimentConfig, dataset: RecDataset, workdir: str | None = None, run: RunDirectory | None = None
) -> tuple[TwoTowerModel, dict]:
    """Trains ``config`` on ``dataset``; returns the model and ``{"train_seconds", "loss_history", ...}``.

    With a ``workdir`` it writes a run directory (:mod:`yt_bias.training.run_directory`: config, features,
    item corpus snapshot, run.json), TensorBoard logs and a checkpoint; a workdir holding another
    run is replaced. ``run``: a run directory the caller already opened for ``workdir``.

    Raises:
      TrainingDiverged: the loss or a weight became NaN or infinite (the run is marked failed).
    """
    if workdir and run is None:
        with RunDirectory.start(workdir, config, dataset) as run:
            return fit(config, dataset, workdir, run)
    keras.utils.set_random_seed(config.train.seed)
    with _strategy_scope(config):
        model = build_model(config, dataset)
    train_data = make_tf_dataset(_train_examples(config, dataset), config.train.batch_size, seed=config.train.seed)
    log_dir = os.path.join(workdir, "tensorboard") if workdir else None
    callbacks: list[keras.callbacks.Callback] = [
        DivergenceGuard(hint=f"Lower train.learning_rate (now {config.train.learning_rate:g})."),
        EstimatorErrorLogger(dataset, config.train.batch_size, log_dir),
    ]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", profile_batch=0))

    start = time.perf_counter()
    history = model.fit(train_data, epochs=config.train.epochs, callbacks=callbacks, verbose=config.train.verbose)
    info = {
        "train_seconds": round(time.perf_counter() - start, 2),
        "steps": int(config.train.epochs * (dataset.num_train // config.train.batch_size)),
        "loss_history": [float(v) for v in history.history["loss"]],
    }
    if run is not None:
        run.commit_checkpoint(checkpoint_for(model).save(os.path.join(run.checkpoint_dir, "ckpt")))
    return model, info


def train_and_evaluate(
    config: ExperimentConfig, workdir: str | None = None, dataset: RecDataset | None = None, mode: str = "overwrite"
) -> dict[str, Any]:
    """Trains ``config`` and evaluates it with exact Recall@K; returns (and saves) the metrics.

    Args:
      config: the experiment.
      workdir: where checkpoint, TensorBoard logs and metrics.json go; nothing is written if None.
      dataset: a ready data set (skips loading ``config.data``; experiments share one).
      mode: when ``workdir`` holds another run: 'overwrite' (replace it) or 'refuse' (raise).
    Returns:
      ``{"variant", "recall@K"..., "estimator_tv_error", "train_seconds", "loss_history", ...}``.
    Raises:
      RunConflict: ``workdir`` holds another run and ``mode='refuse'``, or another process is writing it.
      TrainingDiverged: the loss or a weight became non-finite (no metrics.json is written).
    """
    if dataset is None:
        dataset = load_dataset(config.data, config.model.embedding_dim)
    check_ks(config.eval.ks, dataset.num_items)
    if workdir:
        with RunDirectory.start(workdir, config, dataset, mode=mode) as run:
            metrics = _train_and_evaluate(config, dataset, workdir, run)
            run.finish(metrics)
        return metrics
    return _train_and_evaluate(config, dataset, None, None)


def _train_and_evaluate(config: ExperimentConfig, dataset: RecDataset, workdir: str | None, run) -> dict[str, Any]:
    model, info = fit(config, dataset, workdir, run)
    metrics: dict[str, Any] = {"name": config.name, "variant": config.variant}
    metrics.update(evaluate_model(model, dataset, config.eval.ks, config.eval.exclude_seen, config.eval.exclude))
    metrics["estimator_tv_error"] = estimator_error(model, dataset, config.train.batch_size)
    metrics.update(info)
    metrics.update(
        num_items=dataset.num_items,
        num_train=dataset.num_train,
        num_test_positives=int(np.sum(np.asarray(dataset.test["reward"]) > 0)),
    )
    return metrics
