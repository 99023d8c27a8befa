"""Any loaded data set (MovieLens, MIND, RecBole atomic files, CSV logs, synthetic) written as shards.

:func:`write_dataset_shards` writes a :class:`~yt_bias.data.dataset.RecDataset` in the layout of
:mod:`yt_bias.data.shards`: its training rows (in a random order: readers mix whole row blocks)
to ``out/part-*.tfrecord``, its test rows to ``out/test/part-*.tfrecord``, its items table and
feature config beside them. ``yt-bias train --data-files 'out/*.tfrecord'`` and the
parameter-server cluster (``--data-files``) then read it from disk. The data set itself is
loaded in memory once, by its loader; converting makes the training and every later run stream.
"""

from __future__ import annotations

import dataclasses
import os

from yt_bias.data.dataset import RecDataset
from yt_bias.data.shards import ROWS_PER_RECORD, write_items, write_shards

TEST_DIR = "test"


@dataclasses.dataclass
class ConversionReport:
    """What :func:`write_dataset_shards` wrote.

    Attributes:
      name: the data set's name.
      num_items: rows of the items table.
      num_train, num_test: rows written to the training and test shards.
      train_files, test_files: the shard paths.
    """

    name: str
    num_items: int
    num_train: int
    num_test: int
    train_files: list[str]
    test_files: list[str]


def write_dataset_shards(
    dataset: RecDataset, out: str, rows_per_shard: int = 100_000, seed: int = 0, rows_per_record: int = ROWS_PER_RECORD
) -> ConversionReport:
    """Writes ``dataset`` as training shards, test shards and its items table under ``out``.

    Args:
      dataset: a loaded data set.
      out: an empty (or new) directory.
      rows_per_shard: rows per file.
      seed: the permutation of the training rows.
      rows_per_record: rows per record (row block).
    Returns:
      A :class:`ConversionReport`.
    Raises:
      ValueError: ``out`` already holds shards, or a size below 1.
    """
    train = dataset.examples("train")
    test = dataset.examples("test")
    write_items(out, dataset.features, dataset.items)
    train_files = write_shards(train, out, rows_per_shard, rows_per_record=rows_per_record, shuffle_seed=seed)
    test_files = (
        write_shards(test, os.path.join(out, TEST_DIR), rows_per_shard, rows_per_record=rows_per_record)
        if dataset.num_test
        else []
    )
    return ConversionReport(
        name=dataset.name,
        num_items=dataset.num_items,
        num_train=len(next(iter(train.values()))),
        num_test=len(next(iter(test.values()))) if dataset.num_test else 0,
        train_files=train_files,
        test_files=test_files,
    )
