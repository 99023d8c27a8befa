"""Reading and writing a few entries of a large Keras 3 variable, in O(entries) on every backend.

The streaming estimator touches ``batch_size`` buckets of its flat ``num_hashes * hash_size``
arrays per step; a step must not copy the arrays. How to avoid the copy depends on the backend:

* TensorFlow (outside a stateless scope, which is how Keras 3's TensorFlow trainer runs): the
  ``tf.Variable`` behind the Keras variable is gathered (``ResourceGather``) and scattered
  (``ResourceScatterUpdate``) in place, also inside an XLA-compiled step. Reading the whole variable first (``ops.take(variable, ...)``)
  would pin its buffer and make the next in-place scatter copy it.
* JAX (and any stateless scope): arrays are immutable, so a write is ``x.at[indices].set(v)``
  on the scope's current value, recorded with ``variable.assign``. Keras 3's JAX trainer donates
  the state to its jitted train step, so XLA performs the scatter in place; an eager call outside
  ``jit`` copies the array once per write.
* Any other backend: ``keras.ops`` gather and scatter on the current value (correct; untested
  for speed).
"""

from __future__ import annotations

import keras
from keras import ops
from keras.src.backend import in_stateless_scope  # (no public alias in keras 3.15)


def _tensorflow_variable(variable: keras.Variable):
    """The ``tf.Variable`` behind ``variable`` when it can be updated in place, else None."""
    if keras.backend.backend() != "tensorflow" or in_stateless_scope():
        return None
    return variable.value


def gather(variable: keras.Variable, indices):
    """``variable[indices]`` of a 1-D variable.

    Args:
      variable: a [size] Keras variable.
      indices: [n] int32 indices.
    Returns:
      [n] values.
    """
    resource = _tensorflow_variable(variable)
    if resource is not None:
        import tensorflow as tf

        return tf.gather(resource, indices)  # ResourceGather: compiles with XLA, reads n entries
    return ops.take(variable.value, indices)


def scatter(variable: keras.Variable, indices, values) -> None:
    """Sets ``variable[indices] = values``; repeated indices must carry equal values.

    Args:
      variable: a [size] Keras variable.
      indices: [n] int32 indices (repeats allowed).
      values: [n] new values, equal wherever ``indices`` repeats (so the result does not depend on
        the order in which a backend applies repeated writes).
    """
    resource = _tensorflow_variable(variable)
    if resource is not None:
        import tensorflow as tf

        resource.scatter_update(tf.IndexedSlices(values, indices))
        return
    if keras.backend.backend() == "jax":
        variable.assign(variable.value.at[indices].set(values))
        return
    variable.assign(ops.scatter_update(variable.value, indices[:, None], values))
