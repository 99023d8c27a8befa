"""The parameter-server cluster's tasks: a worker or PS server, and the chief that trains.

* ``ps`` and ``worker`` tasks start a ``tf.distribute.Server`` and serve until killed (:func:`serve`);
* the ``chief`` task is the coordinator (:func:`run_chief`): it builds the model under
  ParameterServerStrategy (the estimator's arrays, sharded over the parameter servers, its global
  step and the embedding tables on the parameter servers), restores ``<workdir>/checkpoints`` if
  there is one, schedules the training closures left to reach ``steps`` on the workers with a
  ``ClusterCoordinator`` (checkpointing every ``distribute.checkpoint_every`` closures and at the
  end), then writes ``metrics.json`` (steps/s, the estimator's global step against the closures
  scheduled, its TV error, Recall@K) and ``estimator_arrays.npz`` (the estimator's logical A, B,
  step) to the work directory.

With ``data_files`` the workers read TFRecord shards (:mod:`yt_bias.data.shards`) instead of the
in-memory data set: worker ``w`` of ``W`` reads files ``w, w + W, ...`` of the sorted file list (its
index comes from ``tf.distribute.coordinator.experimental_get_current_worker_index`` when the
coordinator creates its dataset, also after a worker restarts), the corpus is the items table
beside the shards, and the held-out shards (``DIR/test``) are evaluated blockwise. The chief then
also records, per worker, the item indices of a few batches read after training
(``worker_reads``): a check that each worker reads its own files.

The process entry point that reads ``TF_CONFIG`` is :mod:`yt_bias.cli.cluster_task`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import time
from collections.abc import Iterator

import numpy as np
from tensorflow.python.framework import ops as tf_ops  # resource_creator_scope: no public API

from yt_bias._keras import tf

SERVER_TYPES = ("worker", "ps")


def serve(tf_config: dict) -> None:
    """Runs a worker or parameter-server task until the process is killed."""
    from yt_bias._keras import tf

    task = tf_config["task"]
    server = tf.distribute.Server(
        tf.train.ClusterSpec(tf_config["cluster"]), job_name=task["type"], task_index=int(task.get("index", 0)),
        protocol=tf_config.get("rpc_layer", "grpc"), start=True,
    )
    print(f"{task['type']}:{task.get('index', 0)} serving at {server.target}", flush=True)
    server.join()


def table_digest(keys, values) -> str:
    """SHA-256 (hex, 32 digits) of a lookup table's content: dtypes, then each key and value in order."""
    digest = hashlib.sha256()
    for tensor in (keys, values):
        array = np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)
        digest.update(f"{tensor.dtype!s}|{array.shape}|".encode())
        if array.dtype == object:  # strings: length-prefixed, so ("ab", "c") and ("a", "bc") differ
            for item in array.ravel().tolist():
                item = item if isinstance(item, bytes) else str(item).encode()
                digest.update(len(item).to_bytes(8, "little") + item)
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


class ContentNamedInitializer(tf.lookup.KeyValueTensorInitializer):
    """A ``KeyValueTensorInitializer`` whose table's shared name is a hash of the table's content.

    TensorFlow names an eagerly built ``StaticHashTable`` by ``ops.uid()``, a counter of the
    process that builds it. Under ParameterServerStrategy the chief builds every worker's copy of
    a vocabulary table, and a worker keeps its tables (by name) for as long as it runs, longer than
    one chief: a second chief on the same workers (a restarted chief, the next run) counts from
    the same start, so its table ``"52"`` may be a different vocabulary than the first chief's
    ``"52"`` on that worker, and ``LookupTableImportV2`` fails with "Table was already initialized
    with different data". Named by content, the same table has the same name in every process (a
    worker that already holds it keeps it: same data) and two different tables never share one.
    """

    def __init__(self, keys, values, key_dtype=None, value_dtype=None):
        super().__init__(keys, values, key_dtype, value_dtype)
        self._content_name = f"yt_bias_table_{table_digest(self._keys, self._values)}"

    @property
    def _shared_name(self) -> str:
        return self._content_name


