"""Exact sampling probabilities from a table (the paper's oracle baseline), as a Keras 3 layer."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from yt_bias.estimands import DEFAULT_ESTIMAND, max_probability
from yt_bias.keras3.ids import integer_ids
from yt_bias.keras3.source import FrequencySource


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
      ValueError: mismatched or empty arrays, repeated IDs, probabilities out of range.
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
        ids = np.asarray(item_ids)
        probs = np.asarray(probabilities, dtype=np.float32)
        if ids.ndim != 1 or probs.shape != ids.shape:
            raise ValueError(f"item_ids and probabilities must be 1-D of one length; received shapes {ids.shape} and {probs.shape}.")
        if ids.size == 0:
            raise ValueError("item_ids is empty: the oracle needs at least one item.")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < -(2**31) or ids.max() >= 2**31:
            raise ValueError(f"item_ids must be integers in the int32 range; received dtype {ids.dtype}.")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("item_ids must be distinct; received repeated IDs.")
        upper = max_probability(self.estimand) or np.inf
        bad = ~np.isfinite(probs) | (probs <= 0) | (probs > upper)
        if np.any(bad):
            raise ValueError(
                f"probabilities must be finite and in (0, {upper}] for estimand={self.estimand!r}; "
                f"received {probs[bad][:5].tolist()} (for item_ids {ids[bad][:5].tolist()})."
            )
        if not (isinstance(default_probability, (int, float)) and 0.0 < default_probability <= upper):
            raise ValueError(f"default_probability must be in (0, {upper}]; received {default_probability!r}.")
        order = np.argsort(ids)
        self._ids = ids[order].astype(np.int32)
        self._probs = probs[order]
        self.default_probability = float(default_probability)
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
