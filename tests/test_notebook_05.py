"""notebooks/05_keras3_jax.ipynb runs end to end on Keras 3 + JAX on a small ml-100k-format folder."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient
from test_notebook_04 import _write_ml100k

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, "notebooks", "05_keras3_jax.ipynb")


def test_notebook_compares_plain_corrected_and_the_tfrs_row_on_jax(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    data_dir = _write_ml100k(str(tmp_path))
    assert "DATA_DIR" in nb.cells[1].source and "KERAS_BACKEND" in nb.cells[1].source
    nb.cells[1].source = (f"import os\nos.environ['KERAS_BACKEND'] = 'jax'\nDATA_DIR = {data_dir!r}\n"
                          "SEEDS = (0,)\nEPOCHS = 1\nBATCH_SIZE = 32\nKS = (5, 10)")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {
        i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in c.get("outputs", []))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    }
    assert "backend jax" in outputs[2]
    assert "movielens:ml-100k: 480 training ratings" in outputs[2]
    assert outputs[4].count("seed 0") == 2
    assert "estimator_steps 15" in outputs[4]  # 480 ratings / 32 per batch, one epoch: the estimator advanced in fit
    for variant in ("plain", "corrected", "most-popular"):
        assert f"| {variant} | " in outputs[5]
    assert "| tf-keras + TFRS, CorrectedRetrieval (committed report) | " in outputs[7]
