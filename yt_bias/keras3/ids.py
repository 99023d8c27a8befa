"""Item IDs as the Keras 3 path takes them: a vector of integers, checked when it is traced."""

from __future__ import annotations

import keras
from keras import ops


def integer_ids(item_ids, name: str = "item_ids"):
    """``item_ids`` as an [n] int32 tensor.

    Accepts [n] or [n, 1] integer IDs (keras-rs passes candidate IDs as a column). An ID is read by
    its low 32 bits (see :mod:`yt_bias.keras3.hashing`).

    Raises:
      TypeError: strings or floats (hash string IDs in the input pipeline, docs/keras3.md).
      ValueError: another shape, or an empty batch.
    """
    ids = ops.convert_to_tensor(item_ids)
    dtype = keras.backend.standardize_dtype(ids.dtype)
    if "int" not in dtype:
        raise TypeError(
            f"{name} must be integers (hash string IDs to integers in the input pipeline, e.g. with "
            f"keras.layers.Hashing); received dtype {dtype}."
        )
    shape = tuple(ids.shape)
    if len(shape) == 2 and shape[1] == 1:
        ids = ops.reshape(ids, (-1,))
        shape = shape[:1]
    if len(shape) != 1:
        raise ValueError(f"{name} must be [batch_size] or [batch_size, 1]; received shape {tuple(item_ids.shape)}.")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: expected at least one item ID per step; received shape {shape}.")
    return ops.cast(ids, "int32")
