"""A parameter-server cluster on 127.0.0.1 for tests and benchmarks: worker and PS processes, a chief on demand.

Each process runs ``python -m yt_bias.cli.cluster_task`` with ``TF_CONFIG`` set for its role, exactly
as on real machines; :class:`LocalCluster` picks free ports, can kill and restart any task (worker,
parameter server or chief: SIGKILL, as a machine failure would), waits for a line in a task's log,
and always kills every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from yt_bias.training.cluster import SERVER_TYPES

__all__ = ["LocalCluster", "free_ports", "local_cluster_spec"]


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
                [sys.executable, "-m", "yt_bias.cli.cluster_task", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def start_servers(self) -> None:
        for task_type in SERVER_TYPES:
            for index in range(len(self.spec.get(task_type, []))):
                self.servers[(task_type, index)] = self._start(task_type, index)

    def log_path(self, task_type: str, index: int = 0) -> str:
        """The log of one task (every start of that task appends to it)."""
        return os.path.join(self.log_dir, f"{task_type}_{index}.log")

    def kill(self, task_type: str, index: int) -> None:
        """SIGKILLs one task's process (as a machine failure would): a server, or the chief."""
        _kill(self.servers.pop((task_type, index)))

    def restart(self, task_type: str, index: int) -> None:
        """Starts a killed server again on its address (its port is freed by the kill)."""
        self.servers[(task_type, index)] = self._start(task_type, index)

    def wait_for(self, text: str, task_type: str = "chief", index: int = 0, timeout: float = 300.0,
                 count: int = 1, after: int = 0) -> str:
        """Waits until ``text`` occurs ``count`` times in the task's log after byte ``after``; returns that part of the log.

        Raises:
          RuntimeError: the task exited first, or ``timeout`` seconds passed.
        """
        path, proc = self.log_path(task_type, index), self.servers.get((task_type, index))
        deadline = time.monotonic() + timeout
        while True:
            with open(path, "rb") as f:
                f.seek(after)
                log = f.read().decode("utf-8", errors="replace")
            if log.count(text) >= count:
                return log
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{task_type}:{index} exited (rc {proc.returncode}) before {text!r} x{count}: see {path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {text!r} x{count} in {path}")
            time.sleep(0.02)

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
