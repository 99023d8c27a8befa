"""The frequency-source contract of the Keras 3 path: :class:`FrequencySource` and :class:`CallableFrequency`.

The same contract as the tf-keras base (:class:`yt_bias.core.frequency.FrequencySource`), method
for method, on any Keras 3 backend:

* ``estimand``: the scale of ``p`` (the vocabulary and default of :mod:`yt_bias.estimands`);
* :meth:`FrequencySource.update_and_probability`: one global step with the batch, then the batch's
  ``p`` (or ``p`` read before the step);
* :meth:`FrequencySource.log_q`: ``log p`` with the estimand's clip
  (:func:`yt_bias.estimands.log_q_bounds`), the one read the correction uses.

The streaming estimator and the oracle subclass it; :class:`yt_bias.keras3.CorrectedRetrieval`
is typed with it and calls :meth:`FrequencySource.log_q`, and wraps a plain callable ``ids -> p``
once in a :class:`CallableFrequency`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import keras
from keras import ops

from yt_bias.estimands import log_q_bounds
from yt_bias.source_contract import SourceContract

__all__ = ["CallableFrequency", "FrequencySource", "log_p"]


def log_p(probability, estimand: str):
    """``log p`` with p clipped to :func:`yt_bias.estimands.log_q_bounds` of ``estimand`` (float32).

    Args:
      probability: [n] probabilities on the scale of ``estimand`` (any float dtype).
      estimand: one of :data:`yt_bias.estimands.ESTIMANDS`.
    Returns:
      [n] float32, finite.
    """
    lower, upper = log_q_bounds(estimand)
    p = ops.cast(probability, "float32")
    return ops.log(ops.maximum(p, lower) if upper is None else ops.clip(p, lower, upper))


class FrequencySource(SourceContract, keras.layers.Layer, metaclass=abc.ABCMeta):
    """Base of every Keras 3 source of per-step sampling probabilities (the one contract the task uses).

    A subclass implements :meth:`probability` and, when its state moves with the stream,
    :meth:`update`. The estimand, the update-then-read order, the clipped ``log p`` and the Keras
    call are shared (the estimand, call and config with the tf-keras base, through
    :class:`yt_bias.source_contract.SourceContract`).

    Example::

        class Uniform(FrequencySource):
            def probability(self, item_ids):
                return keras.ops.full((keras.ops.shape(item_ids)[0],), 0.25)

        task = CorrectedRetrieval(frequency=Uniform(estimand="inclusion"), temperature=0.05)

    Args:
      estimand: the scale of ``p``: ``"expected_count"`` (default) or ``"inclusion"``
        (:mod:`yt_bias.estimands`).
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ...).
    Raises:
      ValueError: an ``estimand`` not in :data:`yt_bias.estimands.ESTIMANDS`.
    """

    @abc.abstractmethod
    def probability(self, item_ids):
        """The current ``p`` of each item, without updating.

        Args:
          item_ids: [n] or [n, 1] integer IDs.
        Returns:
          [n] float32 on the scale of ``estimand``.
        """

    def update(self, item_ids):
        """Consumes one batch as one step; the base keeps no state (exact tables): returns 0 (int32 scalar)."""
        return ops.convert_to_tensor(0, "int32")

    def update_and_probability(self, item_ids, read_after_update: bool = True):
        """One global step with the batch and the batch's ``p``, read after the update (default) or before it.

        Args:
          item_ids: [n] or [n, 1] integer IDs.
          read_after_update: read ``p`` after the step (it includes this batch) or before.
        Returns:
          [n] float32.
        """
        if read_after_update:
            self.update(item_ids)
            return self.probability(item_ids)
        probability = self.probability(item_ids)
        self.update(item_ids)
        return probability

    def log_q(self, item_ids, update: bool = False):
        """``log p`` of the items with the estimand's clip; with ``update`` the batch is one step first.

        Args:
          item_ids: [n] or [n, 1] integer IDs.
          update: consume the batch as one global step (training) before reading.
        Returns:
          [n] float32, finite.
        """
        return self.log_of(self.update_and_probability(item_ids) if update else self.probability(item_ids))

    def log_of(self, probability):
        """``log p`` of probabilities given on this source's scale, with its clip (:func:`log_p`)."""
        return log_p(probability, self.estimand)


class CallableFrequency(FrequencySource):
    """A read-only frequency source around a callable ``ids -> p`` (on the scale of ``estimand``).

    Args:
      read: ``read(ids [n]) -> [n]`` probabilities; never updated by training.
      estimand: the scale of what ``read`` returns (default: the default estimand).
    """

    def __init__(self, read: Callable, **kwargs):
        super().__init__(**kwargs)
        if not callable(read) or isinstance(read, keras.layers.Layer):
            raise TypeError(f"read must be a plain callable ids -> p; received {type(read).__name__}.")
        self.read = read

    def probability(self, item_ids):
        return ops.cast(ops.convert_to_tensor(self.read(item_ids)), "float32")

    def get_config(self) -> dict:
        raise NotImplementedError(
            "CorrectedRetrieval.get_config: a plain callable frequency source cannot be serialised; "
            "use a FrequencySource layer (StreamingFrequencyEstimator, OracleFrequency or your own subclass)."
        )
