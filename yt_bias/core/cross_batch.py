"""Cross-batch negatives (Wang et al., SIGIR 2021): a FIFO memory of earlier positives and its sampler.

The memory holds the item embeddings (stop-gradient) and corpus indices of the last M positives.
Its M slots are unigram-sampled items like the batch's own positives, ``filled / B`` batches'
worth of them, so every unigram column's expected count grows by that factor:
``log(p_j * (1 + filled / B))`` for the batch's and the memory's columns.
"""

from __future__ import annotations

from yt_bias._keras import keras, tf
from yt_bias.core.candidates import BatchView, CandidateBlock
from yt_bias.core.samplers import ItemCorpus, Sampler
from yt_bias.data.dataset import ITEM_INDEX


class CrossBatchMemory(keras.layers.Layer):
    """A FIFO queue of the last ``size`` item embeddings and item indices.

    The embeddings are stored with stop_gradient; nothing is read before ``warmup_steps``
    pushes (embeddings drift fast early in training, which makes stale negatives harmful).

    Args:
      size: M, the number of slots.
      dim: embedding width.
      warmup_steps: pushes before the memory is used.
    Raises:
      ValueError: size < 1.

    Example:

    >>> from yt_bias.core.cross_batch import CrossBatchMemory
    >>> import tensorflow as tf
    >>> memory = CrossBatchMemory(size=3, dim=2)
    >>> _ = memory.push(tf.ones([2, 2]), tf.constant([4, 7]))
    >>> _ = memory.push(tf.zeros([2, 2]), tf.constant([9, 1]))  # item 1 replaces the oldest slot
    >>> memory.item_index.numpy().tolist(), memory.valid().numpy().tolist()
    ([1, 7, 9], [True, True, True])
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


class CrossBatchSampler(Sampler):
    """The memory's valid slots as candidates of every query, and the memory's enqueue after a step.

    Args:
      memory: the memory (its variables belong to whoever tracks it: the strategy).
      corpus: the item corpus (the memory stores corpus indices; the block carries their IDs).
    """

    def __init__(self, memory: CrossBatchMemory, corpus: ItemCorpus):
        self.memory, self.corpus = memory, corpus

    def unigram(self, batch_size: tf.Tensor) -> tf.Tensor:
        """``filled / B``: the memory's valid slots in batches' worth of unigram draws (scalar float32)."""
        filled = tf.cast(tf.reduce_sum(tf.cast(self.memory.valid(), tf.int64)), tf.float32)
        return filled / tf.cast(batch_size, tf.float32)

    def sample(self, view, item_tower, frequency, proposal, training) -> CandidateBlock:
        """The M memory slots (invalid ones masked out), stop-gradient: a block of M columns."""
        memory = self.memory
        index = memory.item_index
        valid = tf.broadcast_to(memory.valid()[None, :], [view.batch_size, memory.size])
        embeddings = tf.stop_gradient(tf.identity(memory.embeddings))
        ids = self.corpus.ids(index)
        return CandidateBlock(embeddings, ids, mask=valid, expected_count=proposal.count_of(frequency, ids), gradient=False)

    def observe(self, view: BatchView, loss: tf.Tensor) -> tf.Tensor:
        """Enqueues the batch's positives once ``loss`` is computed; returns ``loss`` after the push.

        Args:
          view: the batch (positive embeddings [B, d]; its ``item_index`` column [B], zeros without one).
          loss: the step's scalar loss, computed from the memory before this push.
        Returns:
          ``loss``, with the push as a control dependency.
        """
        features = view.features
        index = features[ITEM_INDEX] if ITEM_INDEX in features else tf.zeros([view.batch_size], tf.int64)
        with tf.control_dependencies([loss]):
            push = self.memory.push(view.items, index)
        with tf.control_dependencies([push]):
            return tf.identity(loss)
