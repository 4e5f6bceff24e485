"""Baselines: decoder, autograd TV (Mahendran-Vedaldi style) and the two-layer deep image prior."""

import math

import numpy as np
import pytest
import torch

from conftest import image_data, objective, perceptron
from lbreg.activations import Identity, ReLU
from lbreg.baselines import autograd_tv, decoder, deep_image_prior, tv_smooth
from lbreg.models import DenseAutoencoder
from lbreg.operators import tv
from lbreg.solvers import admm

pytestmark = pytest.mark.usefixtures("float64_default", "one_thread")
DT = torch.float64


def _identity_problem():
    net = perceptron(60, (1, 6, 6), Identity(), seed=0)
    return net, image_data(net, 2, seed=1, noise=0.05)


def _relu_problem():
    net = perceptron(40, (1, 6, 6), ReLU(), seed=2)
    return net, image_data(net, 3, seed=3, noise=0.02)


def test_decoder_is_the_models_decoder():
    model = DenseAutoencoder(code_dim=10, seed=0)
    y = torch.rand(4, 10, generator=torch.Generator().manual_seed(0))
    expected = model.decoder(y)
    assert torch.equal(decoder(model, y), expected)
    assert torch.equal(decoder(model.decoder, y), expected)
    assert not decoder(model, y).requires_grad
    # codes of another length, or in another dtype, are named errors, not torch's matmul errors
    with pytest.raises(ValueError, match=r"y must hold codes of shape \(B, 10\) for this autoencoder"):
        decoder(model, torch.rand(4, 9))
    other = torch.float32 if y.dtype == torch.float64 else torch.float64
    with pytest.raises(TypeError, match=rf"model\.decoder's parameters are {y.dtype} .* but y is {other}"):
        decoder(model, y.to(other))


def test_tv_smooth_is_within_n_eps_below_tv():
    x = torch.rand(3, 1, 7, 5, generator=torch.Generator().manual_seed(1), dtype=DT)
    for eps in (1e-1, 1e-3):
        smooth, exact = tv_smooth(x, eps), tv(x)
        assert bool((smooth <= exact + 1e-12).all())
        assert bool((smooth >= exact - 35 * eps).all())
    assert torch.allclose(tv_smooth(x, 0.0 + 1e-12), tv(x), atol=1e-9)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_autograd_tv_decreases_its_objective(optimizer):
    net, y = _relu_problem()
    alpha, eps = 0.02, 1e-3
    res = autograd_tv(net, y, alpha, eps=eps, optimizer=optimizer, max_iter=60)
    f = res.history["objective"]
    start = 0.5 * (net.forward(torch.zeros(3, 1, 6, 6, dtype=DT)) - y).flatten(1).square().sum(1)
    assert torch.allclose(f[0], start)
    final = 0.5 * (net.forward(res.x) - y).flatten(1).square().sum(1) + alpha * tv_smooth(res.x, eps)
    assert bool((final < 0.5 * start).all())
    if optimizer == "lbfgs":  # strong-Wolfe line search on the batch sum: monotone sum
        total = f.sum(dim=1)
        assert bool((total[1:] <= total[:-1] + 1e-12).all())


def test_autograd_tv_accepts_alpha_zero_as_a_number_and_per_sample():
    net, y = _relu_problem()
    shared = autograd_tv(net, y, 0.0, max_iter=3)
    per_sample = autograd_tv(net, y, torch.zeros(3, dtype=DT), max_iter=3)
    assert torch.equal(shared.x, per_sample.x) and torch.equal(per_sample.alpha, torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="alpha must be finite and >= 0"):
        autograd_tv(net, y, torch.tensor([0.0, -1.0, 0.1], dtype=DT), max_iter=1)


def test_autograd_tv_matches_the_lifted_minimiser_for_identity_activation():
    # With sigma = Identity, B_Psi(y, Wx+b) = 1/2 ||Wx+b-y||^2 = 1/2 ||N(x)-y||^2, so the two
    # objectives differ only by TV_eps vs TV; 60 x 36 W makes the data term strongly convex.
    net, y = _identity_problem()
    alpha = 0.05
    ref = admm(net, y, alpha, tol=1e-10, max_iter=20_000)
    assert ref.success
    f_ref = objective(net, y, ref.x, alpha)
    gaps = []
    for eps in (1e-3, 1e-4):
        res = autograd_tv(net, y, alpha, eps=eps, max_iter=2_000, tol=1e-10)
        gap = objective(net, y, res.x, alpha) - f_ref
        assert bool((gap >= -1e-9).all())            # admm's x is the minimiser of the TV objective
        assert bool((gap <= alpha * 36 * eps).all())  # TV - n eps <= TV_eps <= TV
        gaps.append(gap)
        rel = (res.x - ref.x).flatten(1).norm(dim=1) / ref.x.flatten(1).norm(dim=1)
        assert bool((rel < 30 * eps).all()), rel     # stated tolerance: relative error < 30 eps
    assert bool((gaps[1] < 0.3 * gaps[0]).all())      # and the gap shrinks with eps


