"""Training-step time and peak memory: our dense and blockwise losses against TFRS's Retrieval task.

The benchmark of record. Same towers, data (default preset), Adagrad and batches; every
configuration runs in its own subprocess (so its peak RSS is its own), and the configurations
of one batch size are interleaved round by round:

* ``ours dense``      TwoTowerModel, exact (oracle) probabilities, ``loss_implementation="dense"``;
* ``ours blockwise``  the same with ``loss_implementation="blockwise"``;
* ``tfrs``            TFRS ``tasks.Retrieval`` on the same towers, given the same probabilities;
* ``ours plain``      plain-sfx (no correction), ``"auto"`` loss  } at the batch sizes of
* ``ours streaming``  correct-sfx (streaming estimator), ``"auto"`` } ``--overhead-batch-sizes``.

Where all configurations of a batch size fit in memory together, their subprocesses stay alive
and take turns (``--steps`` steps each per round); otherwise each round starts a fresh
subprocess per configuration, one at a time. A configuration whose estimated peak exceeds the
memory limit is reported as not run; one that passes the limit while running is killed and
reported as such. Printed per configuration: median ms per step, the per-round ratio to TFRS
(or to ``ours plain`` for the overhead rows) as median [min, max], and peak RSS.

Usage:
  python scripts/bench_train_step.py --quick          # 1024 and 8192, few rounds (a few minutes)
  python scripts/bench_train_step.py                  # 1024, 8192, 32768, 65536 (bounded: ~15-25 min on 2 cores)
  python scripts/bench_train_step.py --quick --json runs/step.json   # also every row as JSON

``yt-bias report`` (section ``train_step``) calls :func:`main` with the same arguments; the
configurations' subprocesses run ``python -m yt_bias.benchmarks.train_step --worker ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import threading
import time

import numpy as np

from yt_bias import config as config_lib
from yt_bias._keras import keras
from yt_bias.core.frequency import OracleFrequency
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.runs.model import build_model
from yt_bias.training.run_directory import write_json_atomic

CONFIGS = ("ours dense", "ours blockwise", "tfrs")
OVERHEAD = ("ours plain", "ours streaming")
GB = 1 << 30
_PRESET = {"name": "default"}  # the data and towers every worker builds (--preset; smoke for smoke runs)


def _worker(name: str, batch_size: int, steps: int, warmup: int, preset: str = "default") -> None:
    """Builds one configuration, then runs ``steps`` steps per 'run' line read from stdin."""
    from yt_bias.integrations.tfrs_retrieval import TFRSRetrievalModel  # noqa: PLC0415 (optional: TFRS)

    config = config_lib.preset(preset)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=batch_size))
    dataset = load_dataset(config.data, config.model.embedding_dim)
    m = config.model
    if name == "tfrs":
        oracle = OracleFrequency(dataset.item_ids, np.maximum(dataset.step_probabilities(batch_size), 1e-9))
        model = TFRSRetrievalModel(dataset.features, m.hidden_units, m.normalize, m.temperature, frequency=oracle, reduction="mean")
        model.compile(optimizer=keras.optimizers.Adagrad(config.train.learning_rate))
    else:
        variant, implementation = {
            "ours dense": ("correct-sfx-oracle", "dense"),
            "ours blockwise": ("correct-sfx-oracle", "blockwise"),
            "ours plain": ("plain-sfx", "auto"),
            "ours streaming": ("correct-sfx", "auto"),
        }[name]
        config = dataclasses.replace(config, variant=variant, model=dataclasses.replace(m, loss_implementation=implementation))
        model = build_model(config, dataset)
    iterator = iter(make_tf_dataset(dataset.examples("train"), batch_size).repeat())
    function = model.make_train_function()
    for _ in range(warmup):  # trace and warm up
        logs = function(iterator)
    float(logs["loss"])
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        for _ in range(steps):
            logs = function(iterator)
        float(logs["loss"])  # wait for the last step
        print(f"TIME {(time.perf_counter() - start) / steps}", flush=True)
    print(f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}", flush=True)


class _Worker:
    """A configuration's subprocess, watched: killed if its RSS passes ``limit`` bytes."""

    def __init__(self, name: str, batch_size: int, steps: int, warmup: int, limit: float):
        command = [sys.executable, "-m", "yt_bias.benchmarks.train_step", "--worker", name, "--batch-sizes", str(batch_size), "--steps", str(steps)]
        command += ["--warmup", str(warmup), "--preset", _PRESET["name"]]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.limit, self.killed, self.peak = limit, False, 0
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        status = f"/proc/{self.process.pid}/status"
        while self.process.poll() is None:
            try:
                with open(status) as f:
                    rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
            except (OSError, StopIteration):
                return
            self.peak = max(self.peak, rss)
            if rss > self.limit:
                self.killed = True
                self.process.kill()
                return
            time.sleep(0.05)

    def _read(self, tag: str) -> str | None:
        for line in self.process.stdout:
            if line.startswith(tag):
                return line[len(tag) :].strip()
        return None

    def ready(self) -> bool:
        return self._read("READY") is not None

    def run(self) -> float | None:
        try:
            self.process.stdin.write("run\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        value = self._read("TIME")
        return None if value is None else float(value)

    def close(self) -> int | None:
        """Ends the subprocess; its peak RSS in bytes (None if it died)."""
        try:
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        value = self._read("RSS")
        self.process.wait()
        return None if value is None else max(int(value), self.peak)


def _estimated_bytes(name: str, batch_size: int) -> float:
    """Peak RSS estimate: ~1.5 GB of data and graph, plus the [B, B] float32 matrices a dense loss keeps
    (about 3.5 of them, from 14 GB measured at B = 32768)."""
    base = 1.5 * GB
    if name in ("ours dense", "tfrs") or (name in OVERHEAD and batch_size < 2048):
        return base + 3.5 * 4.0 * batch_size * batch_size
    return base + 8.0 * 4.0 * batch_size * 256 + 64.0 * 4 * batch_size * 8


def _available_bytes() -> float:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info["MemAvailable"]


def bench_batch(batch_size: int, names: list[str], rounds: int, steps: int, limit: float) -> dict:
    """{name: {"times": [...], "rss": bytes or None, "note": str or None}} for one batch size."""
    results = {name: {"times": [], "rss": None, "note": None} for name in names}
    runnable = []
    for name in names:
        need = _estimated_bytes(name, batch_size)
        if need > limit:
            results[name]["note"] = f"not run: needs ~{need / GB:.0f} GB (estimate), limit {limit / GB:.1f} GB"
        else:
            runnable.append(name)
    together = sum(_estimated_bytes(n, batch_size) for n in runnable) <= min(limit, _available_bytes() - 2 * GB)
    warmup = 3 if batch_size <= 8192 else 1

    def finish(name, worker):
        rss = worker.close()
        if worker.killed:
            results[name]["note"] = f"killed: RSS passed the {limit / GB:.1f} GB limit"
        elif rss is None:
            results[name]["note"] = "failed (subprocess died; out of memory?)"
        results[name]["rss"] = max(results[name]["rss"] or 0, rss or 0) or None

    if together:
        workers = {name: _Worker(name, batch_size, steps, warmup, limit) for name in runnable}
        alive = {name: w for name, w in workers.items() if w.ready()}
        for _ in range(rounds):
            for name, worker in list(alive.items()):
                elapsed = worker.run()
                if elapsed is None:
                    alive.pop(name)
                else:
                    results[name]["times"].append(elapsed)
        for name, worker in workers.items():
            finish(name, worker)
    else:
        for _ in range(rounds):
            for name in runnable:
                if results[name]["note"]:
                    continue
                worker = _Worker(name, batch_size, steps, warmup, limit)
                elapsed = worker.run() if worker.ready() else None
                if elapsed is not None:
                    results[name]["times"].append(elapsed)
                finish(name, worker)
    results["_mode"] = "interleaved, all alive" if together else "interleaved, one subprocess at a time"
    return results


def _ratio_text(times: list[float], reference: list[float]) -> str:
    n = min(len(times), len(reference))
    if n == 0:
        return "-"
    ratio = np.array(times[:n]) / np.array(reference[:n])
    return f"{np.median(ratio):.3f} [{ratio.min():.3f}, {ratio.max():.3f}]"


def main(argv: list[str] | None = None) -> dict | None:
    """Runs the benchmark with command-line arguments (``sys.argv`` if None).

    Returns:
      ``{"rows", "load_start", "load_end", "memory_limit_gb"}`` (None for a ``--worker`` process).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--overhead-batch-sizes", type=int, nargs="*", default=[1024, 8192])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per batch size <= 8192 (default 15, quick 5)")
    parser.add_argument("--large-rounds", type=int, default=None, help="rounds per batch size > 8192 (default 2, quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default: 10 at 1024, 3 at 8192, 1 above)")
    parser.add_argument("--memory-limit-gb", type=float, default=16.0, help="per configuration (also capped by free memory)")
    parser.add_argument("--quick", action="store_true", help="1024 and 8192 only, few rounds")
    parser.add_argument("--configs", nargs="+", default=None, help=f"a subset of {CONFIGS + OVERHEAD}")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="default", help="the configuration whose data and towers are timed (smoke: tests)")
    parser.add_argument("--json", default=None, help="also write every row (and the load averages) here as JSON")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.configs or []) - set(CONFIGS + OVERHEAD))
    if unknown:
        parser.error(f"--configs: unknown {unknown}; expected some of {CONFIGS + OVERHEAD}")
    if args.worker:
        _worker(args.worker, args.batch_sizes[0], args.steps, args.warmup, args.preset)
        return None
    _PRESET["name"] = args.preset
    batch_sizes = args.batch_sizes or ([1024, 8192] if args.quick else [1024, 8192, 32768, 65536])
    rounds = args.rounds or (5 if args.quick else 15)
    large_rounds = args.large_rounds or (1 if args.quick else 2)
    limit = min(args.memory_limit_gb * GB, _available_bytes() - 1 * GB)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at start, memory limit {limit / GB:.1f} GB per configuration")
    print("| batch | configuration | ms/step (median) | per-round ratio: median [min, max] | peak RSS GB | rounds | mode |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for batch_size in batch_sizes:
        names = list(CONFIGS) + (list(OVERHEAD) if batch_size in args.overhead_batch_sizes else [])
        names = [n for n in names if args.configs is None or n in args.configs]
        steps = args.steps or (10 if batch_size <= 1024 else 3 if batch_size <= 8192 else 1)
        results = bench_batch(batch_size, names, rounds if batch_size <= 8192 else large_rounds, steps, limit)
        mode = results.pop("_mode")
        for name in names:
            r = results[name]
            reference = "ours plain" if name in OVERHEAD else "tfrs"
            if name == reference:
                ratio = "1 (reference)"
            else:
                ratio = _ratio_text(r["times"], results[reference]["times"]) if reference in results else "-"
            ms = f"{1e3 * np.median(r['times']):.1f}" if r["times"] else (r["note"] or "-")
            rss = f"{r['rss'] / GB:.2f}" if r["rss"] else "-"
            label = f"{name} / {reference}" if name != reference else name
            print(f"| {batch_size} | {label} | {ms} | {ratio} | {rss} | {len(r['times'])} | {mode} |", flush=True)
            rows.append(
                {
                    "batch": batch_size,
                    "config": name,
                    "reference": reference,
                    "ms_per_step": round(1e3 * float(np.median(r["times"])), 2) if r["times"] else None,
                    "ratio": ratio,
                    "peak_rss_gb": round(r["rss"] / GB, 3) if r["rss"] else None,
                    "rounds": len(r["times"]),
                    "mode": mode,
                    "note": r["note"],
                }
            )
    end_load = os.getloadavg()[0]
    print(f"load average at end {end_load:.1f}")
    data = {"rows": rows, "load_start": load, "load_end": end_load, "memory_limit_gb": limit / GB}
    if args.json:
        write_json_atomic(args.json, data)
    return data


if __name__ == "__main__":
    main()
