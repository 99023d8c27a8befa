"""The half of the frequency-source contract that both Keras paths share, with no TensorFlow or Keras import.

The tf-keras sources (:mod:`yt_bias.core.frequency`) and the Keras 3 sources (:mod:`yt_bias.keras3`)
are layers of two different Keras versions, so they cannot share a base class; what does not
touch a tensor is written here once:

* :class:`SourceContract`: the ``estimand`` attribute (checked), the Keras ``call`` (a training
  call is one step, then a read) and ``get_config``, mixed into each path's ``FrequencySource``;
* :class:`StreamingArguments`: the streaming estimator's hyper-parameters, checked and kept, and
  their config, mixed into each path's ``StreamingFrequencyEstimator``;
* :func:`check_probability_table`: the checks of an oracle's table of exact probabilities;
* :func:`resolve_frequency`: what a retrieval task's ``frequency`` argument becomes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import numpy as np

from yt_bias.arguments import check_int, is_real
from yt_bias.estimands import DEFAULT_ESTIMAND, check_estimand, max_probability

__all__ = ["DEFAULT_HASH_SIZE", "SourceContract", "StreamingArguments", "check_probability_table", "resolve_frequency"]

# H of the streaming estimator a retrieval task builds when it is given no frequency source.
DEFAULT_HASH_SIZE = 1 << 16


class SourceContract:
    """Mixed into a Keras layer before the layer class: the estimand, the Keras call and the config.

    The layer class supplies ``probability(ids)`` and ``update_and_probability(ids)``.

    Args:
      estimand: the scale of ``p`` (:mod:`yt_bias.estimands`); checked.
      **kwargs: the layer's arguments (``name``, ...).
    Raises:
      ValueError: an ``estimand`` not in :data:`yt_bias.estimands.ESTIMANDS`.
    """

    def __init__(self, estimand: str = DEFAULT_ESTIMAND, **kwargs):
        super().__init__(**kwargs)
        self.estimand = check_estimand(estimand)

    def call(self, item_ids, training=None):
        """``training=True``: one global step with the batch, then its ``p``; otherwise a read."""
        if training:
            return self.update_and_probability(item_ids)
        return self.probability(item_ids)

    def get_config(self) -> dict:
        config = super().get_config()
        config["estimand"] = self.estimand
        return config


class StreamingArguments:
    """Mixed into a streaming estimator before its base: its hyper-parameters (Algorithms 2 and 3) and their config."""

    def keep_arguments(
        self,
        hash_size: int,
        num_hashes: int,
        alpha: float,
        initial_interval: float,
        seed: int,
        bias_correction: bool,
        *,
        max_hash_size: int | None,
        max_seed: int,
    ) -> None:
        """Checks the hyper-parameters and keeps them as attributes of the same names.

        Also sets ``_max_hits``: per-bucket update counts saturate there, once ``(1 - alpha)^n`` is
        negligible, so an int32 count never overflows.

        Raises:
          ValueError: an argument out of range (the message names it).
          TypeError: a ``bias_correction`` that is not a bool.
        """
        self.hash_size = check_int("hash_size", hash_size, 1, max_hash_size)
        self.num_hashes = check_int("num_hashes", num_hashes, 1)
        self.seed = check_int("seed", seed, 0, max_seed)
        if not (is_real(alpha) and 0.0 < float(alpha) <= 1.0):
            raise ValueError(f"alpha must be in (0, 1]; received {alpha!r}.")
        if not (is_real(initial_interval) and math.isfinite(float(initial_interval)) and float(initial_interval) > 0.0):
            raise ValueError(f"initial_interval must be finite and > 0; received {initial_interval!r}.")
        if not isinstance(bias_correction, (bool, np.bool_)):
            raise TypeError(f"bias_correction must be a bool; received {bias_correction!r}.")
        self.alpha = float(alpha)
        self.initial_interval = float(initial_interval)
        self.bias_correction = bool(bias_correction)
        self._max_hits = 1 if self.alpha >= 1.0 else int(min(2**31 - 2, math.ceil(-80.0 / math.log1p(-self.alpha))))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hash_size=self.hash_size,
            num_hashes=self.num_hashes,
            alpha=self.alpha,
            initial_interval=self.initial_interval,
            seed=self.seed,
            bias_correction=self.bias_correction,
        )
        return config


def check_probability_table(
    item_ids: Sequence, probabilities: Sequence[float], default_probability: float, estimand: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """An oracle's table, checked: ``(ids [n], probabilities [n] float32, default_probability)``.

    Args:
      item_ids: [n] distinct IDs.
      probabilities: [n] their values on the scale of ``estimand``: in (0, 1] for an inclusion
        probability, > 0 for an expected count.
      default_probability: the value of an ID not in the table, in the same range.
      estimand: one of :data:`yt_bias.estimands.ESTIMANDS`.
    Raises:
      ValueError: mismatched or empty arrays, repeated IDs, values out of range (the message names the field).
    """
    ids = np.asarray(item_ids)
    probs = np.asarray(probabilities, dtype=np.float32)
    if ids.ndim != 1 or probs.shape != ids.shape:
        raise ValueError(f"item_ids and probabilities must be 1-D of one length; received shapes {ids.shape} and {probs.shape}.")
    if ids.size == 0:
        raise ValueError("item_ids is empty: the oracle needs at least one item.")
    upper = max_probability(estimand) or np.inf
    bad = ~np.isfinite(probs) | (probs <= 0) | (probs > upper)
    if np.any(bad):
        expected = "(0, 1]" if upper == 1.0 else "(0, inf)"
        raise ValueError(
            f"probabilities must be finite and in {expected} for estimand={estimand!r}; "
            f"received {probs[bad][:5].tolist()} (for item_ids {ids[bad][:5].tolist()})."
        )
    if not (is_real(default_probability) and 0.0 < default_probability <= upper):
        raise ValueError(f"default_probability must be in (0, {upper}]; received {default_probability!r}.")
    names, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"item_ids must be unique (one probability per item); received {int((counts > 1).sum())} repeated, "
            f"e.g. {names[counts > 1][:5].tolist()}."
        )
    return ids, probs, float(default_probability)


def resolve_frequency(
    frequency,
    *,
    estimator: type,
    source: type,
    wrap: Callable,
    layer: type,
    deserialize: Callable[[dict], object],
):
    """The frequency source a retrieval task's ``frequency`` argument stands for.

    Args:
      frequency: ``None`` (an ``estimator`` with :data:`DEFAULT_HASH_SIZE`), a dict of the
        estimator's arguments (or a serialised layer, with ``"class_name"``), a ``source`` layer
        (taken as it is) or a plain callable ``ids -> p`` (given to ``wrap``).
      estimator: the path's streaming-estimator class.
      source: the path's ``FrequencySource`` base class.
      wrap: ``wrap(read, name=...)``, the path's read-only source around a callable.
      layer: the path's ``keras.layers.Layer`` (a layer that is not a ``source`` is refused).
      deserialize: turns a serialised layer dict back into a layer.
    Raises:
      TypeError: a ``frequency`` of another type, a layer that is not a ``source``.
      ValueError: a dict with an argument the estimator does not take.
    """
    if frequency is None:
        return estimator(DEFAULT_HASH_SIZE, name="frequency")
    if isinstance(frequency, dict):
        if "class_name" in frequency:  # a serialised layer (the task's get_config)
            return deserialize(frequency)
        accepted = set(inspect.signature(estimator.__init__).parameters) - {"self", "kwargs"}
        accepted |= {"name", "dtype", "trainable"}  # the base layer's arguments
        unknown = sorted(set(frequency) - accepted)
        if unknown:
            raise ValueError(
                f"frequency: unknown {estimator.__name__} argument(s) {unknown}; expected some of {sorted(accepted)}."
            )
        return estimator(**{"hash_size": DEFAULT_HASH_SIZE, "name": "frequency", **frequency})
    if isinstance(frequency, source):
        return frequency
    if callable(frequency) and not isinstance(frequency, layer):
        return wrap(frequency, name="frequency")
    raise TypeError(
        f"frequency must be None, a dict of {estimator.__name__} arguments, a FrequencySource layer "
        f"({estimator.__name__}, OracleFrequency, a subclass of {source.__module__}.{source.__name__}) "
        f"or a plain callable ids -> p; received {type(frequency).__name__}."
    )
