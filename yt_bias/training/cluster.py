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
import re
import time
from collections.abc import Iterator

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.core.frequency import FrequencySource, StreamingFrequencyEstimator
from yt_bias.data.dataset import ITEM_INDEX
from yt_bias.data.loading import load_dataset
from yt_bias.data.shards import SHARD_SUFFIX, ShardError, check_shard, count_rows, read_shards, shard_files, shard_summary
from yt_bias.evaluation.exact import check_ks, evaluate_model
from yt_bias.training.distribute import estimator_num_shards, make_strategy, train_parameter_server
from yt_bias.training.from_files import _check_config, corpus_dataset, evaluate_files, shard_directory
from yt_bias.training.run_directory import (
    RUN_FILE,
    VOLATILE_FIELDS,
    RunConflict,
    RunDirectory,
    ensure_directory,
    estimator_tv_error,
    model_checkpoint,
    read_json,
    write_npz_atomic,
)
from yt_bias.training.train import build_model as build_model_with_estimator_shards  # (config, dataset, estimator_shards)

SERVER_TYPES = ("worker", "ps")


def serve(tf_config: dict) -> None:
    """Runs a worker or parameter-server task until the process is killed."""
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
    # What tensorflow's internal ops.resource_creator_scope does (no public API for resource creators).
    with tf.compat.v1.get_default_graph()._resource_creator_scope("StaticHashTable", _content_named_table):  # noqa: SLF001
        yield


def _estimator_error(model, dataset, batch_size: int) -> float | None:
    """TV error of the PS-resident estimator on its estimand's scale, as one process measures it
    (:func:`yt_bias.training.run_directory.estimator_tv_error` reads it inside a tf.function)."""
    return estimator_tv_error(model.frequency, dataset.item_ids, dataset.item_counts("train"), batch_size)


ESTIMATOR_ARRAYS = "estimator_arrays.npz"


def _estimator_step(frequency: FrequencySource | None) -> int | None:
    """The frequency source's global step, or None (no source, or one that counts no steps)."""
    return None if frequency is None or frequency.step is None else int(frequency.step.numpy())


def estimator_arrays(frequency) -> dict:
    """The estimator's logical arrays as numpy (read in a tf.function: PS-resident variables)."""
    return {k: v.numpy() for k, v in tf.function(frequency.logical_arrays)().items()}


def _worker_reads(strategy, dataset_fn, num_workers: int, batches_per_worker: int = 3, keep: int = 2000) -> dict:
    """Per worker: the distinct item indices (at most ``keep``, sorted) of batches read from its dataset."""
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


LEGACY_CHECKPOINT_DIR = "checkpoints"  # where chiefs wrote checkpoints before the run-directory layout
# Config fields a restarted chief may change without making it another run.
CHIEF_VOLATILE_FIELDS = ("distribute.steps", "distribute.checkpoint_every")


class ParameterServerLost(RuntimeError):
    """A parameter server died: its variables are gone, so the job stops (restart it from the checkpoint)."""


def _lost_parameter_server(error: BaseException) -> str | None:
    """``'ps:N'`` when ``error`` is the coordinator reporting an unreachable parameter server, else None."""
    text = f"{type(error).__name__}: {error}"
    original = getattr(error, "original_exception", None)
    if original is not None:
        text += f" {type(original).__name__}: {original}"
    if "PSUnavailableError" not in text and not (
        "/job:ps" in text and isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError))
    ):
        return None
    match = re.search(r"/job:ps/replica:\d+/task:(\d+)", text)
    return f"ps:{match.group(1)}" if match else "ps"


def write_restored_state(strategy, model, batch: dict, path: str) -> str:
    """Builds every model variable with one forward pass on ``batch`` (a restore fills each from the
    checkpoint as it is created) and writes their values as a checkpoint of ``model`` at ``path``.

    The fault matrix compares it, key by key, with the checkpoint the chief restored: the global
    step, the estimator arrays, the embedding tables and the towers a resumed chief trains from.
    """
    with strategy.scope():
        model({name: tf.constant(value) for name, value in batch.items()})  # the towers only: no estimator update
    return tf.train.Checkpoint(model=model).write(path)


