"""The corrected softmax loss in candidate blocks: memory linear in the batch, never [B, N].

The same loss as :func:`yt_bias.core.losses.softmax_loss` (section 3 of the paper),

    loss_i = log sum_j exp s_c(i, j) - s_c(i, pos_i),     s_c(i, j) = <u_i, v_j> / tau - log q_j,

computed without the [batch_size, num_candidates] logit matrix. The forward pass walks over
blocks of ``block_size`` candidates keeping a running maximum and a rescaled running sum per
query (a streaming log-sum-exp); the backward pass recomputes each block's logits, turns them into
softmax probabilities ``p_ij = exp(s_c(i, j) - lse_i)`` and accumulates

    dL/du_i = sum_j g_i p_ij v_j / tau,      dL/dv_j = sum_i g_i p_ij u_i / tau

block by block (``tf.custom_gradient``). Peak memory is O(batch_size * block_size) on top of the
embeddings, so a batch of 65536 fits where the dense loss needs tens of GB; the price is one
extra matrix product per block (the recomputation). Masks (accidental hits, ``candidate_mask``)
and a [batch_size, num_candidates] ``log_q`` are sliced per block. The loops are
``tf.while_loop``s: they run eagerly, inside ``tf.function`` and in a tf.distribute replica.
"""

from __future__ import annotations

from yt_bias._keras import tf
from yt_bias.core.loss_inputs import MASKED_LOGIT, LossInputs, prepare_inputs, reward_weighted

DEFAULT_BLOCK_SIZE = 256


class _Blocks:
    """The corrected, masked logits of one block of candidate columns, on demand.

    Without masks (the common in-batch case) an [N] log_q rides in the matrix product: the
    query gets a column of -1 and the candidates a column of log q, so a block's corrected
    logits are a single matmul, and in the backward pass one more column (-lse_i against 1)
    makes ``exp(matmul)`` the block's softmax probabilities directly.
    """

    def __init__(self, inputs: LossInputs, block_size: int):
        query, candidates, log_q, mask = inputs.query, inputs.candidates, inputs.log_q, inputs.candidate_mask
        self.temperature = inputs.temperature
        self.scaled_query = query / inputs.temperature
        self.candidates = candidates
        self.log_q = log_q
        self.positive_index = inputs.positive_index
        self.mask = mask
        self.correct_positive = inputs.correct_positive
        self.block_size = block_size
        self.num_candidates = tf.shape(candidates)[0]
        self.num_blocks = (self.num_candidates + block_size - 1) // block_size
        self.positive_codes = self.codes = None
        if inputs.candidate_ids is not None:  # equal IDs <=> equal integer codes: compare ints, not strings, per block
            _, codes = tf.unique(tf.reshape(inputs.candidate_ids, [-1]), out_idx=tf.int32)
            self.codes = codes
            self.positive_codes = tf.gather(codes, inputs.positive_index)
        self.needs_positive = (
            self.codes is not None or mask is not None or (log_q is not None and not inputs.correct_positive)
        )
        # The fused path: no per-entry masks and at most an [N] correction.
        self.fused = not self.needs_positive and (log_q is None or log_q.shape.rank == 1)
        self.fused_query, self.fused_candidates = self.scaled_query, candidates
        if self.fused and log_q is not None:
            self.fused_query = tf.concat([self.scaled_query, -tf.ones_like(self.scaled_query[:, :1])], axis=1)
            self.fused_candidates = tf.concat([candidates, log_q[:, None]], axis=1)

    def bounds(self, k):
        start = k * self.block_size
        return start, tf.minimum(start + self.block_size, self.num_candidates)

    def block(self, k):
        """(candidates [b, d], corrected masked logits [B, b], is_positive [B, b] or None) of block k."""
        start, end = self.bounds(k)
        candidates = self.candidates[start:end]
        if self.fused:
            return candidates, tf.matmul(self.fused_query, self.fused_candidates[start:end], transpose_b=True), None
        logits = tf.matmul(self.scaled_query, candidates, transpose_b=True)
        is_positive = None
        if self.needs_positive:
            is_positive = tf.equal(self.positive_index[:, None], tf.range(start, end)[None, :])
        if self.log_q is not None:
            correction = self.log_q[start:end][None, :] if self.log_q.shape.rank == 1 else self.log_q[:, start:end]
            if not self.correct_positive:
                correction = tf.where(is_positive, tf.zeros_like(logits), correction + tf.zeros_like(logits))
            logits = logits - correction
        keep = self.mask[:, start:end] if self.mask is not None else None
        if self.codes is not None:
            other_id = tf.not_equal(self.positive_codes[:, None], self.codes[start:end][None, :])
            keep = other_id if keep is None else tf.logical_and(keep, other_id)
        if keep is not None:
            keep = tf.logical_or(keep, is_positive)  # the positive always stays
            logits = tf.where(keep, logits, tf.constant(MASKED_LOGIT, logits.dtype))
        return candidates, logits, is_positive

    def probabilities(self, k, log_normaliser, shifted_query):
        """(candidates [b, d], softmax probabilities p_ij [B, b], is_positive or None) of block k."""
        if not self.fused:
            candidates, logits, is_positive = self.block(k)
            return candidates, tf.exp(logits - log_normaliser[:, None]), is_positive
        start, end = self.bounds(k)
        candidates = self.fused_candidates[start:end]
        shifted = tf.concat([candidates, tf.ones_like(candidates[:, :1])], axis=1)
        return self.candidates[start:end], tf.exp(tf.matmul(shifted_query, shifted, transpose_b=True)), None


