"""Every notebook under ``notebooks/`` runs from top to bottom without an error.

Each notebook ends with cells that assert the claim it plots (computed from the plotted
data against a closed form or a hand-written loop), so a notebook that runs through is a
notebook whose claim held.  The kernel is started with the interpreter running the tests
(``sys.executable -m ipykernel_launcher``), so no ``ipykernel install`` is needed.
Notebooks are independent parameters: ``pytest -n 2`` runs them two at a time.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.manager import KernelManager

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SECONDS_PER_NOTEBOOK = 120


class ThisInterpreterKernelManager(KernelManager):
    """Starts ipykernel with ``sys.executable``, whatever kernelspecs are installed."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        connection_file = os.path.realpath(self.connection_file)
        return [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file] + list(
            extra_arguments or []
        )


def execute(notebook: nbformat.NotebookNode, directory: Path) -> None:
    """Run every cell of ``notebook`` (in place) in a fresh kernel, within the time limit."""
    deadline = time.monotonic() + SECONDS_PER_NOTEBOOK
    client = nbclient.NotebookClient(
        notebook,
        km=ThisInterpreterKernelManager(),
        # One limit for the whole notebook: each cell gets what is left of it.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        resources={"metadata": {"path": str(directory)}},
    )
    client.execute()


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_and_its_checks_pass(path):
    execute(nbformat.read(path, as_version=4), path.parent)


def test_kernel_uses_the_test_interpreter_and_a_failing_check_fails_the_run(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"),
        nbformat.v4.new_code_cell("assert 1 + 1 == 3, 'the claim does not hold'"),
    ]
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="the claim does not hold"):
        execute(notebook, tmp_path)
    printed = notebook.cells[0].outputs[0]["text"].strip()
    assert os.path.realpath(printed) == os.path.realpath(sys.executable)


def _load_builder():
    spec = importlib.util.spec_from_file_location("notebook_builder", NOTEBOOK_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_notebooks_match_their_builder_and_carry_no_outputs():
    builder = _load_builder()
    for name in builder.NOTEBOOKS:
        stored = nbformat.read(builder.path_of(name), as_version=4)
        assert stored == builder.build(name), f"{name}.ipynb differs: run notebooks/_build.py"
        for cell in stored.cells:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None
