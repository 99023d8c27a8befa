"""Samplers of softmax candidates: each draws one typed block from the item tower and the frequency source.

Every sampler has ``sample(view, item_tower, frequency, proposal, training) -> CandidateBlock``
(:mod:`yt_bias.core.candidates`) and never sees the model: it reads the batch through a
:class:`~yt_bias.core.candidates.BatchView`, embeds the items it draws with ``item_tower``, and
takes each column's expected count from ``proposal`` and ``frequency`` (no correction when
``frequency`` is None). Its share of the proposal is ``unigram(batch_size)`` (expected unigram
draws per batch position) and ``uniform_draws`` (uniform items a query sees).

* :class:`InBatchSampler`: the batch's positives (the paper's in-batch softmax);
* :class:`SharedUniformSampler`: B' uniform items shared by the batch (mixed negative sampling);
* :class:`UniformPerQuerySampler`: K uniform items per query (random negatives);
* :class:`ImpressionSampler`: each query's shown-not-clicked items (fixed hard negatives);
* :class:`MinedSampler`: each query's k highest-scoring items under the current towers;
* the cross-batch memory: :class:`yt_bias.core.cross_batch.CrossBatchSampler`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from yt_bias._keras import tf
from yt_bias.core.candidates import BatchView, CandidateBlock, Proposal
from yt_bias.core.frequency import FrequencySource

HARD_NEGATIVES = "hard_negative_index"

ItemTower = Callable[..., tf.Tensor]


class ItemCorpus:
    """The item corpus as constants, so sampled corpus indices become item-tower inputs in the graph.

    Args:
      items: ``{feature: [num_items, ...] array}`` (``RecDataset.items``), the item-ID feature included.
      item_id: the name of the item-ID feature (held as strings).
    Raises:
      ValueError: ``items`` has no ``item_id`` feature, or features of different lengths.
    """

    def __init__(self, items: Mapping[str, np.ndarray], item_id: str = "item_id"):
        if item_id not in items:
            raise ValueError(f"items has no item-ID feature '{item_id}'; present: {sorted(items)}.")
        arrays = {name: np.asarray(values) for name, values in items.items()}
        lengths = {name: len(values) for name, values in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"items: every feature must have one row per item; received lengths {lengths}.")
        self.arrays = arrays
        self.item_id = item_id
        self.num_items = lengths[item_id]
        self.columns = {name: tf.constant(values) for name, values in arrays.items()}
        self.columns[item_id] = tf.constant(arrays[item_id].astype(str))

    def rows(self, index: tf.Tensor) -> dict[str, tf.Tensor]:
        """The item features of corpus rows ``index`` [n] int64: ``{feature: [n, ...]}``."""
        return {name: tf.gather(values, index) for name, values in self.columns.items()}

    def ids(self, index: tf.Tensor) -> tf.Tensor:
        """The string item IDs of corpus rows ``index`` (any shape): same shape, tf.string."""
        return tf.gather(self.columns[self.item_id], index)


def per_query_mask(batch_size: tf.Tensor, width: int, valid: tf.Tensor) -> tf.Tensor:
    """[B, B * width] bool: column j belongs to query ``j // width`` and is ``valid[j]`` [B * width]."""
    owner = tf.repeat(tf.range(batch_size), width)
    return tf.logical_and(tf.equal(tf.range(batch_size)[:, None], owner[None, :]), valid[None, :])


class Sampler:
    """A sampler's share of the proposal; subclasses implement :meth:`sample`."""

    #: uniform corpus items a query sees from this sampler.
    uniform_draws: int = 0

    def unigram(self, batch_size: tf.Tensor) -> float | tf.Tensor:
        """Expected unigram draws per batch position that this sampler adds (0.0: none)."""
        return 0.0

    def sample(
        self, view: BatchView, item_tower: ItemTower, frequency: FrequencySource | None, proposal: Proposal, training: bool
    ) -> CandidateBlock:
        """One block of candidates for the batch ``view``.

        Args:
          view: the batch: features, query [B, d] and positive [B, d] embeddings, IDs [B], log p [B].
          item_tower: ``item_tower(rows, training=...) -> [n, d]`` for rows of item features.
          frequency: the model's frequency source, or None (no correction).
          proposal: the mixture of all samplers (:class:`~yt_bias.core.candidates.Proposal`).
          training: whether the towers run in training mode.
        Returns:
          A :class:`~yt_bias.core.candidates.CandidateBlock` of N columns (embeddings [N, d], ids
          [N], mask [B, N] or None, expected count [N] or None).
        """
        raise NotImplementedError


