"""Real multi-process clusters on 127.0.0.1: ParameterServerStrategy (chief, 2 workers, 2 PS) and
MultiWorkerMirroredStrategy (2 workers).

PS (one fast run of two cells of the fault matrix, ``scripts/fault_matrix.py``):

* a worker is SIGKILLed mid-training and restarted on its address; the job still finishes, the
  estimator (its arrays sharded over both PS) has counted every scheduled closure, and its error is
  as good as one process's. The chief writes a run directory (run.json, config, checkpoint/) that
  ``yt-bias export`` serves: the SavedModel, queried in a fresh process, ranks as the checkpoint's
  towers do. A chief started on a workdir of the old layout (``checkpoints/``) resumes from it.
* a parameter server is SIGKILLed: the chief stops with exit status 3 and an error naming it; a new
  cluster resumes the run from the committed checkpoint (closures, global step, estimator arrays).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import tf
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.testing.local_cluster import LocalCluster
from yt_bias.training.cluster import estimator_arrays
from yt_bias.training.run_directory import model_checkpoint
from yt_bias.training.train import build_model as build_model_with_estimator_shards

STEPS = 600
MORE_STEPS = 100  # the restarted chief's closures
OVERRIDES = ["distribute.min_shard_bytes=1024", "distribute.max_shards=2"]
EXIT_PARAMETER_SERVER_LOST = 3


def _single_process_error(steps: int) -> float:
    from yt_bias._keras import keras
    from yt_bias.training.train import build_model, estimator_error

    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    keras.utils.set_random_seed(0)
    model = build_model(config, dataset)
    data = make_tf_dataset(dataset.examples("train"), config.train.batch_size, seed=0).repeat()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    assert int(model.frequency.step.numpy()) == steps
    return estimator_error(model, dataset, config.train.batch_size)


def _tail(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-3000:]


def _chief_args(workdir: str, steps: int, *more: str) -> list[str]:
    args = ["--preset", "smoke", "--workdir", workdir, "--steps", str(steps), "--log-every", "50", *more]
    for assignment in OVERRIDES:
        args += ["--set", assignment]
    return args


def _json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _restore_in_one_process(prefix: str, num_shards: int) -> dict:
    """A chief's checkpoint restored into a model built in this process, without a strategy."""
    config = config_lib.smoke()
    for assignment in OVERRIDES:
        config = config_lib.override(config, assignment)
    dataset = load_dataset(config.data, config.model.embedding_dim)
    model = build_model_with_estimator_shards(config, dataset, num_shards)
    closures = tf.Variable(0, dtype=tf.int64)
    model_checkpoint(model, closures_done=closures).restore(prefix).expect_partial()
    return {"closures_done": int(closures.numpy()), **estimator_arrays(model.frequency)}


def _committed(workdir: str) -> str:
    return os.path.join(workdir, _json(os.path.join(workdir, "run.json"))["checkpoint"])


def _run_chief(cluster, args, timeout=240):
    chief = cluster.run_chief(args, timeout=timeout)
    try:
        rc = chief.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the chief did not finish in time; log:\n{_tail(cluster.log_path('chief'))}")
    assert rc == 0, _tail(cluster.log_path("chief"))


_QUERY_EXPORT = """
import sys
import numpy as np
from yt_bias.serving import export as serving
queries = dict(np.load(sys.argv[1] + "/queries.npz"))
ids, scores = serving.load(sys.argv[1] + "/export").query(queries)
np.savez(sys.argv[1] + "/answers.npz", ids=ids, scores=scores)
"""