def _content_named_table(next_creator, *args, **kwargs):
    """Resource creator for ``StaticHashTable``: tables built from tensors get a content name."""
    args = list(args)
    initializer = args[0] if args else kwargs.get("initializer")
    if type(initializer) is tf.lookup.KeyValueTensorInitializer and not kwargs.get("experimental_is_anonymous"):
        named = ContentNamedInitializer(initializer._keys, initializer._values)  # noqa: SLF001
        if args:
            args[0] = named
        else:
            kwargs["initializer"] = named
    return next_creator(*args, **kwargs)


@contextlib.contextmanager
def content_named_tables() -> Iterator[None]:
    """Within it, ``StaticHashTable``s built from keys and values are named by their content
    (:class:`ContentNamedInitializer`). Enter it inside ``strategy.scope()``, so the strategy's own
    table creator (one copy per worker, re-created on a restarted worker) builds every copy with
    that name."""
    with tf_ops.resource_creator_scope("StaticHashTable", _content_named_table):
        yield


def _estimator_error(model, dataset, batch_size: int) -> float | None:
    """TV error of the PS-resident estimator on its estimand's scale, as one process measures it
    (:func:`yt_bias.training.run_directory.estimator_tv_error` reads it inside a tf.function)."""
    from yt_bias.training.run_directory import estimator_tv_error

    return estimator_tv_error(model.frequency, dataset.item_ids, dataset.item_counts("train"), batch_size)


CHECKPOINT_DIR = "checkpoints"
ESTIMATOR_ARRAYS = "estimator_arrays.npz"


def make_checkpoint(model, closures_done=None):
    """The chief's checkpoint: the model (towers, estimator), its optimizer and the closures done."""
    from yt_bias._keras import tf

    objects = {"model": model, "optimizer": model.optimizer}
    if closures_done is not None:
        objects["closures_done"] = closures_done
    return tf.train.Checkpoint(**objects)


def estimator_arrays(frequency) -> dict:
    """The estimator's logical arrays as numpy (read in a tf.function: PS-resident variables)."""
    from yt_bias._keras import tf

    return {k: v.numpy() for k, v in tf.function(frequency.logical_arrays)().items()}


def _worker_reads(strategy, dataset_fn, num_workers: int, batches_per_worker: int = 3, keep: int = 2000) -> dict:
    """Per worker: the distinct item indices (at most ``keep``, sorted) of batches read from its dataset."""
    from yt_bias._keras import tf
    from yt_bias.data.dataset import ITEM_INDEX

    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

    @tf.function
    def probe(it):
        index = tf.cast(tf.distribute.coordinator.experimental_get_current_worker_index(), tf.int64)
        return index, next(it)[ITEM_INDEX]

    # The coordinator gives a closure to whichever worker is free: schedule rounds until every worker
    # has answered ``batches_per_worker`` times (or 20 rounds have run).
    seen: dict[int, set] = {}
    batches: dict[int, int] = {}
    for _ in range(20):
        results = [coordinator.schedule(probe, args=(iterator,)) for _ in range(2 * num_workers)]
        coordinator.join()
        for result in results:
            index, items = result.fetch()
            seen.setdefault(int(index), set()).update(np.asarray(items).tolist())
            batches[int(index)] = batches.get(int(index), 0) + 1
        if len(batches) == num_workers and min(batches.values()) >= batches_per_worker:
            break
    return {str(w): {"batches": batches[w], "items": sorted(seen[w])[:keep], "distinct_items": len(seen[w])}
            for w in sorted(seen)}


