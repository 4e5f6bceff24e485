"""Shared fixtures: run a notebook under papermill with small parameters."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, parameters: dict, out_dir: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with ``parameters`` injected into its ``parameters`` cell.

    Runs in the notebooks folder (as the book does) and returns the executed notebook, whose
    outputs the calling test inspects. A failing cell raises ``PapermillExecutionError``.
    """
    import papermill as pm

    out = out_dir / name
    pm.execute_notebook(
        str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3",
        cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
    )
    return nbformat.read(out, as_version=4)


def cell_text(nb: nbformat.NotebookNode, tag: str) -> str:
    """All text output of the code cells tagged ``tag``."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code" and tag in cell.get("metadata", {}).get("tags", []):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    texts.append(o.get("text", ""))
                elif "data" in o and "text/plain" in o["data"]:
                    texts.append(o["data"]["text/plain"])
    return "".join(texts)


@pytest.fixture
def notebook_runner(tmp_path):
    return lambda name, parameters: run_notebook(name, parameters, tmp_path)
