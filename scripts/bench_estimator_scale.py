"""Scale of the streaming estimator against exact counting.

Feeds a Zipf stream over ``--num-items`` items (batches drawn with replacement) to
``StreamingFrequencyEstimator`` at each ``--hash-sizes`` and to an exact baseline, a
``tf.lookup.experimental.MutableHashTable`` of per-item step counts (int64 keys, and string keys
for parity with the estimator, which hashes string IDs). Everything runs in ``tf.function``
loops over pre-sampled batches. Reports, per method:

* updates/s: items consumed per second by ``update`` (one step = one batch), best of 3 timed
  segments of the stream; ``update_ms_per_step`` / ``read_ms_per_step``: the same as the cost of
  one training step's update / read of a batch of ``--batch-size`` items;
* reads/s: items per second of ``probability`` (what training reads every step), best of 3;
* state MiB: the bytes of the estimator's variables (m * H * (8 + 4), + 4 with bias_correction), or of the table's keys and
  values (16 bytes per distinct item seen; the table's own overhead is on top);
* RSS MiB: growth of the resident memory of a fresh process (each method runs in its own
  subprocess) from just before the method is built to after it ran and was read for all items
  (includes TF's allocator caches, the traced graphs and the [num_items] read-out buffers);
* logq error: mean |log p_hat - log pi| over the item occurrences of the last 50 batches, read
  after the run: the error the logQ correction of training would see;
* TV: the paper's error (1/2B) sum_i |p_hat_i - pi_i| over ALL items after the run. With a
  large corpus it is dominated by the items never seen, which the estimator reads as
  1 / initial_interval (0.01 by default) and counting reads as 0.

pi_i = 1 - (1 - q_i)^B is the exact per-step inclusion probability of a batch of B i.i.d. draws;
counting estimates it by count / steps.

Example::

    python scripts/bench_estimator_scale.py --hash-sizes 1000000 10000000 --output runs/bench_scale.json
    python scripts/bench_estimator_scale.py --hash-sizes 4194304 16777216 --num-hashes 1 2 4 \
        --no-bias-correction --no-counting --batch-size 8192 --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time

import numpy as np

import yt_bias  # noqa: F401  (Keras 2 before TensorFlow)
from yt_bias._keras import tf
from yt_bias.core.frequency import StreamingFrequencyEstimator, total_variation_error
from yt_bias.studies import markdown_table


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def zipf_stream(num_items: int, exponent: float, batch_size: int, num_steps: int, seed: int):
    """[num_steps, batch_size] int64 item IDs (i.i.d. Zipf draws) and [num_items] per-step inclusion probabilities."""
    rng = np.random.default_rng(seed)
    q = 1.0 / np.arange(1, num_items + 1, dtype=np.float64) ** exponent
    q /= q.sum()
    ids = rng.permutation(num_items).astype(np.int64)  # rank -> item ID, so IDs carry no popularity order
    batches = ids[rng.choice(num_items, size=(num_steps, batch_size), p=q)]
    inclusion = np.empty(num_items)
    inclusion[ids] = -np.expm1(batch_size * np.log1p(-q))
    return batches, inclusion


class CountingBaseline:
    """Exact per-step counts in a TF hash table: count[item] = number of steps whose batch holds it."""

    def __init__(self, string_keys: bool):
        self.string_keys = string_keys
        key_dtype = tf.string if string_keys else tf.int64
        self.table = tf.lookup.experimental.MutableHashTable(key_dtype, tf.int64, default_value=0)
        self.step = tf.Variable(0, dtype=tf.int64)

    def _keys(self, item_ids):
        return tf.strings.as_string(item_ids) if self.string_keys else item_ids

    def update(self, item_ids):
        keys, _ = tf.unique(self._keys(item_ids))
        self.table.insert(keys, self.table.lookup(keys) + 1)
        return self.step.assign_add(1)

    def probability(self, item_ids):
        counts = self.table.lookup(self._keys(item_ids))
        return tf.cast(counts, tf.float32) / tf.cast(tf.maximum(self.step, 1), tf.float32)

    def state_bytes(self) -> int:
        return int(self.table.size()) * 16


def bench(name: str, build, batches: np.ndarray, inclusion: np.ndarray, warmup: int, repeats: int = 3) -> dict:
    data = tf.constant(batches)
    rss0 = _rss_mib()  # TF's runtime and the stream are already resident: the growth is the method's
    method = build()
    signature = [tf.TensorSpec([None, batches.shape[1]], tf.int64)]  # one trace for warm-up and timed chunks

    @tf.function(input_signature=signature)
    def run(chunk):
        for s in tf.range(tf.shape(chunk)[0]):
            method.update(chunk[s])
        return method.step

    @tf.function(input_signature=signature)
    def read(chunk):
        total = tf.constant(0.0)
        for s in tf.range(tf.shape(chunk)[0]):
            total += tf.reduce_sum(method.probability(chunk[s]))
        return total

    run(data[:warmup])  # traces and warms up (these steps count in the stream)
    # The timed steps run as `repeats` consecutive segments; the best segment is reported (the
    # machine may be shared, and the best segment is the least disturbed one).
    bounds = np.linspace(warmup, batches.shape[0], repeats + 1).astype(int)
    update_rates, read_rates = [], []
    for lo, hi in itertools.pairwise(bounds):
        start = time.perf_counter()
        run(data[lo:hi])
        update_rates.append((hi - lo) * batches.shape[1] / (time.perf_counter() - start))
    read(data[:warmup])
    for lo, hi in itertools.pairwise(bounds):
        start = time.perf_counter()
        read(data[lo:hi])
        read_rates.append((hi - lo) * batches.shape[1] / (time.perf_counter() - start))
    num_items = inclusion.size
    p_hat = np.concatenate(
        [
            method.probability(tf.range(i, min(i + 200_000, num_items), dtype=tf.int64)).numpy()
            for i in range(0, num_items, 200_000)
        ]
    )
    last = batches[-50:].ravel()
    with np.errstate(divide="ignore"):
        logq = float(np.mean(np.abs(np.log(p_hat[last]) - np.log(inclusion[last]))))
    if isinstance(method, CountingBaseline):
        state = method.state_bytes()
    else:
        state = sum(int(np.prod(v.shape)) * v.dtype.size for v in method.weights)
    return {
        "method": name,
        "update_ms_per_step": 1000.0 * batches.shape[1] / max(update_rates),
        "read_ms_per_step": 1000.0 * batches.shape[1] / max(read_rates),
        "updates_per_s": max(update_rates),
        "reads_per_s": max(read_rates),
        "state_MiB": state / 2**20,
        "rss_growth_MiB": _rss_mib() - rss0,
        "logq_error": logq,
        "tv_error": total_variation_error(p_hat, inclusion, batches.shape[1]),
    }


def _hash_label(hash_size: int) -> str:
    power = int(np.log2(hash_size))
    return f"2^{power}" if 1 << power == hash_size else f"{hash_size:.0e}"


def _methods(args) -> list[tuple[str, object]]:
    methods = []
    for hash_size, num_hashes in itertools.product(args.hash_sizes, args.num_hashes):
        for corrected in (False,) if args.no_bias_correction else (False, True):
            name = f"estimator H={_hash_label(hash_size)} m={num_hashes}" + (" +bias_correction" if corrected else "")

            def build(h=hash_size, m=num_hashes, c=corrected):
                return StreamingFrequencyEstimator(
                    h, m, alpha=args.alpha, initial_interval=args.initial_interval, bias_correction=c,
                    estimand="inclusion",
                )

            methods.append((name, build))
    if args.no_counting:
        return methods
    for string_keys in (False, True):
        name = f"exact counts (MutableHashTable, {'string' if string_keys else 'int64'} keys)"
        methods.append((name, lambda s=string_keys: CountingBaseline(s)))
    return methods


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--num-hashes", type=int, nargs="+", default=[1], help="m values (one row per H and m)")
    parser.add_argument("--no-counting", action="store_true", help="skip the exact-counting rows")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--initial-interval", type=float, default=100.0, help="B0 of the estimator")
    parser.add_argument("--no-bias-correction", action="store_true", help="skip the bias_correction=True rows")
    parser.add_argument("--num-items", type=int, default=1_000_000)
    parser.add_argument("--zipf-exponent", type=float, default=1.1)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=1000, help="steps in the stream (the first --warmup are not timed)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="optional JSON file for the results")
    parser.add_argument("--only", type=int, default=None, help=argparse.SUPPRESS)  # child process: one method
    args = parser.parse_args(argv)
    if not 50 <= args.warmup + 50 <= args.steps:
        parser.error(f"need 0 <= --warmup <= --steps - 50; received --warmup {args.warmup}, --steps {args.steps}")
    methods = _methods(args)

    if args.only is not None:  # child: one method in a fresh process, one JSON line out
        batches, inclusion = zipf_stream(args.num_items, args.zipf_exponent, args.batch_size, args.steps, args.seed)
        name, build = methods[args.only]
        print("RESULT " + json.dumps(bench(name, build, batches, inclusion, max(args.warmup, 1))), flush=True)
        return 0

    start = time.perf_counter()
    batches, _ = zipf_stream(args.num_items, args.zipf_exponent, args.batch_size, args.steps, args.seed)
    print(
        f"stream: {args.steps} batches of {args.batch_size} Zipf({args.zipf_exponent}) draws over {args.num_items} items "
        f"({len(np.unique(batches))} distinct seen)",
        flush=True,
    )
    del batches
    argv = list(sys.argv[1:] if argv is None else argv)
    rows = []
    for index, (name, _) in enumerate(methods):
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *argv, "--only", str(index)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            print(child.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{name}: the child process failed (exit code {child.returncode})")
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
        print(markdown_table(rows[-1:]), flush=True)
    print()
    print(markdown_table(rows, digits=3))
    print(f"total {time.perf_counter() - start:.1f} s, {os.cpu_count()} CPUs, TF {tf.__version__}")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump({"args": vars(args), "results": rows}, f, indent=2)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
