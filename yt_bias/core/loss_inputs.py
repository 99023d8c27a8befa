"""Input checks and the reward-weighted reduction shared by the dense and the blockwise softmax losses.

Both losses validate their inputs the same way (shapes, finite log q, positive indices in range,
rewards finite and >= 0: a ValueError eagerly, an InvalidArgumentError with the same message in a
graph) and reduce per-example losses with the paper's reward-weighted mean (Eq. 4).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from yt_bias._keras import tf

MASKED_LOGIT = -1e9


def _check_shapes(query, candidates, log_q, positive_index, candidate_ids, candidate_mask) -> None:
    if query.shape.rank != 2:
        raise ValueError(f"query_embeddings must be [batch_size, dim]; received shape {query.shape}.")
    if candidates.shape.rank != 2:
        raise ValueError(f"candidate_embeddings must be [num_candidates, dim]; received shape {candidates.shape}.")
    if query.shape[0] == 0:
        raise ValueError("query_embeddings is an empty batch: expected batch_size >= 1; received 0 rows.")
    if candidates.shape[0] == 0:
        raise ValueError("candidate_embeddings is empty: expected at least 1 candidate; received 0 rows.")
    if not query.shape[1:].is_compatible_with(candidates.shape[1:]):
        raise ValueError(
            f"query_embeddings and candidate_embeddings must have one width; received {query.shape[1]} and {candidates.shape[1]}."
        )
    batch, num = query.shape[0], candidates.shape[0]
    if positive_index is not None and not positive_index.shape.is_compatible_with([batch]):
        raise ValueError(f"positive_index must be [batch_size] = [{batch}]; received shape {positive_index.shape}.")
    if log_q is not None and not (log_q.shape.is_compatible_with([num]) or log_q.shape.is_compatible_with([batch, num])):
        raise ValueError(
            f"log_q must be [num_candidates] = [{num}] or [batch_size, num_candidates]; received shape {log_q.shape}."
        )
    if candidate_ids is not None and not candidate_ids.shape.is_compatible_with([num]):
        raise ValueError(f"candidate_ids must be [num_candidates] = [{num}]; received shape {candidate_ids.shape}.")
    if candidate_mask is not None and not candidate_mask.shape.is_compatible_with([batch, num]):
        raise ValueError(
            f"candidate_mask must be [batch_size, num_candidates] = [{batch}, {num}]; received {candidate_mask.shape}."
        )


def _checked_rewards(rewards: tf.Tensor) -> tf.Tensor:
    message = "rewards must be finite and >= 0 (NaN, inf or negative rewards received)"
    if tf.executing_eagerly():
        values = rewards.numpy()
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"{message}; received {values[~np.isfinite(values) | (values < 0)][:5].tolist()}.")
        return rewards
    # One kernel for the three failures: sqrt(r) is NaN for r < 0 or r = NaN, and inf for r = inf.
    with tf.control_dependencies([tf.debugging.check_numerics(tf.math.sqrt(rewards), message)]):
        return tf.identity(rewards)


def reward_weighted(per_example: tf.Tensor, rewards: tf.Tensor | None, reduce: bool) -> tf.Tensor:
    """``r_i * loss_i`` [batch_size], or its mean over the batch (Eq. 4) when ``reduce``."""
    if rewards is not None:
        rewards = tf.convert_to_tensor(rewards, tf.float32)
        if not rewards.shape.is_compatible_with(per_example.shape):
            raise ValueError(f"rewards must be [batch_size] = {per_example.shape.as_list()}; received shape {rewards.shape}.")
        per_example = _checked_rewards(rewards) * per_example
    if not reduce:
        return per_example
    return tf.reduce_mean(per_example)


def _eager_or_graph_check(value: tf.Tensor, eager_bad, graph_checks) -> tf.Tensor:
    """Runs a numpy check eagerly (ValueError) or attaches tf.debugging asserts in a graph."""
    if tf.executing_eagerly():
        message = eager_bad(value.numpy())
        if message:
            raise ValueError(message)
        return value
    with tf.control_dependencies(graph_checks(value)):
        return tf.identity(value)


def _checked_log_q(log_q: tf.Tensor) -> tf.Tensor:
    def eager_bad(values):
        bad = ~np.isfinite(values)
        if bad.any():
            return (
                "log_q must be finite (NaN, -inf = log 0 or +inf received; use log_probability to clip p); "
                f"received {values[bad][:5].tolist()} at {np.argwhere(bad)[:5].tolist()}."
            )
        return None

    message = "log_q must be finite (NaN, -inf = log 0 or +inf received; use log_probability to clip p)"
    return _eager_or_graph_check(log_q, eager_bad, lambda v: [tf.debugging.check_numerics(v, message)])


def checked_positive_index(positive_index: tf.Tensor, num_candidates: tf.Tensor) -> tf.Tensor:
    """``positive_index`` checked to be in [0, num_candidates) (ValueError eagerly, InvalidArgumentError in a graph)."""

    def eager_bad(values):
        bad = (values < 0) | (values >= int(num_candidates))
        if bad.any():
            return (
                f"positive_index must be in [0, num_candidates) = [0, {int(num_candidates)}); "
                f"received {values[bad][:5].tolist()} at rows {np.flatnonzero(bad)[:5].tolist()}."
            )
        return None

    def graph_checks(v):
        return [
            tf.debugging.assert_non_negative(v, message="positive_index must be >= 0 (a column of the candidates)"),
            tf.debugging.assert_less(v, num_candidates, message="positive_index must be < num_candidates"),
        ]

    return _eager_or_graph_check(positive_index, eager_bad, graph_checks)


@dataclasses.dataclass(frozen=True)
class LossInputs:
    """The checked tensors and settings of one softmax loss call (see :func:`prepare_inputs`)."""

    query: tf.Tensor  # [B, d] float32
    candidates: tf.Tensor  # [N, d] float32
    temperature: float
    log_q: tf.Tensor | None  # [N] or [B, N] float32
    positive_index: tf.Tensor  # [B] int32
    candidate_ids: tf.Tensor | None  # [N], given only when accidental hits are removed
    candidate_mask: tf.Tensor | None  # [B, N] bool
    correct_positive: bool


def prepare_inputs(
    query_embeddings,
    candidate_embeddings,
    temperature: float = 1.0,
    log_q=None,
    *,
    positive_index=None,
    candidate_ids=None,
    remove_accidental_hits: bool = False,
    candidate_mask=None,
    correct_positive: bool = True,
) -> LossInputs:
    """Converts and validates the arguments shared by the dense and the blockwise loss.

    Args:
      query_embeddings: [batch_size, dim] u.
      candidate_embeddings: [num_candidates, dim] v; the positives are among them.
      temperature: tau > 0; the dot products are divided by it before the correction.
      log_q: [num_candidates] or [batch_size, num_candidates] log sampling probabilities, or None
        (no correction: the paper's plain-sfx).
      positive_index: [batch_size] the column of each query's positive; default ``range(batch)``.
      candidate_ids: [num_candidates] IDs (strings or integers), needed to remove accidental hits.
      remove_accidental_hits: mask candidates other than the positive with the positive's ID.
      candidate_mask: [batch_size, num_candidates] bool; False removes a candidate for that query
        (for instance another user's impressions). The positive is always kept.
      correct_positive: subtract log q from the positive's logit too (the paper's choice).
    Returns:
      :class:`LossInputs`: float32 query and candidates, float32 log_q or None, int32
      positive_index (``range(B)`` when None), the IDs when accidental hits are removed (else
      None), a bool candidate_mask or None.
    Raises:
      ValueError: mismatched shapes, an empty batch, temperature <= 0, accidental-hit removal
        without IDs, fewer candidates than queries without ``positive_index``, and (eagerly) a
        non-finite log_q or a positive_index out of range; in a graph the last two fail at run
        time with tf.errors.InvalidArgumentError naming the argument.
      TypeError: an argument this list does not name.
    """
    # float32 whatever the towers computed in (mixed precision: the loss stays in float32).
    query = tf.cast(tf.convert_to_tensor(query_embeddings), tf.float32)
    candidates = tf.cast(tf.convert_to_tensor(candidate_embeddings), tf.float32)
    log_q = None if log_q is None else tf.convert_to_tensor(log_q, tf.float32)
    positive_index = None if positive_index is None else tf.convert_to_tensor(positive_index)
    candidate_ids = None if candidate_ids is None else tf.convert_to_tensor(candidate_ids)
    candidate_mask = None if candidate_mask is None else tf.convert_to_tensor(candidate_mask, tf.bool)
    _check_shapes(query, candidates, log_q, positive_index, candidate_ids, candidate_mask)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; received {temperature!r}.")
    if remove_accidental_hits and candidate_ids is None:
        raise ValueError("remove_accidental_hits=True needs candidate_ids [num_candidates]; received None.")
    if log_q is not None:
        log_q = _checked_log_q(log_q)
    batch_size, num_candidates = tf.shape(query)[0], tf.shape(candidates)[0]
    if query.shape[0] is None:  # a graph with a free batch dimension: an empty batch fails when it runs, never a 0.0 loss
        message = "query_embeddings is an empty batch: expected batch_size >= 1"
        with tf.control_dependencies([tf.debugging.assert_positive(batch_size, message=message)]):
            query = tf.identity(query)
    if positive_index is None:
        batch, num = query.shape[0], candidates.shape[0]
        message = "positive_index=None takes query i's positive from candidate i: expected num_candidates >= batch_size"
        if batch is not None and num is not None:  # always known eagerly
            if num < batch:
                raise ValueError(f"{message}; received {num} candidates for {batch} queries.")
        else:
            with tf.control_dependencies([tf.debugging.assert_greater_equal(num_candidates, batch_size, message=message)]):
                candidates = tf.identity(candidates)
        positive_index = tf.range(batch_size)
    else:
        positive_index = checked_positive_index(tf.cast(positive_index, tf.int32), num_candidates)
    candidate_ids = candidate_ids if remove_accidental_hits else None
    return LossInputs(query, candidates, float(temperature), log_q, positive_index, candidate_ids, candidate_mask, correct_positive)
