"""Negative-sampling strategies of the recall stage: a set of samplers, all through the one loss.

A strategy (:class:`NegativeStrategy`, built by :func:`build_strategy` from a
:class:`~yt_bias.config.NegativesConfig`) is the ordered set of samplers of
:mod:`yt_bias.core.samplers` and :mod:`yt_bias.core.cross_batch`. Each sampler receives the item
tower and the frequency source, never the model, and returns a typed
:class:`~yt_bias.core.candidates.CandidateBlock` (embeddings, IDs, per-query mask, expected
count); the model stacks the blocks with :func:`~yt_bias.core.candidates.concat_blocks` and
calls :func:`~yt_bias.core.losses.softmax_loss` (or the 2025 variant) on them.

The sampling correction, one rule for all: a candidate's log q is the log of its *expected
number of copies* among the candidates a query sees, on the scale of the streaming estimator's
per-step probability p_j (the expected count of item j in a batch of B positives):

* in-batch: ``p_j`` (the paper);
* cross-batch memory of M embeddings from earlier batches (positives too, so unigram-sampled):
  ``(M / B) * p_j`` more, hence ``log(p_j * (1 + M_filled / B))`` for batch and memory columns;
* B' uniform items (mixed negative sampling, Yang et al. 2020): ``B' / N`` more for every item,
  hence ``log(p_j + B'/N)`` for *every* candidate: the mixture proposal of the batch and uniform
  samplers weighted B : B' (up to the constant 1 / (B + B'), which cancels in the softmax when the
  positive is corrected too). Yang et al. leave the positive uncorrected; here the positive
  follows ``correct_positive`` (default True, as the paper and TFRS do for in-batch).
* K uniform items per query (random negatives): ``K / N`` more for every item; with random
  negatives alone every candidate has the constant log(K/N), which cancels in the softmax
  (positive corrected too): uniform sampling needs no correction, and the loss equals the
  uncorrected one (a test pins this).
* impressions as hard negatives: a fixed per-query set (inclusion probability 1), so log q = 0
  by default (``hard_negative_log_q`` up-weights them when negative); masked to their own query.
* k hard negatives mined from the model per query (the k highest-scoring items under the current
  towers, the positive excluded; masked to their query): mining the whole corpus is deterministic
  given the model, so item j is among query i's mined items with probability m_ij = 1 if it was
  mined for i and 0 otherwise. The expected count of j among query i's candidates is then
  ``unigram * p_j + uniform + m_ij`` and every (not fixed) column of query i gets the log of it: a
  mined column ``log(1 + ...)``, about 0 (counted once, like an impression); an in-batch column
  whose item was also mined for that query ``log(p_j + 1)`` instead of ``log p_j`` (it is in
  the candidates for sure, not by chance); all other columns are unchanged. The importance-weighted
  partition sum, ``sum over copies of exp(s) / E[count]``, stays unbiased. Mining from a uniform
  pool of P items per step instead (``mined_pool``), a mined item's inclusion probability is
  taken as P/N: exact for the items among the query's corpus-wide top k (every pool holding them
  keeps them), an over-estimate for lower-ranked ones, which are then corrected a little too much.
Without a frequency source (plain-sfx) no column is corrected.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import NEGATIVE_LOSSES
from yt_bias.core.candidates import BatchView, CandidateBlock, Proposal
from yt_bias.core.corpus import corpus_reference, is_corpus_reference, load_corpus
from yt_bias.core.cross_batch import CrossBatchMemory, CrossBatchSampler
from yt_bias.core.frequency import FrequencySource
from yt_bias.core.samplers import (
    HARD_NEGATIVES,
    ImpressionSampler,
    InBatchSampler,
    ItemCorpus,
    MinedSampler,
    Sampler,
    SharedUniformSampler,
    UniformPerQuerySampler,
)
from yt_bias.data.dataset import ITEM_INDEX, REWARD, RecDataset
from yt_bias.data.impressions import IMPRESSION_CLICKS, impression_indices

__all__ = ["HARD_NEGATIVES", "NegativeStrategy", "build_strategy", "training_examples"]


def _corpus_from_config(config: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
    """The corpus of a :func:`~yt_bias.core.corpus.corpus_reference` (what :meth:`NegativeStrategy.get_config`
    writes), of the inline form ``{feature: {"dtype", "values"}}`` (configs written before the reference),
    or a plain ``{feature: array}``."""
    if is_corpus_reference(config):
        return load_corpus(config)
    items = {}
    for name, value in config.items():
        if isinstance(value, Mapping):
            if set(value) != {"dtype", "values"}:
                raise ValueError(
                    f"items['{name}'] must be {{'dtype', 'values'}} (NegativeStrategy.get_config); received keys {sorted(value)}."
                )
            items[name] = np.asarray(value["values"], dtype=np.dtype(value["dtype"]))
        else:
            items[name] = np.asarray(value)
    return items


class NegativeStrategy(keras.layers.Layer):
    """The samplers of a recall-stage strategy, in column order, and the loss they feed.

    Columns: the batch's positives (B), then the shared extras (B' uniform, then M memory
    slots), then the per-query extras (K uniform per query, then S impressions per query, then k
    mined per query).

    Args:
      items: the corpus item features (``RecDataset.items``): ``{feature: [num_items, ...]}``,
        or what :meth:`get_config` wrote (a reference ``{"path", "sha256"}`` to the corpus file).
      item_id: the name of the item-ID feature.
      in_batch, uniform_per_query, mixed_uniform, memory_size, memory_warmup_steps, hard_negatives,
      hard_negative_log_q, loss, correct_positive, mined_hard_per_query, mined_pool: see
        :class:`yt_bias.config.NegativesConfig` (``hard_negatives``: impressions as hard negatives).
      embedding_dim: the towers' output width (for the cross-batch memory).
    Raises:
      ValueError: an unknown loss, no item-ID feature, a memory without ``embedding_dim``, or
        mining sizes that do not fit the corpus.
    """

    def __init__(
        self,
        items: Mapping[str, np.ndarray],
        item_id: str = "item_id",
        in_batch: bool = True,
        uniform_per_query: int = 0,
        mixed_uniform: int = 0,
        memory_size: int = 0,
        memory_warmup_steps: int = 0,
        hard_negatives: bool = False,
        hard_negative_log_q: float = 0.0,
        loss: str = "sampled-softmax",
        correct_positive: bool = True,
        embedding_dim: int | None = None,
        mined_hard_per_query: int = 0,
        mined_pool: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss not in NEGATIVE_LOSSES:
            raise ValueError(f"loss must be one of {NEGATIVE_LOSSES}; received {loss!r}.")
        if memory_size and not embedding_dim:
            raise ValueError(f"memory_size={memory_size} needs embedding_dim >= 1; received {embedding_dim!r}.")
        corpus = ItemCorpus(_corpus_from_config(items), item_id)
        self.corpus = corpus
        self.num_items = corpus.num_items
        self.item_id = item_id
        self.in_batch = bool(in_batch)
        self.uniform_per_query = int(uniform_per_query)
        self.mixed_uniform = int(mixed_uniform)
        self.hard_negatives = bool(hard_negatives)
        self.hard_negative_log_q = float(hard_negative_log_q)
        self.loss_name = loss
        self.correct_positive = bool(correct_positive)
        self.mined_hard_per_query, self.mined_pool = int(mined_hard_per_query), int(mined_pool)
        mined = MinedSampler(corpus, self.mined_hard_per_query, self.mined_pool)  # checks the sizes even when off
        self.memory = CrossBatchMemory(memory_size, embedding_dim, memory_warmup_steps, name="memory") if memory_size else None
        samplers: list[Sampler] = [InBatchSampler(self.in_batch)]
        if self.mixed_uniform:
            samplers.append(SharedUniformSampler(corpus, self.mixed_uniform))
        self._memory_sampler = CrossBatchSampler(self.memory, corpus) if self.memory is not None else None
        if self._memory_sampler is not None:
            samplers.append(self._memory_sampler)
        if self.uniform_per_query:
            samplers.append(UniformPerQuerySampler(corpus, self.uniform_per_query))
        if self.hard_negatives:
            samplers.append(ImpressionSampler(corpus, self.hard_negative_log_q))
        if self.mined_hard_per_query:
            samplers.append(mined)
        self._samplers = tuple(samplers)

    @property
    def samplers(self) -> tuple[Sampler, ...]:
        """The samplers, in column order (the batch's positives first)."""
        return self._samplers

    def proposal(self, batch_size: tf.Tensor) -> Proposal:
        """The mixture of every sampler: unigram draws per batch position, uniform draws per query."""
        unigram = 0.0
        for sampler in self._samplers:
            share = sampler.unigram(batch_size)
            if not (isinstance(share, float) and share == 0.0):
                unigram = unigram + share
        uniform = sum(sampler.uniform_draws for sampler in self._samplers)
        return Proposal(unigram=unigram, uniform_draws=uniform, num_items=self.num_items)

    def sample(
        self, view: BatchView, item_tower, frequency: FrequencySource | None, training: bool
    ) -> tuple[CandidateBlock, ...]:
        """Every sampler's block for the batch ``view``, the positives' block first.

        Args:
          view: the batch (features, query [B, d], positives [B, d], IDs [B], log p [B] or None).
          item_tower: ``item_tower(rows, training=...) -> [n, d]``.
          frequency: the frequency source, or None (no column is corrected).
          training: whether the towers run in training mode.
        Returns:
          One :class:`~yt_bias.core.candidates.CandidateBlock` per sampler, in column order.
        """
        if view.log_p is None:
            frequency = None
        proposal = self.proposal(view.batch_size)
        return tuple(sampler.sample(view, item_tower, frequency, proposal, training) for sampler in self._samplers)

    def observe(self, view: BatchView, loss: tf.Tensor) -> tf.Tensor:
        """After a training step's loss: the cross-batch memory enqueues the batch (when there is one).

        Returns:
          ``loss`` (scalar), ordered after the enqueue.
        """
        if self._memory_sampler is None:
            return loss
        return self._memory_sampler.observe(view, loss)

    def get_config(self) -> dict:
        """The strategy's settings and a reference to its item corpus (file and SHA-256): enough to rebuild it."""
        config = super().get_config()
        config.update(
            items=corpus_reference(self.corpus.arrays),
            item_id=self.item_id,
            in_batch=self.in_batch,
            uniform_per_query=self.uniform_per_query,
            mixed_uniform=self.mixed_uniform,
            memory_size=self.memory.size if self.memory else 0,
            memory_warmup_steps=self.memory.warmup_steps if self.memory else 0,
            hard_negatives=self.hard_negatives,
            hard_negative_log_q=self.hard_negative_log_q,
            loss=self.loss_name,
            correct_positive=self.correct_positive,
            embedding_dim=self.memory.dim if self.memory else None,
            mined_hard_per_query=self.mined_hard_per_query,
            mined_pool=self.mined_pool,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> NegativeStrategy:
        """The strategy of :meth:`get_config`.

        Raises:
          ValueError: a corpus file that is missing or changed (its SHA-256), a damaged inline corpus entry
            (not ``{"dtype", "values"}``), or settings the constructor refuses.
        """
        return cls(**config)


def build_strategy(config, dataset: RecDataset, embedding_dim: int) -> NegativeStrategy | None:
    """The strategy of a :class:`~yt_bias.config.NegativesConfig`; None for plain in-batch (the paper's path).

    'weak-positive' impressions change the training data only (see :func:`training_examples`).

    Args:
      config: the negatives settings.
      dataset: the data set whose item corpus the samplers draw from.
      embedding_dim: the towers' output width.
    Returns:
      The strategy, or None when the settings are the paper's in-batch softmax.
    """
    hard = config.impressions == "hard-negative"
    if (
        config.in_batch
        and not config.uniform_per_query
        and not config.mixed_uniform
        and not config.memory_size
        and not hard
        and not config.mined_hard_per_query
        and config.loss == "sampled-softmax"
        and config.correct_positive
    ):
        return None
    return NegativeStrategy(
        dataset.items,
        dataset.features.item_id,
        in_batch=config.in_batch,
        uniform_per_query=config.uniform_per_query,
        mixed_uniform=config.mixed_uniform,
        memory_size=config.memory_size,
        memory_warmup_steps=config.memory_warmup_steps,
        hard_negatives=hard,
        hard_negative_log_q=config.hard_negative_log_q,
        loss=config.loss,
        correct_positive=config.correct_positive,
        embedding_dim=embedding_dim,
        mined_hard_per_query=config.mined_hard_per_query,
        mined_pool=config.mined_pool,
        name="negatives",
    )


def training_examples(config, dataset: RecDataset) -> dict[str, np.ndarray]:
    """The training rows a strategy needs: ``dataset.examples('train')``, plus

    * 'hard-negative': the column ``hard_negative_index`` [n, slate] (shown-not-clicked corpus
      indices, -1 padding);
    * 'weak-positive': one extra row per shown item of each request (the request's query
      features, the shown item's features), reward ``impression_reward`` for shown-not-clicked
      items and 1 for extra clicks (impressions as weak positives).
    Without impressions the rows are exactly ``dataset.examples('train')``.
    """
    examples = dataset.examples("train")
    if config.impressions == "none":
        return examples
    if config.impressions == "hard-negative":
        examples[HARD_NEGATIVES] = impression_indices(dataset, "train", label=0.0)
        return examples
    shown = impression_indices(dataset, "train", label=None)
    clicks = np.asarray(dataset.train[IMPRESSION_CLICKS])
    own = shown == np.asarray(dataset.train[ITEM_INDEX])[:, None]
    rows, slots = np.nonzero((shown >= 0) & ~own)
    extra = {spec.name: np.asarray(dataset.train[spec.name])[rows] for spec in dataset.features.query}
    index = shown[rows, slots]
    extra.update({spec.name: np.asarray(dataset.items[spec.name])[index] for spec in dataset.features.item})
    extra[REWARD] = np.where(clicks[rows, slots] > 0, 1.0, config.impression_reward).astype(np.float32)
    extra[ITEM_INDEX] = index.astype(np.int64)
    return {name: np.concatenate([examples[name], extra[name]]) for name in examples}