def legacy_checkpoint(workdir: str) -> str | None:
    """The newest checkpoint of a workdir written in the old cluster layout (``checkpoints/``, no run.json)."""
    if os.path.exists(os.path.join(workdir, RUN_FILE)):
        return None
    return tf.train.latest_checkpoint(os.path.join(workdir, LEGACY_CHECKPOINT_DIR))


def run_chief(config, tf_config: dict, workdir: str, steps: int, log_every: int = 50,
              checkpoint_every: int | None = None, data_files=None, shuffle_buffer: int = 10000,
              evaluate: bool = True, eval_queries: int | None = None, mode: str = "refuse",
              restored_state: str | None = None) -> dict:
    """The coordinator: trains under ParameterServerStrategy into the run directory ``workdir``.

    ``workdir`` is a run directory like every driver's (:class:`~yt_bias.training.run_directory.RunDirectory`:
    ``run.json``, ``config.json``, ``features.json``, ``items.npz``, ``run.lock``, ``checkpoint/``,
    ``metrics.json``), so ``yt-bias export`` serves it. ``steps`` is the total number of closures:
    a chief restarted on the same ``workdir`` (the same run) restores the committed checkpoint
    (model, estimator, optimizer, closures done) and schedules the rest. A workdir of the old
    layout (``checkpoints/``, no ``run.json``) is resumed from its newest checkpoint, which must
    match the model.

    Args:
      config: the experiment.
      tf_config: the cluster (``{"cluster": {...}, "task": {...}}``).
      workdir: the run directory; ``estimator_arrays.npz`` (the estimator's logical A, B, step) goes there too.
      steps: training closures in all (0: ``train.epochs`` passes over the training data).
      log_every: keep every this-many-th closure's loss.
      checkpoint_every: also checkpoint every this many closures (None: ``distribute.checkpoint_every``).
      data_files: TFRecord shards to train on (glob, directory or list; items table beside them);
        None: the in-memory data set of ``config.data``.
      shuffle_buffer: with ``data_files``: rows in each worker's shuffle buffer.
      evaluate: compute Recall@K at the end (with ``data_files``: on ``DIR/test`` when it exists).
      eval_queries: with ``data_files``: evaluate the first this many positive test rows (None: all).
      mode: ``workdir`` holds another run: 'refuse', 'overwrite' or 'resume' (see ``RunDirectory.start``).
      restored_state: a checkpoint prefix: before training, write the model's restored variables
        there (:func:`write_restored_state`; in-memory data only).
    Returns:
      The metrics written to ``metrics.json``.
    Raises:
      ShardError: with ``data_files``: missing or damaged shards, or fewer files than workers.
      RunConflict: the workdir holds another run, is in use, or its checkpoint does not fit this cluster.
      ParameterServerLost: a parameter server died during training (the committed checkpoint stays usable).
    """
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
            steps = config.train.epochs * (count_rows(files) // batch_size)
    else:
        examples = dataset.examples("train")
        if steps <= 0:  # distribute.steps = 0: train.epochs passes over the training data
            steps = config.train.epochs * (dataset.num_train // batch_size)
    if checkpoint_every is None:
        checkpoint_every = config.distribute.checkpoint_every

    extra = {"estimator_shards": num_shards, "cluster": {"workers": num_workers, "ps": num_ps}}
    if data_files is not None:
        extra["data_files"] = shard_summary(files)
    legacy = legacy_checkpoint(workdir)
    record_path = os.path.join(workdir, RUN_FILE)
    earlier = read_json(record_path, "run record") if os.path.isfile(record_path) else {}
    with RunDirectory.start(workdir, config, dataset, kind="cluster", mode=mode, extra=extra, resumable=True,
                            volatile=(*VOLATILE_FIELDS, *CHIEF_VOLATILE_FIELDS)) as run:
        # The checkpoint: the closures-done counter is a local (chief) variable, the rest lives on the PS.
        closures_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="closures_done")
        checkpoint = model_checkpoint(model, closures_done=closures_done)
        manager = tf.train.CheckpointManager(checkpoint, run.checkpoint_dir, max_to_keep=2)
        restored_from = None
        if run.resumed and run.record.get("checkpoint"):
            if earlier.get("estimator_shards", num_shards) != num_shards:
                raise RunConflict(
                    f"workdir {workdir!r}: its checkpoint holds the estimator in {earlier['estimator_shards']} shards; "
                    f"this cluster ({num_ps} parameter servers) makes {num_shards}. Restart with the same number of "
                    "parameter servers (or set distribute.estimator_shards), or use a new --workdir."
                )
            restored_from = run.file(run.record["checkpoint"])
            # Model variables are created (and so restored) at once or on first use (deferred restoration).
            checkpoint.restore(restored_from)
        elif legacy and not run.resumed:
            restored_from = legacy
            try:
                checkpoint.restore(legacy).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise RunConflict(
                    f"workdir {workdir!r} holds a checkpoint of the old cluster layout ({legacy}) that does not fit "
                    f"this model ({str(error).strip().splitlines()[0][:300]}); use a new --workdir."
                ) from None
            print(f"OLD LAYOUT: resuming from {legacy}; new checkpoints go to {run.checkpoint_dir}", flush=True)
        if restored_from:
            print(f"RESTORED: {restored_from} (closures done {int(closures_done.numpy())})", flush=True)
        if restored_state is not None:
            if data_files is not None:
                raise ValueError("restored_state: supported with the in-memory data set only; received data_files.")
            write_restored_state(strategy, model, {k: v[:2] for k, v in examples.items()}, restored_state)
        done_before = int(closures_done.numpy())
        step_before = _estimator_step(model.frequency)

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
            run.commit_checkpoint(path)  # run.json names it only once it is complete
            print(f"CHECKPOINT: {path} (closures done {done_before + done})", flush=True)

        started = time.time()
        try:
            info = train_parameter_server(strategy, model, dataset_fn, max(steps - done_before, 0), log_every=log_every,
                                          on_progress=progress, checkpoint_every=checkpoint_every, on_checkpoint=save)
            finished = time.time()
            save(info["closures_scheduled"])
        except Exception as error:
            lost = _lost_parameter_server(error)
            if lost is None:
                raise
            committed = run.record.get("checkpoint")
            raise ParameterServerLost(
                f"parameter server {lost} is unreachable: its variables (estimator shards, tables) are lost, so "
                f"training stops. Restart the parameter servers and this chief on the same --workdir: it resumes "
                + (f"from the committed checkpoint {committed} (closures done {int(closures_done.numpy())})."
                   if committed else "from scratch (no checkpoint was committed yet).")
                + f" ({type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''})"
            ) from error
        frequency = model.frequency
        metrics = {
            "num_workers": num_workers,
            "num_ps": num_ps,
            "batch_size": batch_size,
            "train_started_at": started,
            "train_finished_at": finished,
            **info,
            "restored_from": restored_from,
            "closures_before": done_before,
            "closures_done": int(closures_done.numpy()),
            "checkpoint": run.record.get("checkpoint"),
            "estimator_shards": frequency.num_shards if isinstance(frequency, StreamingFrequencyEstimator) else None,
            "estimator_step_before": step_before,
            "estimator_step": _estimator_step(frequency),
            "estimator_tv_error": _estimator_error(model, dataset, batch_size) if data_files is None else None,
            "variables_on": sorted({v.device for v in model.variables if getattr(v, "device", None)}),
            "sharded_variables": sorted(v.name for v in model.variables if "/part_" in v.name),
        }
        if isinstance(frequency, StreamingFrequencyEstimator):
            metrics["estimator_devices"] = sorted({v.device for v in frequency.state_variables()})
            metrics["estimator_variable_devices"] = {v.name: v.device for v in frequency.state_variables()}
            write_npz_atomic(run.file(ESTIMATOR_ARRAYS), estimator_arrays(frequency))
        if data_files is not None:
            metrics["data_files"] = len(files)
            metrics["worker_files"] = {str(w): [os.path.basename(f) for f in files[w::num_workers]] for w in range(num_workers)}
            metrics["worker_reads"] = _worker_reads(strategy, dataset_fn, num_workers)
            test_pattern = os.path.join(shard_directory(files[0]), "test", f"*{SHARD_SUFFIX}")
            if evaluate and glob.glob(test_pattern):
                metrics.update(evaluate_files(model, dataset, test_pattern, config.eval.ks, max_queries=eval_queries))
        elif evaluate:
            metrics.update(evaluate_model(model, dataset, config.eval.ks, config.eval.exclude_seen))
        run.finish(metrics)
    return metrics
