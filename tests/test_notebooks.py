"""Execute the notebooks in notebooks/ with nbclient; a cell that raises fails the test.

The kernel is the ``python3`` kernel of the running interpreter (ipykernel), started in the
repository root with the repository on PYTHONPATH so that it imports this checkout of hftsig.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")


def test_notebooks_present():
    names = {p.name for p in NOTEBOOKS}
    assert {"triangular_arbitrage.ipynb", "signature_optimal_stopping.ipynb",
            "signature_kernel_mmd.ipynb"} <= names


def test_notebooks_stored_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # jupyter_client starts a kernel spec whose argv begins with "python" on sys.executable,
    # i.e. on the interpreter running the tests
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=240,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError when a cell fails
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
