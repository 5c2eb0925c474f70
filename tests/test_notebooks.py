"""Every notebook under ``notebooks/`` runs from top to bottom, and its two files agree.

A notebook's source is a jupytext percent script, ``notebooks/<name>.py``; the paired
``<name>.ipynb`` is generated from it (``jupytext --sync notebooks/*.py``) and stored without
outputs.  The notebook executed here is the one built from the script.

Each notebook ends with cells that assert the claim it plots (computed from the plotted
data against a closed form or a hand-written loop), so a notebook that runs through is a
notebook whose claim held.  They are executed once per CI run, by the documentation build
(``docs/conf.py``: ``nb_execution_raise_on_error``, warnings as errors), which ``.ci/run``
starts after this suite; ``python -m tests.test_notebooks`` runs them all here with the
runner below, whose behaviour (a failing check fails the run, a time limit stops a
notebook) is tested.  The kernel is started with the interpreter running the tests
(``sys.executable -m ipykernel_launcher``), so no ``ipykernel install`` is needed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOK_DIR.glob("*.py"))
SECONDS_PER_NOTEBOOK = 120
PAIRING = "ipynb,py:percent"


class ThisInterpreterKernelManager(AsyncKernelManager):
    """Starts ipykernel with ``sys.executable``, whatever kernelspecs are installed.

    Asynchronous, as nbclient expects: with a blocking client, waiting for a busy kernel's
    output blocks the event loop, and the time limit never fires.
    """

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
        shutdown_kernel="immediate",
    )
    # A client given a kernel manager leaves its kernel running by default: stop it, so that
    # finished kernels do not pile up in the test process and a timed-out one stops computing.
    client.execute(cleanup_kc=True)


def cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """What a reader sees of a notebook without outputs: each cell's type and source."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_there_are_notebooks():
    assert len(SCRIPTS) >= 10, SCRIPTS


def test_every_script_has_its_notebook_and_every_notebook_its_script():
    scripts = {path.stem for path in NOTEBOOK_DIR.glob("*.py")}
    notebooks = {path.stem for path in NOTEBOOK_DIR.glob("*.ipynb")}
    assert not scripts - notebooks, f"no .ipynb: run jupytext --sync on {scripts - notebooks}"
    assert not notebooks - scripts, f"no .py source for {notebooks - scripts}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_stored_notebook_matches_its_script_and_carries_no_outputs(script):
    built = jupytext.read(script)
    stored = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    assert built.metadata.get("jupytext", {}).get("formats") == PAIRING, "header not paired"
    assert stored.metadata.get("jupytext", {}).get("formats") == PAIRING, "notebook not paired"
    assert cells(stored) == cells(built), f"run: jupytext --sync notebooks/{script.name}"
    for cell in stored.cells:
        assert cell.get("outputs", []) == [] and cell.get("execution_count") is None


def run_every_notebook() -> None:
    """Execute every notebook (``python -m tests.test_notebooks``), failing on the first error.

    The documentation build executes each notebook too (``nb_execution_raise_on_error``),
    and CI runs it after the suite, so the suite does not run them a second time.
    """
    for script in SCRIPTS:
        started = time.monotonic()
        execute(jupytext.read(script), script.parent)
        print(f"{script.stem}: {time.monotonic() - started:.1f} s", flush=True)


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


def test_a_notebook_over_its_time_limit_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "SECONDS_PER_NOTEBOOK", 3)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(60)")]
    started = time.monotonic()
    with pytest.raises(nbclient.exceptions.CellTimeoutError):
        execute(notebook, tmp_path)
    assert time.monotonic() - started < 30


def test_an_edit_to_one_file_of_a_pair_is_caught(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(
        "# ---\n# jupyter:\n#   jupytext:\n#     formats: ipynb,py:percent\n# ---\n\n"
        "# %% [markdown]\n# The claim.\n\n# %%\nassert 1 + 1 == 2\n"
    )
    notebook = jupytext.read(script)
    assert cells(notebook) == [("markdown", "The claim."), ("code", "assert 1 + 1 == 2")]
    script.write_text(script.read_text().replace("1 + 1 == 2", "2 + 2 == 4"))
    assert cells(jupytext.read(script)) != cells(notebook)


if __name__ == "__main__":
    run_every_notebook()
