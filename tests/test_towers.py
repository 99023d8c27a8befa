import numpy as np
import pytest

from yt_bias._keras import tf
from yt_bias.features import FeatureConfig, FeatureSpec, shared_tables
from yt_bias.core.towers import SharedEmbeddings, Tower

ITEM = dict(dim=4, vocabulary=("a", "b", "c"), buckets=2, table="item")
SPECS = (
    FeatureSpec("user_id", "id", dim=4, buckets=16),
    FeatureSpec("history", "bag", max_len=3, **ITEM),
    FeatureSpec("age", "dense", width=1),
)


def _batch():
    return {
        "user_id": tf.constant(["u1", "never_seen_user"]),
        "history": tf.constant([["a", "b", ""], ["", "", ""]]),
        "age": tf.constant([[0.5], [-1.0]]),
    }


def test_tower_output_is_normalised_and_unseen_ids_do_not_crash():
    tower = Tower(SPECS, hidden_units=(8, 5))
    out = tower(_batch()).numpy()
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    unnormalised = Tower(SPECS, hidden_units=(8, 5), normalize=False)(_batch()).numpy()
    assert not np.allclose(np.linalg.norm(unnormalised, axis=1), 1.0)


def test_bag_is_the_mean_of_its_non_padding_embeddings():
    tables = SharedEmbeddings(SPECS)
    tower = Tower(SPECS, hidden_units=(), normalize=False, embeddings=tables)
    out = tower(_batch()).numpy()
    a, b = tables.lookup("item", tf.constant(["a", "b"])).numpy()
    np.testing.assert_allclose(out[0, 4:8], (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1, 4:8], 0.0)  # an all-padding bag is zeros, not NaN
    np.testing.assert_allclose(out[:, 8], [0.5, -1.0])


def test_unknown_vocabulary_ids_share_oov_buckets():
    tables = SharedEmbeddings(SPECS)
    known = tables.lookup("item", tf.constant(["a", "b", "c"])).numpy()
    unknown = tables.lookup("item", tf.constant([f"new{i}" for i in range(20)])).numpy()
    assert len({tuple(row) for row in unknown}) <= 2  # two OOV buckets
    assert not any(np.allclose(u, k) for u in unknown for k in known)


def test_towers_share_one_table_by_name():
    item_specs = (FeatureSpec("item_id", "id", **ITEM),)
    tables = SharedEmbeddings(SPECS + item_specs)
    query = Tower(SPECS, hidden_units=(4,), embeddings=tables)
    item = Tower(item_specs, hidden_units=(4,), embeddings=tables)
    query(_batch())
    item({"item_id": tf.constant(["a"])})
    shared = [v for v in tables.weights if "item_embedding" in v.name]
    assert len(shared) == 1
    assert any(v is shared[0] for v in query.weights) and any(v is shared[0] for v in item.weights)


def test_get_config_round_trip_field_by_field():
    tower = Tower(SPECS, hidden_units=(8, 5), normalize=False, name="q")
    clone = Tower.from_config(tower.get_config())
    assert clone.specs == tower.specs
    assert clone.hidden_units == tower.hidden_units
    assert clone.normalize == tower.normalize
    assert clone.name == "q"
    clone(_batch())
    tower(_batch())
    clone.set_weights(tower.get_weights())
    np.testing.assert_allclose(clone(_batch()).numpy(), tower(_batch()).numpy(), rtol=1e-6)
    config = FeatureConfig(query=SPECS, item=(FeatureSpec("item_id", "id", **ITEM),))
    assert FeatureConfig.from_dict(config.to_dict()) == config


def test_bad_specs_raise_clear_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        FeatureSpec("x", "image")
    with pytest.raises(ValueError, match="dim must be an integer >= 1; received 0"):
        FeatureSpec("x", "id", dim=0)
    with pytest.raises(ValueError, match="share table 'item' but differ in dim"):
        shared_tables([FeatureSpec("a", "id", dim=4, table="item"), FeatureSpec("b", "id", dim=8, table="item")])
    with pytest.raises(ValueError, match="item_id 'missing' is not among the item features"):
        FeatureConfig(query=SPECS, item=(FeatureSpec("item_id", "id"),), item_id="missing")
    with pytest.raises(ValueError, match=r"missing feature\(s\) \['age'\]"):
        Tower(SPECS)({"user_id": tf.constant(["u"]), "history": tf.constant([["a", "", ""]])})


def test_an_id_vocabulary_is_not_a_tracked_list_that_keras_walks():
    """Keras walks every element of a tracked list whenever it collects layers or weights (several
    times per fit call); a vocabulary of a million IDs held as a list cost seconds a walk."""
    vocabulary = tuple(f"item_{i}" for i in range(5000))
    specs = (FeatureSpec("item_id", "id", dim=4, vocabulary=vocabulary, buckets=2, table="item"),)
    tables = SharedEmbeddings(specs)
    tower = Tower(specs, hidden_units=(3,), embeddings=tables)
    tower({"item_id": tf.constant(["item_7", "unknown"])})
    walked, stack = 0, [tower]
    while stack:  # what Layer._flatten_modules visits: tracked modules and every tracked data structure's values
        node = stack.pop()
        values = getattr(node, "_values", None) if isinstance(node, tf.__internal__.tracking.TrackableDataStructure) else None
        children = list(values) if values is not None else list(getattr(node, "_self_tracked_trackables", None) or [])
        walked += len(children)
        stack += [child for child in children if hasattr(child, "_self_tracked_trackables") or hasattr(child, "_values")]
    assert walked < 200, f"{walked} tracked objects walked: the vocabulary is tracked element by element"
    indices = tables._lookups["item"](tf.constant(["item_0", "item_4999", "unknown"])).numpy()
    assert list(indices[:2]) == [2, 5001] and indices[2] in (0, 1)  # 2 OOV buckets first, then the vocabulary
