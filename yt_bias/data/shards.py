"""Training examples as sharded TFRecord files on disk, read back through tf.data.

A shard directory holds:

* ``part-00000.tfrecord``, ``part-00001.tfrecord``, ...: at most ``rows_per_shard`` rows per file,
  stored as *row blocks*: each record is one ``tf.train.Example`` that holds up to
  ``rows_per_record`` rows, one ``bytes_list`` value per column with the column's block as a
  serialized tensor (``tf.io.serialize_tensor``: strings (id, bag, categorical features) as
  ``tf.string`` [rows, ...], dense features and ``reward`` as float32, ``item_index`` as int64).
  Writing and parsing a block are a few C++ calls per column instead of one protobuf per row
  (``docs/scale.md`` has the measurement against one Example per row and against Parquet).
* ``items.npz`` and ``features.json``: the item corpus (one array per item feature) and the
  :class:`~yt_bias.features.FeatureConfig` of both towers, beside the shards.

:class:`ShardWriter` writes rows chunk by chunk (memory bounded by one chunk plus one open
file); :func:`read_shards` gives the same batch dicts as
:func:`~yt_bias.data.dataset.make_tf_dataset`, with files split between workers by
``Dataset.shard``, blocks mixed by ``interleave`` and a shuffle buffer of blocks, and rows
re-cut into batches by ``rebatch``. Writers that want rows mixed inside a block shuffle them
before :meth:`ShardWriter.write` (the generator and :func:`write_shards` do).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Mapping

import numpy as np

from yt_bias._keras import tf
from yt_bias.data.dataset import ITEM_INDEX, REWARD
from yt_bias.features import FeatureConfig, validate_examples

SHARD_PREFIX = "part"
SHARD_SUFFIX = ".tfrecord"
ITEMS_FILE = "items.npz"
FEATURES_FILE = "features.json"
TEST_DIR = "test"  # the held-out rows' shards, inside the training shards' folder


class ShardError(ValueError):
    """A shard or items file that is missing, damaged or does not match the feature config."""


ROWS_PER_RECORD = 1024


def _column(name: str, values: np.ndarray) -> np.ndarray:
    """A column as the dtype it is stored with: bytes for text, float32 for floats, int64 for integers."""
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind == "S":
        return values
    if kind == "U":
        try:
            return values.astype(np.bytes_)  # C speed for ASCII text
        except UnicodeEncodeError:
            return np.char.encode(values, "utf-8")
    if kind == "O":
        return np.array([str(v).encode("utf-8") for v in values.ravel()], dtype=object).reshape(values.shape)
    if name == REWARD or kind == "f":
        return values.astype(np.float32)
    if kind in "iub":
        return values.astype(np.int64)
    raise ShardError(f"column {name!r}: cannot store dtype {values.dtype}; expected strings, floats or integers.")


def _record(block: Mapping[str, np.ndarray]) -> bytes:
    """One row block as a serialized ``tf.train.Example`` (one serialized tensor per column)."""
    feature = {
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(values).numpy()]))
        for name, values in block.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ShardWriter:
    """Writes rows to numbered TFRecord shards, at most ``rows_per_shard`` rows per file.

    Call :meth:`write` with chunks of rows (dicts of equally long arrays) as often as needed, then
    :meth:`close` (or use it as a context manager). Only the current chunk and one open file are in
    memory at any time.

    Args:
      directory: where the shards go (created if missing).
      rows_per_shard: the most rows one file holds.
      prefix: the file name prefix (``{prefix}-00000.tfrecord``, ...).
      rows_per_record: the most rows one record (row block) holds.
    Raises:
      ValueError: ``rows_per_shard`` or ``rows_per_record`` < 1, or the directory already holds
        shards with this prefix.
    """

    def __init__(self, directory: str, rows_per_shard: int, prefix: str = SHARD_PREFIX, rows_per_record: int = ROWS_PER_RECORD):
        for field, value in (("rows_per_shard", rows_per_shard), ("rows_per_record", rows_per_record)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1; received {value!r}.")
        os.makedirs(directory, exist_ok=True)
        existing = glob.glob(os.path.join(directory, f"{prefix}-*{SHARD_SUFFIX}"))
        if existing:
            raise ValueError(
                f"{directory!r} already holds {len(existing)} shard files ({prefix}-*{SHARD_SUFFIX}); use an empty directory."
            )
        self.directory = directory
        self.rows_per_shard = rows_per_shard
        self.rows_per_record = rows_per_record
        self.prefix = prefix
        self.columns: tuple[str, ...] | None = None
        self.paths: list[str] = []
        self.file_rows: dict[str, int] = {}  # shard path -> rows written to it
        self.rows_written = 0
        self.max_chunk_rows = 0
        self._writer = None
        self._rows_in_file = 0

    def _next_file(self):
        if self._writer is not None:
            self._writer.close()
        path = os.path.join(self.directory, f"{self.prefix}-{len(self.paths):05d}{SHARD_SUFFIX}")
        self.paths.append(path)
        self.file_rows[path] = 0
        self._writer = tf.io.TFRecordWriter(path)
        self._rows_in_file = 0

    def write(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Appends the rows of ``chunk`` (column name -> [rows, ...] array; the same columns every call).

        Raises:
          ValueError: the columns differ from the first chunk's, or their row counts differ.
        """
        chunk = {name: _column(name, values) for name, values in chunk.items()}
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
        row = 0
        while row < count:
            if self._writer is None or self._rows_in_file >= self.rows_per_shard:
                self._next_file()
            take = min(self.rows_per_record, self.rows_per_shard - self._rows_in_file, count - row)
            self._writer.write(_record({name: values[row : row + take] for name, values in chunk.items()}))
            self._rows_in_file += take
            self.file_rows[self.paths[-1]] += take
            row += take
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


