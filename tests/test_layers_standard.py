"""The four standard tests of every public Keras layer (as keras-rs tests each of its layers).

For each layer: a call on a tiny input, the same call traced by ``tf.function`` (what ``predict``
and ``fit`` run), a ``get_config`` round trip (the clone, given the original's weights, computes
the same outputs) and a save and load (a ``.keras`` file, or a checkpoint of the state for the
layers that are not functional-model blocks) that gives back the same outputs and state.
"""

from __future__ import annotations

import numpy as np
import pytest

from yt_bias._keras import keras, tf
from yt_bias.core.cross_batch import CrossBatchMemory
from yt_bias.core.frequency import OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.model import TwoTowerModel
from yt_bias.core.towers import SharedEmbeddings, Tower
from yt_bias.features import FeatureConfig, FeatureSpec
from yt_bias.integrations.tfrs import CorrectedRetrieval

IDS = tf.constant(["a", "b", "a", "c"])
QUERY_SPECS = (
    FeatureSpec("user_id", "id", dim=4, buckets=16),
    FeatureSpec("history", "bag", dim=4, buckets=16, max_len=3, table="item_id"),
    FeatureSpec("age", "dense", width=2),
)
FEATURES = FeatureConfig(query=QUERY_SPECS, item=(FeatureSpec("item_id", "id", dim=4, buckets=16),))
BATCH = {
    "user_id": tf.constant(["u1", "u2", "u3", "u4"]),
    "history": tf.constant([["a", "b", ""], ["c", "", ""], ["", "", ""], ["a", "a", "b"]]),
    "age": tf.constant([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]),
    "item_id": IDS,
}
QUERY = tf.constant(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
CANDIDATES = tf.constant(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32))


class Case:
    """One layer: how to make it, build its variables, run it (a list of outputs) and save it.

    ``shapes`` are the shapes of ``run``'s outputs.
    """

    custom_objects: dict = {}
    shapes: list = []

    def make(self):
        raise NotImplementedError

    def build(self, layer) -> None:
        """Creates the layer's variables without changing its state (most layers create them in ``__init__``)."""

    def run(self, layer) -> list:
        raise NotImplementedError

    def as_model(self, layer):
        """A model holding the layer, saved as a ``.keras`` file (None: save a checkpoint of the layer instead)."""
        return None


class Estimator(Case):
    custom_objects = {"StreamingFrequencyEstimator": StreamingFrequencyEstimator}
    shapes = [(4,), (4,), ()]

    def make(self):
        return StreamingFrequencyEstimator(32, num_hashes=2, alpha=0.5, initial_interval=4.0, name="frequency")

    def run(self, layer):
        return [layer(IDS, training=True), layer(IDS, training=False), layer.step]

    def as_model(self, layer):
        ids = keras.Input(shape=(), dtype=tf.string)
        return keras.Model(ids, layer(ids))


class Oracle(Case):
    custom_objects = {"OracleFrequency": OracleFrequency}
    shapes = [(4,), (4,)]

    def make(self):
        return OracleFrequency(["a", "b", "c"], [2.0, 0.5, 0.25], name="frequency")

    def run(self, layer):
        return [layer(IDS, training=True), layer.log_q(IDS)]

    def as_model(self, layer):
        ids = keras.Input(shape=(), dtype=tf.string)
        return keras.Model(ids, layer(ids))


class QueryTower(Case):
    custom_objects = {"Tower": Tower, "SharedEmbeddings": SharedEmbeddings}
    shapes = [(4, 3)]

    def make(self):
        return Tower(QUERY_SPECS, hidden_units=(6, 3), name="query_tower")

    def build(self, layer):
        layer(BATCH)

    def run(self, layer):
        return [layer(BATCH)]

    def as_model(self, layer):
        inputs = {s.name: keras.Input(shape=s.shape, dtype=s.dtype, name=s.name) for s in QUERY_SPECS}
        return keras.Model(inputs, layer(inputs))