def _export_and_query(workdir: str, root: str) -> None:
    """``yt-bias export`` of a cluster run, then its SavedModel queried in a fresh process: as the towers rank."""
    from yt_bias.serving.export import restore_model

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "yt_bias", "export", "--workdir", workdir, "--out", f"{root}/export",
                           "--index-kind", "brute_force"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    _, dataset, model = restore_model(workdir)
    config = config_lib.smoke()
    test = load_dataset(config.data, config.model.embedding_dim).test
    queries = {s.name: np.asarray(test[s.name])[:16] for s in dataset.features.query}
    np.savez(f"{root}/queries.npz", **queries)
    done = subprocess.run([sys.executable, "-c", _QUERY_EXPORT, root], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = np.load(f"{root}/answers.npz")
    query_vectors = model.query_tower({k: tf.constant(v) for k, v in queries.items()}).numpy()
    item_vectors = model.item_tower({k: tf.constant(v) for k, v in dataset.items.items()}).numpy()
    scores = query_vectors @ item_vectors.T
    k = answers["ids"].shape[1]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(answers["ids"].astype(str), dataset.item_ids[top].astype(str))
    np.testing.assert_allclose(answers["scores"], np.take_along_axis(scores, top, axis=1), rtol=1e-5, atol=1e-5)


def test_parameter_server_cluster_survives_a_killed_worker(tmp_path):
    workdir, legacy, logs = str(tmp_path / "chief"), str(tmp_path / "old_layout"), str(tmp_path / "logs")
    args = _chief_args(workdir, STEPS)
    with LocalCluster(num_workers=2, num_ps=2, log_dir=logs) as cluster:
        cluster.start_servers()
        chief = cluster.run_chief(args, timeout=240)
        chief_log = cluster.log_path("chief")
        cluster.wait_for("WARM:", timeout=240)
        time.sleep(0.5)
        killed_at = time.time()
        cluster.kill("worker", 1)  # SIGKILL mid-training
        cluster.restart("worker", 1)  # same address: the coordinator reconnects and re-creates its dataset
        try:
            rc = chief.wait(timeout=240)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the chief did not finish in time; log:\n{_tail(chief_log)}")
        assert rc == 0, _tail(chief_log)
        assert all(p.poll() is None for key, p in cluster.servers.items() if key[0] != "chief")  # servers alive
        metrics = _json(os.path.join(workdir, "metrics.json"))
        first_arrays = dict(np.load(os.path.join(workdir, "estimator_arrays.npz")))
        # A chief started on a workdir of the old layout (checkpoints/, no run.json) resumes from it, on
        # the same servers (whose tables, named by content, are the ones this chief builds).
        os.makedirs(legacy)
        shutil.copytree(os.path.join(workdir, "checkpoint"), os.path.join(legacy, "checkpoints"))
        _run_chief(cluster, _chief_args(legacy, STEPS + MORE_STEPS, "--checkpoint-every", "50"))
        resumed = _json(os.path.join(legacy, "metrics.json"))
    with open(chief_log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    requeued = log.count("Putting back a closure after it failed")
    print(f"killed at +{killed_at - metrics['train_started_at']:.1f}s; training {metrics['seconds']}s; "
          f"re-queued closures {requeued}; step {metrics['estimator_step']}; recovered: {'has been recovered' in log}")

    # The kill really happened while closures were running.
    assert metrics["train_started_at"] < killed_at < metrics["train_finished_at"]
    # Estimator state and tables live on the parameter servers; large tables are sharded, and the
    # estimator's arrays are split into 2 shards (8 KiB array, min_shard_bytes 1 KiB, max_shards 2), one per PS.
    both = ["/job:ps/replica:0/task:0/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"]
    assert metrics["estimator_shards"] == 2
    assert metrics["estimator_devices"] == both
    placed = {name.split("/")[-1].split(":")[0]: device for name, device in metrics["estimator_variable_devices"].items()}
    for array in ("A", "B"):
        assert {placed[f"{array}_shard_{s}"] for s in range(2)} == set(both), placed  # shards on different PS
    assert metrics["variables_on"] == both
    assert metrics["sharded_variables"], "no table was sharded by the variable partitioner"
    # The chief's workdir is a run directory like every driver's.
    record = _json(os.path.join(workdir, "run.json"))
    assert record["kind"] == "cluster" and record["status"] == "complete" and record["estimator_shards"] == 2
    assert record["checkpoint"].startswith("checkpoint/ckpt-") and metrics["checkpoint"] == record["checkpoint"]
    assert {"config.json", "features.json", "items.npz", "metrics.json"} <= set(os.listdir(workdir))
    assert not os.path.exists(os.path.join(workdir, "run.lock")) and not os.path.exists(os.path.join(workdir, "checkpoints"))
    # Its committed checkpoint restores, in this process without a strategy, to the estimator the chief trained.
    assert metrics["closures_done"] == STEPS
    assert int(first_arrays["step"]) == metrics["estimator_step"]
    restored = _restore_in_one_process(_committed(workdir), num_shards=2)
    assert restored["closures_done"] == STEPS
    for name in ("step", "A", "B"):
        np.testing.assert_array_equal(restored[name], first_arrays[name])
    # The old-layout workdir: resumed from checkpoints/ (same estimator state), then MORE_STEPS closures more,
    # saved in the new layout.
    assert "OLD LAYOUT: resuming from" in log
    assert resumed["restored_from"].endswith(os.path.join("checkpoints", os.path.basename(metrics["checkpoint"])))
    assert resumed["closures_before"] == STEPS and resumed["estimator_step_before"] == metrics["estimator_step"]
    assert resumed["closures_scheduled"] == MORE_STEPS and resumed["checkpoints"] == 1
    assert resumed["estimator_step"] == metrics["estimator_step"] + MORE_STEPS  # no worker failed this time
    assert resumed["closures_done"] == STEPS + MORE_STEPS
    assert _committed(legacy).startswith(os.path.join(legacy, "checkpoint", "ckpt-"))
    restored = _restore_in_one_process(_committed(legacy), num_shards=2)
    resumed_arrays = dict(np.load(os.path.join(legacy, "estimator_arrays.npz")))
    assert restored["closures_done"] == STEPS + MORE_STEPS
    for name in ("step", "A", "B"):
        np.testing.assert_array_equal(restored[name], resumed_arrays[name])
    # Every closure's update reached the PS once; a closure that failed mid-way on the killed worker and
    # was re-run may have advanced the step once more (the coordinator re-runs failed closures whole).
    # The failed closure was put back and re-run elsewhere. (Whether the restarted worker rejoins before the
    # last closure depends on how fast the others finish; it is alive and serving either way, checked above,
    # and the restarted chief trains on the full cluster.)
    assert requeued >= 1
    assert STEPS <= metrics["estimator_step"] <= STEPS + requeued, (metrics["estimator_step"], requeued)
    # As good as one process on the same number of steps.
    single = _single_process_error(STEPS)
    assert metrics["estimator_tv_error"] <= 1.15 * single + 0.02, (metrics["estimator_tv_error"], single)
    assert metrics["recall@50"] > 0.3
    # yt-bias export serves the cluster-trained run.
    _export_and_query(workdir, str(tmp_path))


def test_parameter_server_loss_stops_the_chief_and_a_new_cluster_resumes(tmp_path):
    workdir = str(tmp_path / "chief")
    steps, every = 300, 50
    args = _chief_args(workdir, steps, "--checkpoint-every", str(every), "--no-eval")
    with LocalCluster(num_workers=2, num_ps=2, log_dir=str(tmp_path / "logs1")) as cluster:
        cluster.start_servers()
        chief = cluster.run_chief(args, timeout=240)
        cluster.wait_for("CHECKPOINT:", count=2, timeout=240)
        cluster.kill("ps", 1)
        try:
            rc = chief.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the chief did not stop after its PS died; log:\n{_tail(cluster.log_path('chief'))}")
        with open(cluster.log_path("chief"), encoding="utf-8", errors="replace") as f:
            log = f.read()
    assert rc == EXIT_PARAMETER_SERVER_LOST, log[-3000:]
    assert "cluster chief: error: parameter server ps:1 is unreachable" in log, log[-3000:]
    committed = _committed(workdir)
    assert f"resumes from the committed checkpoint {os.path.relpath(committed, workdir)}" in log
    before = _restore_in_one_process(committed, num_shards=2)  # the committed checkpoint is whole
    assert before["closures_done"] >= 2 * every
    record = _json(os.path.join(workdir, "run.json"))
    assert record["status"] == "running" and "ParameterServerLost" in record["last_error"]
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
    # A new cluster (new servers: the killed PS's variables are gone; new ports) and the same command.
    with LocalCluster(num_workers=2, num_ps=2, log_dir=str(tmp_path / "logs2")) as cluster:
        cluster.start_servers()
        _run_chief(cluster, args)
    resumed = _json(os.path.join(workdir, "metrics.json"))
    assert resumed["restored_from"] == committed
    assert resumed["closures_before"] == before["closures_done"]
    assert resumed["estimator_step_before"] == int(before["step"])
    assert resumed["closures_done"] == steps
    assert resumed["estimator_step"] == int(before["step"]) + steps - before["closures_done"]
    assert _json(os.path.join(workdir, "run.json"))["status"] == "complete"


_MWMS_WORKER = """
import json, os
from yt_bias import config as config_lib
from yt_bias._keras import keras
from yt_bias.config import DistributeConfig
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.training.distribute import make_strategy
from yt_bias.training.train import build_model
config = config_lib.smoke()
config = config.__class__(**{**config.__dict__, "distribute": DistributeConfig(
    strategy="multi_worker_mirrored", gather_negatives_across_replicas=True)})
strategy = make_strategy(config.distribute, json.loads(os.environ["TF_CONFIG"]))
dataset = load_dataset(config.data, config.model.embedding_dim)
keras.utils.set_random_seed(0)
with strategy.scope():
    model = build_model(config, dataset)
model.fit(make_tf_dataset(dataset.examples("train"), 64, seed=0).repeat(), steps_per_epoch=STEPS, epochs=1, verbose=0)
f = model.frequency
print("RESULT " + json.dumps([strategy.num_replicas_in_sync, int(f.step.numpy()), f.interval.numpy().tolist(),
                              f.last_step.numpy().tolist()]), flush=True)
"""


def test_multi_worker_mirrored_two_processes_count_each_global_step_once(tmp_path):
    from yt_bias.testing.local_cluster import free_ports

    steps = 20
    spec = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    code = _MWMS_WORKER.replace("STEPS", str(steps))
    procs = []
    try:
        for i in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                       TF_CONFIG=json.dumps({"cluster": spec, "task": {"type": "worker", "index": i}}))
            procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, start_new_session=True))
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
    results = []
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    (replicas_a, step_a, b_a, a_a), (replicas_b, step_b, b_b, a_b) = results
    assert replicas_a == replicas_b == 2
    assert step_a == step_b == steps  # once per global step, not once per replica
    assert b_a == b_b and a_a == a_b  # both workers' copies hold the same estimator
    assert sum(map(sum, a_a)) > 0


