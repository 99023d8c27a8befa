"""Streaming frequency estimation of items in a stream of batches (section 4 of the paper).

The estimator keeps, for each of ``num_hashes`` hash functions h_i, two arrays of ``hash_size``
buckets: ``A_i`` holds the global step at which a bucket was last hit and ``B_i`` an
exponential moving average of the number of steps between two hits. The sampling probability of
an item (the probability that it appears in a batch) is ``1 / max_i B_i[h_i(item)]``
(Algorithm 2 for one hash, Algorithm 3 for several).

Choices the paper leaves open, and what this module does:

* Several occurrences of one item in one batch: a batch is one step of the stream and ``p`` is
  the probability that the item is *in* the batch, so each bucket is updated at most once per
  step (duplicate items, and distinct items that collide in a bucket, count once). The
  paper's loop over the batch would otherwise shrink the gap to 0 for the second occurrence.
* Read before or after the update: :class:`~yt_bias.model.TwoTowerModel` updates the estimator
  with the current batch and then reads ``p`` (``read_after_update=True``), so that an item's
  estimate always includes its latest gap; ``read_after_update=False`` gives the other order.
* Item IDs: strings or integers, hashed by keyed SipHash (``to_hash_bucket_strong``) with a
  different key per hash function, so no vocabulary is needed and the hashes are independent.

Beyond the paper, ``bias_correction=True`` (off by default) adds an Adam-style debiased
read-out: a per-bucket hit count ``n`` is kept and the estimator reads
``(B - (1 - alpha)^n * B0) / (1 - (1 - alpha)^n)`` instead of ``B`` (``B0`` while ``n = 0``). The
update of ``A`` and ``B`` is unchanged; the read-out is the EMA of the observed gaps alone, with
the initial value's weight removed, so the slow warm-up from ``B0`` (and the leftover of ``B0`` in
rarely hit buckets) disappears. The first hit of a bucket then reads its first gap ``t - A0``.

``num_shards=S > 1`` (for ParameterServerStrategy, where one variable lives on one parameter
server) stores each array as S variables: bucket ``b`` of hash ``i`` is row ``b // S`` of shard
``b % S`` (variables ``A_shard_s``, ``B_shard_s``, ``hits_shard_s`` of shape [m, ceil((H - s) / S)]).
Updates and reads are routed per shard (``tf.dynamic_partition`` / ``tf.dynamic_stitch``), so the
numbers are exactly those of ``num_shards=1``; :meth:`StreamingFrequencyEstimator.logical_arrays`
returns the [m, H] arrays either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from yt_bias._keras import keras, tf

_MIN_INTERVAL = 1e-6


def _as_string_ids(item_ids: tf.Tensor, name: str = "item_ids") -> tf.Tensor:
    """Returns ``item_ids`` as a 1-D string tensor; integers are formatted in decimal."""
    item_ids = tf.convert_to_tensor(item_ids)
    if item_ids.shape.rank is not None and item_ids.shape.rank != 1:
        raise ValueError(f"{name} must be a 1-D tensor [batch_size]; received shape {item_ids.shape}.")
    if item_ids.dtype == tf.string:
        return item_ids
    if item_ids.dtype.is_integer:
        return tf.strings.as_string(item_ids)
    raise TypeError(f"{name} must be strings or integers; received dtype {item_ids.dtype.name}.")


def _check_not_empty(item_ids: tf.Tensor, name: str = "item_ids") -> list:
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


class StreamingFrequencyEstimator(keras.layers.Layer):
    """Streaming estimate of each item's per-step sampling probability (Algorithms 2 and 3).

    The state (``A_i``, ``B_i`` for each hash and the global step) lives in non-trainable
    variables, so it is saved by ``tf.train.Checkpoint`` and by a Keras model that owns the
    estimator.

    Args:
      hash_size: H, the number of buckets of each array.
      num_hashes: m, the number of independent hash functions (Algorithm 3 when m > 1).
      alpha: the learning rate of the moving average of gaps, in (0, 1].
      initial_interval: B's initial value (the paper's simulation uses 100).
      seed: selects the hash keys; two estimators with the same seed hash identically.
      bias_correction: beyond the paper: read the debiased interval
        ``(B - (1 - alpha)^n * B0) / (1 - (1 - alpha)^n)`` with ``n`` a per-bucket hit count (one
        more int32 array per hash); ``False`` is exactly Algorithm 2/3.
      num_shards: S; > 1 stores each array as S variables (bucket b in shard b % S, row b // S), so
        that a ParameterServerStrategy places them on different parameter servers. 1 (default):
        one variable per array, named ``A``, ``B`` (``hits``), as always.
    """

    def __init__(
        self,
        hash_size: int,
        num_hashes: int = 1,
        alpha: float = 0.01,
        initial_interval: float = 100.0,
        seed: int = 0,
        bias_correction: bool = False,
        num_shards: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(hash_size, bool) or not isinstance(hash_size, (int, np.integer)) or hash_size < 1:
            raise ValueError(f"hash_size must be an integer >= 1; received {hash_size!r}.")
        if isinstance(num_hashes, bool) or not isinstance(num_hashes, (int, np.integer)) or num_hashes < 1:
            raise ValueError(f"num_hashes must be an integer >= 1; received {num_hashes!r}.")
        if not (isinstance(alpha, (int, float, np.floating)) and 0.0 < float(alpha) <= 1.0):
            raise ValueError(f"alpha must be in (0, 1]; received {alpha!r}.")
        if not (isinstance(initial_interval, (int, float, np.floating)) and float(initial_interval) > 0.0):
            raise ValueError(f"initial_interval must be > 0; received {initial_interval!r}.")
        self.hash_size = int(hash_size)
        self.num_hashes = int(num_hashes)
        self.alpha = float(alpha)
        self.initial_interval = float(initial_interval)
        self.seed = int(seed)
        if not isinstance(bias_correction, (bool, np.bool_)):
            raise TypeError(f"bias_correction must be a bool; received {bias_correction!r}.")
        self.bias_correction = bool(bias_correction)
        self._keys = [[self.seed * 1_000_003 + 2 * i + 1, 0x9E3779B97F4A7C15 >> 1 ^ i] for i in range(self.num_hashes)]
        self.step = self.add_weight(
            name="global_step", shape=(), dtype=tf.int64, initializer="zeros", trainable=False
        )
        if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
            raise ValueError(f"num_shards must be an integer >= 1; received {num_shards!r}.")
        if num_shards > self.hash_size:
            raise ValueError(f"num_shards must be <= hash_size ({self.hash_size}); received {num_shards}.")
        self.num_shards = int(num_shards)
        if self.bias_correction:
            # Counts saturate once (1 - alpha)^n is negligible, so int32 never overflows.
            decay = math.log1p(-self.alpha) if self.alpha < 1.0 else -math.inf
            self._max_hits = 1 if decay == -math.inf else int(min(2**31 - 2, math.ceil(-80.0 / decay)))
        if self.num_shards == 1:
            self.last_step = self.add_weight(
                name="A", shape=(self.num_hashes, self.hash_size), dtype=tf.int64, initializer="zeros", trainable=False
            )
            self.interval = self.add_weight(
                name="B",
                shape=(self.num_hashes, self.hash_size),
                dtype=tf.float32,
                initializer=keras.initializers.Constant(self.initial_interval),
                trainable=False,
            )
            if self.bias_correction:
                self.hits = self.add_weight(
                    name="hits", shape=(self.num_hashes, self.hash_size), dtype=tf.int32, initializer="zeros",
                    trainable=False,
                )
            return
        # Sharded: shard s holds buckets s, s + S, s + 2S, ... Each array's shards are created one after the
        # other, so ParameterServerStrategy's round-robin placement puts them on different parameter servers.
        rows = [(self.hash_size - s + self.num_shards - 1) // self.num_shards for s in range(self.num_shards)]
        self.last_step_shards = [
            self.add_weight(name=f"A_shard_{s}", shape=(self.num_hashes, r), dtype=tf.int64, initializer="zeros",
                            trainable=False)
            for s, r in enumerate(rows)
        ]
        self.interval_shards = [
            self.add_weight(name=f"B_shard_{s}", shape=(self.num_hashes, r), dtype=tf.float32,
                            initializer=keras.initializers.Constant(self.initial_interval), trainable=False)
            for s, r in enumerate(rows)
        ]
        if self.bias_correction:
            self.hits_shards = [
                self.add_weight(name=f"hits_shard_{s}", shape=(self.num_hashes, r), dtype=tf.int32,
                                initializer="zeros", trainable=False)
                for s, r in enumerate(rows)
            ]

    def state_variables(self) -> tuple:
        """The variables :meth:`update_buckets` updates, flat: ``(step, A, B[, hits])``, or with shards
        ``(step, A_0..A_{S-1}, B_0..B_{S-1}[, hits_0..hits_{S-1}])``."""
        if self.num_shards == 1:
            return (self.step, self.last_step, self.interval) + ((self.hits,) if self.bias_correction else ())
        return (
            (self.step, *self.last_step_shards, *self.interval_shards)
            + (tuple(self.hits_shards) if self.bias_correction else ())
        )

    def logical_arrays(self) -> dict[str, tf.Tensor]:
        """``{"step", "A", "B"[, "hits"]}``: the global step and the [num_hashes, hash_size] arrays
        (stitched back from the shards when ``num_shards > 1``)."""
        out = {"step": tf.convert_to_tensor(self.step)}
        if self.num_shards == 1:
            out.update(A=tf.convert_to_tensor(self.last_step), B=tf.convert_to_tensor(self.interval))
            if self.bias_correction:
                out["hits"] = tf.convert_to_tensor(self.hits)
            return out
        names = [("A", self.last_step_shards), ("B", self.interval_shards)]
        if self.bias_correction:
            names.append(("hits", self.hits_shards))
        buckets = tf.range(self.hash_size, dtype=tf.int64)
        positions = tf.dynamic_partition(tf.range(self.hash_size), tf.cast(buckets % self.num_shards, tf.int32),
                                         self.num_shards)
        for name, shards in names:
            # [H, m] rows in bucket order, then back to [m, H].
            stitched = tf.dynamic_stitch(positions, [tf.transpose(tf.convert_to_tensor(v)) for v in shards])
            out[name] = tf.transpose(stitched)
        return out

    def buckets(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The bucket of each item under each hash function.

        Args:
          item_ids: [batch_size] strings or integers.
        Returns:
          [num_hashes, batch_size] int64 bucket indices in [0, hash_size).
        """
        ids = _as_string_ids(item_ids)
        return tf.stack(
            [tf.strings.to_hash_bucket_strong(ids, self.hash_size, key=key) for key in self._keys], axis=0
        )

    def update(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Consumes one batch: advances the global step, then updates A and B (Algorithm 2/3).

        Each bucket hit by the batch is updated once, with the gap measured from its old A:
        ``B <- (1 - alpha) * B + alpha * (t - A)``, then ``A <- t``.

        Args:
          item_ids: [batch_size] strings or integers, the items of this step.
        Returns:
          The new global step (int64 scalar).
        Raises:
          ValueError: an empty batch, an empty-string ID or a non-vector input.
        """
        ids = _as_string_ids(item_ids)
        checks = _check_not_empty(ids)
        with tf.control_dependencies(checks):
            buckets = self.buckets(ids)
        return self.update_buckets(buckets)

    def update_buckets(self, buckets: tf.Tensor, variables: Sequence[tf.Variable] | None = None) -> tf.Tensor:
        """:meth:`update` from already hashed items (as :meth:`buckets` returns them).

        Used under tf.distribute, where replicas all-gather their items' buckets (strings cannot be
        all-gathered) and one update runs on the union.

        Args:
          buckets: [num_hashes, batch_size] int64 bucket indices.
          variables: the (step, A, B[, hits]) variables to update instead of this layer's own; the
            cross-replica update passes each device's copy of mirrored variables.
        Returns:
          The new global step (int64 scalar).
        """
        buckets = tf.convert_to_tensor(buckets, tf.int64)
        if variables is None:
            variables = self.state_variables()
        if self.num_shards > 1:
            return self._update_sharded(buckets, variables)
        step_var, last_step, interval = variables[:3]
        step = step_var.assign_add(1)
        alpha = tf.constant(self.alpha, tf.float32)
        for i in range(self.num_hashes):
            unique_buckets, _ = tf.unique(buckets[i])
            index = tf.stack([tf.fill(tf.shape(unique_buckets), tf.cast(i, tf.int64)), unique_buckets], axis=1)
            gap = tf.cast(step - tf.gather_nd(last_step, index), tf.float32)
            new_interval = (1.0 - alpha) * tf.gather_nd(interval, index) + alpha * gap
            interval.scatter_nd_update(index, new_interval)
            last_step.scatter_nd_update(index, tf.fill(tf.shape(unique_buckets), step))
            if self.bias_correction:
                hits = tf.minimum(tf.gather_nd(variables[3], index) + 1, self._max_hits)
                variables[3].scatter_nd_update(index, hits)
        return step

    def _update_sharded(self, buckets: tf.Tensor, variables: Sequence[tf.Variable]) -> tf.Tensor:
        """:meth:`update_buckets` on sharded arrays: the same per-bucket arithmetic, routed to bucket % S."""
        num = self.num_shards
        step = variables[0].assign_add(1)
        last_step, interval = variables[1:1 + num], variables[1 + num:1 + 2 * num]
        hits_vars = variables[1 + 2 * num:1 + 3 * num] if self.bias_correction else None
        alpha = tf.constant(self.alpha, tf.float32)
        for i in range(self.num_hashes):
            unique_buckets, _ = tf.unique(buckets[i])
            parts = tf.dynamic_partition(unique_buckets // num, tf.cast(unique_buckets % num, tf.int32), num)
            for s in range(num):
                rows = parts[s]
                index = tf.stack([tf.fill(tf.shape(rows), tf.cast(i, tf.int64)), rows], axis=1)
                gap = tf.cast(step - tf.gather_nd(last_step[s], index), tf.float32)
                new_interval = (1.0 - alpha) * tf.gather_nd(interval[s], index) + alpha * gap
                interval[s].scatter_nd_update(index, new_interval)
                last_step[s].scatter_nd_update(index, tf.fill(tf.shape(rows), step))
                if self.bias_correction:
                    hits = tf.minimum(tf.gather_nd(hits_vars[s], index) + 1, self._max_hits)
                    hits_vars[s].scatter_nd_update(index, hits)
        return step

    def _gather(self, name: str, buckets: tf.Tensor) -> tf.Tensor:
        """``array[i, buckets[i, j]]`` for the [num_hashes, n] ``buckets`` of array ``name`` (A, B or hits)."""
        hash_index = tf.broadcast_to(tf.range(self.num_hashes, dtype=tf.int64)[:, None], tf.shape(buckets))
        if self.num_shards == 1:
            variable = {"A": self.last_step, "B": self.interval, "hits": getattr(self, "hits", None)}[name]
            return tf.gather_nd(variable, tf.stack([hash_index, buckets], axis=-1))
        shards = {"A": self.last_step_shards, "B": self.interval_shards, "hits": getattr(self, "hits_shards", None)}[name]
        num = self.num_shards
        flat_buckets = tf.reshape(buckets, [-1])
        flat_hash = tf.reshape(hash_index, [-1])
        shard_of = tf.cast(flat_buckets % num, tf.int32)
        positions = tf.dynamic_partition(tf.range(tf.size(flat_buckets)), shard_of, num)
        hash_parts = tf.dynamic_partition(flat_hash, shard_of, num)
        row_parts = tf.dynamic_partition(flat_buckets // num, shard_of, num)
        values = [tf.gather_nd(shards[s], tf.stack([hash_parts[s], row_parts[s]], axis=1)) for s in range(num)]
        return tf.reshape(tf.dynamic_stitch(positions, values), tf.shape(buckets))

    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The estimated per-step sampling probability ``1 / max_i B_i[h_i(id)]``.

        With ``bias_correction`` each ``B_i`` is first debiased by its hit count (see the class).

        Args:
          item_ids: [batch_size] strings or integers.
        Returns:
          [batch_size] float32 probabilities in (0, 1].
        """
        buckets = self.buckets(item_ids)
        intervals = self._gather("B", buckets)
        if self.bias_correction:
            intervals = self._debiased(intervals, self._gather("hits", buckets))
        return 1.0 / tf.maximum(tf.reduce_max(intervals, axis=0), 1.0)

    def _debiased(self, intervals: tf.Tensor, hits: tf.Tensor) -> tf.Tensor:
        """``(B - (1 - alpha)^n B0) / (1 - (1 - alpha)^n)``, or ``B0`` where ``n = 0``."""
        seen = hits > 0
        log_decay = tf.cast(tf.maximum(hits, 1), tf.float32) * tf.constant(
            math.log1p(-self.alpha) if self.alpha < 1.0 else -1e30, tf.float32
        )
        weight = -tf.math.expm1(log_decay)  # 1 - (1 - alpha)^n, accurate for small alpha * n
        debiased = (intervals - (1.0 - weight) * self.initial_interval) / weight
        return tf.where(seen, debiased, intervals)

    def call(self, item_ids: tf.Tensor) -> tf.Tensor:
        return self.probability(item_ids)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hash_size=self.hash_size,
            num_hashes=self.num_hashes,
            alpha=self.alpha,
            initial_interval=self.initial_interval,
            seed=self.seed,
            bias_correction=self.bias_correction,
            num_shards=self.num_shards,
        )
        return config


