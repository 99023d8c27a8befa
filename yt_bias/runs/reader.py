"""A run directory read back: its layout, its files checked, its model restored.

A run directory (written by :class:`yt_bias.training.run_directory.RunDirectory`) holds
``config.json`` (the experiment config), ``features.json`` (the feature spec of both towers),
``items.npz`` (the item corpus snapshot the model was trained on), ``run.json`` (the run's
fingerprint, status and committed checkpoint), ``checkpoint/`` (TensorFlow checkpoints) and, once
finished, ``metrics.json``. :func:`open_trained` reads and checks them; :func:`restore_model`
rebuilds the trained model from them. Serving, the index and the command line read runs here;
nothing here writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from yt_bias._keras import tf
from yt_bias.config import ExperimentConfig, from_dict
from yt_bias.core.corpus import array_digest
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset
from yt_bias.features import FeatureConfig
from yt_bias.runs.model import build_model

CONFIG_FILE = "config.json"
FEATURES_FILE = "features.json"
RUN_FILE = "run.json"
ITEMS_FILE = "items.npz"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoint"
LOCK_FILE = "run.lock"
# Config fields that say how a run is watched, not what it computes: never part of its identity.
VOLATILE_FIELDS = ("train.verbose",)


def json_default(value: Any) -> Any:
    """JSON for numpy values (``tolist``) and anything else (``str``)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def read_json(path: str, what: str) -> Any:
    """Reads a JSON file, with a clear error naming ``what`` and the file when it is missing or damaged.

    Raises:
      FileNotFoundError: no such file. ValueError: a directory, or not valid JSON.
    """
    if os.path.isdir(path):
        raise ValueError(f"{what}: {path!r} is a directory; expected a JSON file.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: {path!r} does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{what}: {path!r} is not valid JSON ({error}); it is damaged.") from None


