"""Any loaded data set (MovieLens, MIND, RecBole atomic files, CSV logs, synthetic) written as shards.

:func:`write_dataset_shards` writes a :class:`~yt_bias.data.dataset.RecDataset` in the layout of
:mod:`yt_bias.data.shards`: its training rows (in a random order: readers mix whole row blocks)
to ``out/part-*.tfrecord``, its test rows to ``out/test/part-*.tfrecord``, its items table and
feature config beside them, and a manifest (:mod:`yt_bias.data.manifest`: the folder is written
in a temporary folder and renamed into place when complete). ``yt-bias train --data-files 'out/*.tfrecord'`` and the
parameter-server cluster (``--data-files``) then read it from disk. The data set itself is
loaded in memory once, by its loader; converting makes the training and every later run stream.
:class:`DataFolderReport` is what a writer of a data folder (this one or the synthetic generator of
:mod:`yt_bias.data.synthetic_shards`) returns, read off the folder's manifest.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar

from yt_bias.data.dataset import RecDataset
from yt_bias.data.manifest import DataFolderWriter, check_output_folder, split_files
from yt_bias.data.ranges import dense_ranges
from yt_bias.data.shards import ROWS_PER_RECORD, TEST_DIR, ShardWriter, write_items, write_rows

_Report = TypeVar("_Report", bound="DataFolderReport")


@dataclasses.dataclass
class DataFolderReport:
    """What a writer put into a data folder, as the folder's manifest records it.

    Attributes:
      num_items: rows of the items table.
      num_train, num_test: rows written to the training and test shards.
      train_files, test_files: the shard paths.
      manifest: the data folder's manifest.
    """

    num_items: int
    num_train: int
    num_test: int
    train_files: list[str]
    test_files: list[str]
    manifest: dict

    @classmethod
    def of_folder(cls: type[_Report], out: str, manifest: dict, **fields: Any) -> _Report:
        """The report of the data folder ``out`` written with ``manifest``; ``fields`` are a subclass's own."""
        splits = manifest["splits"]
        return cls(
            num_items=manifest["items"]["rows"],
            num_train=splits["train"]["rows"],
            num_test=splits.get("test", {}).get("rows", 0),
            train_files=split_files(out, manifest, "train"),
            test_files=split_files(out, manifest, "test"),
            manifest=manifest,
            **fields,
        )


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
