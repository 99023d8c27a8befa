"""notebooks/02_offline_evaluation.ipynb runs end to end (tiny settings, default and real-format data)."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient
from test_table1 import _write_recbole  # tests/ is on sys.path (rootdir conftest, prepend import mode)

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, "notebooks", "02_offline_evaluation.ipynb")


def test_notebook_runs_the_grid_on_default_and_real_data(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    data_dir = _write_recbole(str(tmp_path))
    tiny = ["train.epochs=1", "train.batch_size=32", "model.hidden_units=8", "model.embedding_dim=8", "eval.ks=5,10"]
    synthetic = [
        "data.synthetic.num_users=60",
        "data.synthetic.num_items=40",
        "data.synthetic.interactions_per_user=8",
        "data.synthetic.num_categories=4",
    ]
    nb.cells[1].source = (
        f"DATA_DIR = {data_dir!r}\nSEEDS = (0,)\nTEMPERATURES = (0.1,)\nINCLUDE_TFRS = False\n"
        f"OVERRIDES = {tiny!r}\nSYNTHETIC_OVERRIDES = {synthetic!r}"
    )
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {
        i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in c.get("outputs", []))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    }
    assert "synthetic" in outputs[4] and "| correct-sfx tau=0.1 |" in outputs[4]
    assert "recbole:tiny" in outputs[6] and "| most-popular |" in outputs[6]
    images = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images == [4, 6]  # Recall by popularity band, one figure per data set
