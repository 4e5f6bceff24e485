"""The run times that the book's prose states agree with what the committed runs printed.

Hand-typed times go stale whenever a notebook is re-executed. Two kinds are pinned here. The
first is each chapter's "Runtime" note. The second is the timings table of
book/reproducibility.md, with its note on chapter 1. Each stated time must equal, to the
precision written, a time printed by the chapter's cells tagged ``runtime``, or papermill's
wall time for the whole run (``metadata.papermill.duration``). The training times must equal
those recorded next to the committed weights. The stored notebooks are read, not executed.
"""

import json
import re

import nbformat
import pytest

from conftest import NOTEBOOKS, cell_text

ROOT = NOTEBOOKS.parent
SECONDS = re.compile(r"(\d+(?:\.\d+)?) s\b")


def _agrees(stated: str, values: list[float]) -> bool:
    """Whether ``stated`` (as written) is one of ``values`` rounded to its precision."""
    decimals = len(stated.partition(".")[2])
    return any(abs(float(stated) - v) <= 0.5 * 10.0**-decimals + 1e-9 for v in values)


def _printed_seconds(nb: nbformat.NotebookNode) -> list[float]:
    """Every time printed by the runtime cells, and papermill's wall time of the run."""
    printed = [float(s) for s in SECONDS.findall(cell_text(nb, "runtime"))]
    return printed + [float(nb.metadata.get("papermill", {}).get("duration", "nan"))]


def _runtime_notes(nb: nbformat.NotebookNode) -> list[str]:
    """The Runtime bullet or paragraph of each markdown cell (up to the next bullet or heading)."""
    notes = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            notes += re.findall(r"(?:\*\*Runtime\.\*\*|^- Runtime:).*?(?=\n[-*#] |\n\n|\Z)", cell.source,
                                flags=re.S | re.M)
    return notes


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_runtime_notes_quote_the_stored_run(path):
    """A chapter has a Runtime note exactly when it prints its run time, and the note quotes it."""
    nb = nbformat.read(path, as_version=4)
    values = _printed_seconds(nb)
    notes = _runtime_notes(nb)
    assert bool(notes) == bool(cell_text(nb, "runtime")), (
        f"{path.name}: a Runtime note without a runtime cell, or a runtime cell without a note")
    for note in notes:
        for stated in SECONDS.findall(note):
            assert _agrees(stated, values), (
                f"{path.name}: the Runtime note states {stated} s, but the stored run printed "
                f"{values[:-1]} s and papermill measured {values[-1]:.1f} s: {note!r}")


# book/reproducibility.md, "Timings": row label -> (notebook, regex of its runtime output)
_TABLE_SOURCES = {
    "chapter 2, circle: PDHG": ("02_circle", r"^PDHG\s+(\S+) s"),
    "chapter 2, circle: ADMM minimiser": ("02_circle", r"^ADMM minimiser\s+(\S+) s"),
    "chapter 2, whole notebook": ("02_circle", r"whole notebook\s+(\S+) s"),
    "chapter 3, MNIST dense: PDHG": ("03_mnist_perceptron", r"PDHG solve: (\S+) s"),
    "chapter 3, whole notebook": ("03_mnist_perceptron", r"whole notebook: (\S+) s"),
    "chapter 4, MNIST CNN: lifted coordinate descent": ("04_mnist_cnn", r"lifted CD: (\S+) s"),
    "chapter 4, whole notebook": ("04_mnist_cnn", r"whole notebook: (\S+) s"),
    "chapter 5, noise–PSNR: 800 inversions": ("05_noise_psnr", r"inversions: (\S+) s"),
    "chapter 5, whole notebook": ("05_noise_psnr", r"whole notebook: (\S+) s"),
    "chapter 6, parameter choice, whole notebook": ("06_parameter_choice", r"whole notebook: (\S+) s"),
    "chapter 7, methods compared, whole notebook": ("07_methods_compared", r"whole notebook: (\S+) s"),
    "training the dense autoencoder": ("dense", None),
    "training the convolutional autoencoder": ("cnn", None),
}


def _timings_table(page: str) -> dict[str, str]:
    """``row label -> stated seconds`` of the Timings table of book/reproducibility.md."""
    text = page.partition("## Timings")[2]
    rows = re.findall(r"^\| (.+?) \| (\S+) s \|$", text.partition("\n## ")[0], flags=re.M)
    return dict(rows)


def test_reproducibility_timings_table_quotes_the_stored_runs():
    page = (ROOT / "book" / "reproducibility.md").read_text()
    stated = re.search(r"chapter 1 prints none: papermill ran it in (\S+) s", page).group(1)
    theory = nbformat.read(NOTEBOOKS / "01_theory.ipynb", as_version=4)
    assert _agrees(stated, [theory.metadata.papermill.duration]), f"chapter 1: {stated} s stated"
    table = _timings_table(page)
    assert len(table) == len(_TABLE_SOURCES), f"rows without a known source: {sorted(table)}"
    runtime = {stem: cell_text(nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4), "runtime")
               for stem, pattern in _TABLE_SOURCES.values() if pattern is not None}
    for label, stated in table.items():
        source, pattern = next(src for prefix, src in _TABLE_SOURCES.items() if label.startswith(prefix))
        if pattern is None:  # the training time recorded with the committed weights
            meta = json.loads((ROOT / "lbreg" / "weights" / f"{source}.json").read_text())
            printed = [float(meta["train_seconds"])]
        else:
            printed = [float(v) for v in re.findall(pattern, runtime[source], flags=re.M)]
        assert len(printed) == 1, f"{label!r}: expected one printed time in {source}, got {printed}"
        assert _agrees(stated, printed), f"{label!r}: the table states {stated} s, the run printed {printed[0]} s"