def _shard_inputs(config, data_files, num_workers: int, shuffle_buffer: int):
    """The corpus, the training files and a per-worker ``dataset_fn`` for training on shards."""
    from yt_bias._keras import tf
    from yt_bias.data.shards import ShardError, check_shard, read_shards, shard_files
    from yt_bias.training.from_files import _check_config, corpus_dataset, shard_directory

    _check_config(config)
    corpus = corpus_dataset(shard_directory(data_files if isinstance(data_files, str) else data_files[0]))
    files = shard_files(data_files)
    if len(files) < num_workers:
        raise ShardError(f"{len(files)} shard files match {data_files!r}; expected at least one per worker ({num_workers}).")
    for path in files:  # a wrong or damaged file fails here, named, before any worker starts
        check_shard(path, corpus.features)
    batch_size = config.train.batch_size

    def dataset_fn():
        # Runs on each worker (also a restarted one): its index picks its files. No seed: each
        # worker and each restart draws its own shuffle.
        index = tf.distribute.coordinator.experimental_get_current_worker_index()
        return read_shards(files, corpus.features, batch_size, shuffle_buffer, seed=None, num_workers=num_workers,
                           worker_index=index, check=False).repeat()

    return corpus, files, dataset_fn


def run_chief(config, tf_config: dict, workdir: str, steps: int, log_every: int = 50,
              checkpoint_every: int | None = None, data_files=None, shuffle_buffer: int = 10000,
              evaluate: bool = True, eval_queries: int | None = None) -> dict:
    """The coordinator: trains under ParameterServerStrategy and writes ``<workdir>/metrics.json``.

    ``steps`` is the total number of closures: a chief restarted on the same ``workdir`` restores
    the latest checkpoint (model, estimator, optimizer, closures done) and schedules the rest.

    Args:
      config: the experiment.
      tf_config: the cluster (``{"cluster": {...}, "task": {...}}``).
      workdir: where checkpoints, ``metrics.json`` and ``estimator_arrays.npz`` go.
      steps: training closures in all (0: ``train.epochs`` passes over the training data).
      log_every: keep every this-many-th closure's loss.
      checkpoint_every: also checkpoint every this many closures (None: ``distribute.checkpoint_every``).
      data_files: TFRecord shards to train on (glob, directory or list; items table beside them);
        None: the in-memory data set of ``config.data``.
      shuffle_buffer: with ``data_files``: rows in each worker's shuffle buffer.
      evaluate: compute Recall@K at the end (with ``data_files``: on ``DIR/test`` when it exists).
      eval_queries: with ``data_files``: evaluate the first this many positive test rows (None: all).
    Returns:
      The metrics written to ``metrics.json``.
    Raises:
      ShardError: with ``data_files``: missing or damaged shards, or fewer files than workers.
    """
    from yt_bias._keras import keras, tf
    from yt_bias.data.loading import load_dataset
    from yt_bias.training.distribute import estimator_num_shards, make_strategy, train_parameter_server
    from yt_bias.evaluation.exact import check_ks, evaluate_model
    from yt_bias.training.run_directory import METRICS_FILE, ensure_directory, write_json_atomic, write_npz_atomic
    from yt_bias.training.train import build_model as build_model_with_estimator_shards  # (config, dataset, estimator_shards)

    ensure_directory(workdir, "--workdir")
    num_workers = len(tf_config["cluster"].get("worker", []))
    if data_files is not None:
        dataset, files, shards_dataset_fn = _shard_inputs(config, data_files, num_workers, shuffle_buffer)
    else:
        dataset = load_dataset(config.data, config.model.embedding_dim)
    check_ks(config.eval.ks, dataset.num_items)
    strategy = make_strategy(config.distribute, tf_config)
    num_ps = len(tf_config["cluster"].get("ps", []))
    num_shards = estimator_num_shards(config.distribute, num_ps, config.estimator.hash_size, config.estimator.num_hashes)
    keras.utils.set_random_seed(config.train.seed)
    with strategy.scope(), content_named_tables():  # a table's name on the workers is its content
        model = build_model_with_estimator_shards(config, dataset, num_shards)
    batch_size = config.train.batch_size
    if data_files is not None:
        if steps <= 0:  # train.epochs passes over the shards (all workers together)
            from yt_bias.data.shards import count_rows

            steps = config.train.epochs * (count_rows(files) // batch_size)
    else:
        examples = dataset.examples("train")
        if steps <= 0:  # distribute.steps = 0: train.epochs passes over the training data
            steps = config.train.epochs * (dataset.num_train // batch_size)
    if checkpoint_every is None:
        checkpoint_every = config.distribute.checkpoint_every

    # The checkpoint: the closures-done counter is a local (chief) variable, the rest lives on the PS.
    closures_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="closures_done")
    checkpoint = make_checkpoint(model, closures_done)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, CHECKPOINT_DIR), max_to_keep=2)
    restored_from = manager.latest_checkpoint
    if restored_from:
        # Model variables are created (and so restored) at once or on first use (deferred restoration).
        checkpoint.restore(restored_from)
        print(f"RESTORED: {restored_from} (closures done {int(closures_done.numpy())})", flush=True)
    done_before = int(closures_done.numpy())
    step_before = int(model.frequency.step.numpy()) if hasattr(model.frequency, "step") else None

    def memory_dataset_fn():
        # No seed (the global seed is cleared below): each worker draws its own shuffle, so workers read
        # different batches instead of the same batch twice.
        ds = tf.data.Dataset.from_tensor_slices(examples).shuffle(len(examples["reward"]))
        return ds.repeat().batch(batch_size, drop_remainder=True).prefetch(2)

    dataset_fn = shards_dataset_fn if data_files is not None else memory_dataset_fn
    tf.random.set_seed(None)

    def progress(done: int, seconds: float) -> None:
        print(f"WARM: first closure done in {seconds:.1f}s", flush=True)

    def save(done: int) -> None:
        closures_done.assign(done_before + done)
        path = manager.save()
        print(f"CHECKPOINT: {path} (closures done {done_before + done})", flush=True)

    started = time.time()
    info = train_parameter_server(strategy, model, dataset_fn, max(steps - done_before, 0), log_every=log_every,
                                  on_progress=progress, checkpoint_every=checkpoint_every, on_checkpoint=save)
    finished = time.time()
    save(info["closures_scheduled"])
    frequency = model.frequency
    metrics = {
        "num_workers": len(tf_config["cluster"].get("worker", [])),
        "num_ps": num_ps,
        "batch_size": batch_size,
        "train_started_at": started,
        "train_finished_at": finished,
        **info,
        "restored_from": restored_from,
        "closures_before": done_before,
        "closures_done": int(closures_done.numpy()),
        "checkpoint": manager.latest_checkpoint,
        "estimator_shards": getattr(frequency, "num_shards", None),
        "estimator_step_before": step_before,
        "estimator_step": int(frequency.step.numpy()) if hasattr(frequency, "step") else None,
        "estimator_tv_error": _estimator_error(model, dataset, batch_size) if data_files is None else None,
        "variables_on": sorted({v.device for v in model.variables if getattr(v, "device", None)}),
        "sharded_variables": sorted(v.name for v in model.variables if "/part_" in v.name),
    }
    ensure_directory(workdir, "--workdir")
    if hasattr(frequency, "state_variables"):
        metrics["estimator_devices"] = sorted({v.device for v in frequency.state_variables()})
        metrics["estimator_variable_devices"] = {v.name: v.device for v in frequency.state_variables()}
        write_npz_atomic(os.path.join(workdir, ESTIMATOR_ARRAYS), estimator_arrays(frequency))
    if data_files is not None:
        from yt_bias.data.shards import SHARD_SUFFIX
        from yt_bias.training.from_files import evaluate_files, shard_directory

        metrics["data_files"] = len(files)
        metrics["worker_files"] = {str(w): [os.path.basename(f) for f in files[w::num_workers]] for w in range(num_workers)}
        metrics["worker_reads"] = _worker_reads(strategy, dataset_fn, num_workers)
        test_pattern = os.path.join(shard_directory(files[0]), "test", f"*{SHARD_SUFFIX}")
        if evaluate and glob.glob(test_pattern):
            metrics.update(evaluate_files(model, dataset, test_pattern, config.eval.ks, max_queries=eval_queries))
    elif evaluate:
        metrics.update(evaluate_model(model, dataset, config.eval.ks, config.eval.exclude_seen))
    write_json_atomic(os.path.join(workdir, METRICS_FILE), metrics)
    return metrics
