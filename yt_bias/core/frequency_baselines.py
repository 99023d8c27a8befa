"""Exact-count frequency sources for day-by-day training, beside the streaming estimator.

Each source is a :class:`~yt_bias.core.frequency.FrequencySource` whose per-day hooks matter:
the day-by-day driver calls ``start_of_day(ids)`` before a day's training and ``end_of_day(ids)``
after it, each with the item IDs of all that day's rows. Their probabilities are constant within a day (``update`` is a
no-op), read from a table of exact counts turned into per-batch probabilities by
:func:`yt_bias.data.dataset.batch_frequencies` on the scale the ``estimand`` names
(``inclusion``: P(item in a batch); ``expected_count``: rows of the item per batch):

* :class:`FrozenFrequency`: the counts of day 0, never updated afterwards (past only).
* :class:`CumulativeFrequency`: the counts of every past day pooled (past only).
* :class:`PreviousDayFrequency`: the counts of yesterday (past only).
* :class:`CurrentDayOracle`: the counts of the day being trained on. An oracle: it reads the
  day before training on it (``uses_future = True``).
* :class:`FixedTableFrequency`: one table given up front, e.g. the counts of every day of the
  stream (an oracle that knows the future when built from days not yet trained on).

Before their first table (day 0 of a past-only source) every item reads
``initial_probability`` (default 1/100, what a streaming estimator with ``B0 = 100`` reads for an
unseen item). Afterwards an item missing from the table (a new item, one not seen in the
window) reads the probability of ``min_count`` rows in the window, not 0, so its ``log p`` stays
finite. IDs are strings or integers (integers are compared in decimal), never a fixed vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yt_bias._keras import tf
from yt_bias.core.frequency import FrequencySource
from yt_bias.core.frequency.source import as_string_ids
from yt_bias.data.dataset import batch_frequencies
from yt_bias.estimands import DEFAULT_ESTIMAND

__all__ = [
    "CumulativeFrequency",
    "CurrentDayOracle",
    "FixedTableFrequency",
    "FrozenFrequency",
    "PreviousDayFrequency",
    "TableFrequency",
    "count_ids",
]

def count_ids(item_ids: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Distinct IDs (as decimal strings for integers) and how often each occurs: ([k] str, [k] int64)."""
    ids = np.asarray(item_ids)
    if ids.ndim != 1:
        raise ValueError(f"item_ids must be 1-D [num_rows]; received shape {ids.shape}.")
    unique, counts = np.unique(ids.astype(str), return_counts=True)
    return unique, counts.astype(np.int64)


