"""Notebooks explore with the package and must run top to bottom, on small bases, leaving nothing behind."""

import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_two_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["breach_base.ipynb", "quickstart.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path):
    temp = Path(tempfile.gettempdir())
    before = {p.name for p in temp.iterdir()}
    notebooks_before = sorted(p.name for p in path.parent.iterdir())
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook produced no output"
    # plots, not only tables, and readable printed summaries
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the notebook shows fewer than three plots"
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "expected defections" in printed and "ROC AUC" in printed
    # nothing left behind: its working folder, the system's temporary folder, the notebooks folder
    assert not list(tmp_path.iterdir())
    left = {p.name for p in temp.iterdir()} - before
    assert not [name for name in left if name.startswith(("churn-quickstart-", "churn-explore-"))], left
    assert sorted(p.name for p in path.parent.iterdir()) == notebooks_before