class OracleFrequency(keras.layers.Layer):
    """Exact per-step sampling probabilities from a table (the paper's "oracle" baseline).

    Args:
      item_ids: [num_items] the IDs with a known probability (strings or integers).
      probabilities: [num_items] their per-step inclusion probabilities, in (0, 1].
      default_probability: returned for IDs not in the table.
    """

    def __init__(
        self,
        item_ids: Sequence,
        probabilities: Sequence[float],
        default_probability: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        ids = np.asarray(item_ids)
        probs = np.asarray(probabilities, dtype=np.float32)
        if ids.ndim != 1 or probs.shape != ids.shape:
            raise ValueError(
                f"item_ids and probabilities must be 1-D of one length; received shapes {ids.shape} and {probs.shape}."
            )
        if ids.size == 0:
            raise ValueError("item_ids is empty: the oracle needs at least one item.")
        if not np.all(np.isfinite(probs)) or np.any(probs <= 0) or np.any(probs > 1):
            raise ValueError("probabilities must be finite and in (0, 1]; received values outside that range.")
        if not 0.0 < default_probability <= 1.0:
            raise ValueError(f"default_probability must be in (0, 1]; received {default_probability!r}.")
        self._ids = [str(i) for i in ids.tolist()]
        self._probs = probs.tolist()
        self.default_probability = float(default_probability)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self._ids), tf.constant(self._probs, tf.float32)),
            default_value=self.default_probability,
        )

    def update(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Exact probabilities do not change with the stream: a no-op kept for a common interface."""
        return tf.constant(0, tf.int64)

    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        return self._table.lookup(_as_string_ids(item_ids))

    def call(self, item_ids: tf.Tensor) -> tf.Tensor:
        return self.probability(item_ids)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(item_ids=self._ids, probabilities=self._probs, default_probability=self.default_probability)
        return config


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
