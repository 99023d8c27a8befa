"""The softmax loss alone: dense against blockwise (several block sizes), value and gradient.

B queries against their B in-batch candidates (d = 64, L2-normalised, an [N] log_q, tau = 0.05),
loss plus gradient in one ``tf.function``, the implementations interleaved round by round in one
process. Printed: median ms and the per-round ratio to the dense loss, median [q25, q75]. This
is how the ``"auto"`` crossover (``yt_bias.core.losses.BLOCKWISE_FROM_CANDIDATES``) was chosen.

Usage: python scripts/bench_loss.py [--batch-sizes 1024 2048 4096 8192] [--block-sizes 128 256 512] [--rounds 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import yt_bias  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from yt_bias._keras import tf
from yt_bias.core.losses import softmax_loss


def bench(batch_size: int, block_sizes: list[int], rounds: int) -> None:
    rng = np.random.default_rng(0)
    u = tf.Variable(tf.math.l2_normalize(rng.normal(size=(batch_size, 64)).astype(np.float32), 1))
    v = tf.Variable(tf.math.l2_normalize(rng.normal(size=(batch_size, 64)).astype(np.float32), 1))
    log_q = tf.constant(np.log(rng.uniform(0.001, 1, size=batch_size)).astype(np.float32))

    def make(implementation, block_size):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = softmax_loss(u, v, 0.05, log_q=log_q, implementation=implementation, block_size=block_size)
            grad_u, grad_v = tape.gradient(loss, [u, v])
            return loss + grad_u[0, 0] + grad_v[0, 0]

        step()
        return step

    functions = {"dense": make("dense", None), **{f"blockwise {b}": make("blockwise", b) for b in block_sizes}}
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            float(function())
            times[name].append(time.perf_counter() - start)
    dense = np.array(times["dense"])
    for name, values in times.items():
        ratio = np.array(values) / dense
        print(
            f"| {batch_size} | {name} | {1e3 * np.median(values):.1f} | {np.median(ratio):.3f} "
            f"[{np.percentile(ratio, 25):.3f}, {np.percentile(ratio, 75):.3f}] |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print("| B | loss | ms (median) | ratio to dense: median [q25, q75] |")
    print("|---|---|---|---|")
    for batch_size in args.batch_sizes:
        bench(batch_size, args.block_sizes, args.rounds)


if __name__ == "__main__":
    main()
