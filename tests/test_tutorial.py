"""docs/tutorial.ipynb runs from top to bottom (nbclient, a real Jupyter kernel), so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the tutorial test needs nbformat: pip install 'vaelab[test]'")
nbclient = pytest.importorskip("nbclient", reason="the tutorial test needs nbclient: pip install 'vaelab[test]'")

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_tutorial_is_stored_without_outputs():
    notebook = json.loads(TUTORIAL.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code)


def test_the_tutorial_runs_and_shows_the_explorer(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_TUTORIAL_BUDGET", "8")  # seconds of training: the cells' work, not its quality
    notebook = nbformat.read(TUTORIAL, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = [output.data for output in outputs if output.output_type in ("display_data", "execute_result")]
    assert any("Flaw 1" in data.get("text/markdown", "") for data in shown)  # the verdicts
    assert any("image/png" in data for data in shown)  # the latent scatter
    explorer = [data["text/html"] for data in shown if "<iframe srcdoc=" in data.get("text/html", "")]
    assert len(explorer) == 1 and 'sandbox="allow-scripts"' in explorer[0]
    assert (tmp_path / "tutorial-study" / "report.html").is_file() and (tmp_path / "ae-vs-vae.html").is_file()
