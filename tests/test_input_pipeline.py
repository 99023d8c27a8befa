"""make_tf_dataset: full static batches, a fresh permutation per pass, deterministic given the seed."""

import numpy as np

from yt_bias.data.dataset import make_tf_dataset

ROWS = {"row": np.arange(103), "tags": np.arange(206).reshape(103, 2).astype(str)}


def _passes(dataset, count):
    return [np.concatenate([batch["row"].numpy() for batch in dataset]) for _ in range(count)]


def test_each_pass_is_a_new_permutation_of_full_static_batches():
    dataset = make_tf_dataset(ROWS, 10, seed=3)
    assert dataset.element_spec["row"].shape.as_list() == [10]
    assert dataset.element_spec["tags"].shape.as_list() == [10, 2]
    first, second = _passes(dataset, 2)
    assert len(first) == len(second) == 100  # 10 full batches, the remainder dropped
    assert len(np.unique(first)) == 100 and len(np.unique(second)) == 100
    assert not np.array_equal(first, second)  # reshuffled each pass
    assert not np.array_equal(np.sort(first), first)
    batch = next(iter(dataset))  # rows stay aligned across columns
    np.testing.assert_array_equal(batch["tags"].numpy()[:, 0].astype(int), 2 * batch["row"].numpy())


def test_same_seed_same_order_and_unshuffled_remainder():
    np.testing.assert_array_equal(_passes(make_tf_dataset(ROWS, 10, seed=5), 2), _passes(make_tf_dataset(ROWS, 10, seed=5), 2))
    ordered = make_tf_dataset(ROWS, 25, shuffle=False, drop_remainder=False)
    sizes = [len(batch["row"]) for batch in ordered]
    assert sizes == [25, 25, 25, 25, 3]
    np.testing.assert_array_equal(_passes(ordered, 1)[0], ROWS["row"])