class InBatchSampler(Sampler):
    """The batch's positives as candidates: column i is query i's positive.

    Args:
      in_batch: the other positives are negatives too (the paper); False: each query sees its own
        positive only (another sampler supplies the negatives).
    """

    def __init__(self, in_batch: bool = True):
        self.in_batch = bool(in_batch)

    def unigram(self, batch_size: tf.Tensor) -> float:
        return 1.0 if self.in_batch else 0.0

    def sample(self, view, item_tower, frequency, proposal, training) -> CandidateBlock:
        eye = tf.eye(view.batch_size, dtype=tf.bool)
        mask = tf.ones_like(eye) if self.in_batch else eye
        count = None if frequency is None or view.log_p is None else proposal.expected_count(view.log_p)
        return CandidateBlock(view.items, view.ids, mask=mask, expected_count=count)


class SharedUniformSampler(Sampler):
    """``count`` items drawn uniformly from the corpus, seen by every query (Yang et al. 2020).

    Args:
      corpus: the item corpus.
      count: B', items per batch.
    """

    def __init__(self, corpus: ItemCorpus, count: int):
        self.corpus, self.uniform_draws = corpus, int(count)

    def sample(self, view, item_tower, frequency, proposal, training) -> CandidateBlock:
        index = tf.random.uniform([self.uniform_draws], 0, self.corpus.num_items, dtype=tf.int64)
        rows = self.corpus.rows(index)
        embedded = item_tower(rows, training=training)
        ids = rows[self.corpus.item_id]
        return CandidateBlock(embedded, ids, expected_count=proposal.count_of(frequency, ids))


class UniformPerQuerySampler(Sampler):
    """``count`` items drawn uniformly from the corpus for each query, masked to that query.

    Args:
      corpus: the item corpus.
      count: K, items per query.
    """

    def __init__(self, corpus: ItemCorpus, count: int):
        self.corpus, self.uniform_draws = corpus, int(count)

    def sample(self, view, item_tower, frequency, proposal, training) -> CandidateBlock:
        k = self.uniform_draws
        index = tf.random.uniform([view.batch_size * k], 0, self.corpus.num_items, dtype=tf.int64)
        rows = self.corpus.rows(index)
        embedded = item_tower(rows, training=training)
        mask = per_query_mask(view.batch_size, k, tf.ones_like(index, tf.bool))
        ids = rows[self.corpus.item_id]
        return CandidateBlock(embedded, ids, mask=mask, expected_count=proposal.count_of(frequency, ids))


class ImpressionSampler(Sampler):
    """Each query's shown-not-clicked items (the batch column ``hard_negative_index``), masked to it.

    They are a fixed set (included with probability 1), so their log q is a constant.

    Args:
      corpus: the item corpus.
      log_q: their log q: 0 (inclusion probability 1), or negative to up-weight them.
    """

    def __init__(self, corpus: ItemCorpus, log_q: float = 0.0):
        self.corpus, self.log_q = corpus, float(log_q)

    def sample(self, view, item_tower, frequency, proposal, training) -> CandidateBlock:
        """As :meth:`Sampler.sample`; the block has B * S columns for slates of S items.

        Raises:
          ValueError: the batch has no ``hard_negative_index`` [B, S] column (-1 pads a slate).
        """
        if HARD_NEGATIVES not in view.features:
            raise ValueError(
                f"hard negatives need the batch column '{HARD_NEGATIVES}' [batch, slate]; "
                f"received columns {sorted(view.features)}."
            )
        shown = tf.cast(view.features[HARD_NEGATIVES], tf.int64)
        width = int(shown.shape[1])
        index = tf.reshape(shown, [-1])
        rows = self.corpus.rows(tf.maximum(index, 0))
        embedded = item_tower(rows, training=training)
        mask = per_query_mask(view.batch_size, width, index >= 0)
        fixed = None if frequency is None or view.log_p is None else self.log_q
        return CandidateBlock(embedded, rows[self.corpus.item_id], mask=mask, fixed_log_q=fixed)