def read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` file, with a clear error naming ``what`` and the file.

    Raises:
      ValueError: the file is missing, a directory, not an npz archive, truncated or damaged.
    """
    if os.path.isdir(path):
        raise ValueError(f"{what}: {path!r} is a directory; expected an .npz file.")
    if not os.path.isfile(path):
        raise ValueError(f"{what}: expected an .npz file; {path!r} does not exist.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zip_start = f.read(2) == b"PK"
        if zip_start:
            raise ValueError(f"{what}: {path!r} is truncated or damaged (an incomplete zip archive).")
        raise ValueError(f"{what}: {path!r} is not an .npz archive (numpy.savez); received another kind of file.")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError) as error:
        raise ValueError(f"{what}: {path!r} is truncated or damaged ({type(error).__name__}: {error}).") from None


def tower_fingerprint(tower) -> str:
    """A hash of a tower's weights (in order: shapes and values): equal for the same trained tower only."""
    digest = hashlib.sha256()
    for weight in tower.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:32]


def _flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(a: Mapping, b: Mapping, ignore: Iterable[str] = VOLATILE_FIELDS) -> list[str]:
    """The dotted config fields whose values differ between two ``config.to_dict()``s."""
    fa, fb = _flatten(json.loads(json.dumps(a, default=json_default))), _flatten(json.loads(json.dumps(b, default=json_default)))
    ignore = set(ignore)
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k, "<absent>") != fb.get(k, "<absent>"))



# ----------------------------------------------------------------------------- reading a trained run
@dataclasses.dataclass
class TrainedRun:
    """What export, index and query need from a finished (or checkpointed) run directory."""

    path: str
    config: dict
    features: dict
    items: dict[str, np.ndarray]
    record: dict
    checkpoint: str


def latest_checkpoint(path: str) -> str | None:
    """The checkpoint a run directory committed (run.json), or its newest one when none is recorded."""
    record_path = os.path.join(path, RUN_FILE)
    if os.path.isfile(record_path):
        committed = read_json(record_path, "run record").get("checkpoint")
        if committed and tf.io.gfile.exists(os.path.join(path, committed) + ".index"):
            return os.path.join(path, committed)
    return tf.train.latest_checkpoint(os.path.join(path, CHECKPOINT_DIR))


def open_trained(path: str, checkpoint: str | None = None) -> TrainedRun:
    """Reads a run directory for serving: config, features, corpus snapshot and checkpoint, all checked.

    Raises:
      ValueError: not a run directory, no checkpoint, a failed run, or files changed since training
        (config.json or items.npz no longer match run.json).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"workdir {path!r} is a file; expected a training workdir (a directory).")
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(
            f"workdir {path!r}: expected a training workdir with config.json; found none (run yt-bias train --workdir first)."
        )
    config = read_json(config_path, "config")
    if checkpoint is None:
        checkpoint = latest_checkpoint(path)
        if checkpoint is None:
            raise ValueError(f"workdir {path!r}: expected a checkpoint under {os.path.join(path, CHECKPOINT_DIR)}; found none.")
    elif not tf.io.gfile.exists(checkpoint + ".index"):
        raise ValueError(
            f"checkpoint: expected a checkpoint prefix with a .index file; received {checkpoint!r}, which does not exist."
        )
    run_path = os.path.join(path, RUN_FILE)
    if not os.path.isfile(run_path):
        raise ValueError(
            f"workdir {path!r}: no {RUN_FILE} (the record of the run and its item corpus); it was written by an older "
            "yt-bias or its training never started: retrain into it."
        )
    record = read_json(run_path, "run record")
    if record.get("status") == "failed":
        raise ValueError(f"workdir {path!r} holds a failed run ({record.get('error', 'no reason recorded')}); retrain it.")
    changed = config_differences(record.get("config", {}), config, ignore=())
    if changed:
        raise ValueError(
            f"{config_path} was changed after training ({', '.join(changed[:6])} differ from {run_path}); "
            "the checkpoint belongs to the recorded config: restore config.json or retrain."
        )
    items = read_npz(os.path.join(path, ITEMS_FILE), "item corpus snapshot")
    if array_digest(items) != record.get("items_sha256"):
        raise ValueError(f"{os.path.join(path, ITEMS_FILE)} was changed after training (its hash differs from {run_path}); retrain.")
    features = read_json(os.path.join(path, FEATURES_FILE), "features")
    return TrainedRun(path, config, features, items, record, checkpoint)


def restore_model(workdir: str, checkpoint: str | None = None):
    """Rebuilds a trained model from a training workdir: (config, corpus, model).

    The corpus is the item snapshot saved at training time (``items.npz``), never rebuilt from
    ``config.data``; the returned :class:`~yt_bias.data.dataset.RecDataset` holds those items and
    the saved features, and no interactions.

    Args:
      workdir: the directory ``yt-bias train --workdir`` wrote (config.json, features.json, items.npz, run.json, checkpoint/).
      checkpoint: a checkpoint prefix (e.g. a newer one); the run's committed (or latest) one if None.
    Raises:
      ValueError: no config.json, no checkpoint, files changed since training, or a checkpoint that
        is damaged or does not match the model.
    """
    trained = open_trained(workdir, checkpoint)
    config: ExperimentConfig = from_dict(trained.config)
    features = FeatureConfig.from_dict(trained.features)
    empty = {s.name: np.zeros((0, *s.shape), np.float32 if s.kind == "dense" else str) for s in features.query}
    empty.update({ITEM_INDEX: np.zeros(0, np.int64), REWARD: np.zeros(0, np.float32), QUERY_KEY: np.zeros(0, str)})
    try:
        dataset = RecDataset(trained.record.get("data", {}).get("name", "snapshot"), features, trained.items, empty, dict(empty))
    except ValueError as error:
        raise ValueError(f"{os.path.join(workdir, 'items.npz')} does not fit {os.path.join(workdir, 'features.json')}: {error}") from None
    # A parameter-server run records how many shards its estimator arrays were split into.
    model = build_model(config, dataset, estimator_shards=int(trained.record.get("estimator_shards", 1)))
    batch = {s.name: np.zeros((2, *s.shape), np.float32) if s.kind == "dense" else np.full((2, *s.shape), "") for s in features.query}
    batch.update({s.name: np.asarray(dataset.items[s.name])[[0, 0]] for s in features.item})
    batch.update({REWARD: np.ones(2, np.float32), ITEM_INDEX: np.zeros(2, np.int64)})
    model({name: tf.constant(value) for name, value in batch.items()})  # create the variables: the restore is checked, not deferred
    try:
        status = tf.train.Checkpoint(model=model).restore(trained.checkpoint).expect_partial()
    except (tf.errors.OpError, ValueError, IndexError, KeyError) as error:  # a truncated file raises IndexError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {trained.checkpoint!r} is damaged or unreadable ({first}); retrain, or pass an older --checkpoint.") from None
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        config_path = os.path.join(workdir, "config.json")
        raise ValueError(f"checkpoint {trained.checkpoint!r} does not match the model of {config_path}: {error}") from None
    return config, dataset, model