def write_shards(
    examples: Mapping[str, np.ndarray],
    directory: str,
    rows_per_shard: int,
    chunk_rows: int = 65536,
    rows_per_record: int = ROWS_PER_RECORD,
    shuffle_seed: int | None = None,
) -> list[str]:
    """Writes in-memory examples to TFRecord shards (in chunks of ``chunk_rows``); returns the paths.

    Args:
      examples: column name -> [rows, ...] array (every query and item feature, ``item_index``, ``reward``).
      directory: an empty (or new) directory.
      rows_per_shard: rows per file.
      chunk_rows: rows converted at once.
      rows_per_record: rows per record (row block).
      shuffle_seed: None keeps the row order; an integer writes the rows in a random permutation
        (readers mix blocks, not rows inside a block, so unshuffled user-ordered rows would keep a
        user's rows together in a batch).
    Returns:
      The shard paths, in order.
    """
    with ShardWriter(directory, rows_per_shard, rows_per_record=rows_per_record) as writer:
        write_rows(writer, examples, chunk_rows, shuffle_seed)
    return writer.paths


def write_rows(
    writer: ShardWriter, examples: Mapping[str, np.ndarray], chunk_rows: int = 65536, shuffle_seed: int | None = None
) -> None:
    """Writes in-memory examples through ``writer`` in chunks of ``chunk_rows`` (see :func:`write_shards`)."""
    count = len(next(iter(examples.values())))
    order = None if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(count)
    for start in range(0, count, chunk_rows):
        rows = slice(start, start + chunk_rows) if order is None else order[start : start + chunk_rows]
        writer.write({name: np.asarray(values)[rows] for name, values in examples.items()})


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


def shard_files(pattern) -> list[str]:
    """The sorted files matching a glob ``pattern`` (or the shards of a directory, or a list of files).

    Raises:
      ShardError: nothing matches, or a listed file does not exist.
    """
    if not isinstance(pattern, str):
        files = [str(f) for f in pattern]
        for f in files:
            if not os.path.isfile(f):
                raise ShardError(f"shard {f!r} does not exist.")
        if not files:
            raise ShardError("the list of shard files is empty; expected at least one file.")
        return sorted(files)
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, f"*{SHARD_SUFFIX}")
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    if not files:
        raise ShardError(f"no shard files match {pattern!r}.")
    return files


def _columns(features: FeatureConfig) -> dict:
    """Column name -> (stored dtype, shape of one row) for every column of a shard."""
    columns = {f.name: (tf.float32 if f.kind == "dense" else tf.string, tuple(f.shape)) for f in features.all}
    columns[ITEM_INDEX] = (tf.int64, ())
    columns[REWARD] = (tf.float32, ())
    return columns