def test_parameter_server_workers_read_their_own_shards(tmp_path):
    """Each worker of a 2-worker cluster reads only its files (w, w + 2, ...) of the shards.

    File f holds only the rows whose item index is f modulo 4, so the items a worker returns
    tell which files it read: worker 0 (files 0, 2) only even items, worker 1 (files 1, 3) only odd.
    """
    from yt_bias.data.dataset import ITEM_INDEX
    from yt_bias.data.shards import write_items, write_shards

    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    data = tmp_path / "data"
    examples = dataset.examples("train")
    for f in range(4):
        rows = examples[ITEM_INDEX] % 4 == f
        write_shards({n: v[rows] for n, v in examples.items()}, str(data / f"f{f}"), rows_per_shard=10**6, shuffle_seed=f,
                     rows_per_record=16)
        os.rename(data / f"f{f}" / "part-00000.tfrecord", data / f"part-{f:05d}.tfrecord")
    write_items(str(data), dataset.features, dataset.items)
    write_shards(dataset.examples("test"), str(data / "test"), rows_per_shard=10**6)
    workdir, logs = str(tmp_path / "chief"), str(tmp_path / "logs")
    args = ["--preset", "smoke", "--workdir", workdir, "--steps", "40", "--data-files", str(data / "*.tfrecord"),
            "--shuffle-buffer", "256", "--log-every", "10"]
    with LocalCluster(num_workers=2, num_ps=1, log_dir=logs) as cluster:
        cluster.start_servers()
        _run_chief(cluster, args)
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["closures_done"] == 40 and metrics["estimator_step"] == 40
    assert metrics["worker_files"] == {"0": ["part-00000.tfrecord", "part-00002.tfrecord"],
                                       "1": ["part-00001.tfrecord", "part-00003.tfrecord"]}
    reads = metrics["worker_reads"]
    assert sorted(reads) == ["0", "1"], reads.keys()
    for worker, parity in (("0", 0), ("1", 1)):
        items = np.asarray(reads[worker]["items"])
        assert len(items) > 10 and (items % 2 == parity).all(), (worker, items[:20])
        assert set(items % 4) == {parity, parity + 2}  # both of its files
    assert metrics["estimator_tv_error"] is None  # the exact frequencies are not known from shards
    # The held-out shards (DIR/test) are evaluated over the whole corpus.
    assert 0.0 <= metrics["recall@10"] <= metrics["recall@50"] <= 1.0 and metrics["num_test_positives"] > 0


