"""notebooks/03_negative_sampling.ipynb runs top to bottom with small settings (quick() data, three strategies, one seed, two rankers)."""

from __future__ import annotations

import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "03_negative_sampling.ipynb"


def test_notebook_03_executes(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.cells[1].source.startswith("# Parameters")
    notebook.cells[1].source = (
        'SMALL = True\nSTRATEGY_NAMES = ("in-batch", "mixed", "impressions-hard-negative")\nSEEDS = (0,)\n'
        'RANKERS = ("impressions-pointwise", "candidates-listwise")'
    )
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/markdown", ""))
        for cell in code
        for output in cell.get("outputs", [])
    )
    assert "| in-batch |" in text and "| impressions-hard-negative |" in text and "| mixed |" in text
    assert "pCTR AUC" in text and "slate AUC" in text and "retrieval alone (absolute)" in text
    assert "-> default two stages (candidates-listwise" in text
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert images == 2  # recall by popularity band, calibration
