"""The estimator's update under tf.distribute: one global step, whatever the strategy.

Under MirroredStrategy / MultiWorkerMirroredStrategy each replica all-gathers the hashed buckets
of its part of the batch and one ``merge_call`` updates every device copy with the union, so the
step counter advances once per global step; without a strategy, with one replica, or under
ParameterServerStrategy it is a plain ``update``.
"""

from __future__ import annotations

from yt_bias._keras import tf


def update_once_per_global_step(estimator, item_ids: tf.Tensor | None = None, buckets: tf.Tensor | None = None) -> tf.Tensor:
    """One global step of a frequency source, whatever the tf.distribute context.

    * no strategy, one replica, or ParameterServerStrategy: ``update`` (under PS the reads and
      scatter writes go to the parameter servers' variables);
    * replica context with several replicas (MirroredStrategy, MultiWorkerMirroredStrategy):
      all-gather the hashed buckets (strings cannot be all-gathered), then one ``merge_call``
      updates every device copy of the mirrored variables with the union;
    * cross-replica context: ``item_ids`` must already be the union (or a PerReplica value).

    Args:
      estimator: a :class:`~yt_bias.core.frequency.streaming.StreamingFrequencyEstimator`, or any source with ``update(ids)``.
      item_ids: [local_batch_size] this replica's item IDs (or give ``buckets``).
      buckets: the estimator's [num_hashes, local_batch_size] buckets of those IDs.
    Returns:
      The new global step (int64 scalar).
    """
    hashed = hasattr(estimator, "update_buckets")
    if not hashed:
        return estimator.update(item_ids)
    strategy = tf.distribute.get_strategy()
    if not tf.distribute.has_strategy() or strategy.num_replicas_in_sync == 1:
        return estimator.update_buckets(buckets) if buckets is not None else estimator.update(item_ids)
    replica = tf.distribute.get_replica_context()
    if replica is not None:
        if buckets is None:
            buckets = estimator.buckets(item_ids)
        gathered = replica.all_gather(buckets, axis=1)

        def merge(strategy, gathered):
            return _update_mirrored(strategy, estimator, gathered, hashed=True)

        return replica.merge_call(merge, args=(gathered,))
    return _update_mirrored(strategy, estimator, item_ids if buckets is None else buckets, hashed=buckets is not None)


def _device_copies(variable) -> tuple:
    values = getattr(variable, "values", None)
    return tuple(values) if isinstance(values, (tuple, list)) else (variable,)


def _update_mirrored(strategy, estimator, values, hashed: bool) -> tf.Tensor:
    """Cross-replica context: the same update on every local device copy of the mirrored variables."""
    copies = list(estimator.state_variables())
    local = strategy.experimental_local_results(values)
    steps = []
    for d, device_vars in enumerate(zip(*(_device_copies(var) for var in copies))):
        value = local[d] if len(local) > d else local[0]
        with tf.device(device_vars[0].device):
            buckets = value if hashed else estimator.buckets(value)
            steps.append(estimator.update_buckets(buckets, variables=device_vars))
    with tf.control_dependencies(steps):
        return tf.identity(steps[0])
