"""The frequency-source contract: the estimands, :class:`FrequencySource`, ID handling and the TV error.

A frequency source gives the per-step sampling probability ``p_j`` that the logQ correction
subtracts (``s - log p_j``). Every source (the streaming estimator, the exact oracle, the
past-only tables of day-by-day training) subclasses :class:`FrequencySource`, and everything
that takes a source (the model, the negative samplers, ``CorrectedRetrieval``, the training
drivers) is typed with it and calls its methods, never probes for them:

* ``estimand``: the scale of ``p`` (:data:`ESTIMANDS`, default :data:`DEFAULT_ESTIMAND`; the
  vocabulary lives in :mod:`yt_bias.estimands`);
* :meth:`FrequencySource.update_and_probability`: one global step with the batch (once per global
  step under any tf.distribute strategy), then the batch's ``p`` (or ``p`` read before the step);
* :meth:`FrequencySource.log_q`: ``log p`` with the estimand's clip, the one read the losses use;
* :meth:`FrequencySource.start_of_day` / :meth:`FrequencySource.end_of_day`: the day-by-day
  hooks (no-ops unless a source keeps per-day tables).
"""

from __future__ import annotations

import abc

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.core.losses import log_probability
from yt_bias.estimands import DEFAULT_ESTIMAND, ESTIMANDS, check_estimand, max_probability
from yt_bias.source_contract import SourceContract

__all__ = [
    "DEFAULT_ESTIMAND",
    "ESTIMANDS",
    "FrequencySource",
    "as_string_ids",
    "check_estimand",
    "check_not_empty",
    "log_p",
    "total_variation_error",
]


def as_string_ids(item_ids: tf.Tensor, name: str = "item_ids") -> tf.Tensor:
    """Returns ``item_ids`` as a 1-D string tensor; integers are formatted in decimal."""
    if isinstance(item_ids, (list, tuple)) and len(item_ids) == 0:
        raise ValueError(f"{name} is empty: expected at least one item ID; received an empty {type(item_ids).__name__}.")
    item_ids = tf.convert_to_tensor(item_ids)
    if item_ids.shape.rank is not None and item_ids.shape.rank != 1:
        raise ValueError(f"{name} must be a 1-D tensor [batch_size]; received shape {item_ids.shape}.")
    if item_ids.dtype == tf.string:
        return item_ids
    if item_ids.dtype.is_integer:
        return tf.strings.as_string(item_ids)
    raise TypeError(f"{name} must be strings or integers; received dtype {item_ids.dtype.name}.")


def check_not_empty(item_ids: tf.Tensor, name: str = "item_ids") -> list:
    """Static or run-time checks that the batch is non-empty and has no empty-string ID."""
    if item_ids.shape.rank == 1 and item_ids.shape[0] == 0:
        raise ValueError(f"{name} is empty: expected at least one item ID per step; received shape {item_ids.shape}.")
    if tf.executing_eagerly():
        if int(tf.size(item_ids)) == 0:
            raise ValueError(f"{name} is empty: expected at least one item ID per step.")
        if bool(tf.reduce_any(tf.equal(item_ids, ""))):
            raise ValueError(f"{name} contains an empty string: every item needs a non-empty ID.")
        return []
    return [
        tf.debugging.assert_positive(tf.size(item_ids), message=f"{name} is empty: expected at least one item ID per step."),
        tf.debugging.assert_equal(
            tf.reduce_any(tf.equal(item_ids, "")), False, message=f"{name} contains an empty string: every item needs a non-empty ID."
        ),
    ]


def log_p(probability: tf.Tensor, estimand: str) -> tf.Tensor:
    """``log p`` of probabilities on the scale of ``estimand``, clipped so that it stays finite.

    ``p`` is floored at :data:`yt_bias.estimands.MIN_PROBABILITY` and, for an inclusion
    probability, capped at 1 (an expected count may exceed 1): the bounds of
    :func:`yt_bias.estimands.log_q_bounds`, applied by :func:`yt_bias.core.losses.log_probability`.

    Args:
      probability: [n] probabilities (any float dtype).
      estimand: one of :data:`ESTIMANDS`.
    Returns:
      [n] float32.
    """
    return log_probability(probability, max_probability(estimand))