def _block_parser(features: FeatureConfig):
    """A function: one serialized row block -> column name -> [rows, ...] tensor (static row shapes)."""
    columns = _columns(features)
    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in columns}

    def parse(record):
        parsed = tf.io.parse_single_example(record, spec)
        return {
            name: tf.ensure_shape(tf.io.parse_tensor(parsed[name], dtype), [None, *shape])
            for name, (dtype, shape) in columns.items()
        }

    return parse


def check_shard(path: str, features: FeatureConfig, records: int | None = 1) -> int:
    """Reads the first ``records`` records (row blocks) of a shard (all with None) and checks every column.

    Returns:
      The number of rows in the records read.
    Raises:
      ShardError: the file is missing, not a TFRecord file, truncated, a record is not a
        ``tf.train.Example`` or lacks a column, or a column has the wrong dtype, row shape or row
        count; the message names the file, the column, the expected and the received value.
    """
    if not os.path.isfile(path):
        raise ShardError(f"shard {path!r} does not exist.")
    columns = _columns(features)
    dataset = tf.data.TFRecordDataset(path)
    if records is not None:
        dataset = dataset.take(records)
    count = rows = 0
    try:
        for record in dataset:
            try:
                feature = tf.train.Example.FromString(record.numpy()).features.feature
            except Exception:  # noqa: BLE001 (protobuf's DecodeError: not a tf.train.Example)
                raise ShardError(f"shard {path!r}: record {count} is not a tf.train.Example.") from None
            missing = sorted(set(columns) - set(feature))
            if missing:
                raise ShardError(f"shard {path!r}: record {count} lacks the columns {missing}; expected {sorted(columns)}.")
            block_rows = None
            for name, (dtype, shape) in columns.items():
                values = feature[name].bytes_list.value
                if len(values) != 1:
                    raise ShardError(
                        f"shard {path!r}: record {count}, column {name!r}: expected one serialized tensor (a row block); "
                        f"received {len(values)} values (a file of another format?)."
                    )
                try:
                    proto = tf.make_tensor_proto(0)
                    proto.ParseFromString(values[0])
                except Exception:  # noqa: BLE001 (protobuf's DecodeError)
                    raise ShardError(f"shard {path!r}: record {count}, column {name!r} is not a serialized tensor.") from None
                received = tf.as_dtype(proto.dtype)
                dims = tuple(d.size for d in proto.tensor_shape.dim)
                if received != dtype or dims[1:] != shape:
                    raise ShardError(
                        f"shard {path!r}: record {count}, column {name!r}: expected dtype {dtype.name} and row shape "
                        f"{list(shape)}; received dtype {received.name} and row shape {list(dims[1:])}."
                    )
                if block_rows is not None and dims[0] != block_rows:
                    raise ShardError(
                        f"shard {path!r}: record {count}, column {name!r} has {dims[0]} rows; expected {block_rows} as the other columns."
                    )
                block_rows = dims[0]
            rows += block_rows or 0
            count += 1
    except tf.errors.DataLossError as error:
        message = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", str(error).splitlines()[0])
        raise ShardError(f"shard {path!r} is damaged: {message}") from None
    return rows


def check_shard_items(path: str, num_items: int) -> None:
    """Checks that the first row block of a shard points into an items table of ``num_items`` rows.

    A cheap check for shards without a manifest: a block of shards written for a larger corpus
    almost surely holds an ``item_index`` beyond a smaller table.

    Raises:
      ShardError: an ``item_index`` of the first block is negative or >= ``num_items``.
    """
    for record in tf.data.TFRecordDataset(path).take(1):
        spec = {ITEM_INDEX: tf.io.FixedLenFeature([], tf.string)}
        index = tf.io.parse_tensor(tf.io.parse_single_example(record, spec)[ITEM_INDEX], tf.int64).numpy()
        if index.size and (index.min() < 0 or index.max() >= num_items):
            raise ShardError(
                f"shard {path!r} holds item_index {int(index.max() if index.max() >= num_items else index.min())}; the "
                f"items table beside it has {num_items} items (indices 0..{num_items - 1}): the items table belongs to "
                "another data set."
            )