class Model(Case):
    custom_objects = {"TwoTowerModel": TwoTowerModel}
    shapes = [(4, 3), (4, 3), (4,), ()]

    def make(self):
        frequency = StreamingFrequencyEstimator(32, alpha=0.5, initial_interval=4.0, name="frequency")
        return TwoTowerModel(FEATURES, hidden_units=(6, 3), temperature=0.2, frequency=frequency)

    def build(self, layer):
        layer(BATCH)

    def run(self, layer):
        query, items = layer(BATCH)
        return [query, items, layer.sampling_log_q(IDS, update=True), layer.frequency.step]

    def as_model(self, layer):
        return layer


class Retrieval(Case):
    shapes = [(), (), ()]

    def make(self):
        return CorrectedRetrieval(frequency={"hash_size": 32, "alpha": 0.5, "initial_interval": 4.0}, temperature=0.2)

    def run(self, layer):
        train = layer(QUERY, CANDIDATES, candidate_ids=IDS, training=True)
        return [train, layer(QUERY, CANDIDATES, candidate_ids=IDS, training=False), layer.frequency.step]


class Memory(Case):
    """The cross-batch memory has no ``call``: its operations, ``push`` and ``valid``, are what is tested."""

    shapes = [(5,), (5, 3), (5,), (), ()]

    def make(self):
        return CrossBatchMemory(size=5, dim=3, warmup_steps=1)

    def run(self, layer):
        layer.push(CANDIDATES, tf.constant([1, 2, 3, 4], tf.int64))
        layer.push(QUERY[:2], tf.constant([7, 8], tf.int64))
        return [layer.valid(), layer.embeddings, layer.item_index, layer.filled, layer.cursor]


CASES = {case.__name__: case() for case in (Estimator, Oracle, QueryTower, Model, Retrieval, Memory)}


def _numpy(values) -> list:
    return [np.asarray(tf.convert_to_tensor(v)) for v in values]


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(_numpy(a), _numpy(b)):
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


def _twin(case: Case, layer):
    """A second layer of ``case`` with ``layer``'s weights and state (both built)."""
    twin = case.make()
    case.build(layer)
    case.build(twin)
    assert len(layer.weights) == len(twin.weights)
    for a, b in zip(layer.weights, twin.weights):
        b.assign(a)
    return twin


@pytest.mark.parametrize("name", sorted(CASES))
def test_call(name):
    case = CASES[name]
    layer = case.make()
    outputs = _numpy(case.run(layer))
    assert [x.shape for x in outputs] == case.shapes
    assert all(np.all(np.isfinite(x)) for x in outputs if x.dtype.kind == "f")


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_equals_eager(name):
    case = CASES[name]
    eager = case.make()
    graph = _twin(case, eager)
    _assert_same(case.run(eager), tf.function(lambda: case.run(graph))())


@pytest.mark.parametrize("name", sorted(CASES))
def test_get_config_round_trip(name):
    case = CASES[name]
    layer = case.make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    case.build(layer)
    case.build(clone)
    for a, b in zip(layer.weights, clone.weights):
        b.assign(a)  # towers start from random weights; the config must rebuild everything else
    _assert_same(case.run(layer), case.run(clone))


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_and_load(name, tmp_path):
    case = CASES[name]
    layer = case.make()
    case.run(layer)  # state (estimator steps, memory slots) that the saved copy must carry
    model = case.as_model(layer)
    if model is not None:
        path = str(tmp_path / "layer.keras")
        model.save(path)
        loaded = keras.models.load_model(path, custom_objects=case.custom_objects)
        restored = loaded if model is layer else loaded.get_layer(layer.name)
    else:
        checkpoint = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
        restored = type(layer).from_config(layer.get_config())
        tf.train.Checkpoint(layer=restored).restore(checkpoint).assert_existing_objects_matched()
    _assert_same(layer.weights, restored.weights)
    _assert_same(case.run(layer), case.run(restored))
