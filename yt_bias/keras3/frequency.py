"""The paper's streaming frequency estimator (Algorithms 2 and 3) as a Keras 3 layer, any backend.

The arithmetic is that of the tf-keras estimator (:mod:`yt_bias.core.frequency.streaming`), step
for step: for each of ``num_hashes`` hash functions h_i, ``A_i`` holds the global step at which a
bucket was last hit and ``B_i`` a moving average of the gaps between hits; ``p = 1 / max_i
B_i[h_i(id)]``. Both estimands (:mod:`yt_bias.estimands`):

* ``"expected_count"``: a bucket hit by ``c`` rows at step ``t``, last hit at ``A``, takes ``c``
  moving-average steps of ``(t - A) / c``: ``B <- (1 - alpha)^c B + (1 - (1 - alpha)^c) (t - A) / c``
  (Algorithm 2's update when ``c = 1``); ``p`` is the expected number of rows of the item per batch.
* ``"inclusion"``: each bucket hit in the step is updated once, ``B <- (1 - alpha) B + alpha (t - A)``;
  ``p`` is the probability that the item is in a batch (``B`` floored at 1).

``bias_correction=True`` reads ``(B - (1 - alpha)^n B0) / (1 - (1 - alpha)^n)`` with ``n`` a
per-bucket count of updates, and a bucket's first sighting only sets ``A``.

How a step runs on a Keras 3 backend, with static shapes: the batch's buckets are sorted once per
hash and the length of each run of equal buckets is the count of rows sharing a bucket (O(B log B));
each row then computes its bucket's new values, so rows that share a bucket (duplicate IDs, or
different IDs that collide) compute and write identical values, and the result does not depend
on the order of the scatter. The arrays are read and written only at the batch's buckets
(:mod:`yt_bias.keras3.variables`): no temporary of size ``hash_size``.

Differences from the tf-keras estimator: integer IDs hashed with :mod:`yt_bias.keras3.hashing`
(not SipHash of strings), so the buckets differ, while the update from the same buckets is the
same; the step counter and ``A`` are int32 (2^31 - 1 steps); no sharding across parameter servers.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from yt_bias.estimands import DEFAULT_ESTIMAND
from yt_bias.keras3.hashing import bucket_ids, hash_keys
from yt_bias.keras3.ids import integer_ids
from yt_bias.keras3.source import FrequencySource
from yt_bias.keras3.variables import gather, scatter
from yt_bias.source_contract import StreamingArguments

_MIN_INTERVAL = 1e-6
MAX_SEED = (1 << 31) - 1


def sharing_counts(buckets):
    """For each entry of [n] ``buckets``, how many entries of ``buckets`` equal it ([n] int32, O(n log n)).

    One sort, then the length of each run of equal values, put back in the input's order. Not
    ``searchsorted``: TensorFlow's XLA lowering of it compares every pair ([n, n] memory: 69 GB
    at n = 65536 under ``jit_compile=True``).
    """
    n = ops.shape(buckets)[0]  # a tensor when the batch size is traced as unknown (TensorFlow)
    ones = ops.ones_like(buckets, dtype="int32")
    order = ops.argsort(buckets)
    ordered = ops.take(buckets, order)
    starts = ops.concatenate([ones[:1], ops.cast(ops.not_equal(ordered[1:], ordered[:-1]), "int32")])
    run = ops.cumsum(starts) - 1  # the run of each sorted entry
    sizes = ops.segment_sum(ones, run, num_segments=n)
    return ops.scatter(order[:, None], ops.take(sizes, run), (n,))


@keras.saving.register_keras_serializable(package="yt_bias")
class StreamingFrequencyEstimator(StreamingArguments, FrequencySource):
    """Streaming estimate of each item's per-step sampling probability (Algorithms 2 and 3).

    ``p = estimator(ids, training=True)`` consumes the batch as one global step and returns the
    batch's probabilities (read after the update); ``training=False`` only reads. The state is
    non-trainable ``keras.Variable``s, so ``model.save("m.keras")`` keeps it and ``fit`` updates it
    (on JAX inside the jitted, stateless train step). Call the layer from the model's ``call`` or
    ``compute_loss``; both carry variable updates in Keras 3's trainers.

    A :class:`yt_bias.keras3.source.FrequencySource`: ``estimand``, ``update(ids)``,
    ``probability(ids)``, ``update_and_probability(ids)`` and ``log_q(ids, update=False)``, the
    clipped ``log p`` that the correction subtracts.

    Example::

        estimator = StreamingFrequencyEstimator(hash_size=2**16, alpha=0.01)
        p = estimator(keras.ops.convert_to_tensor([3, 7, 7]), training=True)   # one step, then read

    Args:
      hash_size: H, the number of buckets of each array.
      num_hashes: m, the number of independent hash functions (Algorithm 3 when m > 1).
      alpha: the learning rate of the moving average of gaps, in (0, 1].
      initial_interval: B's initial value B0; finite, > 0.
      seed: selects the hash keys, in [0, 2^31 - 1].
      bias_correction: read the debiased interval (beyond the paper; see the module docstring).
      estimand: ``"expected_count"`` (default) or ``"inclusion"`` (:mod:`yt_bias.estimands`).
      **kwargs: the base layer's arguments (``name``, ...).
    Raises:
      ValueError: an argument out of range (the message names it).
    """

    def __init__(
        self,
        hash_size: int,
        num_hashes: int = 1,
        alpha: float = 0.01,
        initial_interval: float = 100.0,
        seed: int = 0,
        bias_correction: bool = False,
        estimand: str = DEFAULT_ESTIMAND,
        **kwargs,
    ):
        super().__init__(estimand=estimand, **kwargs)
        self.keep_arguments(
            hash_size, num_hashes, alpha, initial_interval, seed, bias_correction,
            max_hash_size=(1 << 31) - 1, max_seed=MAX_SEED,  # int32 bucket indices on every backend
        )
        self._keys = hash_keys(self.seed, self.num_hashes)
        self._log_keep = math.log1p(-self.alpha) if self.alpha < 1.0 else -1e30
        shape = (self.num_hashes * self.hash_size,)  # flat: bucket b of hash i is entry i * H + b
        self.step = self.add_weight(name="global_step", shape=(), dtype="int32", initializer="zeros", trainable=False,
                                    autocast=False)
        self.last_step = self.add_weight(name="A", shape=shape, dtype="int32", initializer="zeros", trainable=False,
                                         autocast=False)
        self.interval = self.add_weight(name="B", shape=shape, dtype="float32", trainable=False, autocast=False,
                                        initializer=keras.initializers.Constant(self.initial_interval))
        self.hits = None
        if self.bias_correction:
            self.hits = self.add_weight(name="hits", shape=shape, dtype="int32", initializer="zeros", trainable=False,
                                        autocast=False)
        self.built = True

    # ------------------------------------------------------------------ hashing
    def buckets(self, item_ids):
        """[num_hashes, n] int32 buckets of [n] (or [n, 1]) integer ``item_ids``."""
        return bucket_ids(integer_ids(item_ids), self._keys, self.hash_size)

    # ------------------------------------------------------------------ update
    def update_buckets(self, buckets):
        """One global step from already hashed items; returns (the new step, the batch's p [n]).

        Args:
          buckets: [num_hashes, n] int32 buckets (repeats allowed: a bucket hit by c rows counts c
            times for ``expected_count``, once for ``inclusion``).
        """
        step = self.step.value + 1
        self.step.assign(step)
        keep = np.float32(1.0 - self.alpha)
        intervals, hits = [], []
        for i in range(self.num_hashes):
            rows = buckets[i] + i * self.hash_size
            last = gather(self.last_step, rows)
            old = gather(self.interval, rows)
            gap = ops.cast(step - last, "float32")
            count = sharing_counts(buckets[i])
            if self.estimand == "expected_count":
                c = ops.cast(count, "float32")
                decay = ops.power(keep, c)
                new = decay * old + (1.0 - decay) * gap / c
                increments = count
            else:
                new = keep * old + np.float32(self.alpha) * gap
                increments = ops.ones_like(count)
            if self.bias_correction:
                first = ops.equal(last, 0)  # never hit: record the sighting only
                new = ops.where(first, old, new)
                n = gather(self.hits, rows)
                n = ops.where(first, n, ops.minimum(n + increments, self._max_hits))
                scatter(self.hits, rows, n)
                hits.append(n)
            scatter(self.interval, rows, new)
            # max(A, t) is t (t is the newest step); reading A makes the write depend on the read, so XLA
            # can update A in place (a write with no data dependence on the read makes it copy the array).
            scatter(self.last_step, rows, ops.maximum(last, step))
            intervals.append(new)
        return step, self._probability_of(ops.stack(intervals), ops.stack(hits) if hits else None)

    def update(self, item_ids):
        """Consumes one batch as one step: advances the global step, then updates A and B.

        Args:
          item_ids: [n] or [n, 1] integer IDs of this step.
        Returns:
          The new global step (int32 scalar).
        """
        return self.update_buckets(self.buckets(item_ids))[0]

    # ------------------------------------------------------------------ read
    def _probability_of(self, intervals, hits):
        if hits is not None:
            seen = hits > 0
            weight = -ops.expm1(ops.cast(ops.maximum(hits, 1), "float32") * np.float32(self._log_keep))
            debiased = (intervals - (1.0 - weight) * np.float32(self.initial_interval)) / weight
            intervals = ops.where(seen, debiased, intervals)
        floor = 1.0 if self.estimand == "inclusion" else _MIN_INTERVAL
        return 1.0 / ops.maximum(ops.max(intervals, axis=0), floor)

    def probability_of_buckets(self, buckets):
        """:meth:`probability` from [num_hashes, n] buckets."""
        rows = [buckets[i] + i * self.hash_size for i in range(self.num_hashes)]
        intervals = ops.stack([gather(self.interval, r) for r in rows])
        hits = ops.stack([gather(self.hits, r) for r in rows]) if self.bias_correction else None
        return self._probability_of(intervals, hits)

    def probability(self, item_ids):
        """``p = 1 / max_i B_i[h_i(id)]`` (debiased first with ``bias_correction``), without updating.

        Returns:
          [n] float32: inclusion probabilities in (0, 1], or expected counts (> 0).
        """
        return self.probability_of_buckets(self.buckets(item_ids))

    def update_and_probability(self, item_ids, read_after_update: bool = True):
        """One global step and the batch's probabilities, hashing the IDs once.

        ``read_after_update``: the probabilities include this batch's gaps (default) or are read
        before the update.
        """
        buckets = self.buckets(item_ids)
        if read_after_update:
            return self.update_buckets(buckets)[1]
        probability = self.probability_of_buckets(buckets)
        self.update_buckets(buckets)
        return probability

    def logical_arrays(self) -> dict[str, np.ndarray]:
        """``{"step", "A", "B"[, "hits"]}`` as numpy arrays ([num_hashes, hash_size] for the arrays)."""
        out = {"step": self.step, "A": self.last_step, "B": self.interval}
        if self.bias_correction:
            out["hits"] = self.hits
        arrays = {name: np.asarray(ops.convert_to_numpy(v.value)) for name, v in out.items()}
        return {name: a if name == "step" else a.reshape(self.num_hashes, self.hash_size) for name, a in arrays.items()}

