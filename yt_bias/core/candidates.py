"""Typed blocks of softmax candidates and the one rule that turns them into log q.

A negative-sampling sampler returns a :class:`CandidateBlock`: its columns' embeddings and item
IDs, which queries see them, and each column's *expected count*, the expected number of copies of
the column's item among the candidates a query sees, on the streaming estimator's scale (p_j, the
expected count of item j in a batch of B positives). The mixture of all samplers is a
:class:`Proposal` (how many unigram draws, how many uniform draws per query), so a column of any
block gets the same count for the same item: ``unigram * p_j + uniform_draws / N``.

:func:`concat_blocks` stacks the blocks into the loss's inputs; its log q is
``log(expected count)``, plus, for a query whose candidates surely hold an item (mined for it),
that item's inclusion probability; fixed columns (impressions) keep their own constant log q.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from yt_bias._keras import tf
from yt_bias.core.frequency import FrequencySource

MIN_COUNT = 1e-12


@dataclasses.dataclass(frozen=True)
class Proposal:
    """The mixture every sampler draws from, seen from one query.

    Attributes:
      unigram: expected unigram draws per batch position: 1 for the batch's own positives, plus
        ``filled / B`` for a cross-batch memory of ``filled`` earlier positives (a float, or a
        scalar float32 tensor when it depends on the memory's state).
      uniform_draws: items drawn uniformly from the corpus that a query sees (shared plus per query).
      num_items: N, the corpus size.
    """

    unigram: float | tf.Tensor
    uniform_draws: int
    num_items: int

    @property
    def uniform(self) -> float:
        """The expected count of any one item among the uniform draws, ``uniform_draws / N``."""
        return self.uniform_draws / self.num_items

    def expected_count(self, log_p: tf.Tensor) -> tf.Tensor:
        """``unigram * p_j + uniform_draws / N`` of items with sampling log-probabilities ``log_p`` [n]: [n] float32."""
        return self.unigram * tf.exp(log_p) + self.uniform

    def count_of(self, frequency: FrequencySource | None, ids: tf.Tensor) -> tf.Tensor | None:
        """The expected count [n] of items ``ids`` [n] under ``frequency``; None without a frequency source.

        ``p`` is read without an update through the source's own
        :meth:`~yt_bias.core.frequency.FrequencySource.log_q`, as the positives' block reads it:
        clipped on the estimand's scale (at 1 for an inclusion probability, not for an expected count).
        """
        if frequency is None:
            return None
        return self.expected_count(frequency.log_q(ids))


@dataclasses.dataclass(frozen=True)
class BatchView:
    """What samplers may read of one batch (never the model).

    Attributes:
      features: the batch's feature columns (the towers' inputs, the item ID, optional extras).
      query: [B, d] the queries' embeddings.
      items: [B, d] the positives' embeddings (the item tower on the batch).
      ids: [B] string, the positives' item IDs.
      log_p: [B] float32 log sampling probabilities of the positives (read, and updated, by the
        model's frequency source), or None without one.
    """

    features: Mapping[str, tf.Tensor]
    query: tf.Tensor
    items: tf.Tensor
    ids: tf.Tensor
    log_p: tf.Tensor | None

    @property
    def batch_size(self) -> tf.Tensor:
        """B, a scalar int32 tensor."""
        return tf.shape(self.items)[0]


@dataclasses.dataclass(frozen=True)
class CandidateBlock:
    """Columns of candidates a sampler adds to the softmax.

    Attributes:
      embeddings: [N, d] the columns' item embeddings.
      ids: [N] string item IDs (accidental hits, and which items a query surely sees).
      mask: [B, N] bool, True where query i sees column j; None: every query sees every column.
      expected_count: [N] float32, the expected number of copies of the column's item among a
        query's candidates (its log is log q); None when nothing is corrected (no frequency source).
      fixed_log_q: for a block of fixed candidates (included with probability 1), their log q;
        ``expected_count`` is then ignored. None for sampled columns.
      sure_ids: [B, k] string, items that are surely among query i's candidates (mined for it);
        each column holding one of them gets ``sure_probability`` more expected count for query i.
      sure_probability: the probability that a ``sure_ids`` item is among the query's candidates.
      gradient: False when the embeddings carry no gradient (stored in a memory).
    """

    embeddings: tf.Tensor
    ids: tf.Tensor
    mask: tf.Tensor | None = None
    expected_count: tf.Tensor | None = None
    fixed_log_q: float | None = None
    sure_ids: tf.Tensor | None = None
    sure_probability: float = 1.0
    gradient: bool = True

    @property
    def size(self) -> tf.Tensor:
        """N, the number of columns: a scalar int32 tensor."""
        return tf.shape(self.ids)[0]

    @property
    def corrected(self) -> bool:
        """Whether the block carries a sampling correction."""
        return self.fixed_log_q is not None or self.expected_count is not None

    @property
    def log_q(self) -> tf.Tensor | None:
        """[N] float32 log q of the block on its own (no sure inclusions of other blocks), or None."""
        if self.fixed_log_q is not None:
            return tf.fill([self.size], tf.constant(self.fixed_log_q, tf.float32))
        if self.expected_count is None:
            return None
        return tf.math.log(tf.maximum(self.expected_count, MIN_COUNT))


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Every candidate of one batch, the loss's inputs.

    Attributes:
      embeddings: [N, d]; ids: [N] string; mask: [B, N] bool; log_q: [B, N] float32 or None.
    """

    embeddings: tf.Tensor
    ids: tf.Tensor
    mask: tf.Tensor
    log_q: tf.Tensor | None


def _sure_members(sure_ids: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """[B, N] bool: column j's item is among query i's ``sure_ids`` [B, k]."""
    hashed = tf.strings.to_hash_bucket_fast(ids, 1 << 62)
    sure = tf.strings.to_hash_bucket_fast(sure_ids, 1 << 62)
    return tf.reduce_any(tf.equal(sure[:, :, None], hashed[None, None, :]), axis=1)


def concat_blocks(blocks: Sequence[CandidateBlock], batch_size: tf.Tensor) -> Candidates:
    """Stacks blocks (the batch's positives first) into the candidates of one batch.

    log q of query i and column j is ``log(count_j + sure_probability * [j's item surely among
    query i's candidates])`` for sampled columns and the block's constant for fixed ones.

    Args:
      blocks: the blocks, in column order; the first holds the positives (column i of query i).
      batch_size: B, a scalar int32 tensor.
    Returns:
      The :class:`Candidates`: embeddings [N, d], ids [N], mask [B, N], log q [B, N] (None when
      no block is corrected).
    Raises:
      ValueError: no block, or some blocks corrected and others not.
    """
    if not blocks:
        raise ValueError("concat_blocks needs at least one block (the positives); received none.")
    corrected = [block.corrected for block in blocks]
    if any(corrected) and not all(corrected):
        raise ValueError(f"concat_blocks: every block must carry a correction or none; received corrected={corrected}.")
    embeddings = tf.concat([block.embeddings for block in blocks], axis=0)
    ids = tf.concat([block.ids for block in blocks], axis=0)
    mask = tf.concat(
        [block.mask if block.mask is not None else tf.ones([batch_size, block.size], tf.bool) for block in blocks], axis=1
    )
    if not all(corrected):
        return Candidates(embeddings, ids, mask, None)
    counts = [tf.ones([block.size]) if block.fixed_log_q is not None else block.expected_count for block in blocks]
    count = tf.concat(counts, axis=0)
    count = tf.broadcast_to(count[None, :], [batch_size, tf.shape(count)[0]])
    for block in blocks:
        if block.sure_ids is not None:
            count = count + block.sure_probability * tf.cast(_sure_members(block.sure_ids, ids), tf.float32)
    log_q = tf.math.log(tf.maximum(count, MIN_COUNT))
    if any(block.fixed_log_q is not None for block in blocks):
        fixed = tf.concat([tf.fill([block.size], block.fixed_log_q is not None) for block in blocks], axis=0)
        values = tf.concat([tf.fill([block.size], float(block.fixed_log_q or 0.0)) for block in blocks], axis=0)
        log_q = tf.where(
            tf.broadcast_to(fixed[None, :], tf.shape(log_q)), tf.broadcast_to(values[None, :], tf.shape(log_q)), log_q
        )
    return Candidates(embeddings, ids, mask, log_q)
