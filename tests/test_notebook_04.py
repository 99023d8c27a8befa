"""notebooks/04_tfrs_drop_in.ipynb runs end to end on a small ml-100k-format folder the test writes."""

from __future__ import annotations

import os

import numpy as np

from notebook_run import cell_texts, run_notebook


def _write_ml100k(root: str, num_users: int = 30, num_items: int = 40, per_user: int = 20) -> str:
    """u.data / u.item / u.user in GroupLens's ml-100k layout (latin-1), Zipf-popular items over a time range."""
    folder = os.path.join(root, "ml-100k")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, num_items + 1)
    lines = []
    for user in range(1, num_users + 1):
        items = rng.choice(num_items, size=per_user, replace=False, p=popularity / popularity.sum()) + 1
        times = np.sort(rng.integers(880_000_000, 890_000_000, size=per_user))
        lines += [f"{user}\t{i}\t{rng.integers(1, 6)}\t{t}\n" for i, t in zip(items, times)]
    with open(os.path.join(folder, "u.data"), "w", encoding="latin-1") as f:
        f.writelines(lines)
    flags = "|".join(["0"] * 18 + ["1"])
    with open(os.path.join(folder, "u.item"), "w", encoding="latin-1") as f:
        f.writelines(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{flags}\n" for i in range(1, num_items + 1))
    with open(os.path.join(folder, "u.user"), "w", encoding="latin-1") as f:
        f.writelines(f"{u}|30|M|other|12345\n" for u in range(1, num_users + 1))
    return folder


def test_notebook_compares_plain_and_corrected_on_ml100k_files(tmp_path):
    data_dir = _write_ml100k(str(tmp_path))
    parameters = f"DATA_DIR = {data_dir!r}\nSEEDS = (0, 1)\nEPOCHS = 2\nBATCH_SIZE = 32\nKS = (5, 10)"
    outputs = cell_texts(run_notebook("04_tfrs_drop_in.ipynb", parameters, tmp_path, names=("DATA_DIR",)))
    assert "movielens:ml-100k: 480 training ratings" in outputs[2]
    assert outputs[6].count("seed 0") == 3 and outputs[6].count("seed 1") == 3
    tables = outputs[7]
    for variant in ("plain", "plain, mean", "corrected", "most-popular"):
        assert f"| {variant} | " in tables
    assert "**Queries of users with training ratings**" in tables and " ± " in tables
