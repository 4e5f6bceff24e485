"""Fast papermill runs of the MNIST chapters (PAPER_MATH §4.2–4.4, chapter 6) with tiny parameters."""

import math
import re

import pytest
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
                         {"train_indices": train, "val_indices": val, "max_iter": max_iter,
                          "budget_checks": [20, 40]})
    keys = _key_numbers(cell_text(nb, "key-numbers"))
    assert keys["images (training / validation)"] == "2 / 1"
    assert keys["converged within budget"] == "0/4"  # 50 iterations cannot meet tol = 1e-5
    # Section 2's checks: float32 agrees with float64, and the iterates 20 and 40 were kept.
    check = cell_text(nb, "budget-check")
    pixel, db = re.search(r"differ by at most (\S+) per pixel, PSNRs by at most (\S+) dB", check).groups()
    assert float(pixel) < 1e-4 and float(db) < 1e-3
    moved = re.findall(r"^PSNR change from iteration (\d+) to 50: at most (\S+) dB$", check, flags=re.M)
    assert [k for k, _ in moved] == ["20", "40"] and all(float(v) > 0 for _, v in moved)

    # The decoder PSNRs are recomputed here from the library, independently of the notebook
    # (in float64; the notebook runs in float32, so allow the rounding of the printed value).
    model = pretrained("dense").double()
    for split, indices, label in ((True, train, "training, alpha = 0.005"),
                                  (False, val, "validation, alpha = 0.05")):
        x, _ = mnist_tensors(split, indices=indices, center=True, dtype=torch.float64)
        with torch.no_grad():
            decoded = model(x)
        expected = float(psnr(decoded + MNIST_MEAN, x + MNIST_MEAN).mean())
        assert abs(float(keys[f"{label}: mean PSNR decoder [dB]"]) - expected) <= 0.05 + 1e-4
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
                         {"val_indices": val, "max_sweeps": sweeps, "inner_iters": 50,
                          "other_inner_iters": 5, "other_sweeps": 2})
    keys = _key_numbers(cell_text(nb, "key-numbers"))
    assert keys["images (validation)"] == "1" and keys["sweeps (at most)"] == "3"
    # Section 2's two readings of the budget, the first being the run the table scores.
    readings = re.findall(r"^\s*(\d+) PDHG steps per sweep,\s+(\d+) sweeps: mean PSNR (\S+) dB$",
                          cell_text(nb, "other-reading"), flags=re.M)
    assert [r[:2] for r in readings] == [("50", "3"), ("5", "2")]
    assert readings[0][2] == keys["mean PSNR inversion [dB]"]

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


