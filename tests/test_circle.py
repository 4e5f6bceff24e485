"""The circle experiment (PAPER_MATH §4.1): seeded instances, the paper's bands, the notebook."""

import re

import nbformat
import pytest
import torch
from conftest import NOTEBOOKS, cell_text
from torch import nn

from lbreg.activations import LeakyReLU, ReLU
from lbreg.data import disc
from lbreg.instances import LAWS, CircleProblem, circle_problem, random_perceptron
from lbreg.operators import tv
from lbreg.regularizers import TV
from lbreg.solvers import landweber, pdhg


def _weights(net):
    affine = net.layers[0].affine
    return affine.weight, affine.bias


# --------------------------------------------------------------------------- random_perceptron


def test_random_perceptron_is_deterministic_for_a_seed():
    a = _weights(random_perceptron((1, 8, 8), 20, "uniform", 3))
    b = _weights(random_perceptron((1, 8, 8), 20, "uniform", torch.Generator().manual_seed(3)))
    c = _weights(random_perceptron((1, 8, 8), 20, "uniform", 4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_random_perceptron_advances_an_explicit_generator_and_ignores_global_state():
    gen = torch.Generator().manual_seed(0)
    first = _weights(random_perceptron((1, 4, 4), 5, "normal", gen))
    second = _weights(random_perceptron((1, 4, 4), 5, "normal", gen))
    assert not torch.equal(first[0], second[0])
    torch.manual_seed(123)
    again = _weights(random_perceptron((1, 4, 4), 5, "normal", 0))
    assert torch.equal(first[0], again[0])


def test_uniform_law_is_pytorch_linear_default_bound():
    """U(±1/√n) for weight and bias: U(±1/64) for n = 4096, as nn.Linear(4096, 512)."""
    W, b = _weights(random_perceptron((1, 64, 64), 512, "uniform", 0))
    bound = 1 / 64
    assert W.dtype == torch.float64
    assert W.abs().max() <= bound and b.abs().max() <= bound
    assert W.abs().max() > 0.999 * bound and b.abs().max() > 0.95 * bound
    assert abs(float(W.mean())) < 1e-5
    assert float(W.var()) == pytest.approx(bound**2 / 3, rel=0.01)
    lin = nn.Linear(4096, 512).requires_grad_(False)  # PyTorch's own initialisation: same support
    assert float(lin.weight.abs().max()) <= bound and float(lin.weight.abs().max()) > 0.999 * bound
    assert float(lin.bias.abs().max()) <= bound


def test_normal_law_has_unit_variance():
    W, b = _weights(random_perceptron((1, 32, 32), 256, "normal", 1))
    assert abs(float(W.mean())) < 0.01
    assert float(W.std()) == pytest.approx(1.0, rel=0.01)
    assert b.shape == (256,)


def test_random_perceptron_shapes_and_activation():
    net = random_perceptron((1, 6, 5), 7, "uniform", 0, activation=LeakyReLU(0.1))
    assert net.depth == 1
    assert net.input_shape == (1, 6, 5) and net.output_shape == (7,)
    assert isinstance(net.layers[0].activation, LeakyReLU)
    assert isinstance(random_perceptron((4,), 3).layers[0].activation, ReLU)
    assert net.forward(torch.zeros(2, 1, 6, 5, dtype=torch.float64)).shape == (2, 7)


@pytest.mark.parametrize("kwargs, error", [
    ({"law": "cauchy"}, ValueError),
    ({"m": 0}, ValueError),
    ({"generator": 1.5}, TypeError),
])
def test_random_perceptron_rejects_bad_arguments(kwargs, error):
    args = {"input_shape": (1, 4, 4), "m": 3, "law": "uniform", "generator": 0, **kwargs}
    with pytest.raises(error):
        random_perceptron(**args)


# --------------------------------------------------------------------------- circle_problem


def test_circle_problem_is_the_papers_setting():
    prob = circle_problem()
    assert isinstance(prob, CircleProblem) and prob.law == "uniform" and prob.noise_std == 0.005
    assert prob.network.input_shape == (1, 64, 64) and prob.network.output_shape == (512,)
    assert prob.x_true.shape == (1, 1, 64, 64) and prob.y.shape == prob.y_delta.shape == (1, 512)
    assert torch.equal(prob.x_true[0, 0], disc(64))
    # ground-truth row of the paper's table (PAPER_MATH §6 item 5)
    assert round(float(prob.x_true.norm()), 2) == 28.07
    assert float(tv(prob.x_true, isotropic=False)) == 128.0
    affine = prob.network.layers[0].affine
    assert torch.equal(prob.y, torch.relu(affine.forward(prob.x_true)))
    assert bool((prob.y_delta >= 0).all())
    assert prob.delta == pytest.approx(float((prob.y_delta - prob.y).norm()), rel=1e-14)
    # clipped Gaussian noise of std 0.005 on 512 units: delta ≈ 0.005·√512·(1 - share clipped)^½
    assert 0.06 < prob.delta < 0.12


@pytest.mark.parametrize("law", LAWS)
def test_circle_problem_is_deterministic(law):
    a, b = circle_problem(law, 5, size=16, m=32), circle_problem(law, 5, size=16, m=32)
    c = circle_problem(law, 6, size=16, m=32)
    assert torch.equal(a.y_delta, b.y_delta) and a.delta == b.delta
    assert torch.equal(_weights(a.network)[0], _weights(b.network)[0])
    assert not torch.equal(a.y_delta, c.y_delta)


def test_circle_problem_without_noise_has_exact_data():
    prob = circle_problem("normal", 0, noise_std=0.0, size=8, m=16)
    assert torch.equal(prob.y_delta, prob.y) and prob.delta == 0.0


def test_objective_and_kkt_certify_a_converged_pdhg_run():
    prob = circle_problem("uniform", 2, size=8, m=24)
    alpha = 0.05
    res = pdhg(prob.network, prob.y_delta, alpha, max_iter=50_000, tol=1e-9)
    assert res.success
    energy = prob.network.energy([res.x], prob.y_delta, alpha, TV())
    assert torch.allclose(prob.objective(res.x, alpha), energy, rtol=1e-14)
    cert = prob.kkt(res.x, res.dual, alpha)
    assert cert["stationarity"] < 1e-7 * max(cert["gradient"], 1.0)
    assert cert["dual_max"] <= 1 + 1e-12
    assert cert["pairing"] == pytest.approx(cert["tv"], rel=1e-6)
    # away from the minimiser the certificate is not met
    bad = prob.kkt(prob.x_true, torch.zeros_like(res.dual), alpha)
    assert bad["stationarity"] > 1e3 * cert["stationarity"]


# --------------------------------------------------------------------------- the paper's bands


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_landweber_bands_at_full_size(seed):
    """PAPER_MATH §6 item 10: Landweber under U(±1/64), discrepancy principle, η = 1."""
    prob = circle_problem("uniform", seed)
    res = landweber(prob.network, prob.y_delta, prob.delta)
    assert bool(res.converged[0]) and 3 <= int(res.iterations[0]) <= 20
    assert 5.5 <= float(res.x.norm()) <= 8.5
    assert 600 <= float(tv(res.x)) <= 850


# --------------------------------------------------------------------------- the notebook


def _numbers(line: str) -> list[float]:
    return [float(t) for t in re.findall(r"-?\d+\.\d+", line)]


def _row(block: str, label: str) -> list[float]:
    (line,) = [ln for ln in block.splitlines() if ln.strip().startswith(label)]
    return _numbers(line)


def test_stored_notebook_table_is_within_the_papers_bands():
    """PAPER_MATH §6 items 5 and 10 on the committed run of the notebook (seed 0, paper's settings).

    Reads the stored output of the table cell, which nbval re-executes and compares, so this
    checks the full-size 10,000-iteration PDHG run at no cost.
    """
    nb = nbformat.read(NOTEBOOKS / "02_circle.ipynb", as_version=4)
    table = cell_text(nb, "table")
    assert table.startswith("circle 64x64, m = 512, alpha = 0.015, noise std = 0.005")
    uniform = table.split("\nN(0,1)")[0]
    assert "U(±1/64)" in uniform
    truth = _row(uniform, "ground truth")
    assert truth[:6] == [28.07, 28.07, 128.0, 116.87, 128.0, 0.0]
    _, norm, _, tv_iso, _, _ = _row(uniform, "Landweber")
    assert 5.5 <= norm <= 8.5 and 600 <= tv_iso <= 850
    _, norm, _, _, tv_aniso, err = _row(uniform, "TV-PDHG")
    assert 23 <= norm <= 26.5 and 100 <= tv_aniso <= 125 and err < 7
    assert "10000 (tol not met)" in uniform
    spread = _spread(cell_text(nb, "spread"))
    assert list(spread) == [0, 1, 2, 3, 4]
    _, lw_norm, _, lw_tv, _, _ = _row(uniform, "Landweber")
    k = int(re.search(r"Landweber.*K = (\d+)", uniform).group(1))
    _, pd_norm, _, _, pd_aniso, pd_err = _row(uniform, "TV-PDHG")
    assert spread[0] == (k, lw_norm, lw_tv, pd_norm, pd_aniso, pd_err)  # seed 0 is the table's draw
    for _, lw_norm, lw_tv, pd_norm, pd_aniso, pd_err in spread.values():  # every draw in the bands
        assert 5.5 <= lw_norm <= 8.5 and 600 <= lw_tv <= 850
        assert 23 <= pd_norm <= 26.5 and 100 <= pd_aniso <= 125 and pd_err < 7


def _spread(text: str) -> dict[int, tuple]:
    """The spread cell's rows: seed -> (K, Landweber l2, TV_iso, PDHG l2, TV_aniso, error)."""
    rows = {}
    for line in text.splitlines():
        t = line.split()  # seed K l2 TV_iso iterations ["(tol not met)"] l2 TV_iso TV_aniso error
        if len(t) >= 9 and t[0].isdigit():
            rows[int(t[0])] = (int(t[1]), float(t[2]), float(t[3]), float(t[-4]), float(t[-2]), float(t[-1]))
    return rows


@pytest.mark.notebook
def test_circle_notebook_fast_run(notebook_runner):
    size = 16
    nb = notebook_runner("02_circle.ipynb", {"size": size, "m": 64, "max_iter": 200,
                                             "admm_tol": 1e-7, "admm_max_iter": 1000})
    table = cell_text(nb, "table")
    x_true = disc(size)[None, None]
    truth = [line for line in table.splitlines() if "ground truth" in line and "28.07" in line]
    assert len(truth) == 2  # one per law
    paper_norm, norm, paper_tv, tv_iso, tv_aniso, err = _numbers(truth[0])
    assert err == 0.0
    assert (paper_norm, paper_tv) == (28.07, 128.0)
    assert norm == round(float(x_true.norm()), 2)
    assert tv_iso == round(float(tv(x_true)), 2) and tv_aniso == round(float(tv(x_true, False)), 2)
    assert re.search(r"Landweber \(discrepancy\).*K = \d+", table)
    assert "200 (tol not met)" in table
    minimiser = cell_text(nb, "minimiser")
    cert = re.findall(r"ADMM minimiser\s+\|\|r\|\| = (\S+) \(\|\|W\^T\(sigma\(Wx\+b\)-y\^delta\)\|\| = (\S+)\)"
                      r".*gap bound (\S+)", minimiser)
    assert len(cert) == 2  # one certificate per law
    for r_norm, grad_norm, gap_bound in cert:
        assert float(r_norm) < 1e-3 * float(grad_norm) and float(gap_bound) < 1e-4
    check = cell_text(nb, "cvxpy")
    assert re.search(r"Clarabel status: optimal", check)  # "optimal" or "optimal_inaccurate"
    rel = float(re.search(r"f_ADMM: (\S+)", check).group(1))
    assert abs(rel) < 1e-4
    assert list(_spread(cell_text(nb, "spread"))) == [0, 1, 2, 3, 4]
    clipping = cell_text(nb, "clipping")
    identity = [float(v) for v in re.findall(r"identity check: (\S+)", clipping)]
    assert len(identity) == 2 and max(identity) < 1e-12
    assert "whole notebook" in cell_text(nb, "runtime")


def test_kkt_certifies_one_sample_and_rejects_a_batch():
    """kkt's norms run over the whole tensor, so a batch would mix its samples: it is refused,
    with the way out (one sample at a time) in the message; alpha must be > 0."""
    prob = circle_problem("uniform", 2, size=8, m=24)
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    z = torch.zeros(2, 1, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"kkt certifies one sample: x must have shape \(1, 1, 8, 8\), got \(2, 1, 8, 8\)"):
        prob.kkt(x, z, 0.05)
    with pytest.raises(ValueError, match=r"z must have shape \(1, 1, 2, 8, 8\)"):
        prob.kkt(x[:1], z[:1, :, 0], 0.05)
    with pytest.raises(ValueError, match="alpha must be finite and > 0"):
        prob.kkt(x[:1], z[:1], -1.0)
    with pytest.raises(ValueError, match="z contains NaN"):
        prob.kkt(x[:1], torch.full_like(z[:1], float("nan")), 0.05)
    cert = prob.kkt(x[1:], z[1:], 0.05)
    assert cert["tv"] == 0.0 and cert["dual_max"] == 0.0


@pytest.mark.parametrize("alpha", [-1.0, 0.0, float("nan")])
def test_objective_rejects_alpha_not_positive(alpha):
    prob = circle_problem("uniform", 2, size=8, m=24)
    with pytest.raises(ValueError, match="alpha must be finite and > 0"):
        prob.objective(prob.x_true, alpha)


def test_random_perceptron_and_circle_problem_reject_fractional_sizes():
    """A float size is an error, not an int() that silently cuts it."""
    with pytest.raises(TypeError, match="input_shape must be a tuple of positive ints"):
        random_perceptron((2.5,), 4)
    with pytest.raises(TypeError, match="size must be an integer"):
        circle_problem(size=2.5)
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        random_perceptron((4,), 3, dtype="float32")
    assert random_perceptron(4, 3).input_shape == (4,)
