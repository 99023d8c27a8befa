"""The estimands of a frequency source, written once, with no TensorFlow or Keras import.

A frequency source reports ``p_j`` on one of two scales, its *estimand*:

* ``"expected_count"`` (the default everywhere): the expected number of rows of item j in a
  batch, ``B * c_j / n``. It may exceed 1. It pairs with ``model.candidates="rows"`` (each row of
  the batch is a candidate column, so an item with c rows has c columns).
* ``"inclusion"``: the probability that item j appears in a batch at all, at most 1. It pairs
  with ``model.candidates="unique"`` (one column per distinct item).

Both the tf-keras and the Keras 3 code read ``log p`` through :func:`log_q_bounds`, so the clip
that keeps ``log p`` finite is decided here and only here.
"""

from __future__ import annotations

ESTIMANDS: tuple[str, ...] = ("expected_count", "inclusion")
DEFAULT_ESTIMAND = "expected_count"

# The candidate layout each estimand is consistent with (see the module docstring).
PAIRED_CANDIDATES: dict[str, str] = {"expected_count": "rows", "inclusion": "unique"}

# p below this is read as this, so an unseen item gives a large but finite correction.
MIN_PROBABILITY = 1e-12


def check_estimand(estimand: str, field: str = "estimand") -> str:
    """Returns ``estimand`` if it is one of :data:`ESTIMANDS`; raises ValueError naming ``field`` otherwise."""
    if not isinstance(estimand, str) or estimand not in ESTIMANDS:
        raise ValueError(f"{field} must be one of {list(ESTIMANDS)}; received {estimand!r}.")
    return estimand


def max_probability(estimand: str) -> float | None:
    """The upper clip of p for ``estimand``: 1 for an inclusion probability, none for an expected count."""
    return 1.0 if check_estimand(estimand) == "inclusion" else None


def log_q_bounds(estimand: str) -> tuple[float, float | None]:
    """``(lower, upper)`` clip of p before ``log p`` for ``estimand`` (``upper`` None: no upper clip)."""
    return MIN_PROBABILITY, max_probability(estimand)