def _logsumexp(blocks: _Blocks, query: tf.Tensor, candidates: tf.Tensor, log_q: tf.Tensor | None) -> tf.Tensor:
    """lse_i = log sum_j exp s_c(i, j) [B], differentiable in query and candidates (and an [N] log_q)."""
    batch_size = tf.shape(query)[0]
    dim = tf.shape(candidates)[1]
    inputs = (query, candidates) if log_q is None else (query, candidates, log_q)

    @tf.custom_gradient
    def lse(*_inputs):
        def body(k, running_max, running_sum):
            _, logits, _ = blocks.block(k)
            new_max = tf.maximum(running_max, tf.reduce_max(logits, axis=1))
            running_sum = running_sum * tf.exp(running_max - new_max) + tf.reduce_sum(tf.exp(logits - new_max[:, None]), axis=1)
            return k + 1, new_max, running_sum

        _, running_max, running_sum = tf.while_loop(
            lambda k, *_: k < blocks.num_blocks,
            body,
            (tf.constant(0), tf.fill([batch_size], tf.constant(-float("inf"))), tf.zeros([batch_size])),
            parallel_iterations=1,  # one block alive at a time: the memory bound
        )
        value = running_max + tf.math.log(running_sum)

        def grad(upstream):
            # dL/dlogit_ij = g_i p_ij; the row weights g_i / tau are applied to [B, d] factors, not to [B, b] blocks.
            row_weight = upstream / blocks.temperature
            weighted_query = query * row_weight[:, None]
            shifted_query = tf.concat([blocks.fused_query, -value[:, None]], axis=1) if blocks.fused else None

            def body(k, grad_query, grad_candidates, grad_log_q):
                candidates_k, probabilities, is_positive = blocks.probabilities(k, value, shifted_query)
                grad_query += tf.matmul(probabilities, candidates_k)
                grad_candidates = grad_candidates.write(k, tf.matmul(probabilities, weighted_query, transpose_a=True))
                if log_q is not None:
                    if not blocks.correct_positive:
                        probabilities = tf.where(is_positive, tf.zeros_like(probabilities), probabilities)
                    grad_log_q = grad_log_q.write(k, -tf.linalg.matvec(probabilities, upstream, transpose_a=True))
                return k + 1, grad_query, grad_candidates, grad_log_q

            block_arrays = [
                tf.TensorArray(tf.float32, size=blocks.num_blocks, infer_shape=False, element_shape=shape)
                for shape in (tf.TensorShape([None, candidates.shape[1]]), tf.TensorShape([None]))
            ]
            _, grad_query, grad_candidates, grad_log_q = tf.while_loop(
                lambda k, *_: k < blocks.num_blocks,
                body,
                (tf.constant(0), tf.zeros_like(query), block_arrays[0], block_arrays[1]),
                parallel_iterations=1,
            )
            grad_query *= row_weight[:, None]
            grad_candidates = tf.reshape(grad_candidates.concat(), [-1, dim])
            if log_q is None:
                return grad_query, grad_candidates
            return grad_query, grad_candidates, grad_log_q.concat()

        return value, grad

    return lse(*inputs)


def blockwise_softmax_loss(
    query_embeddings: tf.Tensor,
    candidate_embeddings: tf.Tensor,
    temperature: float = 1.0,
    log_q: tf.Tensor | None = None,
    rewards: tf.Tensor | None = None,
    *,
    reduce: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    **options,
) -> tf.Tensor:
    """Reward-weighted corrected softmax loss (Eq. 4 of the paper) over candidate blocks.

    :func:`yt_bias.core.losses.softmax_loss` with ``implementation="blockwise"``: value and
    gradients equal the dense loss's (to float32 rounding); only memory and speed differ (see the
    module docstring). The gradient of log_q is exact for an [num_candidates] log_q and None for a
    [batch_size, num_candidates] one.

    Args: as :func:`yt_bias.core.losses.softmax_loss`, with
      block_size: candidates per block (memory ~ batch_size * block_size floats per live tensor).
    Raises:
      ValueError: as :func:`yt_bias.core.losses.softmax_loss`, and block_size < 1.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1; received {block_size!r}.")
    inputs = prepare_inputs(query_embeddings, candidate_embeddings, temperature, log_q, **options)
    query, candidates, log_q, positive_index = inputs.query, inputs.candidates, inputs.log_q, inputs.positive_index
    blocks = _Blocks(inputs, block_size)
    log_normaliser = _logsumexp(blocks, query, candidates, log_q if log_q is None or log_q.shape.rank == 1 else None)
    positive_logit = tf.reduce_sum(query * tf.gather(candidates, positive_index), axis=1) / inputs.temperature
    if log_q is not None and inputs.correct_positive:
        if log_q.shape.rank == 1:
            positive_logit -= tf.gather(log_q, positive_index)
        else:  # (no gradient for a [B, N] log_q at all, rather than one for the positives only)
            positive_logit -= tf.gather(tf.stop_gradient(log_q), positive_index, axis=1, batch_dims=1)
    return reward_weighted(log_normaliser - positive_logit, rewards, reduce)
