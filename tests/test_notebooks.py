"""Execute the notebooks in notebooks/ with nbclient; a cell that raises fails the test.

The kernel is the ``python3`` kernel of the running interpreter (ipykernel), started in the
notebook's own folder (as JupyterLab and ``jupyter nbconvert`` start it) with the repository
on PYTHONPATH so that it imports this checkout of hftsig.  Matplotlib draws with the inline
backend that Jupyter uses, so every figure a reader would see is an ``image/png`` output here.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# the figures each notebook shows a reader (plt.show() calls that draw)
FIGURES = {"signature_optimal_stopping": 5, "triangular_arbitrage": 4, "signature_kernel_mmd": 1}

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")


def test_notebooks_present():
    names = {p.name for p in NOTEBOOKS}
    assert {f"{name}.ipynb" for name in FIGURES} <= names


def test_notebooks_open_with_what_they_show_and_end_with_what_to_try_next():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first, last = nb.cells[0], nb.cells[-1]
        assert first.cell_type == "markdown" and first.source.startswith("# "), path.name
        assert last.cell_type == "markdown" and last.source.startswith("## What to try next"), path.name


def test_notebooks_leave_the_backend_to_jupyter():
    # a backend forced inside a notebook (matplotlib.use("Agg")) shows no figure at all
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert "matplotlib.use(" not in cell.source, path.name
                assert "%matplotlib" not in cell.source, path.name


def test_notebooks_stored_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_its_folder_and_shows_its_figures(path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # Jupyter's own default backend, named so that a MPLBACKEND of the calling shell (Agg,
    # or a GUI one on a desktop) does not swallow the figures
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # jupyter_client starts a kernel spec whose argv begins with "python" on sys.executable,
    # i.e. on the interpreter running the tests
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=240,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError when a cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == FIGURES[path.stem], path.name


def test_hftsig_notebook_starts_jupyterlab_on_the_notebooks_folder(capsys, monkeypatch):
    from hftsig.app.cli import main

    monkeypatch.delenv("HFTSIG_NOTEBOOK_DIR", raising=False)
    assert main(["notebook", "--print-command"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[:2] == ["jupyter", "lab"] and "--notebook-dir=notebooks" in cmd
    # JupyterLab exits at once as root unless told otherwise (containers, CI, root shells)
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