def test_dip_stops_at_the_first_iterate_within_the_discrepancy():
    # Identity activation: gradient descent can always lower the residual (through a ReLU it
    # can stall where units are off, which is the point of the lifted formulation).
    net, y = _identity_problem()
    x_true = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)).round()  # as image_data
    delta = (net.forward(x_true) - y).flatten(1).norm(dim=1)
    tau = 1.5
    res = deep_image_prior(net, y, delta, tau=tau, width=256, input_dim=8, max_iter=3000, generator=4)
    assert res.success, res.message
    disc = res.history["discrepancy"]
    for b in range(2):
        k = int(res.iterations[b])
        assert float(disc[k, b]) <= tau * float(delta[b])
        assert bool((disc[:k, b] > tau * delta[b]).all())
        residual = (net.forward(res.x[b:b + 1]) - y[b:b + 1]).norm()
        assert torch.isclose(residual, disc[k, b])


def test_dip_fixed_iteration_variant_runs_the_budget_and_fits_the_data():
    net, y = _identity_problem()
    res = deep_image_prior(net, y, None, width=128, input_dim=8, max_iter=300, generator=0)
    assert res.iterations.tolist() == [300] * 2 and not bool(res.converged.any())
    disc = res.history["discrepancy"]
    assert disc.shape == (301, 2)
    assert bool((disc[-1] < 0.5 * disc[0]).all())


