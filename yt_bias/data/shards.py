"""Training examples as sharded TFRecord files on disk, read back through tf.data.

A shard directory holds:

* ``part-00000.tfrecord``, ``part-00001.tfrecord``, ...: one ``tf.train.Example`` per row, at
  most ``rows_per_shard`` rows per file. String columns (id, bag, categorical features) are
  ``bytes_list``, floats (dense features, ``reward``) ``float_list``, integers (``item_index``)
  ``int64_list``; multi-value columns (bags, dense of width > 1) are flattened per row.
* ``items.npz`` and ``features.json``: the item corpus (one array per item feature) and the
  :class:`~yt_bias.features.FeatureConfig` of both towers, beside the shards.

:class:`ShardWriter` writes rows chunk by chunk (memory bounded by one chunk plus one open
file); :func:`read_shards` gives the same batch dicts as
:func:`~yt_bias.data.dataset.make_tf_dataset`, with files split between workers by
``Dataset.shard`` and rows mixed by ``interleave`` and a shuffle buffer.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Mapping

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, REWARD
from yt_bias.features import FeatureConfig, validate_examples

SHARD_PREFIX = "part"
SHARD_SUFFIX = ".tfrecord"
ITEMS_FILE = "items.npz"
FEATURES_FILE = "features.json"


class ShardError(ValueError):
    """A shard or items file that is missing, damaged or does not match the feature config."""


def _feature(values: np.ndarray):
    """One row as a ``tf.train.Feature`` (bytes, float or int64 list by dtype)."""
    from yt_bias._keras import tf

    flat = np.ravel(values)
    if flat.dtype.kind in "USO":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode("utf-8") for v in flat]))
    if flat.dtype.kind == "f":
        return tf.train.Feature(float_list=tf.train.FloatList(value=flat.astype(np.float32).tolist()))
    if flat.dtype.kind in "iub":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=flat.astype(np.int64).tolist()))
    raise ShardError(f"cannot store dtype {flat.dtype} in a tf.train.Example; expected strings, floats or integers.")


class ShardWriter:
    """Writes rows to numbered TFRecord shards, at most ``rows_per_shard`` rows per file.

    Call :meth:`write` with chunks of rows (dicts of equally long arrays) as often as needed, then
    :meth:`close` (or use it as a context manager). Only the current chunk and one open file are in
    memory at any time.

    Args:
      directory: where the shards go (created if missing).
      rows_per_shard: the most rows one file holds.
      prefix: the file name prefix (``{prefix}-00000.tfrecord``, ...).
    Raises:
      ValueError: ``rows_per_shard`` < 1, or the directory already holds shards with this prefix.
    """

    def __init__(self, directory: str, rows_per_shard: int, prefix: str = SHARD_PREFIX):
        if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be an integer >= 1; received {rows_per_shard!r}.")
        os.makedirs(directory, exist_ok=True)
        existing = glob.glob(os.path.join(directory, f"{prefix}-*{SHARD_SUFFIX}"))
        if existing:
            raise ValueError(
                f"{directory!r} already holds {len(existing)} shard files ({prefix}-*{SHARD_SUFFIX}); use an empty directory."
            )
        self.directory = directory
        self.rows_per_shard = rows_per_shard
        self.prefix = prefix
        self.columns: tuple[str, ...] | None = None
        self.paths: list[str] = []
        self.rows_written = 0
        self.max_chunk_rows = 0
        self._writer = None
        self._rows_in_file = 0

    def _next_file(self):
        from yt_bias._keras import tf

        if self._writer is not None:
            self._writer.close()
        path = os.path.join(self.directory, f"{self.prefix}-{len(self.paths):05d}{SHARD_SUFFIX}")
        self.paths.append(path)
        self._writer = tf.io.TFRecordWriter(path)
        self._rows_in_file = 0

    def write(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Appends the rows of ``chunk`` (column name -> [rows, ...] array; the same columns every call).

        Raises:
          ValueError: the columns differ from the first chunk's, or their row counts differ.
        """
        from yt_bias._keras import tf

        chunk = {name: np.asarray(values) for name, values in chunk.items()}
        if not chunk:
            raise ValueError("ShardWriter.write: the chunk has no columns.")
        if self.columns is None:
            self.columns = tuple(sorted(chunk))
        elif tuple(sorted(chunk)) != self.columns:
            raise ValueError(f"ShardWriter.write: columns {sorted(chunk)} differ from the first chunk's {list(self.columns)}.")
        counts = {name: len(values) for name, values in chunk.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"ShardWriter.write: columns have different row counts: {counts}.")
        count = next(iter(counts.values()))
        self.max_chunk_rows = max(self.max_chunk_rows, count)
        for row in range(count):
            if self._writer is None or self._rows_in_file >= self.rows_per_shard:
                self._next_file()
            example = tf.train.Example(
                features=tf.train.Features(feature={name: _feature(values[row]) for name, values in chunk.items()})
            )
            self._writer.write(example.SerializeToString())
            self._rows_in_file += 1
        self.rows_written += count

    def close(self) -> list[str]:
        """Closes the open file; returns the paths of every shard written."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return list(self.paths)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def write_shards(examples: Mapping[str, np.ndarray], directory: str, rows_per_shard: int, chunk_rows: int = 65536) -> list[str]:
    """Writes in-memory examples to TFRecord shards (in chunks of ``chunk_rows``); returns the paths."""
    count = len(next(iter(examples.values())))
    with ShardWriter(directory, rows_per_shard) as writer:
        for start in range(0, count, chunk_rows):
            writer.write({name: np.asarray(values)[start : start + chunk_rows] for name, values in examples.items()})
    return writer.paths


def write_items(directory: str, features: FeatureConfig, items: Mapping[str, np.ndarray]) -> None:
    """Writes the items table (``items.npz``) and the feature config (``features.json``) beside the shards."""
    validate_examples(dict(items), features.item, where="items")
    os.makedirs(directory, exist_ok=True)
    items_path = os.path.join(directory, ITEMS_FILE)
    with open(items_path + ".tmp", "wb") as f:
        np.savez(f, **{name: np.asarray(v) for name, v in items.items()})
    os.replace(items_path + ".tmp", items_path)
    features_path = os.path.join(directory, FEATURES_FILE)
    with open(features_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(features.to_dict(), f, indent=2, sort_keys=True)
    os.replace(features_path + ".tmp", features_path)


def read_items(directory: str) -> tuple[FeatureConfig, dict[str, np.ndarray]]:
    """Reads the feature config and the items table written by :func:`write_items`.

    Raises:
      ShardError: ``features.json`` or ``items.npz`` is missing, damaged or lacks an item feature.
    """
    features_path = os.path.join(directory, FEATURES_FILE)
    items_path = os.path.join(directory, ITEMS_FILE)
    for path in (features_path, items_path):
        if not os.path.isfile(path):
            raise ShardError(f"the items table beside the shards is incomplete: {path!r} does not exist.")
    try:
        with open(features_path, encoding="utf-8") as f:
            features = FeatureConfig.from_dict(json.load(f))
    except (KeyError, TypeError, ValueError) as error:
        raise ShardError(f"{features_path!r} is not a valid feature config: {error}") from None
    try:
        with np.load(items_path, allow_pickle=False) as archive:
            items = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise ShardError(f"{items_path!r} is not a readable npz archive: {error}") from None
    try:
        validate_examples(items, features.item, where=items_path)
    except ValueError as error:
        raise ShardError(str(error)) from None
    return features, items


def shard_files(pattern: str) -> list[str]:
    """The sorted files matching a glob ``pattern`` (or the shards of a directory).

    Raises:
      ShardError: nothing matches.
    """
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, f"*{SHARD_SUFFIX}")
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    if not files:
        raise ShardError(f"no shard files match {pattern!r}.")
    return files


def _parse_spec(features: FeatureConfig) -> dict:
    from yt_bias._keras import tf

    spec = {}
    for feature in features.all:
        dtype = tf.float32 if feature.kind == "dense" else tf.string
        spec[feature.name] = tf.io.FixedLenFeature(list(feature.shape), dtype)
    spec[ITEM_INDEX] = tf.io.FixedLenFeature([], tf.int64)
    spec[REWARD] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def check_shard(path: str, features: FeatureConfig, records: int | None = 1) -> int:
    """Reads the first ``records`` records of a shard (all with None) and parses them with ``features``.

    Returns:
      The number of records read.
    Raises:
      ShardError: the file is missing, not a TFRecord file, truncated, or its rows lack a feature
        or have the wrong shape; the message names the file.
    """
    from yt_bias._keras import tf

    if not os.path.isfile(path):
        raise ShardError(f"shard {path!r} does not exist.")
    spec = _parse_spec(features)
    dataset = tf.data.TFRecordDataset(path)
    if records is not None:
        dataset = dataset.take(records)
    count = 0
    try:
        for record in dataset:
            try:
                present = set(tf.train.Example.FromString(record.numpy()).features.feature)
            except Exception:  # noqa: BLE001 (protobuf's DecodeError: not a tf.train.Example)
                raise ShardError(f"shard {path!r}: record {count} is not a tf.train.Example.") from None
            missing = sorted(set(spec) - present)
            if missing:
                raise ShardError(f"shard {path!r}: record {count} lacks the columns {missing}; expected {sorted(spec)}.")
            tf.io.parse_single_example(record, spec)
            count += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        message = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", str(error).splitlines()[0])
        raise ShardError(f"shard {path!r} is damaged or does not match the features: {message}") from None
    return count


def read_shards(
    pattern: str,
    features: FeatureConfig,
    batch_size: int,
    shuffle_buffer: int = 10000,
    seed: int = 0,
    num_workers: int = 1,
    worker_index: int = 0,
    drop_remainder: bool = True,
    check: bool = True,
):
    """A tf.data pipeline of batch dicts read from TFRecord shards, like :func:`make_tf_dataset`'s.

    Each batch maps every feature of ``features`` (dense [B, width] float32, bag [B, max_len] padded
    strings, id and categorical [B] strings), ``item_index`` [B] int64 and ``reward`` [B] float32.
    One pass is one epoch over this worker's files; file order and rows are reshuffled each pass.

    Args:
      pattern: a glob of shard files (``DIR/*.tfrecord``) or a shard directory.
      features: the feature config the shards were written with.
      batch_size: rows per batch.
      shuffle_buffer: rows in the shuffle buffer (0: no shuffling: this worker's files one after
        another, rows in written order).
      seed: the shuffling seed.
      num_workers, worker_index: this worker reads files ``worker_index``, ``worker_index +
        num_workers``, ... of the sorted file list.
      drop_remainder: full batches only (the estimator's notion of a step stays exact).
      check: parse the first record of every file of this worker now, so a wrong or damaged file
        fails with its name before training starts.
    Raises:
      ShardError: no file matches, a worker gets no file, or a file is damaged (``check``).
      ValueError: a bad ``batch_size``, ``num_workers`` or ``worker_index``.
    """
    from yt_bias._keras import tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
    if num_workers < 1 or not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, num_workers={num_workers}); received {worker_index}.")
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be >= 0; received {shuffle_buffer}.")
    files = shard_files(pattern)
    if len(files) < num_workers:
        raise ShardError(f"{len(files)} shard files match {pattern!r}; expected at least num_workers={num_workers}.")
    if check:
        for path in files[worker_index::num_workers]:
            check_shard(path, features)
    spec = _parse_spec(features)
    names = tf.data.Dataset.from_tensor_slices(files).shard(num_workers, worker_index)
    shuffle = shuffle_buffer > 0
    if shuffle:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if shuffle:  # several files read at once, their rows mixed in the buffer
        rows = names.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(4, len(files)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        rows = rows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:  # the files one after another, rows in written order
        rows = names.flat_map(tf.data.TFRecordDataset)
    batches = rows.batch(batch_size, drop_remainder=drop_remainder)
    return batches.map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def shard_summary(pattern: str) -> dict:
    """The files of a pattern with their sizes: a cheap identity of the data for a run record."""
    files = shard_files(pattern)
    return {"pattern": pattern, "files": [[os.path.basename(f), os.path.getsize(f)] for f in files]}


def count_rows(pattern: str) -> int:
    """The number of records in the shards of ``pattern`` (reads every file once)."""
    from yt_bias._keras import tf

    total = 0
    for path in shard_files(pattern):
        try:
            total += int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
        except tf.errors.DataLossError as error:
            raise ShardError(f"shard {path!r} is damaged: {str(error).splitlines()[0]}") from None
    return total
