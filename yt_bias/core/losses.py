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
    **options,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The corrected, masked logits and the positives' positions (see the module docstring).

    Args:
      query_embeddings, candidate_embeddings, temperature, log_q: as
        :func:`~yt_bias.core.loss_inputs.prepare_inputs`.
      **options: ``positive_index``, ``candidate_ids``, ``remove_accidental_hits``,
        ``candidate_mask``, ``correct_positive``, as :func:`~yt_bias.core.loss_inputs.prepare_inputs`.
    Returns:
      (logits [batch_size, num_candidates], positive_index [batch_size] int32).
    """
    inputs = prepare_inputs(query_embeddings, candidate_embeddings, temperature, log_q, **options)
    positive_index, log_q = inputs.positive_index, inputs.log_q
    num_candidates = tf.shape(inputs.candidates)[0]
    needs_mask = inputs.candidate_ids is not None or inputs.candidate_mask is not None
    if needs_mask or (log_q is not None and not inputs.correct_positive):
        is_positive = tf.one_hot(positive_index, num_candidates, on_value=True, off_value=False, dtype=tf.bool)

    logits = tf.matmul(inputs.query, inputs.candidates, transpose_b=True) / inputs.temperature
    if log_q is not None:
        correction = log_q if log_q.shape.rank == 2 else log_q[None, :]
        if not inputs.correct_positive:
            correction = tf.broadcast_to(correction, tf.shape(logits))
            correction = tf.where(is_positive, tf.zeros_like(correction), correction)
        logits = logits - correction

    if needs_mask:  # (no mask: skip the [B, N] select altogether, the common in-batch case)
        keep = inputs.candidate_mask
        if inputs.candidate_ids is not None:
            positive_ids = tf.gather(inputs.candidate_ids, positive_index)
            other_id = tf.not_equal(positive_ids[:, None], inputs.candidate_ids[None, :])
            keep = other_id if keep is None else tf.logical_and(keep, other_id)
        keep = tf.logical_or(keep, is_positive)  # the positive always stays
        logits = tf.where(keep, logits, tf.fill(tf.shape(logits), tf.constant(MASKED_LOGIT, logits.dtype)))
    return logits, positive_index


# "auto": the blockwise loss from this many candidates per query on (measured crossover, docs/performance.md).
BLOCKWISE_FROM_CANDIDATES = 2048


def softmax_loss(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    rewards: tf.Tensor | None = None,
    *,
    reduce: bool = True,
    implementation: str = "auto",
    block_size: int | None = None,
    **options,
) -> tf.Tensor:
    """Reward-weighted corrected softmax loss (Eq. 4 of the paper), dense or blockwise.

    Both implementations give the same value and gradients; they differ in memory and speed.
    ``"dense"`` builds the [batch_size, num_candidates] logits (:func:`corrected_softmax_logits`);
    ``"blockwise"`` (:func:`~yt_bias.core.blockwise_softmax.blockwise_softmax_loss`) walks over blocks of ``block_size``
    candidates, memory linear in the batch. ``"auto"`` takes the blockwise loss when there are at
    least ``BLOCKWISE_FROM_CANDIDATES`` candidates (or their number is unknown when the graph is
    traced), the dense loss below.

    Args:
      query_embeddings, candidate_embeddings, temperature, log_q: as
        :func:`~yt_bias.core.loss_inputs.prepare_inputs`.
      rewards: [batch_size] r_i >= 0 (default all 1); an all-zero batch gives a loss of 0.
      reduce: return the batch mean (default) or the per-example ``r_i * loss_i`` [batch_size].
      implementation: "auto", "dense" or "blockwise".
      block_size: candidates per block of the blockwise loss (None: its default); memory is about
        batch_size * block_size floats per live tensor.
      **options: ``positive_index``, ``candidate_ids``, ``remove_accidental_hits``,
        ``candidate_mask``, ``correct_positive``, as :func:`~yt_bias.core.loss_inputs.prepare_inputs`.
    Returns:
      A scalar (or [batch_size] with ``reduce=False``) float32 loss.
    Raises:
      ValueError: an unknown implementation, block_size < 1, mismatched shapes, an empty batch,
        temperature <= 0, NaN or negative rewards, a non-finite log_q, a positive_index out of
        [0, num_candidates), fewer candidates than queries without positive_index (inside a graph
        the value checks raise tf.errors.InvalidArgumentError with the same message).
      TypeError: an option that is not one of the above.

    Example:
    >>> import numpy as np
    >>> from yt_bias.core.losses import log_probability, softmax_loss
    >>> u = v = np.eye(3, dtype="float32")
    >>> round(float(softmax_loss(u, v, temperature=1.0, log_q=log_probability([0.5, 0.5, 0.5]))), 4)
    0.5514
    """
    if implementation not in LOSS_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {LOSS_IMPLEMENTATIONS}; received {implementation!r}.")
    if implementation == "auto":
        num = tf.convert_to_tensor(candidate_embeddings).shape[0]
        implementation = "dense" if num is not None and num < BLOCKWISE_FROM_CANDIDATES else "blockwise"
    if implementation == "blockwise":
        block_size = DEFAULT_BLOCK_SIZE if block_size is None else block_size
        return blockwise_softmax_loss(
            query_embeddings, candidate_embeddings, temperature, log_q, rewards, reduce=reduce, block_size=block_size, **options
        )
    logits, positive_index = corrected_softmax_logits(query_embeddings, candidate_embeddings, temperature, log_q, **options)
    # One-hot labels with the dense fused kernel: measured faster on CPU than the sparse kernel.
    labels = tf.one_hot(positive_index, tf.shape(logits)[1], dtype=logits.dtype)
    per_example = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return reward_weighted(per_example, rewards, reduce)


def corrected_softmax_loss(query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor, *args, **kwargs) -> tf.Tensor:
    """The dense loss: :func:`softmax_loss` with ``implementation="dense"`` (same arguments)."""
    return softmax_loss(query_embeddings, candidate_embeddings, *args, implementation="dense", **kwargs)

# --- Khrylchenko et al. 2025, "Correcting the LogQ Correction" (arXiv 2507.09331) ---


def corrected_logq_loss(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    rewards: tf.Tensor | None = None,
    *,
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

    Args: as :func:`softmax_loss` (``remove_accidental_hits`` is implied by ``candidate_ids``).
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
        temperature,
        log_q,
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
