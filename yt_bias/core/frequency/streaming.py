"""Streaming frequency estimation of items in a stream of batches (section 4 of the paper).

The estimator keeps, for each of ``num_hashes`` hash functions h_i, two arrays of ``hash_size``
buckets: ``A_i`` holds the global step at which a bucket was last hit and ``B_i`` an
exponential moving average of the number of steps between two hits. The sampling probability of
an item (the probability that it appears in a batch) is ``1 / max_i B_i[h_i(item)]``
(Algorithm 2 for one hash, Algorithm 3 for several).

Choices the paper leaves open, and what this module does:

* What ``p`` estimates when an item repeats within a batch (the ``estimand``): ``"inclusion"``
  (the probability that the item is *in* the batch; each bucket is updated at most once per
  step) or ``"expected_count"`` (its expected number of rows in the batch, ``B * q_j``, which
  may exceed 1; the paper's per-example loop in closed form). The in-batch softmax keeps one
  candidate column per row, so an item with c rows adds c columns: ``expected_count`` matches
  those columns, ``inclusion`` matches deduplicated columns (one per distinct item). See
  :class:`StreamingFrequencyEstimator`.
* Read before or after the update: :class:`~yt_bias.core.model.TwoTowerModel` updates the estimator
  with the current batch and then reads ``p`` (``read_after_update=True``), so that an item's
  estimate always includes its latest gap; ``read_after_update=False`` gives the other order.
* Item IDs: strings or integers, hashed by keyed SipHash (``to_hash_bucket_strong``) with a
  different key per hash function, so no vocabulary is needed and the hashes are independent.

Beyond the paper, ``bias_correction=True`` (off by default) adds an Adam-style debiased
read-out: a per-bucket hit count ``n`` is kept and the estimator reads
``(B - (1 - alpha)^n * B0) / (1 - (1 - alpha)^n)`` instead of ``B`` (``B0`` while ``n = 0``). The
update of ``A`` and ``B`` is unchanged; the read-out is the EMA of the observed gaps alone, with
the initial value's weight removed, so the slow warm-up from ``B0`` (and the leftover of ``B0`` in
rarely hit buckets) disappears. A bucket's first sighting only sets ``A``: the gap since step 0
is not an interval between two sightings (plain Algorithm 2 averages it in, so an item first
seen at step t reads p close to 1/t).

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

from yt_bias._keras import keras, tf
from yt_bias.arguments import check_int
from yt_bias.core.frequency.source import FrequencySource, as_string_ids, check_not_empty
from yt_bias.estimands import DEFAULT_ESTIMAND
from yt_bias.source_contract import StreamingArguments

_MIN_INTERVAL = 1e-6

# The global step is int64; refuse to wrap around (2^62 steps: far beyond any run, but never silent).
MAX_STEP = 1 << 62
# SipHash keys are two uint64 words; seed * 1_000_003 + 2 * num_hashes must stay below 2^63.
MAX_SEED = (1 << 63) // 1_000_003 - 1024


class StreamingFrequencyEstimator(StreamingArguments, FrequencySource):
    """Streaming estimate of each item's per-step sampling probability (Algorithms 2 and 3).

    The state (``A_i``, ``B_i`` for each hash and the global step) lives in non-trainable
    variables, so it is saved by ``tf.train.Checkpoint`` and by a Keras model that owns the
    estimator. As a Keras layer, ``estimator(item_ids, training=True)`` consumes the batch as one
    global step (once per global step under any tf.distribute strategy: replicas all-gather their
    items' buckets) and returns the batch's probabilities; ``training=False`` only reads.

    The two estimands (what ``p`` estimates), for a bucket hit by ``c`` rows of the batch at step
    ``t`` that was last hit at step ``A``:

    * ``"inclusion"``: ``p = P(item in batch)``. Each bucket is updated once per step whatever
      ``c`` is: ``B <- (1 - alpha) B + alpha (t - A)``; the mean gap between steps that contain the
      item is ``1 / P(in batch)``.
    * ``"expected_count"``: ``p = E[rows of the item in a batch] = B_batch * q_j`` (may exceed 1).
      The paper's Algorithm 2 loops over the batch's examples: the first of the ``c`` rows sees the
      gap ``g = t - A`` and sets ``A = t``, so each further row sees a gap of 0. Over a stream the
      mean of those per-row gaps is the mean gap between consecutive rows of the item,
      ``1 / (B_batch q_j)``, which is why the loop estimates an expected count. Read at the end of
      a step, though, the loop's average is dominated by the step's trailing zeros (for c = 27 and
      alpha = 0.02 it reads about 1.6 times the true count). This module spreads the step's gap
      evenly over its rows instead: ``c`` moving-average steps of ``g / c`` each, the same sum and
      the same number of observations as the loop but with no order inside the step::

          B <- (1 - alpha)^c B + (1 - (1 - alpha)^c) (t - A) / c

      With ``c = 1`` (no item repeats within the batch) this is exactly Algorithm 2's update, and
      its row-weighted mean is the mean gap per row, ``1 / (B_batch q_j)``.

    ``p = 1 / max_i B_i[h_i(item)]`` for both (Algorithm 3's max over hashes); for ``inclusion``
    ``B`` is floored at 1 (``p <= 1``), for ``expected_count`` only at a tiny positive value.

    Args:
      hash_size: H, the number of buckets of each array.
      num_hashes: m, the number of independent hash functions (Algorithm 3 when m > 1).
      alpha: the learning rate of the moving average of gaps, in (0, 1].
      initial_interval: B's initial value B0 (the paper's simulation uses 100); finite, > 0.
      seed: selects the hash keys; two estimators with the same seed hash identically.
      bias_correction: beyond the paper: read the debiased interval
        ``(B - (1 - alpha)^n B0) / (1 - (1 - alpha)^n)`` with ``n`` a per-bucket count of
        moving-average updates (one more int32 array per hash), and let a bucket's first sighting
        only set ``A = t`` (its gap since step 0 is not an observed interval, so it is not
        averaged in; before its second sighting a bucket reads ``B0``). ``False`` is exactly
        Algorithm 2/3.
      num_shards: S; > 1 stores each array as S variables (bucket b in shard b % S, row b // S), so
        that a ParameterServerStrategy places them on different parameter servers. 1 (default):
        one variable per array, named ``A``, ``B`` (``hits``). The arithmetic is the same code
        either way (one shard is the unsharded case).
      estimand: ``"expected_count"`` (default: it matches the in-batch softmax's one candidate
        column per row, and measured best where items repeat within batches) or
        ``"inclusion"`` (pair it with deduplicated candidate columns), see above.

    Example:

    >>> from yt_bias.core.frequency import StreamingFrequencyEstimator
    >>> import tensorflow as tf
    >>> estimator = StreamingFrequencyEstimator(hash_size=1024, alpha=0.5, initial_interval=4.0)
    >>> for batch in (["a", "b"], ["a", "c"], ["a", "b"]):  # "a" in every batch
    ...     p = estimator(tf.constant(batch), training=True)  # one step, then the batch's p
    >>> [round(float(x), 3) for x in estimator.probability(tf.constant(["a", "c", "never"]))]
    [0.727, 0.333, 0.25]
    >>> int(estimator.step.numpy())
    3
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
        estimand: str = DEFAULT_ESTIMAND,
        **kwargs,
    ):
        super().__init__(estimand=estimand, **kwargs)
        self.keep_arguments(
            hash_size, num_hashes, alpha, initial_interval, seed, bias_correction, max_hash_size=None, max_seed=MAX_SEED
        )
        self.num_shards = check_int("num_shards", num_shards, 1)
        if self.num_shards > self.hash_size:
            raise ValueError(f"num_shards must be <= hash_size ({hash_size}); received {num_shards}.")
        self._keys = [[self.seed * 1_000_003 + 2 * i + 1, 0x9E3779B97F4A7C15 >> 1 ^ i] for i in range(self.num_hashes)]
        self.step = self.add_weight(name="global_step", shape=(), dtype=tf.int64, initializer="zeros", trainable=False)
        # Checkpoint names are kept from the first release: A, B, hits with one shard; X_shard_s with several.
        rows = [(self.hash_size - s + self.num_shards - 1) // self.num_shards for s in range(self.num_shards)]
        arrays = [("A", tf.int64, "zeros"), ("B", tf.float32, keras.initializers.Constant(self.initial_interval))]
        if self.bias_correction:
            arrays.append(("hits", tf.int32, "zeros"))
        created = {}
        for name, dtype, init in arrays:
            created[name] = [
                self.add_weight(
                    name=name if self.num_shards == 1 else f"{name}_shard_{s}",
                    shape=(self.num_hashes, r), dtype=dtype, initializer=init, trainable=False,
                )
                for s, r in enumerate(rows)
            ]
        hits = created.get("hits")  # None without bias correction
        if self.num_shards == 1:
            self.last_step, self.interval = created["A"][0], created["B"][0]
            self.hits = None if hits is None else hits[0]
        else:
            self.last_step_shards, self.interval_shards, self.hits_shards = created["A"], created["B"], hits

    # ------------------------------------------------------------------ state
    def _arrays(self, name: str) -> list:
        """The shard variables of array ``name`` (A, B or hits): one per shard."""
        if self.num_shards == 1:
            return [{"A": self.last_step, "B": self.interval, "hits": self.hits}[name]]
        return {"A": self.last_step_shards, "B": self.interval_shards, "hits": self.hits_shards}[name]

    def state_variables(self) -> tuple:
        """The variables :meth:`update_buckets` updates, flat: ``(step, A_0..A_{S-1}, B_0..B_{S-1}[, hits_0..])``
        (with one shard: ``(step, A, B[, hits])``)."""
        names = ["A", "B"] + (["hits"] if self.bias_correction else [])
        return (self.step,) + tuple(v for name in names for v in self._arrays(name))

    def _split_state(self, variables: Sequence[tf.Variable]) -> tuple[list, list, list | None]:
        num = self.num_shards
        last_step, interval = list(variables[1 : 1 + num]), list(variables[1 + num : 1 + 2 * num])
        hits = list(variables[1 + 2 * num : 1 + 3 * num]) if self.bias_correction else None
        return last_step, interval, hits

    def logical_arrays(self) -> dict[str, tf.Tensor]:
        """``{"step", "A", "B"[, "hits"]}``: the global step and the [num_hashes, hash_size] arrays
        (stitched back from the shards when ``num_shards > 1``)."""
        out = {"step": tf.convert_to_tensor(self.step)}
        names = ["A", "B"] + (["hits"] if self.bias_correction else [])
        if self.num_shards == 1:
            out.update({name: tf.convert_to_tensor(self._arrays(name)[0]) for name in names})
            return out
        buckets = tf.range(self.hash_size, dtype=tf.int64)
        positions = tf.dynamic_partition(tf.range(self.hash_size), tf.cast(buckets % self.num_shards, tf.int32),
                                         self.num_shards)
        for name in names:
            # [H, m] rows in bucket order, then back to [m, H].
            stitched = tf.dynamic_stitch(positions, [tf.transpose(tf.convert_to_tensor(v)) for v in self._arrays(name)])
            out[name] = tf.transpose(stitched)
        return out

    # ------------------------------------------------------------------ hashing
    def buckets(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The bucket of each item under each hash function.

        Args:
          item_ids: [batch_size] strings or integers.
        Returns:
          [num_hashes, batch_size] int64 bucket indices in [0, hash_size).
        """
        ids = as_string_ids(item_ids)
        return tf.stack(
            [tf.strings.to_hash_bucket_strong(ids, self.hash_size, key=key) for key in self._keys], axis=0
        )

    def _checked_buckets(self, item_ids: tf.Tensor) -> tf.Tensor:
        ids = as_string_ids(item_ids)
        with tf.control_dependencies(check_not_empty(ids)):
            return self.buckets(ids)

    # ------------------------------------------------------------------ update
    def update(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Consumes one batch as one step: advances the global step, then updates A and B.

        Not distribution-aware: under a MirroredStrategy call the layer with ``training=True`` (or
        :meth:`update_once_per_global_step`) instead, which updates once per global step.

        Args:
          item_ids: [batch_size] strings or integers, the items of this step.
        Returns:
          The new global step (int64 scalar).
        Raises:
          ValueError: an empty batch, an empty-string ID or a non-vector input.
        """
        return self.update_buckets(self._checked_buckets(item_ids))

    def update_buckets(self, buckets: tf.Tensor, variables: Sequence[tf.Variable] | None = None) -> tf.Tensor:
        """:meth:`update` from already hashed items (as :meth:`buckets` returns them).

        Under tf.distribute, replicas all-gather their items' buckets (strings cannot be
        all-gathered) and one update runs on the union.

        Args:
          buckets: [num_hashes, batch_size] int64 bucket indices (repeats allowed: a bucket hit by
            c rows counts c times for ``expected_count``, once for ``inclusion``).
          variables: the state variables (as :meth:`state_variables` orders them) to update instead
            of this layer's own; the cross-replica update passes each device's copy.
        Returns:
          The new global step (int64 scalar).
        """
        buckets = tf.convert_to_tensor(buckets, tf.int64)
        variables = self.state_variables() if variables is None else tuple(variables)
        last_step, interval, hits = self._split_state(variables)
        with tf.control_dependencies([
            tf.debugging.assert_less(variables[0], tf.constant(MAX_STEP, tf.int64),
                                     message="the estimator's global step would exceed 2^62 (int64 wrap-around)"),
            tf.debugging.assert_non_negative(variables[0], message="the estimator's global step must be >= 0 "
                                             "(a negative step was set or restored; reset the estimator)"),
        ]):
            step = variables[0].assign_add(1)
        keep = tf.constant(1.0 - self.alpha, tf.float32)
        alpha = tf.constant(self.alpha, tf.float32)
        for i in range(self.num_hashes):
            unique, _, counts = tf.unique_with_counts(buckets[i])
            for s, rows, count in self._route(unique, counts):
                index = tf.stack([tf.fill(tf.shape(rows), tf.cast(i, tf.int64)), rows], axis=1)
                last = tf.gather_nd(last_step[s], index)
                old = tf.gather_nd(interval[s], index)
                gap = tf.cast(step - last, tf.float32)
                if self.estimand == "expected_count":
                    c = tf.cast(count, tf.float32)
                    decay = tf.pow(keep, c)
                    new = decay * old + (1.0 - decay) * gap / c
                    increments = count
                else:
                    new = keep * old + alpha * gap
                    increments = tf.ones_like(count)
                if self.bias_correction:
                    first = tf.equal(last, 0)  # never hit: record the sighting only
                    new = tf.where(first, old, new)
                    n = tf.gather_nd(hits[s], index)
                    hits[s].scatter_nd_update(index, tf.where(first, n, tf.minimum(n + increments, self._max_hits)))
                interval[s].scatter_nd_update(index, new)
                last_step[s].scatter_nd_update(index, tf.fill(tf.shape(rows), step))
        return step

    def _route(self, buckets: tf.Tensor, counts: tf.Tensor):
        """Yields ``(shard, row within the shard, count)`` groups for unique ``buckets``."""
        num = self.num_shards
        if num == 1:
            yield 0, buckets, counts
            return
        shard_of = tf.cast(buckets % num, tf.int32)
        rows = tf.dynamic_partition(buckets // num, shard_of, num)
        parts = tf.dynamic_partition(counts, shard_of, num)
        for s in range(num):
            yield s, rows[s], parts[s]

    # ------------------------------------------------------------------ one update per global step
    def update_once_per_global_step(self, item_ids: tf.Tensor | None = None, buckets: tf.Tensor | None = None) -> tf.Tensor:
        """One global step, whatever the tf.distribute context.

        * no strategy, one replica, or ParameterServerStrategy: :meth:`update` (under PS the reads
          and scatter writes go to the parameter servers' variables);
        * replica context with several replicas (MirroredStrategy, MultiWorkerMirroredStrategy):
          all-gather the hashed buckets (strings cannot be all-gathered), then one ``merge_call``
          updates every device copy of the mirrored variables with the union, so the step counter
          advances once per global step;
        * cross-replica context: ``item_ids`` must already be the union (or a PerReplica value).

        Args:
          item_ids: [local_batch_size] this replica's item IDs (or give ``buckets``).
          buckets: [num_hashes, local_batch_size] the buckets of those IDs (:meth:`buckets`).
        Returns:
          The new global step (int64 scalar).
        """
        strategy = tf.distribute.get_strategy()
        if not tf.distribute.has_strategy() or strategy.num_replicas_in_sync == 1:
            return self.update_buckets(buckets) if buckets is not None else self.update(item_ids)
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            if buckets is None:
                buckets = self.buckets(item_ids)
            gathered = replica.all_gather(buckets, axis=1)
            return replica.merge_call(lambda strategy, union: self._update_mirrored(strategy, union, True), args=(gathered,))
        return self._update_mirrored(strategy, item_ids if buckets is None else buckets, buckets is not None)

    def _update_mirrored(self, strategy, values, hashed: bool) -> tf.Tensor:
        """Cross-replica context: the same update on every local device copy of the mirrored variables."""
        local = strategy.experimental_local_results(values)
        steps = []
        for d, device_vars in enumerate(zip(*(_device_copies(var) for var in self.state_variables()))):
            value = local[d] if len(local) > d else local[0]
            with tf.device(device_vars[0].device):
                steps.append(self.update_buckets(value if hashed else self.buckets(value), variables=device_vars))
        with tf.control_dependencies(steps):
            return tf.identity(steps[0])

    # ------------------------------------------------------------------ read
    def _gather(self, name: str, buckets: tf.Tensor) -> tf.Tensor:
        """``array[i, buckets[i, j]]`` for the [num_hashes, n] ``buckets`` of array ``name`` (A, B or hits)."""
        hash_index = tf.broadcast_to(tf.range(self.num_hashes, dtype=tf.int64)[:, None], tf.shape(buckets))
        shards = self._arrays(name)
        num = self.num_shards
        if num == 1:
            return tf.gather_nd(shards[0], tf.stack([hash_index, buckets], axis=-1))
        flat_buckets = tf.reshape(buckets, [-1])
        flat_hash = tf.reshape(hash_index, [-1])
        shard_of = tf.cast(flat_buckets % num, tf.int32)
        positions = tf.dynamic_partition(tf.range(tf.size(flat_buckets)), shard_of, num)
        hash_parts = tf.dynamic_partition(flat_hash, shard_of, num)
        row_parts = tf.dynamic_partition(flat_buckets // num, shard_of, num)
        values = [tf.gather_nd(shards[s], tf.stack([hash_parts[s], row_parts[s]], axis=1)) for s in range(num)]
        return tf.reshape(tf.dynamic_stitch(positions, values), tf.shape(buckets))

    def probability_of_buckets(self, buckets: tf.Tensor) -> tf.Tensor:
        """:meth:`probability` from already hashed items ([num_hashes, n] as :meth:`buckets` returns)."""
        intervals = self._gather("B", buckets)
        if self.bias_correction:
            intervals = self._debiased(intervals, self._gather("hits", buckets))
        floor = 1.0 if self.estimand == "inclusion" else _MIN_INTERVAL
        return 1.0 / tf.maximum(tf.reduce_max(intervals, axis=0), floor)

    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        """The estimated ``p = 1 / max_i B_i[h_i(id)]`` (debiased first with ``bias_correction``).

        Args:
          item_ids: [batch_size] strings or integers.
        Returns:
          [batch_size] float32: inclusion probabilities in (0, 1], or expected counts (> 0).
        """
        return self.probability_of_buckets(self.buckets(item_ids))

    def update_and_probability(self, item_ids: tf.Tensor, read_after_update: bool = True) -> tf.Tensor:
        """One global step and the batch's probabilities, hashing the IDs once.

        Distribution-aware (see :meth:`update_once_per_global_step`). ``read_after_update``: the
        probabilities include this batch's gaps (default) or are read before the update.
        """
        buckets = self._checked_buckets(item_ids)
        if read_after_update:
            with tf.control_dependencies([self.update_once_per_global_step(buckets=buckets)]):
                return self.probability_of_buckets(buckets)
        probability = self.probability_of_buckets(buckets)
        with tf.control_dependencies([probability]):
            step = self.update_once_per_global_step(buckets=buckets)
        with tf.control_dependencies([step]):
            return tf.identity(probability)

    def _debiased(self, intervals: tf.Tensor, hits: tf.Tensor) -> tf.Tensor:
        """``(B - (1 - alpha)^n B0) / (1 - (1 - alpha)^n)``, or ``B0`` where ``n = 0``."""
        seen = hits > 0
        log_decay = tf.cast(tf.maximum(hits, 1), tf.float32) * tf.constant(
            math.log1p(-self.alpha) if self.alpha < 1.0 else -1e30, tf.float32
        )
        weight = -tf.math.expm1(log_decay)  # 1 - (1 - alpha)^n, accurate for small alpha * n
        debiased = (intervals - (1.0 - weight) * self.initial_interval) / weight
        return tf.where(seen, debiased, intervals)

    def get_config(self) -> dict:
        config = super().get_config()
        config["num_shards"] = self.num_shards
        return config


def _device_copies(variable) -> tuple:
    """The per-device copies of a mirrored variable (the variable itself when it is not mirrored)."""
    values = getattr(variable, "values", None)
    return tuple(values) if isinstance(values, (tuple, list)) else (variable,)


# The estimator's one-update-per-global-step as a function of the estimator (its name in earlier releases).
update_once_per_global_step = StreamingFrequencyEstimator.update_once_per_global_step


def estimator_from_settings(settings, num_shards: int = 1, name: str = "frequency") -> StreamingFrequencyEstimator:
    """A :class:`StreamingFrequencyEstimator` from an ``EstimatorConfig`` (yt_bias.config)."""
    return StreamingFrequencyEstimator(
        settings.hash_size,
        num_hashes=settings.num_hashes,
        alpha=settings.alpha,
        initial_interval=settings.initial_interval,
        seed=settings.seed,
        bias_correction=settings.bias_correction,
        num_shards=num_shards,
        estimand=settings.estimand,
        name=name,
    )