def test_vocabulary_tables_are_named_by_their_content():
    """A table's shared name on the workers is its content's hash, not a per-process counter: the same
    vocabulary gets the same name however many tables were built before it, another one never does."""
    from yt_bias.training.cluster import content_named_tables

    def table(tokens):
        keys = tf.constant(tokens)
        values = tf.range(len(tokens), dtype=tf.int64)
        return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)

    plain = table(["a", "b"])
    with content_named_tables():
        first = table(["a", "b"])
        for _ in range(3):  # other tables in between advance TensorFlow's counter
            table(["x"])
        again = table(["a", "b"])
        other, split = table(["b", "a"]), table(["ab"])
    assert plain._shared_name.isdigit()  # TensorFlow's own name: ops.uid() of this process
    assert first._shared_name == again._shared_name and first._shared_name.startswith("yt_bias_table_")
    assert len({first._shared_name, other._shared_name, split._shared_name}) == 3
    assert int(again.lookup(tf.constant("b")).numpy()) == 1


def test_fault_matrix_results_are_checked(tmp_path):
    from yt_bias.report.fault_matrix import read_results

    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    with pytest.raises(ValueError, match="damaged.json: not valid JSON"):
        read_results(str(damaged))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"cells": {}}))
    with pytest.raises(ValueError, match="expected the output of scripts/fault_matrix.py"):
        read_results(str(other))
