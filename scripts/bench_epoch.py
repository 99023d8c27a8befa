"""Epoch time of ``model.fit`` against the bare train step, and what the input pipeline costs.

Three ways to run the same number of steps of the default configuration (batch 1024), interleaved
round by round in one process:

* ``bare step``         the compiled train function on batches already in memory (a cached tf.data);
* ``fit, pipeline``     ``model.fit`` for one epoch on ``make_tf_dataset`` (what ``yt-bias train`` does);
* ``fit, row shuffle``  ``model.fit`` for one epoch on a row-wise ``from_tensor_slices -> shuffle(all rows)
                        -> batch`` pipeline, the usual tf.data recipe (each epoch first fills the shuffle
                        buffer with every row).

Printed: ms per step of each and the per-round ratios to the bare step (median and quartiles).

Usage: python scripts/bench_epoch.py [--rounds 5] [--batch-size 1024]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

import yt_bias  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from yt_bias import config as config_lib
from yt_bias._keras import tf
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.training.train import build_model


def row_shuffle_dataset(examples, batch_size: int, seed: int = 0):
    """The row-wise recipe: every row through a full-size shuffle buffer, then batched."""
    count = len(next(iter(examples.values())))
    ds = tf.data.Dataset.from_tensor_slices(dict(examples)).shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    config = config_lib.default()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=args.batch_size, verbose=0))
    dataset = load_dataset(config.data, config.model.embedding_dim)
    examples = dataset.examples("train")
    steps = dataset.num_train // args.batch_size
    model = build_model(config, dataset)
    pipelines = {"fit, pipeline": make_tf_dataset(examples, args.batch_size), "fit, row shuffle": row_shuffle_dataset(examples, args.batch_size)}
    cached = make_tf_dataset(examples, args.batch_size, shuffle=False).cache()
    for _ in cached:  # fill the in-memory cache
        pass
    batches = cached.repeat()
    function = model.make_train_function()
    function(iter(batches))  # trace
    for data in pipelines.values():
        model.fit(data, epochs=1, verbose=0, steps_per_epoch=3)  # trace fit's function and warm the pipeline
    times: dict[str, list[float]] = {"bare step": [], **{name: [] for name in pipelines}}
    for _ in range(args.rounds):
        iterator = iter(batches)
        start = time.perf_counter()
        for _ in range(steps):
            logs = function(iterator)
        float(logs["loss"])
        times["bare step"].append((time.perf_counter() - start) / steps)
        for name, data in pipelines.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) / steps)
    print(f"{steps} steps per epoch, batch {args.batch_size}, {args.rounds} interleaved rounds")
    print("| run | ms/step (median) | ratio to bare step: median [q25, q75] |")
    print("|---|---|---|")
    bare = np.array(times["bare step"])
    for name, values in times.items():
        ratio = np.array(values) / bare
        print(
            f"| {name} | {1e3 * np.median(values):.1f} | {np.median(ratio):.3f} "
            f"[{np.percentile(ratio, 25):.3f}, {np.percentile(ratio, 75):.3f}] |"
        )


if __name__ == "__main__":
    main()
