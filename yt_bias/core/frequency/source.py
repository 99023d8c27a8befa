"""What every frequency source shares: the estimands, the protocol, ID handling and the TV error.

A frequency source gives the per-step sampling probability ``p_j`` that the logQ correction
subtracts (``s - log p_j``); :class:`FrequencySource` is the protocol that the streaming estimator
and the exact oracle both follow.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from yt_bias._keras import tf


def is_real(value) -> bool:
    """A real number (int or float, numpy included), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> None:
    """Raises ValueError naming ``name`` unless ``value`` is an integer in [minimum, maximum]."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"{name} must be {bound}; received {value!r}.")


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


ESTIMANDS = ("inclusion", "expected_count")


def check_estimand(estimand: str) -> str:
    """Returns ``estimand`` if it is one of :data:`ESTIMANDS`; raises ValueError otherwise."""
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {list(ESTIMANDS)}; received {estimand!r}.")
    return estimand


@runtime_checkable
class FrequencySource(Protocol):
    """What the model and the losses need from a source of sampling probabilities.

    ``estimand`` says what ``probability`` returns: ``"inclusion"``, the probability that an item
    is in a batch (at most 1), or ``"expected_count"``, its expected number of rows in a batch
    (may exceed 1). ``update(ids)`` consumes one global step (a no-op for exact tables).
    """

    estimand: str

    def update(self, item_ids: tf.Tensor) -> tf.Tensor: ...

    def probability(self, item_ids: tf.Tensor) -> tf.Tensor: ...


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
