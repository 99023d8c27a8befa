"""notebooks/05_keras3_jax.ipynb runs end to end on Keras 3 + JAX on a small ml-100k-format folder."""

from __future__ import annotations

from notebook_run import cell_texts, run_notebook
from test_notebook_04 import _write_ml100k


def test_notebook_compares_plain_corrected_and_the_tfrs_row_on_jax(tmp_path):
    data_dir = _write_ml100k(str(tmp_path))
    parameters = (f"import os\nos.environ['KERAS_BACKEND'] = 'jax'\nDATA_DIR = {data_dir!r}\n"
                  "SEEDS = (0,)\nEPOCHS = 1\nBATCH_SIZE = 32\nKS = (5, 10)")
    outputs = cell_texts(run_notebook("05_keras3_jax.ipynb", parameters, tmp_path, names=("DATA_DIR", "KERAS_BACKEND")))
    assert "backend jax" in outputs[2]
    assert "movielens:ml-100k: 480 training ratings" in outputs[2]
    assert outputs[4].count("seed 0") == 2
    assert "estimator_steps 15" in outputs[4]  # 480 ratings / 32 per batch, one epoch: the estimator advanced in fit
    for variant in ("plain", "corrected", "most-popular"):
        assert f"| {variant} | " in outputs[5]
    assert "| tf-keras + TFRS, CorrectedRetrieval (committed report) | " in outputs[7]
