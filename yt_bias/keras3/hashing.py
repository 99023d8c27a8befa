"""Integer item IDs to hash buckets, the same on every Keras 3 backend (and in numpy).

The tf-keras estimator hashes strings with keyed SipHash (a TensorFlow kernel). The Keras 3
estimator takes integer IDs (string IDs are hashed to integers in the input pipeline, see
docs/keras3.md) and hashes them with 32-bit integer arithmetic that every backend computes
identically: the ID's low 32 bits, XOR a per-hash key, through MurmurHash3's 32-bit finaliser
(``fmix32``, a bijection with full avalanche), then the low 31 bits modulo ``hash_size``.

The arithmetic runs in int32 with wrap-around multiplication (what TensorFlow, XLA and numpy
do); the logical right shifts are arithmetic shifts with the sign bits masked off. JAX without
``jax_enable_x64`` has no int64, so IDs are read as int32: an integer ID is hashed by its low 32
bits (two IDs that differ only above bit 31 share all their buckets).
"""

from __future__ import annotations

import numpy as np
from keras import ops

_MASK32 = (1 << 32) - 1
# fmix32's multipliers as int32 (their uint32 bit patterns).
_M1 = np.int32(0x85EBCA6B - (1 << 32))
_M2 = np.int32(0xC2B2AE35 - (1 << 32))


def hash_keys(seed: int, num_hashes: int) -> list[int]:
    """One 32-bit key per hash function, as int32 values (SplitMix64 of ``seed`` and the hash index)."""
    keys = []
    for i in range(num_hashes):
        z = (seed * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
        z = (z ^ (z >> 31)) & _MASK32
        keys.append(z - (1 << 32) if z >= 1 << 31 else z)
    return keys


def _logical_shift(x, bits: int):
    return ops.bitwise_and(ops.right_shift(x, bits), np.int32((1 << (32 - bits)) - 1))


def bucket_ids(item_ids, keys: list[int], hash_size: int):
    """The bucket of each ID under each hash function.

    Args:
      item_ids: [n] int32 IDs (a backend tensor).
      keys: the hash functions' keys (:func:`hash_keys`).
      hash_size: H, the number of buckets.
    Returns:
      [len(keys), n] int32 buckets in [0, H).
    """
    rows = []
    for key in keys:
        h = ops.bitwise_xor(item_ids, np.int32(key))
        h = ops.bitwise_xor(h, _logical_shift(h, 16))
        h = ops.multiply(h, _M1)
        h = ops.bitwise_xor(h, _logical_shift(h, 13))
        h = ops.multiply(h, _M2)
        h = ops.bitwise_xor(h, _logical_shift(h, 16))
        rows.append(ops.mod(ops.bitwise_and(h, np.int32(0x7FFFFFFF)), np.int32(hash_size)))
    return ops.stack(rows, axis=0)

