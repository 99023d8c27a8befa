"""Exact sampling probabilities from a table: the paper's oracle baseline."""

from __future__ import annotations

from collections.abc import Sequence

from yt_bias._keras import tf
from yt_bias.core.frequency.source import FrequencySource, as_string_ids
from yt_bias.estimands import DEFAULT_ESTIMAND
from yt_bias.source_contract import check_probability_table


class OracleFrequency(FrequencySource):
    """Exact per-step sampling probabilities from a table (the paper's "oracle" baseline).

    Args:
      item_ids: [num_items] the IDs with a known probability (strings or integers).
      probabilities: [num_items] their exact values on the scale of ``estimand``: inclusion
        probabilities in (0, 1], or expected counts per batch (> 0, may exceed 1).
      default_probability: returned for IDs not in the table.
      estimand: ``"expected_count"`` (default) or ``"inclusion"``.

    Example:

    >>> from yt_bias.core.frequency import OracleFrequency
    >>> import tensorflow as tf
    >>> oracle = OracleFrequency(["a", "b"], [2.0, 0.5], estimand="expected_count")
    >>> oracle(tf.constant(["b", "a", "z"])).numpy().tolist()  # "z" is not in the table
    [0.5, 2.0, 9.999999974752427e-07]
    >>> OracleFrequency.from_config(oracle.get_config()).probability(tf.constant(["a"])).numpy().tolist()
    [2.0]
    """

    def __init__(
        self,
        item_ids: Sequence,
        probabilities: Sequence[float],
        default_probability: float = 1e-6,
        estimand: str = DEFAULT_ESTIMAND,
        **kwargs,
    ):
        super().__init__(estimand=estimand, **kwargs)
        ids, probs, self.default_probability = check_probability_table(item_ids, probabilities, default_probability, estimand)
        self._ids = [str(i) for i in ids.tolist()]
        self._probs = probs.tolist()
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self._ids), tf.constant(self._probs, tf.float32)),
            default_value=self.default_probability,
        )

    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The table's exact ``p`` of each item ([n] float32); exact tables do not move with the stream."""
        return self._table.lookup(as_string_ids(item_ids))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            item_ids=self._ids,
            probabilities=self._probs,
            default_probability=self.default_probability,
        )
        return config
