"""Any loaded data set (MovieLens, MIND, RecBole atomic files, CSV logs, synthetic) written as shards.

:func:`write_dataset_shards` writes a :class:`~yt_bias.data.dataset.RecDataset` in the layout of
:mod:`yt_bias.data.shards`: its training rows (in a random order: readers mix whole row blocks)
to ``out/part-*.tfrecord``, its test rows to ``out/test/part-*.tfrecord``, its items table and
feature config beside them, and a manifest (:mod:`yt_bias.data.manifest`: the folder is written
in a temporary folder and renamed into place when complete). ``yt-bias train --data-files 'out/*.tfrecord'`` and the
parameter-server cluster (``--data-files``) then read it from disk. The data set itself is
loaded in memory once, by its loader; converting makes the training and every later run stream.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from yt_bias.data.dataset import RecDataset
from yt_bias.data.manifest import DataFolderReport, DataFolderWriter, check_output_folder
from yt_bias.data.ranges import dense_ranges
from yt_bias.data.shards import ROWS_PER_RECORD, TEST_DIR, ShardWriter, write_items, write_rows

@dataclasses.dataclass
class ConversionReport(DataFolderReport):
    """What :func:`write_dataset_shards` wrote: the :class:`DataFolderReport` fields and the data set's name.

    Attributes:
      name: the data set's name.
    """

    name: str


def write_dataset_shards(
    dataset: RecDataset,
    out: str,
    rows_per_shard: int = 100_000,
    seed: int = 0,
    rows_per_record: int = ROWS_PER_RECORD,
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
) -> ConversionReport:
    """Writes ``dataset`` as training shards, test shards and its items table under ``out``.

    Args:
      dataset: a loaded data set.
      out: the output folder: new or empty (or, with ``overwrite``, a previous data folder,
        replaced whole); never a training run's workdir. Written in a temporary folder beside it
        and renamed into place when complete.
      rows_per_shard: rows per file.
      seed: the permutation of the training rows.
      rows_per_record: rows per record (row block).
      overwrite: replace a previous data folder at ``out``.
      source: what the manifest records as the data's origin (e.g. the data config); the data
        set's name by default.
    Returns:
      A :class:`ConversionReport`.
    Raises:
      ValueError: a size below 1 or a negative seed.
      DataFolderError: ``out`` may not be written.
    """
    check_output_folder(out, overwrite)
    for name, value, low in (("rows_per_shard", rows_per_shard, 1), ("rows_per_record", rows_per_record, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; received {value!r}.")
    settings = {"converter": "yt_bias.data.convert.write_dataset_shards", "name": dataset.name, **dict(source or {})}
    settings.update(rows_per_shard=rows_per_shard, seed=seed, rows_per_record=rows_per_record)
    train = dataset.examples("train")
    test = dataset.examples("test")
    with DataFolderWriter(out, overwrite) as folder:
        write_items(folder.path, dataset.features, dataset.items)
        splits = {}
        with ShardWriter(folder.path, rows_per_shard, rows_per_record=rows_per_record) as writer:
            write_rows(writer, train, shuffle_seed=seed)
        splits["train"] = writer.file_rows
        if dataset.num_test:
            with ShardWriter(os.path.join(folder.path, TEST_DIR), rows_per_shard, rows_per_record=rows_per_record) as writer:
                write_rows(writer, test)
            splits["test"] = writer.file_rows
        manifest = folder.commit(dataset.features, splits, settings, dense_ranges(train, dataset.features.query))
    return ConversionReport.of_folder(out, manifest, name=dataset.name)
