"""The model an experiment config describes: towers, frequency source, negatives, loss and optimizer.

Training builds it to train, serving to restore a checkpoint into: one function, so a restored
model has exactly the variables the trained one had.
"""

from __future__ import annotations

import numpy as np

from yt_bias._keras import keras
from yt_bias.config import ExperimentConfig
from yt_bias.core.frequency import OracleFrequency, estimator_from_settings
from yt_bias.core.model import TwoTowerModel
from yt_bias.core.negatives import build_strategy
from yt_bias.data.dataset import RecDataset

def build_frequency(config: ExperimentConfig, dataset: RecDataset):
    """The sampling-probability source of a variant: None, the streaming estimator or the oracle."""
    if config.variant == "plain-sfx":
        return None
    estimand = config.estimator.estimand
    if config.variant == "correct-sfx-oracle":
        probabilities = dataset.step_probabilities(config.train.batch_size, estimand)
        probabilities = np.maximum(probabilities, 1e-9)  # unseen items: tiny, not 0
        return OracleFrequency(dataset.item_ids, probabilities, estimand=estimand, name="frequency")
    return estimator_from_settings(config.estimator)


def build_optimizer(config: ExperimentConfig) -> keras.optimizers.Optimizer:
    name = config.train.optimizer.lower()
    optimizers = {"adagrad": keras.optimizers.Adagrad, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if name not in optimizers:
        raise ValueError(f"train.optimizer must be one of {sorted(optimizers)}; received {config.train.optimizer!r}.")
    return optimizers[name](learning_rate=config.train.learning_rate)


def build_negatives(config: ExperimentConfig, dataset: RecDataset):
    """The recall-stage negative-sampling strategy (yt_bias/core/negatives.py); None: in-batch only, as before."""
    negatives = getattr(config, "negatives", None)
    if negatives is None or negatives.is_default:
        return None
    return build_strategy(negatives, dataset, config.model.hidden_units[-1])


_FROM_CONFIG = object()


def build_model(
    config: ExperimentConfig, dataset: RecDataset, estimator_shards: int = 1, frequency=_FROM_CONFIG
) -> TwoTowerModel:
    """A compiled two-tower model for ``config`` on ``dataset``'s features.

    ``estimator_shards`` > 1 splits the streaming estimator's arrays into that many variables
    (ParameterServerStrategy places them on different parameter servers). ``frequency``: a
    frequency source to use instead of the one ``config.variant`` names (None: no correction).
    """
    m = config.model
    if frequency is not _FROM_CONFIG:
        pass
    elif config.variant == "correct-sfx" and estimator_shards > 1:
        frequency = estimator_from_settings(config.estimator, num_shards=estimator_shards)
    else:
        frequency = build_frequency(config, dataset)
    model = TwoTowerModel(
        dataset.features,
        hidden_units=m.hidden_units,
        normalize=m.normalize,
        temperature=m.temperature,
        frequency=frequency,
        read_after_update=config.estimator.read_after_update,
        remove_accidental_hits=m.remove_accidental_hits,
        share_embeddings=m.share_embeddings,
        negatives=build_negatives(config, dataset),
        candidates=m.candidates,
        gather_negatives_across_replicas=config.distribute.gather_negatives_across_replicas,
        loss_implementation=m.loss_implementation,
        loss_block_size=m.loss_block_size,
    )
    model.compile(optimizer=build_optimizer(config))
    return model