def test_noise_psnr_notebook_fast_run(notebook_runner):
    stds, indices, alphas, sweeps = [0.33, 0.15, 0.0], [0, 1, 2], [1e-3, 1e-1], 5
    nb = notebook_runner("05_noise_psnr.ipynb",
                         {"noise_stds": stds, "image_indices": indices, "alphas": alphas,
                          "max_sweeps": sweeps, "check_sweeps": 10, "pilot_images": 2,
                          "pilot_alphas": [1e-3, 1e-2], "pilot_sweeps": 20, "pilot_checkpoints": [5, 10],
                          "warm_sweeps": [6, 3]})
    lines = cell_text(nb, "key-numbers").splitlines()
    rows = [line.split() for line in lines[2:] if line.strip()]
    assert [float(r[0]) for r in rows] == stds  # one row per level, in order
    cols = ["std", "delta_sq", "noise_sq", "decoder", "oracle_paper", "oracle_grid", "discrepancy",
            "alpha_oracle", "alpha_grid", "alpha_discr", "oracle_wins", "discr_wins"]
    table = [dict(zip(cols, r)) for r in rows]
    assert all(len(r) == len(cols) for r in rows)

    # delta^2 = 1/2 ||y_delta - y||^2 with y_delta = y + std * eps, one seeded eps per image
    # (recomputed here from the seed, independently of add_noise), and the decoder's PSNR.
    eps = torch.randn((len(indices), 300), generator=torch.Generator().manual_seed(0))
    model = pretrained("cnn")
    x, _ = mnist_tensors(False, indices=indices)
    with torch.no_grad():
        y = model.encoder(x)
    for row, s in zip(table, stds):
        noise_sq = (s * eps).pow(2).sum(1)
        # printed to 2 and 1 decimals; allow for float32 rounding of y + s * eps - y
        assert float(row["delta_sq"]) == pytest.approx(float(0.5 * noise_sq.mean()), abs=0.005 + 1e-4)
        assert float(row["noise_sq"]) == pytest.approx(float(noise_sq.mean()), abs=0.005 + 1e-4)
        with torch.no_grad():
            decoded = model.decoder(y + s * eps)
        assert float(row["decoder"]) == pytest.approx(float(psnr(decoded, x).mean()), abs=0.05 + 1e-4)
        # chosen alphas come from the grid; the paper's range caps the oracle at 1e-2
        assert float(row["alpha_oracle"]) == 1e-3
        assert float(row["alpha_grid"]) in alphas and float(row["alpha_discr"]) in alphas
        # the per-image oracle on the whole grid is at least as good as any other grid choice
        assert float(row["oracle_grid"]) >= max(float(row["oracle_paper"]), float(row["discrepancy"]))
    # decoder PSNR rises as the noise falls; with delta = 0 nothing fits: the smallest alpha
    assert float(table[0]["decoder"]) < float(table[1]["decoder"]) < float(table[2]["decoder"])
    assert float(table[2]["delta_sq"]) == 0.0 and float(table[2]["alpha_discr"]) == min(alphas)
    # five sweeps from the black start must already improve on it, and cannot reach the decoder
    start = float(psnr(torch.zeros_like(x), x).mean())
    assert all(start < float(r["oracle_grid"]) < float(r["decoder"]) for r in table)

    budget = [line.split() for line in cell_text(nb, "budget").splitlines()[1:] if line.strip()]
    assert len(budget) == 2 * len(stds)  # oracle and discrepancy alpha at each checked level

    # Section 2's pilot: one row per (level, alpha), PSNR at the checkpoints and the end, and
    # delta = ||y_delta - y|| = std ||eps|| of the first two images (3 significant digits).
    pilot = cell_text(nb, "pilot").splitlines()
    head = next(i for i, line in enumerate(pilot) if line.split()[:2] == ["std", "alpha"])
    assert pilot[head].split() == ["std", "alpha", "5", "10", "20", "residual", "delta"]
    rows = [line.split() for line in pilot[head + 1:head + 7]]
    assert [(float(r[0]), float(r[1])) for r in rows] == [(s, a) for s in stds for a in (1e-3, 1e-2)]
    for r in rows:
        expected = float((float(r[0]) * eps[:2]).norm(dim=1).mean())
        assert float(r[-1]) == pytest.approx(expected, rel=5e-3, abs=1e-12)
        assert all(0.0 < float(v) < 60.0 for v in r[2:5])
    assert re.search(r"^warm starts at alpha = 0.01 \(6 sweeps at std 0.33, then 3 per level\): "
                     r"mean PSNR at std 0 \S+ dB$", "\n".join(pilot), flags=re.M)
    assert "whole notebook" in cell_text(nb, "runtime")
    assert "sweeps" in cell_text(nb, "paper-vs-ours")


