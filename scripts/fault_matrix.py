"""The fault matrix of the parameter-server cluster: each fault, run many times on 127.0.0.1.

Every run starts a fresh loopback cluster (``yt_bias.testing.local_cluster.LocalCluster``: a
chief, 2 workers, 2 parameter servers, each a ``python -m yt_bias.cli.cluster_task`` process; the
estimator's arrays split in 2 shards, one per parameter server), trains the smoke preset for
``--steps`` closures with a checkpoint every ``--steps / 4`` closures (every ``--steps / 10`` in
the checkpoint-write cell) and injects one fault with SIGKILL:

* ``uninterrupted``, ``uninterrupted_long``: no fault, ``--steps`` and ``--restart-steps`` closures (the
  references for the estimator after a fault; one round in four);
* ``worker_restarted``: worker 1 killed after checkpoint 1, 2 or 3 (run by run) and restarted at once
  (``--restart-steps`` closures: long enough for the restarted worker to come back before the end);
* ``worker_lost``: worker 1 killed after checkpoint 1 and never restarted (worker 0 finishes the job);
* ``ps_killed``: parameter server 1 killed after checkpoint 2: the chief must stop with exit status 3
  and a message naming the parameter server; then a new cluster (new servers, new ports) and a new
  chief on the same workdir must resume from the committed checkpoint;
* ``chief_killed``: the chief killed after checkpoint 2 and started again on the same servers and workdir;
* ``checkpoint_write_killed``: the chief killed while a checkpoint is being written (the moment its
  temporary files appear in ``checkpoint/``), then started again.

A run succeeds when the job finishes (exit 0, ``closures_done == steps``), every checkpoint left in
the run directory reads completely, the committed checkpoint holds the estimator arrays the chief
wrote (``estimator_arrays.npz``), the estimator counted every closure once (plus at most the
closures the coordinator re-ran after a worker failure), and, where the chief restarted, it resumed
from the committed checkpoint with exactly its values (global step, estimator arrays, embedding
tables, towers: the chief's ``--restored-state`` snapshot compared key by key). Results go to
``--out`` (JSON, rewritten after every run), read by ``yt-bias report --only fault_matrix``.

    nice -n 10 python scripts/fault_matrix.py --runs 20 --out runs/fault_matrix/fault_matrix.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

from yt_bias._keras import tf
from yt_bias.testing.local_cluster import LocalCluster
from yt_bias.training.run_directory import RUN_FILE, write_json_atomic

CELLS = ("uninterrupted", "uninterrupted_long", "worker_restarted", "worker_lost", "ps_killed", "chief_killed", "checkpoint_write_killed")
OVERRIDES = ("distribute.min_shard_bytes=1024", "distribute.max_shards=2")  # 2 estimator shards, one per PS
EXIT_PARAMETER_SERVER_LOST = 3
REQUEUED = "Putting back a closure after it failed"


class RunFailed(AssertionError):
    """One run of a cell did not survive its fault (the reason says what was wrong)."""


def check(condition: bool, reason: str) -> None:
    if not condition:
        raise RunFailed(reason)


# ----------------------------------------------------------------------------- reading what a run left
def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint (raises when a file is missing, truncated or damaged)."""
    reader = tf.train.load_checkpoint(prefix)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def logical_estimator(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The estimator's logical A, B and step from a checkpoint's shard variables (bucket b in shard b % S)."""
    out = {"step": tensors["model/frequency/global_step/.ATTRIBUTES/VARIABLE_VALUE"]}
    for name in ("A", "B"):
        shards = sorted((k for k in tensors if k.startswith(f"model/frequency/{name}_shard_")),
                        key=lambda k: int(k.split("_shard_")[1].split("/")[0]))
        parts = [tensors[k] for k in shards]
        total = sum(p.shape[1] for p in parts)
        logical = np.zeros((parts[0].shape[0], total), parts[0].dtype)
        for s, part in enumerate(parts):
            logical[:, s::len(parts)] = part
        out[name] = logical
    return out


def committed_checkpoint(workdir: str) -> str | None:
    with open(os.path.join(workdir, RUN_FILE), encoding="utf-8") as f:
        committed = json.load(f).get("checkpoint")
    return os.path.join(workdir, committed) if committed else None


def all_checkpoints_readable(workdir: str) -> int:
    """Reads every complete checkpoint (``.index`` file) in ``checkpoint/``; returns how many."""
    folder = os.path.join(workdir, "checkpoint")
    prefixes = sorted(name[: -len(".index")] for name in os.listdir(folder) if name.endswith(".index"))
    for prefix in prefixes:
        try:
            read_checkpoint(os.path.join(folder, prefix))
        except Exception as error:  # noqa: BLE001 - any failure to read is a corrupted checkpoint
            raise RunFailed(f"checkpoint {prefix} does not read: {type(error).__name__}: {error}") from None
    return len(prefixes)


def compare_restored(snapshot: str, source: dict[str, np.ndarray]) -> int:
    """Every model value the resumed chief started from equals the checkpoint it restored; returns how many."""
    restored = read_checkpoint(snapshot)
    keys = [k for k in restored if k.startswith("model/") and "loss_tracker" not in k]
    check(any("frequency/A_shard" in k for k in keys) and any("embeddings" in k for k in keys),
          f"the restored snapshot lacks the estimator or the tables: {sorted(keys)[:8]}")
    for key in keys:
        # The chief's checkpoint holds the model's optimizer once, as the top-level "optimizer".
        saved = "optimizer/" + key[len("model/optimizer/"):] if key.startswith("model/optimizer/") else key
        check(saved in source, f"{saved} is not in the restored checkpoint")
        check(np.array_equal(restored[key], source[saved]), f"{key} differs from the checkpoint it was restored from")
    return len(keys)


# ----------------------------------------------------------------------------- one run of a cell
class Run:
    """One run: a workdir, a log folder, a cluster (replaced by a new one for the parameter-server cell)."""

    def __init__(self, root: str, steps: int, checkpoint_every: int, timeout: float):
        self.root, self.steps, self.checkpoint_every, self.timeout = root, steps, checkpoint_every, timeout
        self.workdir = os.path.join(root, "workdir")
        self.starts = 0

    def chief_args(self, restored_state: str | None = None) -> list[str]:
        args = ["--preset", "smoke", "--workdir", self.workdir, "--steps", str(self.steps),
                "--checkpoint-every", str(self.checkpoint_every), "--log-every", "25", "--no-eval"]
        for assignment in OVERRIDES:
            args += ["--set", assignment]
        if restored_state:
            args += ["--restored-state", restored_state]
        return args

    def cluster(self) -> LocalCluster:
        self.starts += 1
        return LocalCluster(num_workers=2, num_ps=2, log_dir=os.path.join(self.root, f"logs{self.starts}"))

    def wait_chief(self, cluster: LocalCluster) -> int:
        try:
            return cluster.servers[("chief", 0)].wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"the chief did not finish in {self.timeout:.0f}s: see {cluster.log_path('chief')}") from None

    def metrics(self) -> dict:
        with open(os.path.join(self.workdir, "metrics.json"), encoding="utf-8") as f:
            return json.load(f)

    def finished(self, cluster: LocalCluster, rc: int, requeued_before: int = 0) -> dict:
        """The checks every finished run passes; returns what the run measured."""
        log = _read(cluster.log_path("chief"))
        check(rc == 0, f"the chief exited with {rc}: {log[-1500:]}")
        metrics = self.metrics()
        with open(os.path.join(self.workdir, RUN_FILE), encoding="utf-8") as f:
            record = json.load(f)
        check(record.get("status") == "complete" and record.get("kind") == "cluster", f"run.json: {record.get('status')}")
        check(metrics["closures_done"] == self.steps, f"closures done {metrics['closures_done']} != {self.steps}")
        checkpoints = all_checkpoints_readable(self.workdir)
        final = logical_estimator(read_checkpoint(committed_checkpoint(self.workdir)))
        arrays = dict(np.load(os.path.join(self.workdir, "estimator_arrays.npz")))
        for name in ("A", "B", "step"):
            check(np.array_equal(final[name], arrays[name]), f"the committed checkpoint's {name} differs from the chief's")
        requeued = requeued_before + log.count(REQUEUED)
        step = int(metrics["estimator_step"])
        check(step >= self.steps - metrics["closures_before"] + int(metrics["estimator_step_before"] or 0),
              f"estimator step {step}: fewer updates than closures")
        return {"estimator_step": step, "estimator_tv_error": metrics["estimator_tv_error"], "requeued_closures": requeued,
                "checkpoints_read": checkpoints, "recovered_worker": "has been recovered" in log}

    def resumed(self, metrics_before: dict, committed: str, source: dict, snapshot: str) -> dict:
        """The checks of a chief restarted on the workdir: it resumed from ``committed`` (read before the
        restart into ``source``: the resumed chief's own checkpoints replace it), with its values."""
        metrics = self.metrics()
        check(os.path.abspath(metrics["restored_from"] or "") == os.path.abspath(committed),
              f"restored from {metrics['restored_from']}, expected the committed {committed}")
        closures = int(source["closures_done/.ATTRIBUTES/VARIABLE_VALUE"])
        check(metrics["closures_before"] == closures, f"closures before {metrics['closures_before']} != checkpoint's {closures}")
        step = int(source["model/frequency/global_step/.ATTRIBUTES/VARIABLE_VALUE"])
        check(metrics["estimator_step_before"] == step, f"estimator step before {metrics['estimator_step_before']} != {step}")
        compared = compare_restored(snapshot, source)
        expected = step + self.steps - closures  # no worker fails in these cells: one update per closure
        check(metrics["estimator_step"] == expected, f"estimator step {metrics['estimator_step']} != {expected} after resuming")
        return {"resumed_at_closure": closures, "values_compared": compared,
                "closures_redone_at_most": metrics_before.get("closures_at_fault", self.steps) - closures}


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _checkpoints_seen(log: str) -> int:
    return log.count("CHECKPOINT:")


def cell_uninterrupted(run: Run, rng: random.Random, index: int = 0) -> dict:
    with run.cluster() as cluster:
        cluster.start_servers()
        cluster.run_chief(run.chief_args(), timeout=run.timeout)
        return run.finished(cluster, run.wait_chief(cluster))


def _kill_worker(run: Run, rng: random.Random, restart: bool, after_checkpoint: int) -> dict:
    with run.cluster() as cluster:
        cluster.start_servers()
        cluster.run_chief(run.chief_args(), timeout=run.timeout)
        cluster.wait_for("CHECKPOINT:", count=after_checkpoint, timeout=run.timeout)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the next closures
        cluster.kill("worker", 1)
        if restart:
            cluster.restart("worker", 1)
        rc = run.wait_chief(cluster)
        rejoined = _read(cluster.log_path("worker", 1)).count("serving at") > 1  # the restart served before the end
        result = run.finished(cluster, rc)
        result["restarted_worker_served_before_the_end"] = rejoined if restart else None
        check(result["estimator_step"] <= run.steps + result["requeued_closures"],
              f"estimator step {result['estimator_step']} > closures {run.steps} + re-run {result['requeued_closures']}")
        alive = [key for key, proc in cluster.servers.items() if key[0] != "chief" and proc.poll() is not None]
        check(not alive, f"servers died: {alive}")
        return dict(result, killed_after_checkpoint=after_checkpoint)


def cell_worker_restarted(run: Run, rng: random.Random, index: int = 0) -> dict:
    return _kill_worker(run, rng, restart=True, after_checkpoint=1 + index % 3)


def cell_worker_lost(run: Run, rng: random.Random, index: int = 0) -> dict:
    return _kill_worker(run, rng, restart=False, after_checkpoint=1)


def _restart_chief(run: Run, cluster: LocalCluster, committed: str, closures_at_fault: int) -> dict:
    snapshot = os.path.join(run.root, f"restored_state{run.starts}", "state")
    source = read_checkpoint(committed)  # readable: the previous checkpoint stays usable
    started = time.time()
    cluster.run_chief(run.chief_args(restored_state=snapshot), timeout=run.timeout)
    rc = run.wait_chief(cluster)
    result = run.finished(cluster, rc)
    result.update(run.resumed({"closures_at_fault": closures_at_fault}, committed, source, snapshot))
    result["restart_seconds"] = round(time.time() - started, 1)
    return result


def cell_ps_killed(run: Run, rng: random.Random, index: int = 0) -> dict:
    with run.cluster() as cluster:
        cluster.start_servers()
        chief = cluster.run_chief(run.chief_args(), timeout=run.timeout)
        cluster.wait_for("CHECKPOINT:", count=2, timeout=run.timeout)
        time.sleep(rng.uniform(0.0, 0.3))
        cluster.kill("ps", 1)
        killed = time.monotonic()
        rc = run.wait_chief(cluster)
        stopped_in = time.monotonic() - killed
        log = _read(cluster.log_path("chief"))
        check(rc == EXIT_PARAMETER_SERVER_LOST, f"after the PS was killed the chief exited with {rc}, not 3: {log[-1500:]}")
        check("parameter server ps:1 is unreachable" in log, f"no clear error naming ps:1: {log[-1500:]}")
        check(chief.returncode == rc, "the chief's exit status")
        seen = _checkpoints_seen(log)
        committed = committed_checkpoint(run.workdir)
        check(committed is not None, "no checkpoint committed before the PS was killed")
        all_checkpoints_readable(run.workdir)
    with run.cluster() as cluster:  # a new cluster: new servers (the killed PS's variables are gone), new ports
        cluster.start_servers()
        result = _restart_chief(run, cluster, committed, closures_at_fault=(seen + 1) * run.checkpoint_every)
    return dict(result, chief_stopped_seconds=round(stopped_in, 1), exit_status=rc)


def cell_chief_killed(run: Run, rng: random.Random, index: int = 0) -> dict:
    with run.cluster() as cluster:
        cluster.start_servers()
        cluster.run_chief(run.chief_args(), timeout=run.timeout)
        cluster.wait_for("CHECKPOINT:", count=2, timeout=run.timeout)
        time.sleep(rng.uniform(0.0, 0.3))
        cluster.kill("chief", 0)
        seen = _checkpoints_seen(_read(cluster.log_path("chief")))
        committed = committed_checkpoint(run.workdir)
        all_checkpoints_readable(run.workdir)
        return _restart_chief(run, cluster, committed, closures_at_fault=(seen + 1) * run.checkpoint_every)


def cell_checkpoint_write_killed(run: Run, rng: random.Random, index: int = 0) -> dict:
    folder = os.path.join(run.workdir, "checkpoint")
    with run.cluster() as cluster:
        cluster.start_servers()
        chief = cluster.run_chief(run.chief_args(), timeout=run.timeout)
        cluster.wait_for("CHECKPOINT:", timeout=run.timeout)  # one committed checkpoint to fall back on
        deadline = time.monotonic() + run.timeout
        temporary: list[str] = []
        while chief.poll() is None and time.monotonic() < deadline:
            try:
                temporary = [name for name in os.listdir(folder) if "_temp" in name]
            except FileNotFoundError:
                temporary = []
            if temporary:
                cluster.kill("chief", 0)  # mid-write: its temporary files exist
                break
            time.sleep(0.002)
        if not temporary:
            return {"missed": True}  # the job finished before a write was caught: not a run of this cell
        left = sorted(name for name in os.listdir(folder) if "_temp" in name)
        seen = _checkpoints_seen(_read(cluster.log_path("chief")))
        committed = committed_checkpoint(run.workdir)
        check(committed is not None, "no checkpoint committed before the write that was killed")
        all_checkpoints_readable(run.workdir)
        result = _restart_chief(run, cluster, committed, closures_at_fault=(seen + 1) * run.checkpoint_every)
        return dict(result, temporary_files_at_kill=temporary[:4], temporary_files_left=left[:4])


CELL_FUNCTIONS = {
    "uninterrupted": cell_uninterrupted,
    "uninterrupted_long": cell_uninterrupted,
    "worker_restarted": cell_worker_restarted,
    "worker_lost": cell_worker_lost,
    "ps_killed": cell_ps_killed,
    "chief_killed": cell_chief_killed,
    "checkpoint_write_killed": cell_checkpoint_write_killed,
}


# ----------------------------------------------------------------------------- the matrix
def _mean_sd(values: list[float]) -> list[float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return [round(statistics.fmean(values), 5), round(statistics.stdev(values), 5) if len(values) > 1 else 0.0]


def summarize(runs: list[dict], steps: int) -> dict:
    done = [r for r in runs if not r.get("missed")]
    good = [r for r in done if r["ok"]]
    summary = {"runs": len(done), "successes": len(good), "missed": len(runs) - len(done),
               "failures": [r["reason"][:300] for r in done if not r["ok"]]}
    if good:
        summary["estimator_tv_error_mean_sd"] = _mean_sd([r["estimator_tv_error"] for r in good])
        summary["extra_estimator_steps_max"] = max(r["estimator_step"] - steps for r in good)
        summary["requeued_closures_max"] = max(r["requeued_closures"] for r in good)
        summary["checkpoints_read"] = sum(r["checkpoints_read"] for r in good)
        if any("resumed_at_closure" in r for r in good):
            summary["closures_redone_max"] = max(r["closures_redone_at_most"] for r in good)
            summary["values_compared_min"] = min(r["values_compared"] for r in good)
        summary["seconds_mean"] = round(statistics.fmean(r["seconds"] for r in good), 1)
    return summary


def _cell_steps(cell: str, args: argparse.Namespace) -> int:
    return args.restart_steps if cell in ("worker_restarted", "uninterrupted_long") else args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per cell (cells take turns, run by run)")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
    parser.add_argument("--steps", type=int, default=200, help="training closures per run")
    parser.add_argument("--restart-steps", type=int, default=800,
                        help="closures per run of worker_restarted (long enough for the restarted worker to rejoin)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one chief may take")
    parser.add_argument("--stop-at", default=None, metavar="HH:MM",
                        help="UTC time after which no new run starts (the counts say how many ran)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--keep", action="store_true", help="keep the workdirs of successful runs too")
    parser.add_argument("--out", default="runs/fault_matrix/fault_matrix.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: the open cluster still kills its processes
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        parser.error(f"--cells: unknown {unknown}; expected some of {list(CELLS)}")
    root = os.path.join(os.path.dirname(os.path.abspath(args.out)), "runs")
    os.makedirs(root, exist_ok=True)
    rng = random.Random(args.seed)
    results: dict[str, list[dict]] = {cell: [] for cell in cells}
    started = time.time()
    settings = {"workers": 2, "ps": 2, "estimator_shards": 2, "preset": "smoke", "overrides": list(OVERRIDES),
                "steps": args.steps, "steps_worker_restarted": args.restart_steps, "checkpoint_every": "steps / 4",
                "checkpoint_every_write_cell": "steps / 10", "timeout_seconds": args.timeout,
                "uninterrupted_every": 4}
    command = "python scripts/fault_matrix.py " + " ".join(sys.argv[1:])
    for index in range(args.runs):
        for cell in cells:
            if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
                break
            if cell.startswith("uninterrupted") and index % settings["uninterrupted_every"]:
                continue  # the references: one round in four
            steps = _cell_steps(cell, args)
            every = max(steps // 10, 1) if cell == "checkpoint_write_killed" else steps // 4
            folder = os.path.join(root, cell, f"{index:03d}")
            shutil.rmtree(folder, ignore_errors=True)
            run = Run(folder, steps, every, args.timeout)
            began = time.time()
            try:
                outcome = CELL_FUNCTIONS[cell](run, rng, index)
                outcome.update(ok=True, reason="")
            except Exception as error:  # noqa: BLE001 - every failure is recorded, the matrix goes on
                outcome = {"ok": False, "reason": f"{type(error).__name__}: {error}"}
            outcome.update(index=index, seconds=round(time.time() - began, 1), load=os.getloadavg()[0])
            results[cell].append(outcome)
            print(json.dumps({"cell": cell, **{k: v for k, v in outcome.items() if k != "reason"},
                              "reason": outcome["reason"][:300]}), flush=True)
            if outcome["ok"] and not args.keep:
                shutil.rmtree(run.workdir, ignore_errors=True)
            write_json_atomic(args.out, {
                "command": command, "settings": settings, "cpus": os.cpu_count(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "wall_seconds": round(time.time() - started, 1),
                "cells": {c: {"summary": summarize(results[c], _cell_steps(c, args)), "steps": _cell_steps(c, args),
                              "runs": results[c]} for c in cells},
            })
        else:
            continue
        break


if __name__ == "__main__":
    main()
