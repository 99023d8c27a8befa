"""The serving index: ScaNN's defaults, recall against brute force, save/load, errors; config round trips."""

import dataclasses

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias.config import IndexConfig
from yt_bias.serving.index import ItemIndex, build_index, lookup_ids, scann_parameters


def _clustered(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    items = centres[rng.integers(0, 50, n)] + 0.4 * rng.normal(size=(n, dim))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    queries = items[rng.integers(0, n, 200)] + 0.1 * rng.normal(size=(200, dim))
    return items.astype(np.float32), queries.astype(np.float32), np.array([f"item_{j}" for j in range(n)])


def test_scann_parameters_follow_scann_guidance():
    p = scann_parameters(1_000_000, IndexConfig())
    assert p["mode"] == "tree_ah"
    assert p["num_leaves"] == 1000  # about sqrt(N)
    assert p["num_leaves_to_search"] == 100
    assert scann_parameters(10_000, IndexConfig())["mode"] == "brute_force"  # small corpus
    explicit = scann_parameters(50_000, IndexConfig(num_leaves=64, num_leaves_to_search=8, reorder=50))
    assert (explicit["num_leaves"], explicit["num_leaves_to_search"], explicit["reorder"]) == (64, 8, 50)
    with pytest.raises(ValueError, match="num_leaves_to_search must be <= num_leaves"):
        scann_parameters(50_000, IndexConfig(num_leaves=10, num_leaves_to_search=11))


@pytest.mark.parametrize("field,value", [("kind", "faiss"), ("k", 0), ("num_leaves", -1), ("dimensions_per_block", 0)])
def test_index_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"IndexConfig.{field}"):
        IndexConfig(**{field: value})


def test_config_from_dict_round_trips():
    for config in (config_lib.smoke(), config_lib.default()):
        assert config_lib.from_dict(config.to_dict()) == config
    index = IndexConfig(kind="brute_force", k=7, num_leaves=3)
    assert config_lib.from_dict(dataclasses.asdict(index), IndexConfig) == index
    with pytest.raises(ValueError, match="Unknown config field.*model.bogus"):
        config_lib.from_dict({"model": {"bogus": 1}})


def test_scann_tree_ah_recall_against_brute_force_and_save_load(tmp_path):
    items, queries, ids = _clustered(6000, 16)
    exact = build_index(items, ids, IndexConfig(kind="brute_force"))
    approx = build_index(items, ids, IndexConfig(brute_force_below=0, k=10))
    assert approx.parameters["mode"] == "tree_ah" and approx.parameters["num_leaves"] == 77
    exact_ids, exact_scores = exact.search(queries, 10)
    approx_ids, approx_scores = approx.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_ids, exact_ids)])
    assert recall >= 0.95, recall
    # Reordering makes ScaNN's scores exact dot products: compare them for the IDs both found.
    by_id = [dict(zip(e, s)) for e, s in zip(exact_ids, exact_scores)]
    matched = [
        (s, row[i]) for row, a_row, s_row in zip(by_id, approx_ids, approx_scores) for i, s in zip(a_row, s_row) if i in row
    ]
    np.testing.assert_allclose(*np.array(matched).T, rtol=1e-4, atol=1e-5)
    # The exact index is exact.
    np.testing.assert_allclose(exact_scores[:, 0], (queries @ items.T).max(axis=1), rtol=1e-5)
    assert approx.size_bytes > 0 and approx.build_seconds >= 0

    path = str(tmp_path / "index.npz")
    approx.save(path)
    loaded = ItemIndex.load(path)
    assert loaded.config == approx.config and loaded.parameters == approx.parameters
    again_ids, again_scores = loaded.search(queries, 10)
    np.testing.assert_array_equal(again_ids, approx_ids)
    np.testing.assert_allclose(again_scores, approx_scores)


def test_build_index_refuses_bad_corpora():
    items, _, ids = _clustered(100, 8)
    with pytest.raises(ValueError, match="corpus is empty"):
        build_index(np.zeros((0, 8), np.float32), np.array([], str))
    with pytest.raises(ValueError, match="one ID per embedding row"):
        build_index(items, ids[:50])
    duplicated = ids.copy()
    duplicated[1] = duplicated[0]
    with pytest.raises(ValueError, match="unique and non-empty"):
        build_index(items, duplicated)
    bad = items.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        build_index(bad, ids)


def test_lookup_ids_maps_scann_padding_to_empty_ids():
    ids = np.array(["a", "b", "c"])
    found, scores = lookup_ids(ids, np.array([[2, 0, -1]]), np.array([[0.9, 0.5, np.nan]], np.float32))
    assert found.tolist() == [["c", "a", ""]]
    assert scores[0, 2] == -np.inf and scores[0, 0] == np.float32(0.9)


def test_search_checks_k_handles_empty_batches_and_exclusions():
    items, queries, ids = _clustered(2000, 16, seed=1)
    exact = build_index(items, ids, IndexConfig(kind="brute_force", k=10))
    scann_exact = build_index(items, ids, IndexConfig(k=10))  # ScaNN's brute force below 20,000 items
    tree = build_index(items, ids, IndexConfig(brute_force_below=0, num_leaves=20, num_leaves_to_search=20, reorder=40, k=10))
    assert scann_exact.parameters["mode"] == "brute_force" and tree.parameters["mode"] == "tree_ah"
    for index in (exact, scann_exact, tree):
        for bad in (0, -1, 2.5, True):
            with pytest.raises(ValueError, match="k must be an integer >= 1"):
                index.search(queries, bad)
        for k in (None, 3):
            found, scores = index.search(queries[:0], k)
            assert found.shape == scores.shape == (0, k or 10)
        assert index.search(queries[:0], 3, exclude_item_ids=np.zeros((0, 2), str))[0].shape == (0, 3)
    scores = queries @ items.T
    order = np.argsort(-scores, axis=1, kind="stable")
    # Exclude each query's exact top 45 (more than the reorder pool of 40) plus padding and an unknown ID.
    exclude = [list(ids[order[i, :45]]) + ["", "unknown"] for i in range(len(queries))]
    truth = np.array([ids[[j for j in order[i] if ids[j] not in set(exclude[i])][:10]] for i in range(len(queries))])
    for index in (exact, scann_exact):
        found, _ = index.search(queries, 10, exclude_item_ids=exclude)
        np.testing.assert_array_equal(found, truth)
    found, found_scores = tree.search(queries, 10, exclude_item_ids=exclude)
    assert np.all(found != "") and np.all(np.isfinite(found_scores))
    assert not any(set(f) & set(e) for f, e in zip(found, exclude))
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    base = np.mean([len(set(f) & set(ids[o[:10]])) / 10 for f, o in zip(tree.search(queries, 10)[0], order)])
    assert recall >= 0.95 and recall >= base - 0.03, (recall, base)  # the reordering pool widens with the exclusions
    # Without exclusions the answers are unchanged; more results than the reorder pool are still returned.
    np.testing.assert_array_equal(exact.search(queries, 10)[0], ids[order[:, :10]])
    assert np.all(tree.search(queries, 60)[0] != "")
    with pytest.raises(ValueError, match=r"exclude_item_ids: expected 200 row\(s\)"):
        exact.search(queries, 10, exclude_item_ids=exclude[:3])
    with pytest.raises(ValueError, match=r"exclude_item_ids\[0\]: expected a sequence of item IDs"):
        exact.search(queries[:1], 10, exclude_item_ids=["item_1"])