def test_methods_compared_notebook_fast_run(notebook_runner):
    from lbreg.data import add_noise
    from lbreg.network import LiftedNetwork

    indices, stds = [0, 1], [0.12, 0.0]
    nb = notebook_runner("07_methods_compared.ipynb", {
        "indices": indices, "noise_stds": stds, "alphas": {"dense": [0.03, 3e-3], "cnn": [0.03, 0.03]},
        "pdhg_iters": 50, "cd_sweeps": 10, "landweber_iters": {"dense": 50, "cnn": 20},
        "autograd_iters": 10, "dip_iters": 20, "dip_width": 128, "n_starts": 2, "sens_images": 1,
        "selection_indices": [100], "alpha_grid": [3e-3, 3e-2], "dip_trial_iters": 30,
        "autograd_long_iters": 15})
    keys = _key_numbers(cell_text(nb, "key-numbers"))
    assert keys["images, noise levels"] == "2, 0.12, 0"
    methods = "decoder / Landweber / autograd TV / DIP / lifted TV"
    for name, center in (("dense", True), ("cnn", False)):
        # The decoder PSNRs, recomputed from the library with the notebook's seeds (float32).
        model = pretrained(name)
        x, _ = mnist_tensors(False, indices=indices, center=center)
        net = LiftedNetwork.from_module(model.encoder, input_shape=(1, 28, 28))
        offset = MNIST_MEAN if center else 0.0
        with torch.no_grad():
            y = model.encoder(x)
        for k, std in enumerate(stds):
            y_delta, _ = add_noise(y, std, 1000 + k, net.layers[-1].activation)
            with torch.no_grad():
                expected = float(psnr(model.decoder(y_delta) + offset, x + offset).mean())
            values = [float(v) for v in keys[f"{name}, std {std:g}: {methods}"].split(" / ")]
            assert len(values) == 5 and all(math.isfinite(v) and 0.0 < v < 60.0 for v in values)
            assert abs(values[0] - expected) <= 0.05 + 1e-4
            # The rank is 1 + the number of methods above lifted TV (ties in the rounded values
            # can go either way).
            rank = int(keys[f"{name}, std {std:g}: rank of lifted TV"])
            above = sum(v > values[4] for v in values[:4])
            assert 1 + above <= rank <= 1 + above + sum(v == values[4] for v in values[:4])
    # Landweber stops by the discrepancy principle, which cannot fire at delta = 0.
    runs = [line for line in "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    ).splitlines() if "stopping test met" in line]
    assert len(runs) == 2
    for line in runs:
        met = int(re.search(r"Landweber (\d+)/4", line).group(1))
        assert met <= 2
    sens = [line.split() for line in cell_text(nb, "sensitivity").splitlines()[1:] if line.strip()]
    assert len(sens) == 8  # 4 methods with a start x 2 encoders
    assert all(float(row[-1]) >= 0.0 and float(row[-2]) >= 0.0 for row in sens)
    assert "whole notebook" in cell_text(nb, "runtime")

    # Section 6. The alpha picked per level is the grid value of the best printed mean PSNR.
    selection = cell_text(nb, "alpha-selection")
    blocks = re.findall(r"^(\w+), lifted TV.*?\n(.*?)best per level: \[(.*?)\]", selection, flags=re.M | re.S)
    assert [b[0] for b in blocks] == ["dense", "cnn"]
    for _, table, picked in blocks:
        rows = [line.split() for line in table.splitlines() if line.startswith("alpha ")]
        assert [row[1] for row in rows] == ["0.003", "0.03"]
        means = [[float(v) for v in row[2:]] for row in rows]  # (grid, level)
        best = [max(means[g][k] for g in range(2)) for k in range(len(stds))]
        picked = [float(v) for v in picked.split(",")]
        assert len(picked) == len(stds)
        for k, a in enumerate(picked):
            assert means[[3e-3, 3e-2].index(a)][k] == best[k]
    # DIP: the initial output is linear in the scale s (same draws), so its std scales by 10.
    dip = cell_text(nb, "dip-checks")
    for name in ("dense", "cnn"):
        std1, std01 = (float(re.search(rf"{name}, DIP s = {s}: initial pixel std (\S+);", dip).group(1))
                       for s in ("1", "0.1"))
        assert abs(std1 / std01 - 10.0) <= 10.0 * 0.01 / std01  # the printed rounding
    assert len(re.findall(r"^dense, DIP, (20|30) steps: residual / delta on the 2 noisy codes", dip, re.M)) == 2
    long_run = re.findall(r"^dense, std (\S+): autograd TV 15 iterations (\S+) dB", cell_text(nb, "autograd-long"),
                          flags=re.M)
    assert [k for k, _ in long_run] == ["0.12", "0"] and all(0 < float(v) < 60 for _, v in long_run)


def test_parameter_choice_notebook_fast_run(notebook_runner):
    stds, indices, alphas = [0.33, 0.09], [0, 1, 2], [1e-3, 1e-2, 1e-1]
    nb = notebook_runner("06_parameter_choice.ipynb",
                         {"noise_stds": stds, "image_indices": indices, "alphas": alphas,
                          "pdhg_iters": 20, "cd_sweeps": 5})
    text = cell_text(nb, "key-numbers").splitlines()
    cols = ["network", "std", "decoder", "oracle", "discr", "a_priori", "alpha_oracle", "alpha_discr",
            "alpha_a_priori", "within", "res_over_delta"]
    rows = [dict(zip(cols, line.split())) for line in text[1:1 + 2 * len(stds)]]
    assert [(r["network"], float(r["std"])) for r in rows] == [(n, s) for n in ("dense", "cnn") for s in stds]
    for r in rows:
        # the oracle maximises PSNR over the grid, so no other grid rule can beat it
        assert float(r["oracle"]) >= float(r["discr"])
        assert float(r["alpha_oracle"]) in alphas and float(r["alpha_discr"]) in alphas
        assert 0.0 <= float(r["within"]) <= 1.0
        # the a-priori rule is used for the single-layer dense encoder only
        assert (r["a_priori"] == "NaN") == (r["network"] == "cnn")
        if r["network"] == "dense":
            assert float(r["alpha_a_priori"]) > 0
    assert sum("within a factor 3" in line for line in text) == 2

    # decoder PSNR of the dense autoencoder on clipped noisy codes, recomputed independently
    model = pretrained("dense")
    x, _ = mnist_tensors(False, indices=indices, center=True)
    eps = torch.randn((len(indices), 100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model.encoder(x)
        for r, s in zip(rows, stds):
            decoded = model.decoder(torch.clamp(y + s * eps, min=0.0))
            expected = float(psnr(decoded + MNIST_MEAN, x + MNIST_MEAN).mean())
            assert float(r["decoder"]) == pytest.approx(expected, abs=0.051)  # printed to 3 digits
    assert "whole notebook" in cell_text(nb, "runtime")
