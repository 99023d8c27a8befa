"""A two-tower model round-trips through get_config / from_config, its frequency source included."""

import dataclasses

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import keras
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.core.frequency import OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.model import TwoTowerModel
from yt_bias.training.train import build_model

SMOKE = config_lib.smoke()


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(SMOKE.data, SMOKE.model.embedding_dim)


def _train(model, dataset, steps=4):
    model.compile(optimizer=keras.optimizers.Adagrad(0.2))
    data = make_tf_dataset(dataset.examples("train"), 64, shuffle=False).take(steps)
    model.fit(data, epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("variant", ["correct-sfx", "correct-sfx-oracle"])
def test_clone_from_config_trains_to_the_same_weights(dataset, variant):
    config = dataclasses.replace(
        SMOKE, variant=variant,
        estimator=dataclasses.replace(SMOKE.estimator, estimand="expected_count"),
        model=dataclasses.replace(SMOKE.model, candidates="rows"),
    )
    keras.utils.set_random_seed(3)
    original = build_model(config, dataset)
    keras.utils.set_random_seed(3)
    clone = TwoTowerModel.from_config(original.get_config())
    expected_type = StreamingFrequencyEstimator if variant == "correct-sfx" else OracleFrequency
    assert isinstance(clone.frequency, expected_type)
    assert clone.frequency.estimand == "expected_count"
    assert clone.get_config() == original.get_config()
    batch = next(iter(make_tf_dataset(dataset.examples("train"), 8, shuffle=False)))
    original(batch)
    clone(batch)
    for a, b in zip(original.trainable_variables, clone.trainable_variables):
        b.assign(a)  # same start; from here only the config decides the training
    _train(original, dataset)
    _train(clone, dataset)
    for a, b in zip(original.trainable_variables, clone.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    if variant == "correct-sfx":
        np.testing.assert_array_equal(original.frequency.interval.numpy(), clone.frequency.interval.numpy())
        assert int(clone.frequency.step.numpy()) == 4


def test_a_plain_model_is_no_corrected_model(dataset):
    plain = build_model(dataclasses.replace(SMOKE, variant="plain-sfx"), dataset)
    assert TwoTowerModel.from_config(plain.get_config()).frequency is None


def test_from_config_refuses_what_it_cannot_rebuild(dataset):
    config = dataclasses.replace(SMOKE, negatives=dataclasses.replace(SMOKE.negatives, uniform_per_query=4))
    model = build_model(config, dataset)
    assert model.get_config()["negatives"] is not None
    with pytest.raises(ValueError, match="negative-sampling strategy"):
        TwoTowerModel.from_config(model.get_config())


def test_unique_candidates_refuse_negative_strategies(dataset):
    config = dataclasses.replace(
        SMOKE, model=dataclasses.replace(SMOKE.model, candidates="unique"),
        negatives=dataclasses.replace(SMOKE.negatives, uniform_per_query=4),
    )
    with pytest.raises(ValueError, match="candidates='unique'"):
        build_model(config, dataset)



@pytest.mark.parametrize("candidates", ["rows", "unique"])
def test_blockwise_loss_trains_like_the_dense_loss(dataset, candidates):
    models = {}
    for implementation in ("dense", "blockwise"):
        config = dataclasses.replace(
            SMOKE, model=dataclasses.replace(SMOKE.model, candidates=candidates, loss_implementation=implementation,
                                             loss_block_size=16),
        )
        keras.utils.set_random_seed(5)
        models[implementation] = build_model(config, dataset)
    batch = next(iter(make_tf_dataset(dataset.examples("train"), 8, shuffle=False)))
    for model in models.values():
        model(batch)
    for a, b in zip(models["dense"].trainable_variables, models["blockwise"].trainable_variables):
        b.assign(a)
    for model in models.values():
        _train(model, dataset)
    for a, b in zip(models["dense"].trainable_variables, models["blockwise"].trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
