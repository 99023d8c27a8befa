"""The corrected sampled softmax (section 3 of the paper), general enough for every strategy.

For query i with embedding u_i, candidates v_j (the batch's items, plus any extra negatives),
temperature tau and per-candidate sampling log-probabilities log q_j:

    s_c(i, j) = <u_i, v_j> / tau - log q_j                       (the logQ correction)
    loss_i    = -[ s_c(i, pos_i) - log sum_j exp s_c(i, j) ]
    L         = (1 / B) * sum_i r_i * loss_i                     (Eq. 4: reward-weighted mean)

The correction is applied, as in the paper (and TFRS), to every logit, the positive included,
after the division by tau. In-batch softmax is the special case ``candidates = the batch's
items`` and ``positive_index = range(B)``; mixed, cross-batch and impression negatives append
candidates (with their own log q) or restrict candidates per query with ``candidate_mask``.
"""

from __future__ import annotations

from yt_bias._keras import tf
from yt_bias.config import LOSS_IMPLEMENTATIONS
from yt_bias.core.blockwise_softmax import DEFAULT_BLOCK_SIZE, blockwise_softmax_loss
from yt_bias.core.loss_inputs import MASKED_LOGIT, checked_positive_index, prepare_inputs, reward_weighted
from yt_bias.estimands import MIN_PROBABILITY


def log_probability(probabilities: tf.Tensor, max_probability: float | None = 1.0) -> tf.Tensor:
    """``log(p)`` with p clipped to [1e-12, max_probability], so p = 0 gives no inf or NaN.

    ``max_probability=1.0`` (default) suits an inclusion probability (rounding above 1 is
    clipped); ``None`` clips from below only, for an expected count per batch that may exceed 1.
    A frequency source picks the bound from its estimand
    (:meth:`yt_bias.core.frequency.FrequencySource.log_q`).
    """
    p = tf.cast(probabilities, tf.float32)
    if max_probability is None:
        return tf.math.log(tf.maximum(p, MIN_PROBABILITY))
    return tf.math.log(tf.clip_by_value(p, MIN_PROBABILITY, float(max_probability)))


