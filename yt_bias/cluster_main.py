"""One task process of a ParameterServerStrategy cluster, and a local cluster launcher for tests.

Every task runs ``python -m yt_bias.cluster_main`` with the same config (``--preset``/``--set``,
the same files as ``yt-bias train``) and its own role, read from ``TF_CONFIG`` (as on a real
cluster) or from ``--cluster`` + ``--task-type`` + ``--task-index``:

* ``ps`` and ``worker`` tasks start a ``tf.distribute.Server`` and serve until killed;
* the ``chief`` task is the coordinator: it builds the model under ParameterServerStrategy (the
  estimator's arrays, sharded over the parameter servers, its global step and the embedding
  tables on the parameter servers), restores ``<workdir>/checkpoints`` if there is one, schedules
  the training closures left to reach ``--steps`` on the workers with a ``ClusterCoordinator``
  (checkpointing every ``distribute.checkpoint_every`` closures and at the end), then writes
  ``metrics.json`` (steps/s, the estimator's global step against the closures scheduled, its TV
  error, Recall@K) and ``estimator_arrays.npz`` (the estimator's logical A, B, step) to ``--workdir``.

:class:`LocalCluster` starts such processes on 127.0.0.1 (free ports), can kill and restart a
worker, and always kills every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

SERVER_TYPES = ("worker", "ps")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def local_cluster_spec(num_workers: int, num_ps: int) -> dict[str, list[str]]:
    """A cluster of one chief, ``num_workers`` workers and ``num_ps`` parameter servers on 127.0.0.1."""
    ports = free_ports(1 + num_workers + num_ps)
    address = [f"127.0.0.1:{p}" for p in ports]
    return {"chief": address[:1], "worker": address[1:1 + num_workers], "ps": address[1 + num_workers:]}


class LocalCluster:
    """Worker and PS server processes on 127.0.0.1, plus a chief run on demand; kills all on close.

    Args:
      num_workers, num_ps: the cluster's size.
      log_dir: each process's output goes to ``<log_dir>/<type>_<index>.log``.
    """

    def __init__(self, num_workers: int, num_ps: int, log_dir: str):
        self.spec = local_cluster_spec(num_workers, num_ps)
        self.log_dir = log_dir
        self.servers: dict[tuple[str, int], subprocess.Popen] = {}
        os.makedirs(log_dir, exist_ok=True)

    def tf_config(self, task_type: str, index: int) -> dict:
        return {"cluster": self.spec, "task": {"type": task_type, "index": index}}

    def _start(self, task_type: str, index: int, args: Sequence[str] = ()) -> subprocess.Popen:
        env = dict(os.environ, TF_CONFIG=json.dumps(self.tf_config(task_type, index)), TF_CPP_MIN_LOG_LEVEL="2")
        with open(os.path.join(self.log_dir, f"{task_type}_{index}.log"), "ab") as log:  # the child keeps its copy
            return subprocess.Popen(
                [sys.executable, "-m", "yt_bias.cluster_main", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def start_servers(self) -> None:
        for task_type in SERVER_TYPES:
            for index in range(len(self.spec.get(task_type, []))):
                self.servers[(task_type, index)] = self._start(task_type, index)

    def kill(self, task_type: str, index: int) -> None:
        """SIGKILLs one server process (as a machine failure would)."""
        _kill(self.servers.pop((task_type, index)))

    def restart(self, task_type: str, index: int) -> None:
        """Starts a killed server again on its address (its port is freed by the kill)."""
        self.servers[(task_type, index)] = self._start(task_type, index)

    def run_chief(self, args: Sequence[str], timeout: float) -> subprocess.Popen:
        """Starts the coordinator with ``args`` (returns the process; the caller waits on it)."""
        proc = self._start("chief", 0, args)
        self.servers[("chief", 0)] = proc
        proc.deadline = time.monotonic() + timeout  # type: ignore[attr-defined]
        return proc

    def close(self) -> None:
        for key in list(self.servers):
            _kill(self.servers.pop(key))

    def __enter__(self) -> LocalCluster:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from yt_bias.commands.common import add_config_arguments

    parser = argparse.ArgumentParser(prog="python -m yt_bias.cluster_main", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--cluster", default=None, help="cluster spec JSON (default: TF_CONFIG's 'cluster')")
    parser.add_argument("--task-type", choices=("chief", "worker", "ps"), default=None, help="default: TF_CONFIG's")
    parser.add_argument("--task-index", type=int, default=None)
    parser.add_argument("--workdir", default="runs/cluster", help="chief: where metrics.json goes")
    parser.add_argument("--steps", type=int, default=None, help="chief: training closures (distribute.steps)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="chief: also checkpoint every N closures (distribute.checkpoint_every; 0 = at the end only)")
    return parser.parse_args(argv)


def _tf_config(args: argparse.Namespace) -> dict:
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if args.cluster:
        tf_config["cluster"] = json.loads(args.cluster)
    task = dict(tf_config.get("task", {}))
    if args.task_type:
        task["type"] = args.task_type
    if args.task_index is not None:
        task["index"] = args.task_index
    tf_config["task"] = task
    if "cluster" not in tf_config or "type" not in task:
        raise ValueError("No cluster: set TF_CONFIG or pass --cluster and --task-type (see docs/distributed.md).")
    return tf_config


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
    from yt_bias.frequency import total_variation_error

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
    from yt_bias.distribute import estimator_num_shards, make_strategy, train_parameter_server
    from yt_bias.evaluation import check_ks, evaluate_model
    from yt_bias.run_directory import METRICS_FILE, ensure_directory, write_json_atomic, write_npz_atomic
    from yt_bias.train import build_model as build_model_with_estimator_shards  # (config, dataset, estimator_shards)

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    tf_config = _tf_config(args)
    if tf_config["task"]["type"] in SERVER_TYPES:
        serve(tf_config)
        return 0
    from yt_bias._keras import tf
    from yt_bias.commands.common import config_from_args
    from yt_bias.config import override

    tf.get_logger().setLevel("INFO")  # the coordinator logs worker failures, re-queued closures, recoveries
    tf.get_logger().propagate = False  # once, not once more through the root logger
    config = override(config_from_args(args), "distribute.strategy=parameter_server")
    steps = args.steps if args.steps is not None else config.distribute.steps
    metrics = run_chief(config, tf_config, args.workdir, steps, args.log_every, args.checkpoint_every)
    print(json.dumps({k: v for k, v in metrics.items() if k != "losses"}, indent=2, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
