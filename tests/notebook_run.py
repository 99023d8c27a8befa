"""Running a notebook of notebooks/ with small parameters, and reading what its code cells showed."""

from __future__ import annotations

import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, parameters: str, folder, timeout: int = 300, names: tuple[str, ...] = ()):
    """``notebooks/<name>`` run top to bottom in ``folder``, its parameters cell (cell 1) replaced by ``parameters``.

    Asserts first that cell 1 is the parameters cell and that it mentions each of ``names``.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    source = nb.cells[1].source
    assert source.startswith("# Parameters"), source
    for needle in names:
        assert needle in source, (needle, source)
    nb.cells[1].source = parameters
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list:
    """Every output of every code cell, in order."""
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def output_text(output) -> str:
    """What one output shows as text: its stream text and its Markdown."""
    return output.get("text", "") + str(output.get("data", {}).get("text/markdown", ""))


def shown_text(nb: nbformat.NotebookNode) -> str:
    """The text of every output of the code cells, one output a line."""
    return "\n".join(output_text(output) for output in outputs(nb))


def cell_texts(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Each code cell's outputs as one text, by the cell's index in the notebook."""
    return {
        i: "".join(output_text(output) for output in cell.get("outputs", []))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
    }


def errors(nb: nbformat.NotebookNode) -> list:
    """The error outputs of the code cells."""
    return [output for output in outputs(nb) if output.get("output_type") == "error"]


def count_images(nb: nbformat.NotebookNode) -> int:
    """How many outputs carry a PNG image."""
    return sum("image/png" in output.get("data", {}) for output in outputs(nb))