def corrected_softmax_logits(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    positive_index: tf.Tensor | None = None,
    candidate_ids: tf.Tensor | None = None,
    remove_accidental_hits: bool = False,
    candidate_mask: tf.Tensor | None = None,
    correct_positive: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The corrected, masked logits and the positives' positions (see the module docstring).

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
      (logits [batch_size, num_candidates], positive_index [batch_size] int32).
    """
    query, candidates, log_q, positive_index, candidate_ids, candidate_mask = prepare_inputs(
        query_embeddings,
        candidate_embeddings,
        temperature,
        log_q,
        positive_index,
        candidate_ids,
        remove_accidental_hits,
        candidate_mask,
    )
    num_candidates = tf.shape(candidates)[0]
    needs_mask = remove_accidental_hits or candidate_mask is not None
    if needs_mask or (log_q is not None and not correct_positive):
        is_positive = tf.one_hot(positive_index, num_candidates, on_value=True, off_value=False, dtype=tf.bool)

    logits = tf.matmul(query, candidates, transpose_b=True) / temperature
    if log_q is not None:
        correction = log_q if log_q.shape.rank == 2 else log_q[None, :]
        if not correct_positive:
            correction = tf.broadcast_to(correction, tf.shape(logits))
            correction = tf.where(is_positive, tf.zeros_like(correction), correction)
        logits = logits - correction

    if needs_mask:  # (no mask: skip the [B, N] select altogether, the common in-batch case)
        keep = candidate_mask
        if remove_accidental_hits:
            positive_ids = tf.gather(candidate_ids, positive_index)
            other_id = tf.not_equal(positive_ids[:, None], candidate_ids[None, :])
            keep = other_id if keep is None else tf.logical_and(keep, other_id)
        keep = tf.logical_or(keep, is_positive)  # the positive always stays
        logits = tf.where(keep, logits, tf.fill(tf.shape(logits), tf.constant(MASKED_LOGIT, logits.dtype)))
    return logits, positive_index


def corrected_softmax_loss(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    rewards: tf.Tensor | None = None,
    positive_index: tf.Tensor | None = None,
    candidate_ids: tf.Tensor | None = None,
    remove_accidental_hits: bool = False,
    candidate_mask: tf.Tensor | None = None,
    correct_positive: bool = True,
    reduce: bool = True,
) -> tf.Tensor:
    """Reward-weighted corrected softmax loss, averaged over the batch (Eq. 4 of the paper).

    Args: as :func:`corrected_softmax_logits`, plus
      rewards: [batch_size] r_i >= 0 (default all 1); an all-zero batch gives a loss of 0.
      reduce: return the batch mean (default) or the per-example ``r_i * loss_i`` [batch_size].
    Returns:
      A scalar (or [batch_size]) float32 loss.
    Raises:
      ValueError: mismatched shapes, an empty batch, temperature <= 0, NaN or negative rewards,
        a non-finite log_q, a positive_index out of [0, num_candidates), fewer candidates than
        queries without positive_index (see :func:`prepare_inputs`; inside a graph the value checks
        raise tf.errors.InvalidArgumentError with the same message).
    """
    logits, positive_index = corrected_softmax_logits(
        query_embeddings,
        candidate_embeddings,
        temperature=temperature,
        log_q=log_q,
        positive_index=positive_index,
        candidate_ids=candidate_ids,
        remove_accidental_hits=remove_accidental_hits,
        candidate_mask=candidate_mask,
        correct_positive=correct_positive,
    )
    # One-hot labels with the dense fused kernel: measured faster on CPU than the sparse kernel.
    labels = tf.one_hot(positive_index, tf.shape(logits)[1], dtype=logits.dtype)
    per_example = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return reward_weighted(per_example, rewards, reduce)


# "auto": the blockwise loss from this many candidates per query on (measured crossover, docs/performance.md).
BLOCKWISE_FROM_CANDIDATES = 2048


def softmax_loss(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    rewards: tf.Tensor | None = None,
    positive_index: tf.Tensor | None = None,
    candidate_ids: tf.Tensor | None = None,
    remove_accidental_hits: bool = False,
    candidate_mask: tf.Tensor | None = None,
    correct_positive: bool = True,
    reduce: bool = True,
    implementation: str = "auto",
    block_size: int | None = None,
) -> tf.Tensor:
    """The corrected softmax loss, dense or blockwise: one entry point for every caller.

    Both implementations give the same value and gradients; they differ in memory and speed.
    ``"dense"`` (:func:`corrected_softmax_loss`) builds the [batch_size, num_candidates] logits;
    ``"blockwise"`` (:func:`yt_bias.core.blockwise_softmax.blockwise_softmax_loss`) walks over blocks of
    ``block_size`` candidates, memory linear in the batch. ``"auto"`` takes the blockwise loss when
    there are at least ``BLOCKWISE_FROM_CANDIDATES`` candidates (or their number is unknown when
    the graph is traced), the dense loss below.

    Args: as :func:`corrected_softmax_loss`, plus
      implementation: "auto", "dense" or "blockwise".
      block_size: candidates per block of the blockwise loss (None: its default).
    Returns:
      A scalar (or [batch_size] with ``reduce=False``) float32 loss.
    Raises:
      ValueError: an unknown implementation, block_size < 1, or any error of the chosen loss.
    """
    if implementation not in LOSS_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {LOSS_IMPLEMENTATIONS}; received {implementation!r}.")
    if implementation == "auto":
        num = tf.convert_to_tensor(candidate_embeddings).shape[0]
        implementation = "dense" if num is not None and num < BLOCKWISE_FROM_CANDIDATES else "blockwise"
    kwargs = dict(
        temperature=temperature,
        log_q=log_q,
        rewards=rewards,
        positive_index=positive_index,
        candidate_ids=candidate_ids,
        remove_accidental_hits=remove_accidental_hits,
        candidate_mask=candidate_mask,
        correct_positive=correct_positive,
        reduce=reduce,
    )
    if implementation == "dense":
        return corrected_softmax_loss(query_embeddings, candidate_embeddings, **kwargs)
    block_size = DEFAULT_BLOCK_SIZE if block_size is None else block_size
    return blockwise_softmax_loss(query_embeddings, candidate_embeddings, block_size=block_size, **kwargs)


# --- Khrylchenko et al. 2025, "Correcting the LogQ Correction" (arXiv 2507.09331) ---


def corrected_logq_loss(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    rewards: tf.Tensor | None = None,
    positive_index: tf.Tensor | None = None,
    candidate_ids: tf.Tensor | None = None,
    candidate_mask: tf.Tensor | None = None,
    reduce: bool = True,
) -> tf.Tensor:
    """The refined logQ-corrected sampled softmax of Khrylchenko et al. (RecSys 2025).

    The positive is always in the denominator (probability 1), so it is not treated as a sample:
    its logit is not corrected; it appears in the log-sum-exp once, as the positive (other
    columns carrying the positive's ID are dropped when ``candidate_ids`` is given); the
    negatives are corrected with the proposal that excludes the positive,
    ``log Q'_j = log q_j - log(1 - q_pos)`` (q_pos clipped to at most 0.999); and the per-example
    loss ``-log P_hat(pos)`` is weighted by ``stop_gradient(1 - P_hat(pos))``, the model's
    probability of misclassifying that example. q is on the scale of ``log_q`` (our estimator's
    per-step inclusion probability p_j), as in :func:`corrected_softmax_loss`.

    Args: as :func:`corrected_softmax_loss` (``remove_accidental_hits`` is implied by ``candidate_ids``).
    Returns:
      A scalar (or [batch_size] with ``reduce=False``) float32 loss.
    """
    query = tf.convert_to_tensor(query_embeddings, tf.float32)
    batch_size = tf.shape(query)[0]
    if positive_index is None:
        positive_index = tf.range(batch_size)
    positive_index = tf.cast(tf.convert_to_tensor(positive_index), tf.int32)
    positive_index = checked_positive_index(positive_index, tf.shape(candidate_embeddings)[0])  # before the gather below
    if log_q is not None:
        log_q = tf.convert_to_tensor(log_q, tf.float32)
        num = tf.shape(candidate_embeddings)[0]
        log_q = tf.broadcast_to(log_q if log_q.shape.rank == 2 else log_q[None, :], [batch_size, num])
        log_q_pos = tf.gather(log_q, positive_index, axis=1, batch_dims=1)
        q_pos = tf.minimum(tf.exp(log_q_pos), 0.999)
        log_q = log_q - tf.math.log1p(-q_pos)[:, None]
    logits, positive_index = corrected_softmax_logits(
        query,
        candidate_embeddings,
        temperature=temperature,
        log_q=log_q,
        positive_index=positive_index,
        candidate_ids=candidate_ids,
        remove_accidental_hits=candidate_ids is not None,
        candidate_mask=candidate_mask,
        correct_positive=False,
    )
    positive_logit = tf.gather(logits, positive_index, axis=1, batch_dims=1)
    log_p_hat = positive_logit - tf.reduce_logsumexp(logits, axis=1)
    per_example = -tf.stop_gradient(1.0 - tf.exp(log_p_hat)) * log_p_hat
    return reward_weighted(per_example, rewards, reduce)