def read_shards(
    pattern: str,
    features: FeatureConfig,
    batch_size: int,
    shuffle_buffer: int = 10000,
    seed: int | None = 0,
    num_workers: int = 1,
    worker_index=0,
    drop_remainder: bool = True,
    check: bool = True,
):
    """A tf.data pipeline of batch dicts read from TFRecord shards, like :func:`make_tf_dataset`'s.

    Each batch maps every feature of ``features`` (dense [B, width] float32, bag [B, max_len] padded
    strings, id and categorical [B] strings), ``item_index`` [B] int64 and ``reward`` [B] float32.
    One pass is one epoch over this worker's files; the file order and the blocks are reshuffled
    each pass. Rows are mixed at block level (a block keeps its written rows together, so writers
    shuffle rows before writing); batches are cut from the stream of blocks by ``rebatch``.

    Args:
      pattern: a glob of shard files (``DIR/*.tfrecord``), a shard directory or a list of files.
      features: the feature config the shards were written with.
      batch_size: rows per batch.
      shuffle_buffer: rows held for mixing, counted in whole blocks of ``ROWS_PER_RECORD`` rows
        (at least 2 blocks); several files are read at once. 0: no shuffling: this worker's files
        one after another, rows in written order.
      seed: the shuffling seed (None: a different shuffle per run, as a parameter-server worker wants).
      num_workers, worker_index: this worker reads files ``worker_index``, ``worker_index +
        num_workers``, ... of the sorted file list. ``worker_index`` may be a scalar tensor
        (``tf.distribute.coordinator.experimental_get_current_worker_index()`` inside a
        parameter-server ``dataset_fn``); then ``check`` covers every file.
      drop_remainder: full batches only (the estimator's notion of a step stays exact).
      check: parse the first record of every file of this worker now, so a wrong or damaged file
        fails with its name before training starts.
    Returns:
      A ``tf.data.Dataset`` of batch dicts.
    Raises:
      ShardError: no file matches, a worker gets no file, or a file is damaged (``check``).
      ValueError: a bad ``batch_size``, ``shuffle_buffer``, ``num_workers`` or ``worker_index``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be an integer >= 1; received {num_workers!r}.")
    static_index = not tf.is_tensor(worker_index)
    if static_index and not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, num_workers={num_workers}); received {worker_index}.")
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be >= 0; received {shuffle_buffer}.")
    files = shard_files(pattern)
    if len(files) < num_workers:
        raise ShardError(f"{len(files)} shard files match {pattern!r}; expected at least num_workers={num_workers}.")
    if check:
        for path in files[worker_index::num_workers] if static_index else files:
            check_shard(path, features)
    parse = _block_parser(features)
    names = tf.data.Dataset.from_tensor_slices(files).shard(num_workers, tf.cast(worker_index, tf.int64))
    if shuffle_buffer > 0:  # several files read at once, their blocks mixed in the buffer
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        records = names.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(4, len(files)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        blocks = max(2, -(-shuffle_buffer // ROWS_PER_RECORD))
        records = records.shuffle(blocks, seed=seed, reshuffle_each_iteration=True)
    else:  # the files one after another, rows in written order
        records = names.flat_map(tf.data.TFRecordDataset)
    blocks = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return blocks.rebatch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def shard_summary(pattern) -> dict:
    """The files of a pattern (or list) with their sizes: a cheap identity of the data for a run record."""
    files = shard_files(pattern)
    return {"pattern": pattern if isinstance(pattern, str) else "(list)", "files": [[os.path.basename(f), os.path.getsize(f)] for f in files]}


def count_rows(pattern) -> int:
    """The number of rows in the shards of ``pattern`` (reads every record's ``reward`` block once).

    Raises:
      ShardError: no file matches, or a file is damaged (the message names it).
    """
    spec = {REWARD: tf.io.FixedLenFeature([], tf.string)}

    def rows(record):
        return tf.shape(tf.io.parse_tensor(tf.io.parse_single_example(record, spec)[REWARD], tf.float32), out_type=tf.int64)[0]

    total = 0
    for path in shard_files(pattern):
        try:
            total += int(tf.data.TFRecordDataset(path).map(rows).reduce(np.int64(0), lambda n, r: n + r))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            raise ShardError(f"shard {path!r} is damaged: {str(error).splitlines()[0]}") from None
    return total