class FrequencySource(SourceContract, keras.layers.Layer, metaclass=abc.ABCMeta):
    """Base of every source of per-step sampling probabilities (the one contract the model uses).

    A subclass implements :meth:`probability` and, when its state moves with the stream,
    :meth:`update` (the streaming estimator also overrides :meth:`update_and_probability` for its
    cross-replica update). Everything else is shared: the estimand, the update-then-read order,
    the clipped ``log p``, the per-day hooks and the Keras call (the estimand, call and config with
    the Keras 3 base, through :class:`yt_bias.source_contract.SourceContract`).

    Args:
      estimand: the scale of ``p``: ``"expected_count"`` (default; rows of the item per batch,
        pairs with one candidate column per row) or ``"inclusion"`` (P(item in batch) <= 1, pairs
        with one column per distinct item); see :mod:`yt_bias.estimands`.
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ...).

    Attributes:
      estimand: as given.
      uses_future: True for a source that reads rows before the model trains on them (an oracle).
      step: the global step variable of a source that counts steps (the streaming estimator);
        None for exact tables.
      num_shards: how many variables each array of the source's state is split into (1 unless a
        streaming estimator is sharded over parameter servers).

    Example:

    >>> from yt_bias.core.frequency import FrequencySource
    >>> import tensorflow as tf
    >>> class Uniform(FrequencySource):
    ...     def probability(self, item_ids):
    ...         return tf.fill(tf.shape(item_ids), 0.25)
    >>> source = Uniform(estimand="inclusion")
    >>> [round(float(x), 4) for x in source.log_q(tf.constant(["a", "b"]), update=True)]  # log 0.25
    [-1.3863, -1.3863]
    """

    uses_future: bool = False
    step: tf.Variable | None = None
    num_shards: int = 1

    @abc.abstractmethod
    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The current ``p`` of each item, without updating.

        Args:
          item_ids: [n] strings or integers.
        Returns:
          [n] float32 on the scale of ``estimand``.
        """

    def update(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Consumes one batch as one step; the base class keeps no state (exact tables): returns 0.

        Args:
          item_ids: [batch_size] the items of this step.
        Returns:
          The new global step (int64 scalar; 0 for a source without one).
        """
        return tf.constant(0, tf.int64)

    def update_and_probability(self, item_ids: tf.Tensor, read_after_update: bool = True) -> tf.Tensor:
        """One global step with the batch and the batch's ``p``, read after the update (default) or before it.

        The base class runs :meth:`update` once per call, ordered against the read; a source
        whose state is mirrored over replicas (the streaming estimator) overrides this with its
        once-per-global-step update.

        Args:
          item_ids: [batch_size] strings or integers.
          read_after_update: read ``p`` after the update (it includes this batch) or before.
        Returns:
          [batch_size] float32.
        """
        if read_after_update:
            with tf.control_dependencies([self.update(item_ids)]):
                return self.probability(item_ids)
        probability = self.probability(item_ids)
        with tf.control_dependencies([probability]):
            step = self.update(item_ids)
        with tf.control_dependencies([step]):
            return tf.identity(probability)

    def log_q(self, item_ids: tf.Tensor, update: bool = False, read_after_update: bool = True) -> tf.Tensor:
        """``log p`` of the items, clipped on the estimand's scale; with ``update`` the batch is one step first.

        The one read of the correction: the model's ``sampling_log_q`` and ``CorrectedRetrieval``
        both call it. ``update`` may be a scalar bool tensor (then both branches are traced).

        Args:
          item_ids: [batch_size] strings or integers.
          update: consume the batch as one global step (training) before (or after, see
            ``read_after_update``) reading.
          read_after_update: with ``update``, read after the step (default) or before it.
        Returns:
          [batch_size] float32, finite.
        """
        if isinstance(update, tf.Tensor):
            return tf.cond(
                update,
                lambda: self.log_q(item_ids, True, read_after_update),
                lambda: self.log_q(item_ids, False, read_after_update),
            )
        probability = self.update_and_probability(item_ids, read_after_update) if update else self.probability(item_ids)
        return self.log_of(probability)

    def log_of(self, probability: tf.Tensor) -> tf.Tensor:
        """``log p`` of probabilities given on this source's scale, with its clip (:func:`log_p`)."""
        return log_p(probability, self.estimand)

    def start_of_day(self, item_ids) -> None:
        """Day-by-day training calls this with the IDs of the day's rows before training on them (default: nothing)."""

    def end_of_day(self, item_ids) -> None:
        """Day-by-day training calls this with the IDs of the day's rows after training on them (default: nothing)."""


def total_variation_error(estimated: np.ndarray, true: np.ndarray, batch_size: int) -> float:
    """The paper's estimation error ``(1 / (2B)) * sum_i |p_hat_i - p_i|`` (section 6.1).

    Args:
      estimated: [num_items] estimated per-step probabilities.
      true: [num_items] true per-step probabilities.
      batch_size: B, which turns per-step probabilities back into a distribution over items.
    """
    estimated = np.asarray(estimated, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if estimated.shape != true.shape:
        raise ValueError(f"estimated and true must have one shape; received {estimated.shape} and {true.shape}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; received {batch_size!r}.")
    return float(np.abs(estimated - true).sum() / (2.0 * batch_size))
