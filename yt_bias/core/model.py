"""The two-tower model with the sampling-bias-corrected in-batch softmax (Algorithm 1 of the paper).

Per training step: read the batch's item IDs, update the streaming frequency estimator with them
(one global step) and read each item's sampling probability p, compute both towers, build the
corrected batch softmax loss with log p, and apply one optimizer step.
"""

from __future__ import annotations

from collections.abc import Mapping

from yt_bias._keras import keras, tf
from yt_bias.core.candidates import BatchView, concat_blocks
from yt_bias.core.frequency import FrequencySource, OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.frequency_baselines import (
    CumulativeFrequency,
    CurrentDayOracle,
    FixedTableFrequency,
    FrozenFrequency,
    PreviousDayFrequency,
)
from yt_bias.core.losses import (
    BLOCKWISE_FROM_CANDIDATES,
    LOSS_IMPLEMENTATIONS,
    corrected_logq_loss,
    softmax_loss,
)
from yt_bias.core.negatives import NegativeStrategy
from yt_bias.core.towers import build_towers
from yt_bias.data.dataset import REWARD
from yt_bias.features import FeatureConfig

CANDIDATE_MODES = ("rows", "unique")

# The layers from_config rebuilds, by the class name get_config records: field -> {class name: class}.
REBUILDABLE = {
    "frequency": {
        cls.__name__: cls
        for cls in (
            StreamingFrequencyEstimator,
            OracleFrequency,
            FrozenFrequency,
            CumulativeFrequency,
            PreviousDayFrequency,
            CurrentDayOracle,
            FixedTableFrequency,
        )
    },
    "negatives": {"NegativeStrategy": NegativeStrategy},
}


def _rebuild(field: str, serialized: dict | None, custom_objects: dict | None) -> keras.layers.Layer | None:
    """The layer of ``config[field]`` (``keras.layers.serialize`` form), or None.

    Raises:
      ValueError: a class that is neither one :data:`REBUILDABLE` names nor in ``custom_objects``.
    """
    if serialized is None:
        return None
    known = dict(REBUILDABLE[field], **(custom_objects or {}))
    class_name = serialized.get("class_name") if isinstance(serialized, dict) else None
    if class_name not in known:
        raise ValueError(
            f"TwoTowerModel.from_config cannot rebuild '{field}': expected a serialised layer of a class in "
            f"{sorted(known)}; received class {class_name!r}. Pass custom_objects={{{class_name!r}: its class}} "
            "for a class of your own."
        )
    return keras.layers.deserialize(serialized, custom_objects=known)


