"""Negative-sampling strategies of the recall stage, all through the one loss of :mod:`yt_bias.core.losses`.

Every strategy only adds candidate columns (embeddings, IDs, log q
and a per-query mask) to the paper's in-batch softmax; :class:`NegativeStrategy` assembles them
and calls :func:`~yt_bias.core.losses.corrected_softmax_loss` (or the 2025 variant).

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
from yt_bias.data.dataset import ITEM_INDEX, REWARD, RecDataset
from yt_bias.core.losses import corrected_logq_loss, corrected_softmax_loss, log_probability

HARD_NEGATIVES = "hard_negative_index"


class CrossBatchMemory(keras.layers.Layer):
    """A FIFO queue of the last ``size`` item embeddings and item indices (Wang et al., SIGIR 2021).

    The embeddings are stored with stop_gradient; nothing is read before ``warmup_steps``
    pushes (embeddings drift fast early in training, which makes stale negatives harmful).

    Args:
      size: M, the number of slots.
      dim: embedding width.
      warmup_steps: pushes before the memory is used.
    """

    def __init__(self, size: int, dim: int, warmup_steps: int = 0, **kwargs):
        super().__init__(**kwargs)
        if size < 1:
            raise ValueError(f"CrossBatchMemory.size must be >= 1; received {size}.")
        self.size, self.dim, self.warmup_steps = int(size), int(dim), int(warmup_steps)
        self.embeddings = self.add_weight(name="embeddings", shape=(self.size, self.dim), initializer="zeros", trainable=False)
        self.item_index = self.add_weight(
            name="item_index", shape=(self.size,), dtype=tf.int64, initializer="zeros", trainable=False
        )
        self.filled = self.add_weight(name="filled", shape=(), dtype=tf.int64, initializer="zeros", trainable=False)
        self.pushes = self.add_weight(name="pushes", shape=(), dtype=tf.int64, initializer="zeros", trainable=False)
        self.cursor = self.add_weight(name="cursor", shape=(), dtype=tf.int64, initializer="zeros", trainable=False)

    def valid(self) -> tf.Tensor:
        """[size] bool: slots holding an embedding, all False during the warm-up."""
        ready = self.pushes >= self.warmup_steps
        return tf.logical_and(tf.range(self.size, dtype=tf.int64) < self.filled, ready)

    def push(self, embeddings: tf.Tensor, item_index: tf.Tensor) -> tf.Operation:
        """Enqueues [n, dim] embeddings (stop_gradient) and their [n] item indices, oldest out."""
        embeddings = tf.stop_gradient(tf.convert_to_tensor(embeddings, tf.float32))[-self.size :]
        item_index = tf.cast(item_index, tf.int64)[-self.size :]
        n = tf.cast(tf.shape(embeddings)[0], tf.int64)
        slots = (self.cursor + tf.range(n, dtype=tf.int64)) % self.size
        return tf.group(
            self.embeddings.scatter_nd_update(slots[:, None], embeddings),
            self.item_index.scatter_nd_update(slots[:, None], item_index),
            self.cursor.assign((self.cursor + n) % self.size),
            self.filled.assign(tf.minimum(self.filled + n, self.size)),
            self.pushes.assign_add(1),
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(size=self.size, dim=self.dim, warmup_steps=self.warmup_steps)
        return config


class NegativeStrategy(keras.layers.Layer):
    """Extra candidates of a recall-stage strategy and the loss over all candidates.

    Args:
      items: the corpus item features (``RecDataset.items``), held as constants so sampled item
        indices become item-tower inputs inside the graph.
      item_id: the name of the item-ID feature.
      in_batch, uniform_per_query, mixed_uniform, memory_size, memory_warmup_steps, hard_negatives,
      loss, correct_positive, mined_hard_per_query, mined_pool: see
      :class:`yt_bias.config.NegativesConfig`.
      embedding_dim: the towers' output width (for the cross-batch memory).
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
        if loss not in ("sampled-softmax", "corrected-logq-2025"):
            raise ValueError(f"loss must be 'sampled-softmax' or 'corrected-logq-2025'; received {loss!r}.")
        if item_id not in items:
            raise ValueError(f"items has no item-ID feature '{item_id}'; present: {sorted(items)}.")
        if memory_size and not embedding_dim:
            raise ValueError(f"memory_size={memory_size} needs embedding_dim >= 1; received {embedding_dim!r}.")
        self._corpus = {name: tf.constant(np.asarray(v)) for name, v in items.items()}
        self._corpus[item_id] = tf.constant(np.asarray(items[item_id]).astype(str))
        self.num_items = len(np.asarray(items[item_id]))
        self.item_id = item_id
        self.in_batch = bool(in_batch)
        self.uniform_per_query = int(uniform_per_query)
        self.mixed_uniform = int(mixed_uniform)
        self.hard_negatives = bool(hard_negatives)
        self.hard_negative_log_q = float(hard_negative_log_q)
        self.loss_name = loss
        self.correct_positive = bool(correct_positive)
        self.memory = CrossBatchMemory(memory_size, embedding_dim, memory_warmup_steps, name="memory") if memory_size else None
        self.mined_hard_per_query, self.mined_pool = int(mined_hard_per_query), int(mined_pool)
        if self.mined_hard_per_query < 0 or self.mined_pool < 0:
            raise ValueError(
                f"mined_hard_per_query and mined_pool must be >= 0; received {mined_hard_per_query!r}, {mined_pool!r}."
            )
        if self.mined_pool > self.num_items:
            raise ValueError(f"mined_pool must be <= the corpus size {self.num_items}; received {self.mined_pool}.")
        if self.mined_hard_per_query >= (self.mined_pool or self.num_items):
            raise ValueError(
                f"mined_hard_per_query must be < the mining pool of {self.mined_pool or self.num_items} items (the "
                f"positive is excluded from it); received {self.mined_hard_per_query}."
            )

    def _corpus_rows(self, index: tf.Tensor) -> dict[str, tf.Tensor]:
        return {name: tf.gather(values, index) for name, values in self._corpus.items()}

    def mine(self, model, query: tf.Tensor, positive_ids: tf.Tensor) -> tf.Tensor:
        """The k highest-scoring items of each query, its positive excluded: corpus indices [B, k] int64.

        Scores are dot products of the (stop-gradient) query embeddings with the current item
        tower's embeddings of the whole corpus, or of a pool of ``mined_pool`` items drawn
        uniformly without replacement (shared by the batch).
        """
        if self.mined_pool:
            pool = tf.random.shuffle(tf.range(self.num_items, dtype=tf.int64))[: self.mined_pool]
            rows = self._corpus_rows(pool)
        else:
            pool, rows = tf.range(self.num_items, dtype=tf.int64), self._corpus
        embedded = tf.stop_gradient(model.item_tower(rows, training=False))
        scores = tf.matmul(tf.stop_gradient(query), embedded, transpose_b=True)
        positive = tf.equal(positive_ids[:, None], rows[self.item_id][None, :])
        scores = tf.where(positive, tf.constant(-np.inf, scores.dtype), scores)
        return tf.gather(pool, tf.math.top_k(scores, k=self.mined_hard_per_query).indices)

    def candidates(
        self,
        model,
        batch: Mapping[str, tf.Tensor],
        items: tf.Tensor,
        log_p: tf.Tensor | None,
        training: bool,
        query: tf.Tensor | None = None,
    ):
        """All candidates of one batch: (embeddings [N, d], ids [N], log_q [B, N] or None, mask [B, N]).

        Columns: the batch's positives (B), then the shared extras (B' uniform, then M memory
        slots), then the per-query extras (K uniform per query, then S impressions per query,
        then k mined per query). ``query`` (the batch's query embeddings) is what mining scores;
        the query tower runs on the batch when it is None.
        """
        batch_size = tf.shape(items)[0]
        ids = tf.reshape(batch[self.item_id], [-1])
        ids = ids if ids.dtype == tf.string else tf.strings.as_string(ids)
        mined = None
        eye = tf.eye(batch_size, dtype=tf.bool)
        blocks = [(items, ids, "positives", eye if not self.in_batch else tf.ones_like(eye))]
        if self.mixed_uniform:
            index = tf.random.uniform([self.mixed_uniform], 0, self.num_items, dtype=tf.int64)
            rows = self._corpus_rows(index)
            embedded = model.item_tower(rows, training=training)
            blocks.append((embedded, rows[self.item_id], "sampled", tf.ones([batch_size, self.mixed_uniform], tf.bool)))
        if self.memory is not None:
            index = self.memory.item_index
            valid = tf.broadcast_to(self.memory.valid()[None, :], [batch_size, self.memory.size])
            blocks.append(
                (
                    tf.stop_gradient(tf.identity(self.memory.embeddings)),
                    tf.gather(self._corpus[self.item_id], index),
                    "sampled",
                    valid,
                )
            )
        per_query = []
        if self.uniform_per_query:
            k = self.uniform_per_query
            index = tf.random.uniform([batch_size * k], 0, self.num_items, dtype=tf.int64)
            per_query.append((index, tf.ones_like(index, tf.bool), k, "sampled"))
        if self.hard_negatives:
            if HARD_NEGATIVES not in batch:
                raise ValueError(
                    f"hard negatives need the batch column '{HARD_NEGATIVES}' [batch, slate]; received columns {sorted(batch)}."
                )
            shown = tf.cast(batch[HARD_NEGATIVES], tf.int64)
            width = int(shown.shape[1])
            index = tf.reshape(shown, [-1])
            per_query.append((tf.maximum(index, 0), index >= 0, width, "fixed"))
        if self.mined_hard_per_query:
            if query is None:
                query = model.query_tower(batch, training=False)
            mined = self.mine(model, query, ids)
            index = tf.reshape(mined, [-1])
            per_query.append((index, tf.ones_like(index, tf.bool), self.mined_hard_per_query, "mined"))
        for index, valid, width, kind in per_query:
            rows = self._corpus_rows(index)
            embedded = model.item_tower(rows, training=training)
            owner = tf.repeat(tf.range(batch_size), width)
            mask = tf.logical_and(tf.equal(tf.range(batch_size)[:, None], owner[None, :]), valid[None, :])
            blocks.append((embedded, rows[self.item_id], kind, mask))

        embeddings = tf.concat([b[0] for b in blocks], axis=0)
        all_ids = tf.concat([b[1] for b in blocks], axis=0)
        mask = tf.concat([b[3] for b in blocks], axis=1)
        log_q = None
        if log_p is not None and model.frequency is not None:
            member = None
            if mined is not None:  # m_ij: column j's item was mined for query i
                hashed = tf.strings.to_hash_bucket_fast(all_ids, 1 << 62)
                mined_hashed = tf.strings.to_hash_bucket_fast(tf.gather(self._corpus[self.item_id], mined), 1 << 62)
                member = tf.reduce_any(tf.equal(mined_hashed[:, :, None], hashed[None, None, :]), axis=1)
            log_q = self._log_q(model, blocks, log_p, batch_size, member)
        return embeddings, all_ids, log_q, mask

    def _log_q(self, model, blocks, log_p, batch_size, mined_member: tf.Tensor | None = None) -> tf.Tensor:
        """log of the expected count of each candidate for each query (see the module docstring): [B, N].

        Args:
          mined_member: [B, N] bool, True where column j's item is among query i's mined items.
        """
        unigram = 1.0 if self.in_batch else 0.0
        if self.memory is not None:
            filled = tf.cast(tf.reduce_sum(tf.cast(self.memory.valid(), tf.int64)), tf.float32)
            unigram = unigram + filled / tf.cast(batch_size, tf.float32)
        uniform = (self.mixed_uniform + self.uniform_per_query) / self.num_items
        counts, fixed = [], []
        for _embeddings, ids, kind, _ in blocks:
            n = tf.shape(ids)[0]
            fixed.append(tf.fill([n], kind == "fixed"))
            if kind == "fixed":
                counts.append(tf.ones([n]))  # replaced by hard_negative_log_q below
                continue
            block_log_p = log_p if kind == "positives" else log_probability(model.frequency.probability(ids))
            counts.append(unigram * tf.exp(block_log_p) + uniform)
        count = tf.concat(counts, axis=0)
        count = tf.broadcast_to(count[None, :], [batch_size, tf.shape(count)[0]])
        if mined_member is not None:
            inclusion = self.mined_pool / self.num_items if self.mined_pool else 1.0
            count = count + inclusion * tf.cast(mined_member, tf.float32)
        log_q = tf.math.log(tf.maximum(count, 1e-12))
        fixed = tf.broadcast_to(tf.concat(fixed, axis=0)[None, :], tf.shape(log_q))
        return tf.where(fixed, tf.constant(self.hard_negative_log_q, tf.float32), log_q)

    def loss(
        self, model, batch: Mapping[str, tf.Tensor], query: tf.Tensor, items: tf.Tensor, log_p: tf.Tensor | None, training: bool
    ) -> tf.Tensor:
        """The strategy's loss for one batch (and, in training, the memory's enqueue)."""
        embeddings, ids, log_q, mask = self.candidates(model, batch, items, log_p, training, query=query)
        rewards = batch.get(REWARD)
        if self.loss_name == "corrected-logq-2025":
            value = corrected_logq_loss(
                query, embeddings, model.temperature, log_q, rewards, candidate_ids=ids, candidate_mask=mask
            )
        else:
            value = corrected_softmax_loss(
                query,
                embeddings,
                temperature=model.temperature,
                log_q=log_q,
                rewards=rewards,
                candidate_ids=ids,
                remove_accidental_hits=model.remove_accidental_hits,
                candidate_mask=mask,
                correct_positive=self.correct_positive,
            )
        if self.memory is not None and training:
            index = batch[ITEM_INDEX] if ITEM_INDEX in batch else tf.zeros([tf.shape(items)[0]], tf.int64)
            with tf.control_dependencies([value]):
                push = self.memory.push(items, index)
            with tf.control_dependencies([push]):
                value = tf.identity(value)
        return value

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
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


def build_strategy(config, dataset: RecDataset, embedding_dim: int) -> NegativeStrategy | None:
    """The strategy of a :class:`~yt_bias.config.NegativesConfig`; None for plain in-batch (the paper's path).

    'weak-positive' impressions change the training data only (see :func:`training_examples`).
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
    from yt_bias.data.impressions import IMPRESSION_CLICKS, impression_indices

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
