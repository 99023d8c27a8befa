"""Runs the Keras 3 task under ``keras.distribution.DataParallel`` on JAX and prints what tests/test_keras3.py checks.

Run in a fresh process with ``KERAS_BACKEND=jax`` and ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
(two CPU devices): the same model is fitted on one device and data-parallel over both, on the same global
batches, and the estimator's state, the losses and the variables' placement are printed as JSON.
"""

from __future__ import annotations

import json

import jax
import keras
import numpy as np

from test_keras3_backend import TwoTower  # this script's folder is first on sys.path

from yt_bias.keras3 import CorrectedRetrieval

BATCH, STEPS = 16, 10


def fit(distribution):
    keras.distribution.set_distribution(distribution)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    items = (rng.zipf(1.3, size=BATCH * STEPS) % 400).astype(np.int32)
    users = np.arange(BATCH * STEPS, dtype=np.int32) % 20
    frequency = {"hash_size": 31, "num_hashes": 2, "alpha": 0.2, "initial_interval": 10.0}
    model = TwoTower(CorrectedRetrieval(frequency=frequency, temperature=0.5))
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    history = model.fit({"user": users, "item": items}, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    estimator = model.task.frequency
    arrays = {name: np.asarray(value).tolist() for name, value in estimator.logical_arrays().items()}
    placement = [
        {"devices": len(v.value.sharding.device_set), "replicated": bool(v.value.sharding.is_fully_replicated)}
        for v in estimator.weights
    ]
    return {"arrays": arrays, "loss": history.history["loss"], "placement": placement,
            "item_embeddings": np.asarray(model.items.embeddings.value).tolist()}


if __name__ == "__main__":
    devices = jax.devices()
    parallel = keras.distribution.DataParallel(devices=devices)
    print(json.dumps({
        "devices": len(devices),
        "batch_axes": list(parallel.get_data_layout((BATCH, 1)).axes),
        "single": fit(None),
        "data_parallel": fit(parallel),
    }))
