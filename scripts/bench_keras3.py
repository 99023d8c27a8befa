"""Train-step time and peak memory: Keras 3 + JAX, Keras 3 + TensorFlow and the tf-keras path, side by side.

The same two-tower model on each path: an ID embedding and a dense layer per tower (``--vocabulary``
IDs, ``--dim`` wide), the corrected in-batch softmax with a streaming frequency estimator updated
in every step (``--hash-size`` buckets, 2 hashes), Adagrad, ``model.fit`` on integer IDs:

* ``jax``: Keras 3 on JAX, :class:`yt_bias.keras3.CorrectedRetrieval` in ``compute_loss``, ``jit_compile=True``;
* ``tensorflow``: the same Keras 3 model on Keras 3's TensorFlow backend (``jit_compile=True``);
* ``tf-keras``: the package's tf-keras path, a ``tfrs.Model`` with
  :class:`yt_bias.integrations.tfrs.CorrectedRetrieval` (TensorFlow graph, as its users run it).

Each (path, batch size) runs in a fresh subprocess (peak RSS is the process's; a Keras backend is
chosen once per process), and the runs are interleaved: for each batch size, every path in turn,
``--repeats`` times in alternating order. A run does ``--warmup`` steps (compilation) and then times
``--steps`` steps (timed from the end of the first to the end of ``fit``); the table reports the median of the repeats in ms per step, the ratio to the
tf-keras path, the process's CPU time per step (all its threads; on a machine shared with other
jobs the wall time mostly measures how much CPU the run got, its CPU time much less so) and its
ratio, and the peak RSS (GPU: also JAX's peak device memory). The loss is ``auto``: dense
below 2048 candidates, blockwise (memory linear in the batch) from 2048 on; ``--large`` batch sizes
(default 65536) run the blockwise loss on CPU and both losses on a GPU.

Paths whose framework is not installed are left out (a GPU machine with JAX and no TensorFlow
runs the ``jax`` path alone, with the same command)::

    nice -n 10 python scripts/bench_keras3.py --out runs/bench_keras3.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PATHS = ("jax", "tensorflow", "tf-keras")
NUM_USERS_SHARE = 0.5  # users drawn uniformly from half the vocabulary; items Zipf over all of it


def _data(vocabulary: int, rows: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocabulary + 1) ** 0.8
    items = rng.choice(vocabulary, size=rows, p=weights / weights.sum()).astype(np.int32)
    users = rng.integers(0, int(vocabulary * NUM_USERS_SHARE), size=rows).astype(np.int32)
    return users, items


def _step_clock(keras):
    """A callback that records the time at the end of every training batch."""

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append((time.perf_counter(), time.process_time()))

    return StepClock()


def _timed_fit(keras, fit_once, warmup: int, steps: int) -> dict:
    """Wall and CPU ms per step and the last loss of ``steps`` steps after ``warmup`` untimed ones: from the end of the
    first step to the end of ``fit`` (synchronised), so fit's set-up and the first step's dispatch are not counted."""
    fit_once(warmup)
    clock = _step_clock(keras)
    history = fit_once(steps, clock)
    done, cpu_done = time.perf_counter(), time.process_time()
    first, cpu_first = clock.ends[0]
    return {"ms_per_step": 1000.0 * (done - first) / (steps - 1), "cpu_ms_per_step": 1000.0 * (cpu_done - cpu_first) / (steps - 1),
            "loss": float(history.history["loss"][-1])}


def _tower(keras, args):
    """One tower: an ID embedding and a dense layer, ``--dim`` wide."""
    return keras.Sequential([keras.layers.Embedding(args.vocabulary, args.dim), keras.layers.Dense(args.dim)])


def _task(corrected_retrieval, args):
    """The corrected in-batch softmax task, its streaming estimator of ``--hash-size`` buckets and 2 hashes."""
    frequency = {"hash_size": args.hash_size, "num_hashes": 2}
    return corrected_retrieval(frequency=frequency, temperature=0.05, loss_implementation=args.implementation)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _keras3_worker(args) -> dict:
    os.environ["KERAS_BACKEND"] = "jax" if args.worker == "jax" else "tensorflow"
    import keras

    from yt_bias.keras3 import CorrectedRetrieval

    class TwoTower(keras.Model):
        def __init__(self, task):
            super().__init__()
            self.query_tower = _tower(keras, args)
            self.candidate_tower = _tower(keras, args)
            self.task = task

        def call(self, x):
            return self.query_tower(x["user"]), self.candidate_tower(x["item"])

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            query, candidates = y_pred
            return self.task(query, candidates, candidate_ids=x["item"], training=training)

    keras.utils.set_random_seed(0)
    model = TwoTower(_task(CorrectedRetrieval, args))
    model.compile(optimizer=keras.optimizers.Adagrad(0.05), jit_compile=True)
    users, items = _data(args.vocabulary, args.batch_size * max(args.warmup, args.steps))

    def fit(steps, clock=None):
        rows = args.batch_size * steps
        return model.fit({"user": users[:rows], "item": items[:rows]}, batch_size=args.batch_size, epochs=1, shuffle=False,
                         verbose=0, callbacks=[clock] if clock else [])

    result = _timed_fit(keras, fit, args.warmup, args.steps)
    result["estimator_step"] = int(keras.ops.convert_to_numpy(model.task.frequency.step.value))
    if args.worker == "jax":
        import jax

        device = jax.devices()[0]
        result["device"] = f"{device.platform}:{device.device_kind}"
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if stats and "peak_bytes_in_use" in stats:
            result["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20
    return result


def _tf_keras_worker(args) -> dict:
    import yt_bias

    keras, tf = yt_bias.use_tf_keras()
    import tensorflow_recommenders as tfrs

    from yt_bias.integrations.tfrs import CorrectedRetrieval

    class TwoTower(tfrs.Model):
        def __init__(self, task):
            super().__init__()
            self.query_tower = _tower(keras, args)
            self.candidate_tower = _tower(keras, args)
            self.task = task

        def compute_loss(self, features, training=False):
            return self.task(self.query_tower(features["user"]), self.candidate_tower(features["item"]),
                             candidate_ids=features["item"], training=training)

    keras.utils.set_random_seed(0)
    model = TwoTower(_task(CorrectedRetrieval, args))
    model.compile(optimizer=keras.optimizers.Adagrad(0.05))
    users, items = _data(args.vocabulary, args.batch_size * max(args.warmup, args.steps))

    def fit(steps, clock=None):
        rows = args.batch_size * steps
        data = tf.data.Dataset.from_tensor_slices({"user": users[:rows], "item": items[:rows]}).batch(args.batch_size)
        return model.fit(data, epochs=1, verbose=0, callbacks=[clock] if clock else [])

    result = _timed_fit(keras, fit, args.warmup, args.steps)
    result["estimator_step"] = int(model.task.frequency.step.numpy())
    return result


def _worker(args) -> None:
    result = _tf_keras_worker(args) if args.worker == "tf-keras" else _keras3_worker(args)
    result.update(path=args.worker, batch_size=args.batch_size, implementation=args.implementation, peak_rss_mb=_peak_rss_mb())
    print("RESULT " + json.dumps(result), flush=True)


def available_paths() -> list[str]:
    """The paths whose framework is installed (JAX alone on a machine without TensorFlow)."""
    found = {name: importlib.util.find_spec(name) is not None for name in ("jax", "tensorflow", "tf_keras", "tensorflow_recommenders")}
    paths = []
    if found["jax"]:
        paths.append("jax")
    if found["tensorflow"]:
        paths.append("tensorflow")
        if found["tf_keras"] and found["tensorflow_recommenders"]:
            paths.append("tf-keras")
    return paths


def has_gpu() -> bool:
    """Whether JAX sees a GPU (checked in a subprocess, so this process imports no framework)."""
    code = "import jax; print(any(d.platform == 'gpu' for d in jax.devices()))"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip().endswith("True")


def run_one(path: str, batch_size: int, implementation: str, args, large: bool = False) -> dict:
    steps, warmup = (args.large_steps, args.large_warmup) if large else (args.steps, args.warmup)
    command = [sys.executable, os.path.abspath(__file__), "--worker", path, "--batch-sizes", str(batch_size),
               "--implementation", implementation, "--steps", str(steps), "--warmup", str(warmup),
               "--vocabulary", str(args.vocabulary), "--dim", str(args.dim), "--hash-size", str(args.hash_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    env.pop("TF_USE_LEGACY_KERAS", None)
    started = time.time()
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        return {"path": path, "batch_size": batch_size, "implementation": implementation, "returncode": out.returncode,
                "error": f"exit {out.returncode} (negative: killed by that signal): " + (out.stderr or out.stdout)[-1500:]}
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.time() - started
    return result


def summarise(results: list[dict]) -> list[dict]:
    """Median ms/step and max peak RSS over repeats, per (path, batch size, implementation)."""
    groups: dict = {}
    for r in results:
        if "error" not in r:
            groups.setdefault((r["batch_size"], r["implementation"], r["path"]), []).append(r)
    rows = []
    for (batch_size, implementation, path), runs in sorted(groups.items()):
        row = {"batch_size": batch_size, "implementation": implementation, "path": path,
               "ms_per_step": statistics.median(r["ms_per_step"] for r in runs),
               "ms_per_step_runs": [round(r["ms_per_step"], 2) for r in runs],
               "cpu_ms_per_step": statistics.median(r["cpu_ms_per_step"] for r in runs),
               "cpu_ms_per_step_runs": [round(r["cpu_ms_per_step"], 2) for r in runs],
               "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
        if any("device_peak_mb" in r for r in runs):
            row["device_peak_mb"] = max(r.get("device_peak_mb", 0.0) for r in runs)
        if runs[0].get("device"):
            row["device"] = runs[0]["device"]
        rows.append(row)
    reference = {(r["batch_size"], r["implementation"]): r for r in rows if r["path"] == "tf-keras"}
    for row in rows:
        base = reference.get((row["batch_size"], row["implementation"]))
        if base:
            row["ratio_to_tf_keras"] = row["ms_per_step"] / base["ms_per_step"]
            row["cpu_ratio_to_tf_keras"] = row["cpu_ms_per_step"] / base["cpu_ms_per_step"]
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| B | loss | path | ms / step | / tf-keras | CPU ms / step | / tf-keras | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio_to_tf_keras']:.2f}" if "ratio_to_tf_keras" in r else "-"
        cpu_ratio = f"{r['cpu_ratio_to_tf_keras']:.2f}" if "cpu_ratio_to_tf_keras" in r else "-"
        memory = f"{r['peak_rss_mb']:.0f}" + (f" (device {r['device_peak_mb']:.0f})" if "device_peak_mb" in r else "")
        lines.append(f"| {r['batch_size']} | {r['implementation']} | {r['path']} | {r['ms_per_step']:.1f} | {ratio} "
                     f"| {r['cpu_ms_per_step']:.1f} | {cpu_ratio} | {memory} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1024,8192,32768", help="comma-separated batch sizes of the step-time comparison")
    parser.add_argument("--large", default="65536", help="comma-separated batch sizes run blockwise for memory (and dense on a GPU); '' for none")
    parser.add_argument("--paths", default=None, help=f"comma-separated subset of {PATHS} (default: every installed one)")
    parser.add_argument("--implementation", default="auto", help="loss implementation of the comparison: auto, dense or blockwise")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run (>= 2)")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the timed ones (compilation)")
    parser.add_argument("--large-steps", type=int, default=3, help="timed steps of a --large run")
    parser.add_argument("--large-warmup", type=int, default=1)
    parser.add_argument("--large-repeats", type=int, default=1)
    parser.add_argument("--vocabulary", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--hash-size", type=int, default=1 << 20)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    parser.add_argument("--out", default=None, help="write the runs and the summary here (JSON)")
    parser.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.batch_size = int(args.batch_sizes)
        _worker(args)
        return 0
    paths = args.paths.split(",") if args.paths else available_paths()
    gpu = "jax" in paths and has_gpu()
    plan = [(int(b), args.implementation, False) for b in args.batch_sizes.split(",") if b]
    for b in (int(b) for b in args.large.split(",") if b):
        plan += [(b, "dense", True), (b, "blockwise", True)] if gpu else [(b, "blockwise", True)]
    print(f"paths: {', '.join(paths)}; GPU: {gpu}; plan: {plan}", flush=True)
    results = []
    for batch_size, implementation, large in plan:
        for repeat in range(args.large_repeats if large else args.repeats):
            for path in paths if repeat % 2 == 0 else paths[::-1]:
                result = run_one(path, batch_size, implementation, args, large)
                results.append(result)
                shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items() if k != "error"}
                print(json.dumps(shown) if "error" not in result else f"{path} B={batch_size} failed: {result['error']}", flush=True)
                if args.out:
                    _write(args.out, args, results, summarise(results), gpu)
    rows = summarise(results)
    print(format_table(rows))
    if args.out:
        _write(args.out, args, results, rows, gpu)
    return 0 if all("error" not in r for r in results) else 1


def _write(path: str, args, results: list[dict], rows: list[dict], gpu: bool) -> None:
    record = {"command": "python scripts/bench_keras3.py " + " ".join(sys.argv[1:]), "gpu": gpu,
              "settings": {k: getattr(args, k) for k in ("batch_sizes", "large", "implementation", "repeats", "steps", "warmup",
                                                          "large_steps", "large_warmup", "large_repeats", "vocabulary", "dim",
                                                          "hash_size")},
              "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()}, "runs": results, "summary": rows}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
