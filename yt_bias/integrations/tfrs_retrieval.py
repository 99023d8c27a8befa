"""TFRS's Retrieval task on our towers: the field's reference in-batch softmax.

Same features, towers, temperature, optimizer and sampling probabilities as
:class:`~yt_bias.core.model.TwoTowerModel`; only the loss is TFRS's (``tfrs.tasks.Retrieval``), with
its default SUM reduction over the batch unless ``reduction`` says otherwise.
"""

from __future__ import annotations

import tensorflow_recommenders as tfrs

from yt_bias._keras import keras, tf
from yt_bias.data.dataset import REWARD
from yt_bias.features import FeatureConfig
from yt_bias.core.towers import build_towers


class TFRSRetrievalModel(tfrs.Model):
    """Our two towers trained with ``tfrs.tasks.Retrieval``.

    Args:
      features, hidden_units, normalize, temperature, share_embeddings: as TwoTowerModel.
      frequency: a frequency layer whose ``probability(ids)`` is passed to TFRS as
        ``candidate_sampling_probability`` (None: no correction).
      remove_accidental_hits: TFRS's own option.
      reduction: the loss reduction ("sum", TFRS's default, or "mean", the paper's).
    """

    def __init__(
        self,
        features: FeatureConfig,
        hidden_units=(128, 64),
        normalize: bool = True,
        temperature: float = 0.05,
        frequency=None,
        remove_accidental_hits: bool = False,
        share_embeddings: bool = True,
        reduction: str = "sum",
        **kwargs,
    ):
        super().__init__(**kwargs)
        reductions = {"sum": keras.losses.Reduction.SUM, "mean": keras.losses.Reduction.SUM_OVER_BATCH_SIZE}
        if reduction not in reductions:
            raise ValueError(f"reduction must be 'sum' or 'mean'; received {reduction!r}.")
        self.features = features
        self.frequency = frequency
        self.query_tower, self.item_tower = build_towers(features, hidden_units, normalize, share_embeddings)
        self.task = tfrs.tasks.Retrieval(
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, reduction=reductions[reduction]),
            temperature=temperature,
            remove_accidental_hits=remove_accidental_hits,
        )

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        ids = features[self.features.item_id]
        probability = self.frequency.probability(ids) if self.frequency is not None else None
        return self.task(
            self.query_tower(features, training=training),
            self.item_tower(features, training=training),
            sample_weight=features.get(REWARD),
            candidate_sampling_probability=probability,
            candidate_ids=ids,
            compute_metrics=False,
        )
