"""Training-step time: ours against TFRS's Retrieval task, and the cost of the logQ correction.

Everything is measured side by side in one run, interleaved round by round (the machine is
shared and noisy), on the same towers, data, optimizer and batches:

* ``ours plain``       TwoTowerModel without correction (plain-sfx);
* ``ours oracle``      TwoTowerModel with exact probabilities from a table;
* ``ours streaming``   TwoTowerModel with the streaming estimator (update + read every step);
* ``tfrs oracle``      TFRS's Retrieval task given the same table probabilities.

Printed ratios: ours oracle / tfrs oracle (goal <= 1: ours no slower) and
ours streaming / ours plain (goal <= 1.05: estimator + correction cost at most 5%).

Usage: python scripts/bench_train_step.py [--batch-sizes 1024 8192] [--rounds 7] [--steps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

import yt_bias  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from yt_bias import config as config_lib
from yt_bias._keras import keras, tf
from yt_bias.baselines.tfrs_retrieval import TFRSRetrievalModel
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.frequency import OracleFrequency
from yt_bias.train import build_model


def _variants(config, dataset, batch_size):
    oracle_p = np.maximum(dataset.step_probabilities(batch_size), 1e-9)
    m = config.model

    def oracle():
        return OracleFrequency(dataset.item_ids, oracle_p)

    tfrs_model = TFRSRetrievalModel(
        dataset.features, m.hidden_units, m.normalize, m.temperature, frequency=oracle(), reduction="mean"
    )
    tfrs_model.compile(optimizer=keras.optimizers.Adagrad(config.train.learning_rate))
    return {
        "ours plain": build_model(dataclasses.replace(config, variant="plain-sfx"), dataset),
        "ours oracle": build_model(dataclasses.replace(config, variant="correct-sfx-oracle"), dataset),
        "ours streaming": build_model(dataclasses.replace(config, variant="correct-sfx"), dataset),
        "tfrs oracle": tfrs_model,
    }


def bench(batch_size: int, rounds: int, steps: int) -> dict[str, float]:
    config = config_lib.default()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=batch_size))
    dataset = load_dataset(config.data, config.model.embedding_dim)
    data = make_tf_dataset(dataset.examples("train"), batch_size).repeat()
    models = _variants(config, dataset, batch_size)
    functions = {}
    for name, model in models.items():
        iterator = iter(data)
        function = model.make_train_function()
        for _ in range(3):  # trace and warm up
            function(iterator)
        functions[name] = (function, iterator)
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, (function, iterator) in functions.items():
            start = time.perf_counter()
            for _ in range(steps):
                logs = function(iterator)
            float(logs["loss"])  # wait for the last step
            times[name].append((time.perf_counter() - start) / steps)
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(
        f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('CPU'))} CPU device(s), "
        f"median of {args.rounds} interleaved rounds x {args.steps} steps"
    )
    print("| batch | ours plain ms | ours streaming ms | ours oracle ms | tfrs oracle ms | ours/tfrs | streaming/plain |")
    print("|---|---|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        t = bench(batch_size, args.rounds, args.steps)
        print(
            f"| {batch_size} | {1e3 * t['ours plain']:.1f} | {1e3 * t['ours streaming']:.1f} | "
            f"{1e3 * t['ours oracle']:.1f} | {1e3 * t['tfrs oracle']:.1f} | "
            f"{t['ours oracle'] / t['tfrs oracle']:.3f} | {t['ours streaming'] / t['ours plain']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