def unique_columns(item_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The batch's distinct items as candidate columns.

    Returns:
      (unique_ids [U], column [B] the column of each row's item, first_row [U] the first row of
      each distinct item).
    """
    unique_ids, column = tf.unique(item_ids)
    rows = tf.range(tf.shape(item_ids)[0])
    first_row = tf.math.unsorted_segment_min(rows, column, tf.shape(unique_ids)[0])
    return unique_ids, column, first_row


def _id_fingerprints(ids: tf.Tensor) -> tf.Tensor:
    """int64 fingerprints of item IDs (all-gather takes numbers only); equal IDs, equal fingerprints."""
    if ids.dtype != tf.string:
        return tf.cast(ids, tf.int64)
    return tf.strings.to_hash_bucket_fast(ids, (1 << 63) - 1)


def gathered_batch_loss(model, batch: Mapping[str, tf.Tensor], log_q: tf.Tensor | None, training: bool) -> tf.Tensor:
    """In-batch softmax whose candidates are the items of all replicas (TFRS never gathers them).

    Each replica scores its B/R queries against the global batch's B items (all-gathered, with
    their IDs and log q); the positive of local query i sits at ``replica_id * B/R + i``. The
    returned loss is the local mean; summed over replicas after the train step's 1/R scaling it is
    the one-device loss of the global batch, and all-gather's gradient sends each replica's share
    back, so gradients match one device.

    Returns:
      Scalar float32, this replica's mean loss.
    """
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        return model.batch_loss(batch, log_q, training=training)
    query, items = model(batch, training=training)
    ids = batch[model.features.item_id]
    local = tf.shape(query)[0]
    all_items = replica.all_gather(items, axis=0)
    all_ids = replica.all_gather(_id_fingerprints(ids), axis=0)
    all_log_q = replica.all_gather(log_q, axis=0) if log_q is not None else None
    offset = tf.cast(replica.replica_id_in_sync_group, tf.int32) * local
    return model.in_batch_loss(
        query, all_items, all_log_q, batch.get(REWARD), offset + tf.range(local), all_ids, model.loss_implementation
    )


class TwoTowerModel(keras.Model):
    """Query tower u(x), item tower v(y), score <u, v> / tau, trained with the corrected softmax.

    Args:
      features: which features each tower reads and which item feature is the ID.
      hidden_units: MLP widths of both towers (the paper: [512, 128] or [1024, 512, 128]).
      normalize: L2-normalise both towers' outputs.
      temperature: tau.
      frequency: a :class:`~yt_bias.core.frequency.FrequencySource`: a
        :class:`~yt_bias.core.frequency.StreamingFrequencyEstimator` (correct-sfx), an
        :class:`~yt_bias.core.frequency.OracleFrequency` (exact counts), a past-only table of
        :mod:`yt_bias.core.frequency_baselines`; or None (plain-sfx).
      read_after_update: update the estimator with the batch before reading p (default) or after.
      remove_accidental_hits: mask in-batch negatives that are the positive's own item.
      share_embeddings: one set of embedding tables for both towers (tables are matched by name).
      negatives: a :class:`~yt_bias.core.negatives.NegativeStrategy` (samplers of extra candidates:
        uniform, mixed, cross-batch, impressions, mined; or the 2025 loss), or None for the paper's
        in-batch softmax.
      candidates: the in-batch candidate columns: ``"rows"`` (one column per row of the batch, so
        an item with c rows has c columns; pairs with the ``expected_count`` estimand) or
        ``"unique"`` (one column per distinct item of the batch, a row's positive is its item's
        column; pairs with the ``inclusion`` estimand). The model trains any pairing (the
        estimand study compares them); the experiment config refuses an unpaired one unless
        ``model.allow_unpaired_estimand`` is set (``yt_bias.estimands.PAIRED_CANDIDATES``).
      gather_negatives_across_replicas: under a MirroredStrategy, score each replica's queries
        against the items of every replica (the global batch), not only its own.
      loss_implementation: the in-batch softmax loss: ``"dense"`` ([B, N] logits), ``"blockwise"``
        (candidate blocks with recomputed gradients, memory linear in B) or ``"auto"`` (blockwise
        from ``yt_bias.core.losses.BLOCKWISE_FROM_CANDIDATES`` candidates on); same value and gradients.
        With a negative-sampling strategy "auto" keeps the dense loss.
      loss_block_size: candidates per block of the blockwise loss (None: its default).

    Example:

    >>> from yt_bias.core.frequency import StreamingFrequencyEstimator
    >>> from yt_bias.core.model import TwoTowerModel
    >>> from yt_bias.features import FeatureConfig, FeatureSpec
    >>> import tensorflow as tf
    >>> features = FeatureConfig(query=[FeatureSpec("user_id", "id", dim=8, buckets=100)],
    ...                          item=[FeatureSpec("item_id", "id", dim=8, buckets=100)])
    >>> model = TwoTowerModel(features, hidden_units=(16, 8), frequency=StreamingFrequencyEstimator(1024))
    >>> model.compile(optimizer="adagrad")
    >>> batch = {"user_id": tf.constant(["u1", "u2", "u3"]), "item_id": tf.constant(["a", "b", "a"])}
    >>> history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0)
    >>> int(model.frequency.step.numpy())  # one estimator step per training batch
    3
    >>> [tuple(t.shape) for t in model(batch)]  # query and item embeddings
    [(3, 8), (3, 8)]
    """

    def __init__(
        self,
        features: FeatureConfig,
        hidden_units=(128, 64),
        normalize: bool = True,
        temperature: float = 0.05,
        frequency: FrequencySource | None = None,
        read_after_update: bool = True,
        remove_accidental_hits: bool = False,
        share_embeddings: bool = True,
        negatives: keras.layers.Layer | None = None,
        candidates: str = "rows",
        gather_negatives_across_replicas: bool = False,
        loss_implementation: str = "auto",
        loss_block_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; received {temperature!r}.")
        if frequency is not None and not isinstance(frequency, FrequencySource):
            raise TypeError(
                "frequency must be a yt_bias.core.frequency.FrequencySource (or None for plain-sfx); "
                f"received {type(frequency).__name__}."
            )
        self.features = features
        self.temperature = float(temperature)
        self.frequency = frequency
        self.read_after_update = bool(read_after_update)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.share_embeddings = bool(share_embeddings)
        self.query_tower, self.item_tower = build_towers(features, hidden_units, normalize, share_embeddings)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.negatives = negatives
        if candidates not in CANDIDATE_MODES:
            raise ValueError(f"candidates must be one of {list(CANDIDATE_MODES)}; received {candidates!r}.")
        if candidates == "unique" and negatives is not None:
            raise ValueError("candidates='unique' works with the in-batch softmax only; received a negative-sampling strategy.")
        self.candidates = candidates
        self.gather_negatives_across_replicas = bool(gather_negatives_across_replicas)
        if loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(f"loss_implementation must be one of {LOSS_IMPLEMENTATIONS}; received {loss_implementation!r}.")
        self.loss_implementation = loss_implementation
        self.loss_block_size = loss_block_size

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False):
        """Returns (query embeddings [batch, d], item embeddings [batch, d])."""
        return self.query_tower(inputs, training=training), self.item_tower(inputs, training=training)

    def sampling_log_q(self, item_ids: tf.Tensor, update: bool) -> tf.Tensor | None:
        """log p of the batch's items (:meth:`FrequencySource.log_q`); None without a frequency source.

        With ``update`` the source first consumes the batch as one global step (read after or
        before it, as ``read_after_update`` says); p is clipped on the source's estimand scale.
        """
        if self.frequency is None:
            return None
        return self.frequency.log_q(item_ids, update=update, read_after_update=self.read_after_update)

    def batch_loss(self, batch: Mapping[str, tf.Tensor], log_q: tf.Tensor | None, training: bool) -> tf.Tensor:
        """The corrected in-batch softmax loss of one batch (the positives are the diagonal, or the
        rows' item columns with ``candidates="unique"``)."""
        query, items = self(batch, training=training)
        if self.negatives is not None:
            return self._sampled_loss(batch, query, items, log_q, training)
        item_ids = batch[self.features.item_id]
        positive_index = None
        if self.candidates == "unique":
            item_ids, positive_index, first_row = unique_columns(item_ids)
            items = tf.gather(items, first_row)
            log_q = None if log_q is None else tf.gather(log_q, first_row)
        return self.in_batch_loss(
            query, items, log_q, batch.get(REWARD), positive_index, item_ids, self._implementation_for(query)
        )

    def in_batch_loss(
        self,
        query: tf.Tensor,
        candidates: tf.Tensor,
        log_q: tf.Tensor | None,
        rewards: tf.Tensor | None,
        positive_index: tf.Tensor | None,
        candidate_ids: tf.Tensor,
        implementation: str,
    ) -> tf.Tensor:
        """The softmax loss with the model's temperature, accidental-hit removal and block size.

        Args:
          query: [B, d] query embeddings; candidates: [N, d] candidate embeddings.
          log_q: [N] log p of the candidates, or None (no correction).
          rewards: [B] rewards, or None (all 1).
          positive_index: [B] each query's positive column, or None (the diagonal).
          candidate_ids: [N] the candidates' IDs (accidental hits).
          implementation: ``"dense"``, ``"blockwise"`` or ``"auto"`` (:func:`~yt_bias.core.losses.softmax_loss`).
        Returns:
          Scalar float32, the mean loss.
        """
        return softmax_loss(
            query,
            candidates,
            temperature=self.temperature,
            log_q=log_q,
            rewards=rewards,
            positive_index=positive_index,
            candidate_ids=candidate_ids,
            remove_accidental_hits=self.remove_accidental_hits,
            implementation=implementation,
            block_size=self.loss_block_size,
        )

    def _sampled_loss(
        self, batch: Mapping[str, tf.Tensor], query: tf.Tensor, items: tf.Tensor, log_q: tf.Tensor | None, training: bool
    ) -> tf.Tensor:
        """The loss over the blocks of the negative-sampling strategy (and, in training, its memory's enqueue).

        Args:
          batch: the batch's features.
          query: [B, d] query embeddings; items: [B, d] the positives' embeddings.
          log_q: [B] log p of the positives, or None (no correction).
          training: whether this is a training step.
        Returns:
          Scalar float32 loss.
        """
        ids = tf.reshape(batch[self.features.item_id], [-1])
        ids = ids if ids.dtype == tf.string else tf.strings.as_string(ids)
        view = BatchView(batch, query, items, ids, log_q)
        blocks = self.negatives.sample(view, self.item_tower, self.frequency, training)
        candidates = concat_blocks(blocks, view.batch_size)
        if self.negatives.loss_name == "corrected-logq-2025":
            value = corrected_logq_loss(
                query,
                candidates.embeddings,
                self.temperature,
                candidates.log_q,
                batch.get(REWARD),
                candidate_ids=candidates.ids,
                candidate_mask=candidates.mask,
            )
        else:
            value = softmax_loss(
                query,
                candidates.embeddings,
                temperature=self.temperature,
                log_q=candidates.log_q,
                rewards=batch.get(REWARD),
                candidate_ids=candidates.ids,
                remove_accidental_hits=self.remove_accidental_hits,
                candidate_mask=candidates.mask,
                correct_positive=self.negatives.correct_positive,
                implementation="dense" if self.loss_implementation == "auto" else self.loss_implementation,
                block_size=self.loss_block_size,
            )
        return self.negatives.observe(view, value) if training else value

    def _implementation_for(self, query: tf.Tensor) -> str:
        """``loss_implementation``, with "auto" decided by the static batch size (unique columns have
        no static count, and there are never more of them than rows)."""
        if self.loss_implementation != "auto":
            return self.loss_implementation
        rows = query.shape[0]
        if rows is None:
            return "auto"
        return "dense" if rows < BLOCKWISE_FROM_CANDIDATES else "blockwise"

    def optimizer_step(self, batch: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """One training step on ``batch``, the one every driver runs.

        Updates the frequency source with the batch's items (one global step) and reads log p,
        computes the corrected softmax loss plus the model's regularisation losses (``self.losses``),
        and applies their gradients with ``self.optimizer``. ``model.fit`` runs it through
        :meth:`train_step`; the parameter-server driver runs it in each worker closure.

        Args:
          batch: a batch of features (the towers' inputs, the item ID, optionally the reward).
        Returns:
          Scalar float32: the batch's softmax loss (regularisation losses not included).
        Raises:
          ValueError: ``gather_negatives_across_replicas`` with ``candidates="unique"``.
        """
        log_q = self.sampling_log_q(batch[self.features.item_id], update=True)
        with tf.GradientTape() as tape:
            if self.gather_negatives_across_replicas:
                if self.candidates == "unique":
                    raise ValueError("candidates='unique' cannot gather negatives across replicas; use candidates='rows'.")
                loss = gathered_batch_loss(self, batch, log_q, training=True)
            else:
                loss = self.batch_loss(batch, log_q, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
            # Under a strategy the optimizer sums the replicas' gradients: scale to the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:
                total = total / replicas
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return loss

    def train_step(self, batch):
        loss = self.optimizer_step(batch)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, batch):
        log_q = self.sampling_log_q(batch[self.features.item_id], update=False)
        self.loss_tracker.update_state(self.batch_loss(batch, log_q, training=False))
        return {"loss": self.loss_tracker.result()}

    def get_config(self) -> dict:
        """Everything needed to rebuild the model, the frequency source and negatives included."""
        return {
            "features": self.features.to_dict(),
            "hidden_units": list(self.query_tower.hidden_units),
            "normalize": self.query_tower.normalize,
            "temperature": self.temperature,
            "read_after_update": self.read_after_update,
            "remove_accidental_hits": self.remove_accidental_hits,
            "share_embeddings": self.share_embeddings,
            "candidates": self.candidates,
            "gather_negatives_across_replicas": self.gather_negatives_across_replicas,
            "loss_implementation": self.loss_implementation,
            "loss_block_size": self.loss_block_size,
            "frequency": None if self.frequency is None else keras.layers.serialize(self.frequency),
            "negatives": None if self.negatives is None else keras.layers.serialize(self.negatives),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> TwoTowerModel:
        """Rebuilds the model of :meth:`get_config`, its frequency source and negative strategy included.

        Args:
          config: a :meth:`get_config` dict.
          custom_objects: ``{class name: class}`` of frequency sources or strategies of your own.
        Returns:
          A new, unbuilt model (weights and estimator state are not part of a config).
        Raises:
          ValueError: a frequency source or strategy of a class this module does not know (and
            ``custom_objects`` does not name).
        """
        config = dict(config)
        config["features"] = FeatureConfig.from_dict(config["features"])
        config["frequency"] = _rebuild("frequency", config.get("frequency"), custom_objects)
        config["negatives"] = _rebuild("negatives", config.get("negatives"), custom_objects)
        return cls(**config)
