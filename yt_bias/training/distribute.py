"""tf.distribute training: strategy setup, the estimator's cross-replica update, gathered negatives.

Where the estimator lives (section 4 of the paper; the model's estimator with ``n`` shards is
``yt_bias.training.train.build_model(config, dataset, estimator_shards=n)``):

* MirroredStrategy / MultiWorkerMirroredStrategy: the estimator's variables are mirrored. Each
  replica all-gathers the item IDs of its part of the global batch, and one ``merge_call`` runs
  :meth:`~yt_bias.core.frequency.StreamingFrequencyEstimator.update` once per global step on the union (in cross-replica
  context, once per local device copy with identical inputs), so the step counter advances by one
  per global step and the arrays equal a one-device run on the same global batches.
* ParameterServerStrategy: the estimator's arrays, the global step and the embedding tables are
  created on the parameter servers (tables larger than ``min_shard_bytes`` are sharded by a
  variable partitioner; each estimator array is split by the estimator itself into
  :func:`estimator_num_shards` variables, bucket b in shard b % S, which the strategy places
  round-robin on different parameter servers). Each worker's step
  function reads the buckets of its batch, updates them and writes them back with scatter ops on
  the PS variables, alongside asynchronous SGD and without locking: the paper's distributed
  updates. :func:`train_parameter_server` drives the workers with a ``ClusterCoordinator``.

The library never reads the environment: callers pass a ``TF_CONFIG``-style dict (the CLI reads it).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from yt_bias._keras import tf
from yt_bias.config import DistributeConfig
from yt_bias.core.frequency import update_once_per_global_step
from yt_bias.core.model import gathered_batch_loss  # noqa: F401  (re-exported: in-batch negatives across replicas)

__all__ = [
    "cluster_resolver",
    "configure_logical_cpus",
    "estimator_num_shards",
    "gathered_batch_loss",
    "make_strategy",
    "train_parameter_server",
    "update_estimator",
]


def configure_logical_cpus(count: int) -> int:
    """Splits the physical CPU into ``count`` logical devices (before TensorFlow initialises devices).

    Returns:
      The number of logical CPU devices now visible.
    Raises:
      RuntimeError: TensorFlow already initialised its devices with a different split.
    """
    cpus = tf.config.list_physical_devices("CPU")
    if count > 1:
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:
            if len(tf.config.list_logical_devices("CPU")) != count:
                raise
    return len(tf.config.list_logical_devices("CPU"))


def cluster_resolver(tf_config: Mapping[str, Any] | str) -> tf.distribute.cluster_resolver.SimpleClusterResolver:
    """A cluster resolver from a ``TF_CONFIG`` dict (``{"cluster": {...}, "task": {"type", "index"}}``)."""
    if isinstance(tf_config, str):
        tf_config = json.loads(tf_config)
    if "cluster" not in tf_config or "task" not in tf_config:
        raise ValueError(f"tf_config must have 'cluster' and 'task'; received keys {sorted(tf_config)}.")
    task = tf_config["task"]
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(tf_config["cluster"]),
        task_type=task["type"],
        task_id=int(task.get("index", 0)),
        rpc_layer=tf_config.get("rpc_layer", "grpc"),
    )


def make_strategy(config: DistributeConfig, tf_config: Mapping[str, Any] | str | None = None) -> tf.distribute.Strategy:
    """The strategy of ``config.strategy``.

    Args:
      config: which strategy; ``num_logical_cpus`` > 1 first splits the CPU (MirroredStrategy on CPU).
      tf_config: the cluster (``TF_CONFIG`` dict) for multi_worker_mirrored and parameter_server.
    Raises:
      ValueError: parameter_server without a cluster.
    """
    if config.num_logical_cpus > 1:
        configure_logical_cpus(config.num_logical_cpus)
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices)
    if config.strategy == "multi_worker_mirrored":
        resolver = cluster_resolver(tf_config) if tf_config else None
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if tf_config is None:
        raise ValueError("distribute.strategy='parameter_server' needs a cluster: pass tf_config (TF_CONFIG).")
    resolver = cluster_resolver(tf_config)
    num_ps = len(resolver.cluster_spec().as_dict().get("ps", []))
    if num_ps < 1:
        raise ValueError("parameter_server needs at least one 'ps' task in tf_config['cluster'].")
    sizer = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=config.min_shard_bytes, max_shards=config.max_shards or num_ps
    )

    def partitioner(shape, dtype):
        # Only tables (many rows) are sharded along rows; the estimator's [m, H] arrays have m = num_hashes
        # rows and are read with gather_nd, which a ShardedVariable does not support: the estimator shards
        # them itself (num_shards, see estimator_num_shards), and each of its shard variables stays whole.
        if shape.rank is None or shape.rank < 2 or shape[0] < _MIN_SHARDED_ROWS:
            return [1] * max(shape.rank or 1, 1)
        return sizer(shape, dtype)

    return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


_MIN_SHARDED_ROWS = 64


def estimator_num_shards(config: DistributeConfig, num_ps: int, hash_size: int, num_hashes: int = 1) -> int:
    """How many variables each estimator array is split into under ParameterServerStrategy.

    ``config.estimator_shards`` when set (> 0); otherwise as the table partitioner would: one shard
    per ``min_shard_bytes`` of the largest array (A, int64 [m, H]), at most ``max_shards`` (0: the
    number of parameter servers) and at most ``hash_size``. 1 outside parameter_server.
    """
    if config.strategy != "parameter_server":
        return 1
    if config.estimator_shards > 0:
        return min(config.estimator_shards, hash_size)
    array_bytes = 8 * hash_size * num_hashes
    shards = math.ceil(array_bytes / max(config.min_shard_bytes, 1))
    return max(1, min(shards, config.max_shards or num_ps, hash_size))


# The estimator owns its cross-replica update; kept here under its first name.
update_estimator = update_once_per_global_step


def train_parameter_server(
    strategy: tf.distribute.experimental.ParameterServerStrategy,
    model,
    dataset_fn: Callable[[], tf.data.Dataset],
    steps: int,
    log_every: int = 50,
    on_progress: Callable[[int, float], None] | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Trains ``model`` (built under ``strategy.scope()``) for ``steps`` closures with a ClusterCoordinator.

    Each closure is one worker step: :meth:`~yt_bias.core.model.TwoTowerModel.optimizer_step` (the
    step ``model.fit`` runs) on the worker's next batch, whose estimator update reads and writes
    the PS variables. A closure that fails because its worker
    died is re-scheduled by the coordinator on a live worker (so it runs to completion exactly
    once, but its partial effects before the failure are not undone: see docs/distributed.md).

    Args:
      dataset_fn: builds one worker's (infinite) dataset of batches; run on each worker.
      steps: closures to schedule (0: none, the result has no timings).
      log_every: keep every ``log_every``-th closure's loss.
      on_progress: called with (1, seconds) once the first closure (tracing, dataset creation) is done.
      checkpoint_every: with ``on_checkpoint``: every this many closures, wait for the scheduled
        closures to finish (``coordinator.join()``) and call ``on_checkpoint(closures_done)``.
      on_checkpoint: called with the number of closures done at each checkpoint (not at the end:
        the caller saves its final checkpoint itself).
    Returns:
      ``{"closures_scheduled", "warmup_seconds", "seconds", "steps_per_second", "losses", "checkpoints"}``:
      steps/s over the closures after the first, losses of the first and every ``log_every``-th.
    """
    if steps <= 0:
        return {"closures_scheduled": 0, "warmup_seconds": None, "seconds": 0.0, "steps_per_second": None,
                "losses": [], "checkpoints": 0}
    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    per_worker = coordinator.create_per_worker_dataset(dataset_fn)
    iterator = iter(per_worker)

    @tf.function
    def step_fn(it):
        # The model's own training step (estimator update, loss with regularisation, optimizer step).
        return strategy.run(model.optimizer_step, args=(next(it),))

    # The first closure traces the step and creates the workers' datasets: timed apart as warm-up.
    start = time.perf_counter()
    first = coordinator.schedule(step_fn, args=(iterator,))
    losses = [float(first.fetch())]
    warmup = time.perf_counter() - start
    if on_progress is not None:
        on_progress(1, warmup)
    pending = []
    checkpoints = 0
    start = time.perf_counter()
    for i in range(1, steps):
        result = coordinator.schedule(step_fn, args=(iterator,))
        if log_every and i % log_every == 0:
            pending.append(result)
        done = i + 1
        if on_checkpoint is not None and checkpoint_every > 0 and done % checkpoint_every == 0 and done < steps:
            coordinator.join()  # every scheduled closure has finished: the PS variables are a consistent state
            on_checkpoint(done)
            checkpoints += 1
    coordinator.join()
    seconds = time.perf_counter() - start
    losses += [float(result.fetch()) for result in pending]
    return {
        "closures_scheduled": steps,
        "warmup_seconds": round(warmup, 3),
        "seconds": round(seconds, 3),
        "steps_per_second": round((steps - 1) / seconds, 2) if steps > 1 else None,
        "losses": losses,
        "checkpoints": checkpoints,
    }