class MinedSampler(Sampler):
    """Each query's ``count`` highest-scoring items under the current towers, its positive excluded.

    Scores are dot products of the stop-gradient query embeddings with the item tower's (stop-
    gradient) embeddings of the whole corpus, or of a pool of ``pool`` items drawn uniformly
    without replacement (shared by the batch); the mined items are then embedded again, with
    gradient. Mined items are surely among their query's candidates: inclusion probability 1,
    or ``pool / N`` from a pool.

    Args:
      corpus: the item corpus.
      count: k, items per query.
      pool: 0 (the whole corpus) or P, the size of the mining pool.
    Raises:
      ValueError: k or P < 0, P larger than the corpus, or k not below the pool's size.
    """

    def __init__(self, corpus: ItemCorpus, count: int, pool: int = 0):
        self.corpus, self.count, self.pool = corpus, int(count), int(pool)
        if self.count < 0 or self.pool < 0:
            raise ValueError(f"mined_hard_per_query and mined_pool must be >= 0; received {count!r}, {pool!r}.")
        if self.pool > corpus.num_items:
            raise ValueError(f"mined_pool must be <= the corpus size {corpus.num_items}; received {self.pool}.")
        if self.count >= (self.pool or corpus.num_items):
            raise ValueError(
                f"mined_hard_per_query must be < the mining pool of {self.pool or corpus.num_items} items (the "
                f"positive is excluded from it); received {self.count}."
            )

    @property
    def inclusion(self) -> float:
        """The probability that a mined item is among its query's candidates: 1, or P / N from a pool."""
        return self.pool / self.corpus.num_items if self.pool else 1.0

    def mine(self, item_tower: ItemTower, query: tf.Tensor, positive_ids: tf.Tensor) -> tf.Tensor:
        """The corpus indices [B, k] int64 of each query's k best items (positive excluded).

        Args:
          item_tower: embeds rows of item features.
          query: [B, d] query embeddings (read with stop_gradient).
          positive_ids: [B] string, each query's positive.
        """
        if self.pool:
            pool = tf.random.shuffle(tf.range(self.corpus.num_items, dtype=tf.int64))[: self.pool]
            rows = self.corpus.rows(pool)
        else:
            pool, rows = tf.range(self.corpus.num_items, dtype=tf.int64), self.corpus.columns
        embedded = tf.stop_gradient(item_tower(rows, training=False))
        scores = tf.matmul(tf.stop_gradient(query), embedded, transpose_b=True)
        positive = tf.equal(positive_ids[:, None], rows[self.corpus.item_id][None, :])
        scores = tf.where(positive, tf.constant(-np.inf, scores.dtype), scores)
        return tf.gather(pool, tf.math.top_k(scores, k=self.count).indices)

    def sample(self, view, item_tower, frequency, proposal, training) -> CandidateBlock:
        mined = self.mine(item_tower, view.query, view.ids)
        index = tf.reshape(mined, [-1])
        rows = self.corpus.rows(index)
        embedded = item_tower(rows, training=training)
        mask = per_query_mask(view.batch_size, self.count, tf.ones_like(index, tf.bool))
        ids = rows[self.corpus.item_id]
        count = proposal.count_of(frequency, ids)
        sure = None if count is None else self.corpus.ids(mined)
        return CandidateBlock(embedded, ids, mask=mask, expected_count=count, sure_ids=sure, sure_probability=self.inclusion)
