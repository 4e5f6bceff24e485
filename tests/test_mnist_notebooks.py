"""Fast papermill runs of the MNIST chapters (PAPER_MATH §4.2 and §4.3) with tiny parameters."""

import math
import re

import torch

from conftest import cell_text
from lbreg.data import MNIST_MEAN, mnist_tensors
from lbreg.metrics import psnr
from lbreg.models import pretrained


def _key_numbers(text: str) -> dict[str, str]:
    """``quantity -> ours`` from the key-number table (columns: quantity, paper, ours)."""
    rows = {}
    for line in text.splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 2:
            rows[parts[0]] = parts[-1]
    return rows


def test_mnist_perceptron_notebook_fast_run(notebook_runner):
    train, val, max_iter = [0, 1], [0], 50
    nb = notebook_runner("03_mnist_perceptron.ipynb",
                         {"train_indices": train, "val_indices": val, "max_iter": max_iter})
    keys = _key_numbers(cell_text(nb, "key-numbers"))
    assert keys["images (training / validation)"] == "2 / 1"
    assert keys["converged within budget"] == "0/4"  # 50 iterations cannot meet tol = 1e-5

    # The decoder PSNRs are recomputed here from the library, independently of the notebook.
    model = pretrained("dense").double()
    for split, indices, label in ((True, train, "training, alpha = 0.005"),
                                  (False, val, "validation, alpha = 0.05")):
        x, _ = mnist_tensors(split, indices=indices, center=True, dtype=torch.float64)
        with torch.no_grad():
            decoded = model(x)
        expected = float(psnr(decoded + MNIST_MEAN, x + MNIST_MEAN).mean())
        assert float(keys[f"{label}: mean PSNR decoder [dB]"]) == round(expected, 1)
        # The PDHG start x^0 = 0 is the constant image mu; 50 steps must already improve on it.
        start = float(psnr(torch.full_like(x, MNIST_MEAN), x + MNIST_MEAN).mean())
        inverted = float(keys[f"{label}: mean PSNR inversion [dB]"])
        assert math.isfinite(inverted) and start + 1.0 < inverted < 60.0

    table = cell_text(nb, "table")
    rows = [line for line in table.splitlines() if line.split()[:1] in (["training"], ["validation"])]
    assert len(rows) == len(train) + 2 * len(val)
    assert all(line.split()[-2:] == [str(max_iter), "False"] for line in rows)
    assert "whole notebook" in cell_text(nb, "runtime")


def test_mnist_cnn_notebook_fast_run(notebook_runner):
    val, sweeps = [0], 3
    nb = notebook_runner("04_mnist_cnn.ipynb",
                         {"val_indices": val, "max_sweeps": sweeps, "inner_iters": 50})
    keys = _key_numbers(cell_text(nb, "key-numbers"))
    assert keys["images (validation)"] == "1" and keys["sweeps (at most)"] == "3"

    model = pretrained("cnn").double()
    x, _ = mnist_tensors(False, indices=val, dtype=torch.float64)
    with torch.no_grad():
        decoded = model(x)
    assert float(keys["mean PSNR decoder [dB]"]) == round(float(psnr(decoded, x).mean()), 1)
    # The CD start x_0 = 0 is the black image; three sweeps must improve on it.
    start = float(psnr(torch.zeros_like(x), x).mean())
    inverted = float(keys["mean PSNR inversion [dB]"])
    assert math.isfinite(inverted) and start < inverted < 60.0
    # Coordinate descent lowers the lifted energy J from sweep to sweep.
    assert float(keys["mean J, last sweep"]) < float(keys["mean J, first sweep"])

    rows = [line for line in cell_text(nb, "table").splitlines()[1:] if line.strip()]
    assert len(rows) == len(val)
    assert all(line.split()[-2:] == [str(sweeps), "False"] for line in rows)
    assert "whole notebook" in cell_text(nb, "runtime")
