"""Checks of Python arguments shared by the tf-keras and Keras 3 layers (no TensorFlow or Keras import)."""

from __future__ import annotations

import numpy as np


def is_real(value) -> bool:
    """A real number (int or float, numpy included), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int; raises ValueError naming ``name`` unless it is an integer in [minimum, maximum]."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"{name} must be {bound}; received {value!r}.")
    return int(value)
