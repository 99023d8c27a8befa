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

The process entry point that reads ``TF_CONFIG`` is :mod:`yt_bias.cli.cluster_task`.
"""

from __future__ import annotations

import os
import time

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


def _estimator_error(model, dataset, batch_size: int) -> float | None:
    """TV error of the PS-resident estimator (read inside a tf.function: eager reads of remote
    resources lose their static shape)."""
    from yt_bias._keras import tf
    from yt_bias.core.frequency import total_variation_error

    if model.frequency is None:
        return None
    estimated = tf.function(model.frequency.probability)(tf.constant(dataset.item_ids)).numpy()
    return total_variation_error(estimated, dataset.step_probabilities(batch_size), batch_size)


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


def run_chief(config, tf_config: dict, workdir: str, steps: int, log_every: int = 50,
              checkpoint_every: int | None = None) -> dict:
    """The coordinator: trains under ParameterServerStrategy and writes ``<workdir>/metrics.json``.

    ``steps`` is the total number of closures: a chief restarted on the same ``workdir`` restores
    the latest checkpoint (model, estimator, optimizer, closures done) and schedules the rest.
    """
    from yt_bias._keras import keras, tf
    from yt_bias.data.loading import load_dataset
    from yt_bias.training.distribute import estimator_num_shards, make_strategy, train_parameter_server
    from yt_bias.evaluation.exact import check_ks, evaluate_model
    from yt_bias.training.run_directory import METRICS_FILE, ensure_directory, write_json_atomic, write_npz_atomic
    from yt_bias.training.train import build_model as build_model_with_estimator_shards  # (config, dataset, estimator_shards)

    ensure_directory(workdir, "--workdir")
    dataset = load_dataset(config.data, config.model.embedding_dim)
    check_ks(config.eval.ks, dataset.num_items)
    strategy = make_strategy(config.distribute, tf_config)
    num_ps = len(tf_config["cluster"].get("ps", []))
    num_shards = estimator_num_shards(config.distribute, num_ps, config.estimator.hash_size, config.estimator.num_hashes)
    keras.utils.set_random_seed(config.train.seed)
    with strategy.scope():
        model = build_model_with_estimator_shards(config, dataset, num_shards)
    examples = dataset.examples("train")
    batch_size = config.train.batch_size
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

    def dataset_fn():
        # No seed (the global seed is cleared below): each worker draws its own shuffle, so workers read
        # different batches instead of the same batch twice.
        ds = tf.data.Dataset.from_tensor_slices(examples).shuffle(len(examples["reward"]))
        return ds.repeat().batch(batch_size, drop_remainder=True).prefetch(2)

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
        "estimator_tv_error": _estimator_error(model, dataset, batch_size),
        "variables_on": sorted({v.device for v in model.variables if getattr(v, "device", None)}),
        "sharded_variables": sorted(v.name for v in model.variables if "/part_" in v.name),
    }
    ensure_directory(workdir, "--workdir")
    if hasattr(frequency, "state_variables"):
        metrics["estimator_devices"] = sorted({v.device for v in frequency.state_variables()})
        metrics["estimator_variable_devices"] = {v.name: v.device for v in frequency.state_variables()}
        write_npz_atomic(os.path.join(workdir, ESTIMATOR_ARRAYS), estimator_arrays(frequency))
    metrics.update(evaluate_model(model, dataset, config.eval.ks, config.eval.exclude_seen))
    write_json_atomic(os.path.join(workdir, METRICS_FILE), metrics)
    return metrics
