"""The corrected in-batch softmax (section 3 of the paper) in ``keras.ops``: dense or blockwise.

For query i with embedding u_i, candidates v_j, temperature tau and log sampling probabilities
log q_j (:mod:`yt_bias.core.losses` computes the same in TensorFlow for the tf-keras path)::

    s_c(i, j) = <u_i, v_j> / tau - log q_j          (every logit, the positive included)
    loss_i    = log sum_j exp s_c(i, j) - s_c(i, i)
    L         = (1 / B) sum_i r_i loss_i             (Eq. 4: reward-weighted mean)

Query i's positive is candidate i; candidates beyond the B queries are extra negatives for every
query. Removing accidental hits masks candidate j for query i when ``ids[j] == ids[i]`` and
``j != i``; ``candidate_mask[i, j] = False`` masks it too (the positive always stays).

``"dense"`` builds the [B, N] logits. ``"blockwise"`` walks over blocks of ``block_size``
candidates with a running log-sum-exp and, in its custom gradient, recomputes each block's
softmax probabilities: memory O(B * block_size) beyond the embeddings, the same value and
gradients (to float32 rounding). Shapes are static: the candidates are padded to whole blocks and
the padding is masked.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from yt_bias.config import LOSS_IMPLEMENTATIONS

MASKED_LOGIT = -1e9
DEFAULT_BLOCK_SIZE = 256
# "auto" takes the blockwise loss from this many candidates on: the crossover the tf-keras path
# measured (yt_bias.core.losses.BLOCKWISE_FROM_CANDIDATES; a test keeps the two equal).
BLOCKWISE_FROM_CANDIDATES = 2048


def _concrete(x) -> np.ndarray | None:
    """``x`` as numpy when it holds values (eager), None while it is traced (jit, tf.function)."""
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # a tracer or a symbolic tensor: no values to check
        return None


def _checked_rewards(rewards, batch_size: int):
    rewards = ops.cast(ops.convert_to_tensor(rewards), "float32")
    if tuple(rewards.shape) != (batch_size,):
        raise ValueError(f"sample_weight must be [batch_size] = [{batch_size}]; received shape {tuple(rewards.shape)}.")
    values = _concrete(rewards)
    if values is not None:
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            raise ValueError(f"sample_weight must be finite and >= 0; received {values[bad][:5].tolist()}.")
        return rewards
    # Traced: a bad weight turns the loss into NaN rather than into a wrong number.
    ok = ops.logical_and(ops.isfinite(rewards), rewards >= 0)
    return ops.where(ok, rewards, np.float32(np.nan))


def _checked_inputs(query, candidates, log_q, candidate_ids, remove_accidental_hits, candidate_mask, temperature):
    query = ops.cast(ops.convert_to_tensor(query), "float32")
    candidates = ops.cast(ops.convert_to_tensor(candidates), "float32")
    if len(query.shape) != 2:
        raise ValueError(f"query_embeddings must be [batch_size, dim]; received shape {tuple(query.shape)}.")
    if len(candidates.shape) != 2:
        raise ValueError(f"candidate_embeddings must be [num_candidates, dim]; received shape {tuple(candidates.shape)}.")
    (batch, dim), (num, cdim) = query.shape, candidates.shape
    if batch is None or num is None:
        raise ValueError(f"the Keras 3 loss needs static batch and candidate counts; received {query.shape} and {candidates.shape}.")
    if batch == 0:
        raise ValueError("query_embeddings is an empty batch: expected batch_size >= 1; received 0 rows.")
    if dim != cdim:
        raise ValueError(f"query_embeddings and candidate_embeddings must have one width; received {dim} and {cdim}.")
    if num < batch:
        raise ValueError(f"query i's positive is candidate i: expected num_candidates >= batch_size; received {num} for {batch}.")
    if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0):
        raise ValueError(f"temperature must be > 0; received {temperature!r}.")
    if log_q is not None:
        log_q = ops.cast(ops.convert_to_tensor(log_q), "float32")
        if tuple(log_q.shape) != (num,):
            raise ValueError(f"log_q must be [num_candidates] = [{num}]; received shape {tuple(log_q.shape)}.")
        values = _concrete(log_q)
        if values is not None and not np.all(np.isfinite(values)):
            raise ValueError(f"log_q must be finite; received {values[~np.isfinite(values)][:5].tolist()}.")
    if remove_accidental_hits:
        if candidate_ids is None:
            raise ValueError("remove_accidental_hits=True needs candidate_ids [num_candidates]; received None.")
        candidate_ids = ops.convert_to_tensor(candidate_ids)
        if len(candidate_ids.shape) == 2 and candidate_ids.shape[1] == 1:
            candidate_ids = ops.reshape(candidate_ids, (-1,))
        if tuple(candidate_ids.shape) != (num,):
            raise ValueError(f"candidate_ids must be [num_candidates] or [num_candidates, 1] with num_candidates = {num}; "
                             f"received shape {tuple(candidate_ids.shape)}.")
    if candidate_mask is not None:
        candidate_mask = ops.cast(ops.convert_to_tensor(candidate_mask), "bool")
        if tuple(candidate_mask.shape) != (batch, num):
            raise ValueError(f"candidate_mask must be [batch_size, num_candidates] = [{batch}, {num}]; "
                             f"received {tuple(candidate_mask.shape)}.")
    return query, candidates, log_q, candidate_ids if remove_accidental_hits else None, candidate_mask


def _keep(positive_ids, ids, mask, rows, columns):
    """[B, b] bool: candidate columns kept for each query (None: all kept), the positive always."""
    keep = None
    if ids is not None:
        keep = ops.not_equal(positive_ids[:, None], ids[None, :])
    if mask is not None:
        keep = mask if keep is None else ops.logical_and(keep, mask)
    if keep is None:
        return None
    return ops.logical_or(keep, ops.equal(rows[:, None], columns[None, :]))


def _dense_logsumexp(query, candidates, log_q, ids, mask):
    logits = ops.matmul(query, ops.transpose(candidates))
    if log_q is not None:
        logits = logits - log_q[None, :]
    batch, num = query.shape[0], candidates.shape[0]
    keep = _keep(None if ids is None else ids[:batch], ids, mask, ops.arange(batch), ops.arange(num))
    if keep is not None:
        logits = ops.where(keep, logits, np.float32(MASKED_LOGIT))
    return ops.logsumexp(logits, axis=1)


def _blockwise_logsumexp(query, candidates, log_q, ids, mask, block_size: int):
    batch, dim = query.shape
    num = candidates.shape[0]
    num_blocks = -(-num // block_size)
    pad = num_blocks * block_size - num
    if log_q is None:
        log_q = ops.zeros((num,), "float32")
    positive_ids = None if ids is None else ids[:batch]
    if pad:
        candidates = ops.pad(candidates, [[0, pad], [0, 0]])
        log_q = ops.pad(log_q, [[0, pad]])
        if ids is not None:
            ids = ops.pad(ids, [[0, pad]])
        if mask is not None:
            mask = ops.pad(mask, [[0, 0], [0, pad]])
    rows = ops.arange(batch, dtype="int32")

    def block(k, q, c, lq, transposed=False):
        """(candidates [b, d], corrected, masked logits [B, b] (transposed: [b, B])) of block k."""
        start = k * block_size
        cb = ops.slice(c, [start, 0], [block_size, dim])
        block_log_q = ops.slice(lq, [start], [block_size])
        if transposed:
            logits = ops.matmul(cb, ops.transpose(q)) - block_log_q[:, None]
        else:
            logits = ops.matmul(q, ops.transpose(cb)) - block_log_q[None, :]
        columns = start + ops.arange(block_size, dtype="int32")
        keep = _keep(positive_ids, None if ids is None else ops.slice(ids, [start], [block_size]),
                     None if mask is None else ops.slice(mask, [0, start], [batch, block_size]), rows, columns)
        if pad:
            valid = columns[None, :] < num
            keep = valid if keep is None else ops.logical_and(keep, valid)
        if keep is not None:
            logits = ops.where(ops.transpose(keep) if transposed else keep, logits, np.float32(MASKED_LOGIT))
        return cb, logits

    @ops.custom_gradient
    def logsumexp(q, c, lq):
        def forward(k, carry):
            running_max, running_sum = carry
            _, logits = block(k, q, c, lq)
            new_max = ops.maximum(running_max, ops.max(logits, axis=1))
            running_sum = running_sum * ops.exp(running_max - new_max) + ops.sum(ops.exp(logits - new_max[:, None]), axis=1)
            return new_max, running_sum

        initial = (ops.full((batch,), -np.inf, "float32"), ops.zeros((batch,), "float32"))
        running_max, running_sum = ops.fori_loop(0, num_blocks, forward, initial)
        value = running_max + ops.log(running_sum)

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            weighted_query = q * upstream[:, None]  # the row weights g_i on [B, d], not on every block

            def backward(k, carry):
                # Block k's probabilities p_ij transposed, [b, B]: no product below contracts over the
                # rows of a [B, b] block (XLA on CPU ran that product ~3x slower than these).
                grad_query_t, grad_c, grad_lq = carry
                cb, logits_t = block(k, q, c, lq, transposed=True)
                probabilities_t = ops.exp(logits_t - value[None, :])
                start = k * block_size
                grad_query_t = grad_query_t + ops.matmul(ops.transpose(cb), probabilities_t)  # [d, B]
                grad_c = ops.slice_update(grad_c, [start, 0], ops.matmul(probabilities_t, weighted_query))
                grad_lq = ops.slice_update(grad_lq, [start], -ops.matmul(probabilities_t, upstream))
                return grad_query_t, grad_c, grad_lq

            initial = (ops.zeros((dim, batch), "float32"), ops.zeros_like(c), ops.zeros_like(lq))
            grad_query_t, grad_c, grad_lq = ops.fori_loop(0, num_blocks, backward, initial)
            return ops.transpose(grad_query_t) * upstream[:, None], grad_c, grad_lq

        return value, grad

    return logsumexp(query, candidates, log_q)


def softmax_loss(
    query_embeddings,
    candidate_embeddings,
    temperature: float = 1.0,
    log_q=None,
    rewards=None,
    candidate_ids=None,
    remove_accidental_hits: bool = False,
    candidate_mask=None,
    reduce: bool = True,
    implementation: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
):
    """The corrected in-batch softmax loss (see the module docstring), on any Keras 3 backend.

    Args:
      query_embeddings: [batch_size, dim] u; query i's positive is candidate i.
      candidate_embeddings: [num_candidates, dim] v, num_candidates >= batch_size.
      temperature: tau > 0.
      log_q: [num_candidates] log sampling probabilities (finite), or None (no correction).
      rewards: [batch_size] weights r_i >= 0 (default all 1).
      candidate_ids: [num_candidates] or [num_candidates, 1] IDs, for removing accidental hits.
      remove_accidental_hits: mask candidates other than the positive that carry its ID.
      candidate_mask: [batch_size, num_candidates] bool; False masks a candidate for that query.
      reduce: the batch mean (default) or the per-example ``r_i * loss_i`` [batch_size].
      implementation: "auto" (blockwise from ``BLOCKWISE_FROM_CANDIDATES`` candidates), "dense", "blockwise".
      block_size: candidates per block of the blockwise loss.
    Returns:
      A float32 scalar (or [batch_size]).
    Raises:
      ValueError: mismatched shapes, temperature <= 0, accidental-hit removal without IDs, an
        unknown implementation or block size, and (with values at hand) a non-finite ``log_q`` or
        a negative or non-finite reward; traced, a bad reward makes the loss NaN.
    """
    if implementation not in LOSS_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {LOSS_IMPLEMENTATIONS}; received {implementation!r}.")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1; received {block_size!r}.")
    query, candidates, log_q, ids, mask = _checked_inputs(
        query_embeddings, candidate_embeddings, log_q, candidate_ids, remove_accidental_hits, candidate_mask, temperature
    )
    batch, num = query.shape[0], candidates.shape[0]
    if implementation == "auto":
        implementation = "dense" if num < BLOCKWISE_FROM_CANDIDATES else "blockwise"
    scaled = query / np.float32(temperature)
    if implementation == "dense":
        log_normaliser = _dense_logsumexp(scaled, candidates, log_q, ids, mask)
    else:
        log_normaliser = _blockwise_logsumexp(scaled, candidates, log_q, ids, mask, block_size)
    positive = ops.sum(scaled * candidates[:batch], axis=1)
    if log_q is not None:
        positive = positive - log_q[:batch]
    per_example = log_normaliser - positive
    if rewards is not None:
        per_example = _checked_rewards(rewards, batch) * per_example
    return ops.mean(per_example) if reduce else per_example
