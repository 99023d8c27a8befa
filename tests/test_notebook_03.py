"""notebooks/03_negative_sampling.ipynb runs top to bottom with small settings (quick() data, three strategies, one seed, two rankers)."""

from __future__ import annotations

from notebook_run import count_images, errors, run_notebook, shown_text


def test_notebook_03_executes(tmp_path):
    parameters = (
        'SMALL = True\nSTRATEGY_NAMES = ("in-batch", "mixed", "impressions-hard-negative")\nSEEDS = (0,)\n'
        'RANKERS = ("impressions-pointwise", "candidates-listwise")'
    )
    notebook = run_notebook("03_negative_sampling.ipynb", parameters, tmp_path, timeout=600)
    text = shown_text(notebook)
    assert "| in-batch |" in text and "| impressions-hard-negative |" in text and "| mixed |" in text
    assert "pCTR AUC" in text and "slate AUC" in text and "retrieval alone (absolute)" in text
    assert "-> default two stages (candidates-listwise" in text
    assert not errors(notebook)
    assert count_images(notebook) == 2  # recall by popularity band, calibration