def test_same_seed_same_numbers():
    net, y = _relu_problem()
    a = deep_image_prior(net, y, None, width=32, input_dim=4, max_iter=20, generator=7)
    gen = torch.Generator().manual_seed(7)
    b = deep_image_prior(net, y, None, width=32, input_dim=4, max_iter=20, generator=gen)
    c = deep_image_prior(net, y, None, width=32, input_dim=4, max_iter=20, generator=8)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    x0 = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(5), dtype=DT)
    r1 = autograd_tv(net, y, 0.01, x0=x0, max_iter=20)
    r2 = autograd_tv(net, y, 0.01, x0=x0.clone(), max_iter=20)
    assert torch.equal(r1.x, r2.x)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda n, y: autograd_tv(n, y, -1.0), "alpha"),
        (lambda n, y: autograd_tv(n, y, 0.1, eps=0.0), "eps"),
        (lambda n, y: autograd_tv(n, y, 0.1, optimizer="sgd"), "optimizer"),
        (lambda n, y: autograd_tv(n, y, 0.1, max_iter=-1), "max_iter"),
        (lambda n, y: autograd_tv(n, y, 0.1, x0=torch.zeros(2, 1, 6, 6, dtype=DT)), "x0"),
        (lambda n, y: autograd_tv(n, y[0], 0.1), "y"),
        (lambda n, y: autograd_tv(lambda x: x, y, 0.1), "input_shape"),
        (lambda n, y: deep_image_prior(n, y, -0.1), "delta"),
        (lambda n, y: deep_image_prior(n, y, 0.1, tau=0.0), "tau"),
        (lambda n, y: deep_image_prior(n, y, 0.1, width=0), "width"),
        (lambda n, y: deep_image_prior(n, y, 0.1, activation="relu"), "activation"),
        (lambda n, y: deep_image_prior(n, y, torch.ones(2)), "delta"),
        (lambda n, y: deep_image_prior(lambda x: x, y, input_shape=(1, 6, 6)), "lr"),
        (lambda n, y: decoder(lambda c: c, torch.tensor([float("nan")] * 4).reshape(2, 2)), "y"),
        # a (B, 1) y would broadcast against the (B, 40) output
        (lambda n, y: autograd_tv(n, y[:, :1], 0.1), "y must have the shape of the network's output"),
        (lambda n, y: deep_image_prior(n, y[:, :1], 0.1), "y must have the shape of the network's output"),
        (lambda n, y: tv_smooth(torch.zeros(1, 1, 3, 3), -0.1), "eps"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    net, y = _relu_problem()
    with pytest.raises(ValueError, match=name):
        call(net, y)


def test_autograd_tv_rejects_x0_whose_batch_axis_differs_from_y():
    """x0 holds one start per sample, (B, *input_shape) or (B, n): a (1, B·n) tensor of the
    right size is rejected, not silently reshaped into B starts."""
    net, y = _relu_problem()
    with pytest.raises(ValueError, match="x0"):
        autograd_tv(net, y, 0.1, x0=torch.zeros(1, 3 * 36, dtype=DT), max_iter=1)
    res = autograd_tv(net, y, 0.1, x0=torch.zeros(3, 36, dtype=DT), max_iter=1)  # (B, n) is fine
    assert res.x.shape == (3, 1, 6, 6)


def test_dip_counts_a_discrepancy_equal_to_tau_delta_as_reached():
    """The stop is ||N(g_θk(u)) − y^δ|| <= τδ: with δ the discrepancy of iterate 0 itself
    (τ = 1), every sample stops at iterate 0 and returns g_θ0(u)."""
    net, y = _identity_problem()
    first = deep_image_prior(net, y, None, width=64, input_dim=8, max_iter=0, generator=3)
    delta = first.history["discrepancy"][0].clone()
    res = deep_image_prior(net, y, delta, width=64, input_dim=8, max_iter=50, generator=3)
    assert res.iterations.tolist() == [0, 0] and bool(res.converged.all())
    assert torch.equal(res.x, first.x)


def test_dip_default_step_scales_with_the_inverse_square_lipschitz_bound():
    """Default step k/(s² Lip(N)² ||V||²): doubling the weights doubles Lip(N) <= ||W|| and
    quarters the step (same seed, so the same V); doubling s quarters it as well."""
    nets = [perceptron(40, (1, 6, 6), Identity(), seed=2, scale=s) for s in (1.0, 2.0)]
    y = torch.zeros(2, 40, dtype=DT)
    kw = {"width": 32, "input_dim": 4, "max_iter": 0, "generator": 5}
    lr1 = deep_image_prior(nets[0], y, None, **kw).params["lr"]
    lr2 = deep_image_prior(nets[1], y, None, **kw).params["lr"]
    lr_s = deep_image_prior(nets[0], y, None, scale=2.0, **kw).params["lr"]
    assert lr2 == pytest.approx(lr1 / 4, rel=1e-6)
    assert lr_s == pytest.approx(lr1 / 4, rel=1e-12)


def test_dip_input_is_on_the_unit_sphere():
    """u ∈ S^{d-1} and W ~ N(0, 1): each (Wu)_i ~ N(0, 1), so with V ~ N(0, 1) the first image
    g(u) = (s/√k) V tanh(Wu) has mean square s² E[tanh(ξ)²], ξ ~ N(0, 1) (≈ 0.394, by
    Gauss–Hermite quadrature), up to sampling error (k = 2048, n = 784, fixed seed)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    expected = float((weights * np.tanh(nodes) ** 2).sum() / math.sqrt(2 * math.pi))
    s = 0.5
    res = deep_image_prior(lambda x: x.flatten(1), torch.zeros(2, 784, dtype=DT), None, width=2048,
                           input_dim=64, scale=s, lr=1.0, max_iter=0, generator=11,
                           input_shape=(1, 28, 28))
    mean_sq = res.x.pow(2).flatten(1).mean(dim=1) / s**2
    assert torch.allclose(mean_sq, torch.full((2,), expected, dtype=DT), rtol=0.15, atol=0)


def test_autograd_tv_leaves_no_gradient_on_the_callers_module_or_data():
    """Only x is differentiated: the caller's parameters and a y that requires grad keep
    ``.grad`` None (a ``loss.backward()`` would accumulate into both)."""
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 10, dtype=DT), torch.nn.ReLU())
    y = torch.rand(2, 10, generator=torch.Generator().manual_seed(0), dtype=DT).requires_grad_(True)
    res = autograd_tv(module, y, 0.01, max_iter=3, input_shape=(1, 6, 6))
    assert all(p.grad is None for p in module.parameters()) and y.grad is None
    assert not res.x.requires_grad and res.history["objective"][-1, 0] < res.history["objective"][0, 0]
