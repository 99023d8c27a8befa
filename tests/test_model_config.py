"""A two-tower model round-trips through get_config / from_config, its frequency source and negatives included."""

import dataclasses
import json

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import keras, tf
from yt_bias.config import NegativesConfig
from yt_bias.core.corpus import array_digest
from yt_bias.core.frequency import FrequencySource, OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.model import TwoTowerModel
from yt_bias.core.negatives import NegativeStrategy
from yt_bias.data.dataset import make_tf_dataset
from yt_bias.data.loading import load_dataset
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


# The negatives of the round trip: random draws (shared and per query) and a memory with state.
SAMPLED = NegativesConfig(mixed_uniform=8, uniform_per_query=2, memory_size=32, memory_warmup_steps=1)


@pytest.mark.parametrize(
    "variant, negatives",
    [
        ("plain-sfx", NegativesConfig()),
        ("correct-sfx", NegativesConfig()),
        ("correct-sfx-oracle", NegativesConfig()),
        ("correct-sfx", SAMPLED),
        ("correct-sfx", NegativesConfig(mined_hard_per_query=2, loss="corrected-logq-2025")),
    ],
    ids=["plain", "streaming", "oracle", "streaming+sampled-negatives", "streaming+mined+2025-loss"],
)
def test_clone_from_config_trains_to_the_same_weights(dataset, variant, negatives):
    config = dataclasses.replace(
        SMOKE, variant=variant, negatives=negatives,
        estimator=dataclasses.replace(SMOKE.estimator, estimand="expected_count"),
        model=dataclasses.replace(SMOKE.model, candidates="rows"),
    )
    keras.utils.set_random_seed(3)
    original = build_model(config, dataset)
    # Through JSON, as a saved model's config travels.
    clone = TwoTowerModel.from_config(json.loads(json.dumps(original.get_config())))
    assert clone.get_config() == original.get_config()
    expected_type = {"plain-sfx": type(None), "correct-sfx": StreamingFrequencyEstimator, "correct-sfx-oracle": OracleFrequency}
    assert isinstance(clone.frequency, expected_type[variant])
    if clone.frequency is not None:
        assert clone.frequency.estimand == "expected_count"
    assert (clone.negatives is None) == negatives.is_default
    if clone.negatives is not None:
        assert isinstance(clone.negatives, NegativeStrategy)
        for name, values in dataset.items.items():  # the corpus the samplers draw from came along
            np.testing.assert_array_equal(clone.negatives.corpus.arrays[name], np.asarray(values))
    batch = next(iter(make_tf_dataset(dataset.examples("train"), 8, shuffle=False)))
    original(batch)
    clone(batch)
    for a, b in zip(original.trainable_variables, clone.trainable_variables):
        b.assign(a)  # same start; from here only the config decides the training
    for model in (original, clone):
        keras.utils.set_random_seed(11)  # the same random negatives for both
        _train(model, dataset)
    for a, b in zip(original.trainable_variables, clone.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(original.non_trainable_variables, clone.non_trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)  # estimator and memory state
    if variant == "correct-sfx":
        np.testing.assert_array_equal(original.frequency.interval.numpy(), clone.frequency.interval.numpy())
        assert int(clone.frequency.step.numpy()) == 4
    if negatives.memory_size:
        assert int(clone.negatives.memory.filled.numpy()) == 32  # 4 steps of 64 rows went through the memory


class ConstantFrequency(FrequencySource):
    """A frequency source of the test's own: one probability for every item."""

    def __init__(self, value: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def probability(self, item_ids):
        return tf.fill(tf.shape(item_ids), self.value)

    def get_config(self):
        return dict(super().get_config(), value=self.value)


def test_from_config_refuses_what_it_cannot_rebuild(dataset):
    model = build_model(SMOKE, dataset, frequency=ConstantFrequency(0.02, name="frequency"))
    config = model.get_config()
    with pytest.raises(ValueError, match="cannot rebuild 'frequency'.*received class 'ConstantFrequency'"):
        TwoTowerModel.from_config(config)
    clone = TwoTowerModel.from_config(config, custom_objects={"ConstantFrequency": ConstantFrequency})
    assert isinstance(clone.frequency, ConstantFrequency) and clone.frequency.value == 0.02
    negatives = dict(config, frequency=None, negatives={"class_name": "MyNegatives", "config": {}})
    with pytest.raises(ValueError, match="cannot rebuild 'negatives'.*received class 'MyNegatives'"):
        TwoTowerModel.from_config(negatives)


def test_a_strategy_config_refers_to_its_corpus_and_names_a_bad_one(dataset, tmp_path):
    config = build_model(dataclasses.replace(SMOKE, negatives=SAMPLED), dataset).get_config()["negatives"]["config"]
    reference = config["items"]  # the corpus file and its fingerprint, not a copy of the corpus
    assert set(reference) == {"path", "sha256"} and reference["sha256"] == array_digest(dataset.items)
    assert len(json.dumps(config)) < 1500
    with np.load(reference["path"]) as data:
        changed = {name: data[name] for name in data.files}
    changed["item_id"] = changed["item_id"][::-1]
    np.savez(tmp_path / "changed.npz", **changed)
    with pytest.raises(ValueError, match="changed.npz' has sha256 .* the config expects"):
        NegativeStrategy.from_config(dict(config, items={"path": str(tmp_path / "changed.npz"), "sha256": reference["sha256"]}))
    with pytest.raises(ValueError, match="missing.npz' .* does not exist"):
        NegativeStrategy.from_config(dict(config, items={"path": str(tmp_path / "missing.npz"), "sha256": reference["sha256"]}))
    # The inline form of older configs is still read, and a damaged entry is named.
    config["items"] = {"item_id": {"values": ["a", "b"]}}
    with pytest.raises(ValueError, match=r"items\['item_id'\] must be \{'dtype', 'values'\}.*received keys \['values'\]"):
        NegativeStrategy.from_config(config)


def test_unique_candidates_refuse_negative_strategies(dataset):
    config = dataclasses.replace(
        SMOKE, model=dataclasses.replace(SMOKE.model, candidates="unique"),
        estimator=dataclasses.replace(SMOKE.estimator, estimand="inclusion"),
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
            estimator=dataclasses.replace(SMOKE.estimator, estimand="inclusion" if candidates == "unique" else "expected_count"),
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