class TableFrequency(FrequencySource):
    """A frequency source read from a table of exact counts, replaced by the per-day hooks.

    Subclasses decide which rows the table counts (:meth:`start_of_day`, :meth:`end_of_day`).
    The table and the counts behind it are ``tf.lookup.experimental.MutableHashTable``s and the
    default a variable, so a ``tf.train.Checkpoint`` of the owning model carries them.

    Args:
      batch_size: B, the rows per training step (the scale of the probabilities).
      estimand: ``"expected_count"`` (default) or ``"inclusion"`` (see :func:`~yt_bias.data.dataset.batch_frequencies`).
      initial_probability: what every item reads before the first table, in (0, 1].
      min_count: the pseudo-count of an item missing from the table, > 0.
    """

    def __init__(
        self,
        batch_size: int,
        estimand: str = DEFAULT_ESTIMAND,
        initial_probability: float = 0.01,
        min_count: float = 1.0,
        **kwargs,
    ):
        super().__init__(estimand=estimand, **kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
        if not 0.0 < float(initial_probability) <= 1.0:
            raise ValueError(f"initial_probability must be in (0, 1]; received {initial_probability!r}.")
        if not float(min_count) > 0.0:
            raise ValueError(f"min_count must be > 0; received {min_count!r}.")
        self.batch_size = int(batch_size)
        self.initial_probability = float(initial_probability)
        self.min_count = float(min_count)
        self._probabilities = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, default_value=-1.0)
        self._counts = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)
        self.num_rows = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_rows")
        self.default_probability = tf.Variable(self.initial_probability, dtype=tf.float32, trainable=False,
                                               name="default_probability")

    # ------------------------------------------------------------------ the source's read
    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The table's per-batch probability of each item; the default for items not in it.

        The table does not move within a day (``update`` is the base class's no-op).

        Args:
          item_ids: [batch_size] strings or integers.
        Returns:
          [batch_size] float32.
        """
        found = self._probabilities.lookup(as_string_ids(item_ids))
        return tf.where(found < 0.0, self.default_probability, found)

    # ------------------------------------------------------------------ the table
    def counts(self) -> dict[str, int]:
        """The counts behind the current table: ``{id: rows}``."""
        keys, values = self._counts.export()
        return dict(zip(keys.numpy().astype(str).tolist(), values.numpy().tolist()))

    def set_counts(self, ids: Sequence, counts: Sequence[int]) -> None:
        """Replaces the table by the probabilities of ``counts`` rows of ``ids`` out of their sum.

        Args:
          ids: [k] distinct item IDs.
          counts: [k] rows of each (>= 1 each).
        """
        ids = np.asarray(ids).astype(str)
        counts = np.asarray(counts, dtype=np.int64)
        if ids.ndim != 1 or counts.shape != ids.shape or ids.size == 0:
            raise ValueError(f"ids and counts must be 1-D, non-empty, of one length; received {ids.shape}, {counts.shape}.")
        if counts.min() < 1:
            raise ValueError(f"counts must be >= 1 (list only items seen); received a minimum of {counts.min()}.")
        total = int(counts.sum())
        probs = batch_frequencies(counts, self.batch_size, self.estimand)
        pseudo = min(self.min_count, total)
        default = batch_frequencies(np.array([pseudo, total - pseudo]), self.batch_size, self.estimand)[0]
        for table in (self._probabilities, self._counts):
            old, _ = table.export()
            table.remove(old)
        self._counts.insert(tf.constant(ids), tf.constant(counts))
        self._probabilities.insert(tf.constant(ids), tf.constant(probs, tf.float32))
        self.num_rows.assign(total)
        self.default_probability.assign(float(default))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(batch_size=self.batch_size, initial_probability=self.initial_probability, min_count=self.min_count)
        return config


class FrozenFrequency(TableFrequency):
    """The counts of the first day, frozen: later days never change the table (past only)."""

    def end_of_day(self, item_ids: Sequence) -> None:
        if int(self.num_rows.numpy()) == 0:
            self.set_counts(*count_ids(item_ids))


class CumulativeFrequency(TableFrequency):
    """The counts of every day seen so far, pooled (past only)."""

    def end_of_day(self, item_ids: Sequence) -> None:
        ids, counts = count_ids(item_ids)
        before = self._counts.lookup(tf.constant(ids)).numpy()
        merged = self.counts()
        merged.update(zip(ids.tolist(), (before + counts).tolist()))
        self.set_counts(np.array(list(merged)), np.array(list(merged.values())))


class PreviousDayFrequency(TableFrequency):
    """The counts of the previous day only (past only)."""

    def end_of_day(self, item_ids: Sequence) -> None:
        self.set_counts(*count_ids(item_ids))


class CurrentDayOracle(TableFrequency):
    """The exact counts of the day being trained on: an oracle that reads the day before training."""

    uses_future = True

    def start_of_day(self, item_ids: Sequence) -> None:
        self.set_counts(*count_ids(item_ids))


class FixedTableFrequency(TableFrequency):
    """One table of counts given up front and never changed.

    Built from all the days of a stream it knows days not yet trained on: pass
    ``uses_future=True`` so that reports label it an oracle.

    Args:
      item_ids: [num_rows] the item ID of every row the table counts.
      batch_size, estimand, min_count: as :class:`TableFrequency`.
      uses_future: whether the rows include days not yet trained on.
    """

    def __init__(self, item_ids: Sequence, batch_size: int, estimand: str = DEFAULT_ESTIMAND, min_count: float = 1.0,
                 uses_future: bool = True, **kwargs):
        super().__init__(batch_size, estimand=estimand, min_count=min_count, **kwargs)
        self.uses_future = bool(uses_future)
        self._item_ids = np.asarray(item_ids).astype(str)
        self.set_counts(*count_ids(self._item_ids))

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("initial_probability")
        config.update(item_ids=self._item_ids.tolist(), uses_future=self.uses_future)
        return config
