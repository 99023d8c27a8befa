"""Exact sampling probabilities from a table (the paper's oracle baseline), as a Keras 3 layer."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from yt_bias.estimands import DEFAULT_ESTIMAND
from yt_bias.keras3.ids import integer_ids
from yt_bias.keras3.source import FrequencySource
from yt_bias.source_contract import check_probability_table


@keras.saving.register_keras_serializable(package="yt_bias")
class OracleFrequency(FrequencySource):
    """Known per-step sampling probabilities of integer item IDs; the stream does not change them.

    A :class:`yt_bias.keras3.source.FrequencySource` whose ``update`` is the base's no-op.

    Args:
      item_ids: [num_items] distinct integer IDs (int32 range).
      probabilities: [num_items] their values on the scale of ``estimand``: inclusion
        probabilities in (0, 1], or expected counts per batch (> 0).
      default_probability: returned for IDs not in the table.
      estimand: ``"expected_count"`` (default, as every source) or ``"inclusion"``.
    Raises:
      ValueError: mismatched or empty arrays, repeated IDs, probabilities out of range
        (:func:`yt_bias.source_contract.check_probability_table`), IDs outside the int32 range.
    """

    def __init__(
        self,
        item_ids: Sequence[int],
        probabilities: Sequence[float],
        default_probability: float = 1e-6,
        estimand: str = DEFAULT_ESTIMAND,
        **kwargs,
    ):
        super().__init__(estimand=estimand, **kwargs)
        ids, probs, self.default_probability = check_probability_table(item_ids, probabilities, default_probability, estimand)
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < -(2**31) or ids.max() >= 2**31:
            raise ValueError(f"item_ids must be integers in the int32 range; received dtype {ids.dtype}.")
        order = np.argsort(ids)
        self._ids = ids[order].astype(np.int32)
        self._probs = probs[order]
        self.built = True

    def probability(self, item_ids):
        """[n] float32 probabilities of [n] (or [n, 1]) integer IDs."""
        ids = integer_ids(item_ids)
        table = ops.convert_to_tensor(self._ids)
        position = ops.minimum(ops.cast(ops.searchsorted(table, ids), "int32"), len(self._ids) - 1)
        found = ops.equal(ops.take(table, position), ids)
        return ops.where(found, ops.take(ops.convert_to_tensor(self._probs), position), np.float32(self.default_probability))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(item_ids=self._ids.tolist(), probabilities=self._probs.tolist(),
                      default_probability=self.default_probability)
        return config
