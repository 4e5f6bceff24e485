"""Solvers: agreement with an independent solver, the paper's theory, batching, monotonicity."""

import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from torch import nn

from conftest import image_data, objective, perceptron
from lbreg.activations import LeakyReLU, ReLU, Sigmoid
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.operators import grad2d, tv
from lbreg.regularizers import TV, SquaredNorm
from lbreg.solvers import aux_step, landweber, lifted_cd, pdhg

@pytest.fixture(autouse=True)
def _float64_default():
    """Float64 by default in this module only (restored afterwards for the other test files)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def cvxpy_minimiser(net: LiftedNetwork, y: torch.Tensor, alpha: float, kind: str) -> torch.Tensor:
    """Minimise B_Ψ(y, Wx+b) + α TV_iso(x) with Clarabel, as an independent reference."""
    shape = net.input_shape
    n = math.prod(shape)
    affine = net.layers[0].affine
    W = affine.linear(torch.eye(n).reshape(n, *shape)).reshape(n, -1).T.numpy()
    b = affine.forward(torch.zeros(1, *shape)).reshape(-1).numpy()
    D = grad2d(torch.eye(n).reshape(n, *shape)).reshape(n, 2, -1)  # rows of the gradient operator
    D1, D2 = D[:, 0, :].T.numpy(), D[:, 1, :].T.numpy()
    yv = y.reshape(-1).numpy()
    x = cp.Variable(n)
    zz = W @ x + b
    if kind == "relu":  # F*(z) = ½ max(z, 0)²
        conj = 0.5 * cp.sum_squares(cp.pos(zz))
    elif kind == "leaky":  # F*(z) = ½ max(z,0)² + a/2 min(z,0)²
        a = net.layers[0].activation.slope
        conj = 0.5 * cp.sum_squares(cp.pos(zz)) + 0.5 * a * cp.sum_squares(cp.neg(zz))
    else:  # sigmoid: F*(z) = log(1 + e^z)
        conj = cp.sum(cp.logistic(zz))
    tv_iso = cp.sum(cp.norm(cp.vstack([D1 @ x, D2 @ x]), 2, axis=0))
    problem = cp.Problem(cp.Minimize(conj - yv @ zz + alpha * tv_iso))
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9)
    return torch.from_numpy(x.value).reshape(1, *shape)


@pytest.mark.parametrize("kind, activation", [("relu", ReLU()), ("leaky", LeakyReLU(0.2)), ("sigmoid", Sigmoid())])
def test_pdhg_matches_cvxpy_minimiser(kind, activation):
    net = perceptron(40, (1, 8, 8), activation, seed=1, scale=3.0)
    y = image_data(net, 1, seed=2)
    alpha = 0.05
    res = pdhg(net, y, alpha, max_iter=100_000, tol=1e-8)
    assert res.success
    x_ref = cvxpy_minimiser(net, y, alpha, kind)
    f_pdhg, f_ref = objective(net, y, res.x, alpha), objective(net, y, x_ref, alpha)
    assert abs(f_pdhg - f_ref) / abs(f_ref) < 1e-4
    assert torch.linalg.vector_norm(res.x - x_ref) / torch.linalg.vector_norm(x_ref) < 1e-3


def test_pdhg_kkt_at_termination():
    """PAPER_MATH §6 item 9: stationarity, dual feasibility, ⟨z, ∇x⟩ = TV(x)."""
    net = perceptron(50, (1, 10, 10), ReLU(), seed=3, scale=3.0)
    y = image_data(net, 2, seed=4)
    alpha = 0.1
    res = pdhg(net, y, alpha, max_iter=50_000, tol=1e-9)
    affine = net.layers[0].affine
    stationarity = affine.adjoint(ReLU()(affine.forward(res.x)) - y) + alpha * TV().K_adj(res.dual)
    assert stationarity.abs().max() < 1e-7
    assert torch.linalg.vector_norm(res.dual, dim=-3).max() <= 1 + 1e-12
    pairing = (res.dual * grad2d(res.x)).flatten(1).sum(1)
    assert torch.allclose(pairing, tv(res.x), rtol=1e-6, atol=1e-8)


def test_pdhg_default_steps_are_the_papers():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=5)
    y = image_data(net, 1, seed=6)
    res = pdhg(net, y, 0.02, max_iter=3)
    norm_w = torch.linalg.matrix_norm(net.layers[0].affine.linear(torch.eye(36).reshape(36, 1, 6, 6)).reshape(36, -1), 2)
    assert torch.allclose(res.params["tau_z"], torch.tensor([1 / (8 * 0.02)]))
    assert torch.allclose(res.params["tau_x"], 1 / (norm_w**2 + 0.02), rtol=1e-6)


def test_batched_solve_equals_single_solves():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, 3, seed=8)
    alphas = torch.tensor([0.01, 0.05, 0.2])
    batched = pdhg(net, y, alphas, max_iter=3_000, tol=1e-7)
    for i in range(3):
        single = pdhg(net, y[i : i + 1], float(alphas[i]), max_iter=3_000, tol=1e-7)
        assert torch.allclose(batched.x[i], single.x[0], atol=1e-12, rtol=0)
        assert batched.iterations[i] == single.iterations[0]
        assert batched.converged[i] == single.converged[0]


def test_converged_sample_stops_changing_while_others_run():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=9, scale=2.0)
    y = image_data(net, 2, seed=10)
    snapshots = []
    res = pdhg(net, y, torch.tensor([0.1, 0.01]), max_iter=20_000, tol=1e-6, check_every=7,
               callback=lambda info: snapshots.append(info["x"].clone()))
    fast, slow = int(res.iterations[0]), int(res.iterations[1])
    assert res.success and fast < slow
    frozen = torch.stack([s[0] for s in snapshots[fast - 1 :]])
    assert (frozen == frozen[0]).all()
    assert not torch.equal(snapshots[fast][1], snapshots[-1][1])


def test_theorem2_bound_holds_for_relu_and_leaky_perceptrons():
    """Eq. (9) with R = ½‖·‖² (D_symm = ‖x_α − x†‖²), PAPER_MATH §6 item 7."""
    g = torch.Generator().manual_seed(11)
    m, n = 40, 20
    for activation in (ReLU(), LeakyReLU(0.3)):
        W, b = torch.randn(m, n, generator=g), torch.randn(m, generator=g)
        z_ = torch.randn(m, generator=g)
        net = LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b), activation)])
        # x† = Wᵀ v† with v† supported where the unit is active: source condition (8), R = ½‖·‖².
        v = torch.randn(m, generator=g) * 0.1
        for _ in range(3):  # iterate so that supp(v) ⊂ {y > 0} for y = σ(W x† + b)
            x_dag = W.T @ v
            active = (W @ x_dag + b) > 0.5
            v = v * active
        x_dag = W.T @ v
        y = activation(W @ x_dag + b)
        y_delta = activation.project_domain(y + 0.01 * z_).unsqueeze(0)
        delta_sq = float(activation.bregman(y_delta, (W @ x_dag + b).unsqueeze(0)))
        for alpha in (0.05, 0.2):
            res = pdhg(net, y_delta, alpha, reg=SquaredNorm(), max_iter=100_000, tol=1e-10)
            assert res.success
            x_a = res.x[0]
            lhs_b = float(activation.bregman(y_delta, (W @ x_a + b).unsqueeze(0)))
            d_symm = float(torch.sum((x_a - x_dag) ** 2))
            for c in (0.25, 0.5, 1.0):
                shift = alpha / c * v
                bracket = float(activation.psi(y_delta[0] + shift).sum() + activation.psi(y_delta[0] - shift).sum()
                                - 2 * activation.psi(y_delta[0]).sum())
                rhs = (1 + c) * delta_sq + alpha**2 / c * float(v @ v) + c * bracket
                lhs = (1 - c) * lhs_b + alpha * d_symm
                assert lhs <= rhs * (1 + 1e-6) + 1e-12, (activation, alpha, c, lhs, rhs)


def test_landweber_iterates_stay_in_range_of_Wt_and_stop_by_discrepancy():
    """PAPER_MATH §6 item 11, and the discrepancy principle's stopping index."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=12, scale=3.0)
    g = torch.Generator().manual_seed(13)
    x_true = torch.rand(1, 1, 8, 8, generator=g)
    y = net.forward(x_true)
    y_delta = ReLU().project_domain(y + 0.05 * torch.randn(y.shape, generator=g))
    delta = torch.linalg.vector_norm(y_delta - y)
    res = landweber(net, y_delta, delta=delta, max_iter=5_000)
    assert res.success
    W = net.layers[0].affine.linear(torch.eye(64).reshape(64, 1, 8, 8)).reshape(64, -1).T  # (m, n)
    Q, _ = torch.linalg.qr(W.T)  # orthonormal basis of range(Wᵀ)
    x = res.x.reshape(-1)
    assert torch.linalg.vector_norm(x - Q @ (Q.T @ x)) < 1e-10 * torch.linalg.vector_norm(x)
    K = int(res.iterations[0])
    disc = res.history["discrepancy"][:, 0]
    assert K >= 1 and disc[K - 1] > delta
    assert torch.linalg.vector_norm(net.forward(res.x) - y_delta) <= delta


def test_landweber_classical_variant_on_a_deep_network_decreases_the_residual():
    seq = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU()).double()
    net = LiftedNetwork.from_module(seq, input_shape=(16,))
    y = net.forward(torch.rand(2, 16, generator=torch.Generator().manual_seed(14)))
    res = landweber(net, y, variant="classical", max_iter=3000)
    d = res.history["discrepancy"]
    assert (d[-1] < 0.5 * d[0]).all()


def conv_net(seed: int) -> LiftedNetwork:
    torch.manual_seed(seed)  # module initialisation only; the solvers take no global RNG
    seq = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 4, 2, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 3 * 3, 20)).double()
    return LiftedNetwork.from_module(seq, input_shape=(1, 12, 12))


def dense_net(seed: int) -> LiftedNetwork:
    torch.manual_seed(seed)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 30), nn.LeakyReLU(0.1),
                        nn.Linear(30, 20), nn.ReLU()).double()
    return LiftedNetwork.from_module(seq, input_shape=(1, 8, 8))


@pytest.mark.parametrize("make_net", [dense_net, conv_net])
def test_aux_steps_do_not_increase_the_lifted_energy(make_net):
    """PAPER_MATH §6 item 13: each step (17) with τ = 1/‖W_{l+1}‖² does not increase J."""
    net = make_net(0)
    g = torch.Generator().manual_seed(15)
    x0 = torch.rand(3, *net.input_shape, generator=g)
    y = net.forward(x0)
    y = net.layers[-1].activation.project_domain(y + 0.1 * torch.randn(y.shape, generator=g))
    xs = [x0] + [s + 0.2 * torch.rand(s.shape, generator=g) for s in net.states(x0)[1 : net.depth]]
    alpha, reg = 0.01, TV()
    for _ in range(5):
        for l in range(1, net.depth):
            before = net.energy(xs, y, alpha, reg)
            x_next = xs[l + 1] if l + 1 < net.depth else y
            tau = torch.full((3,), 1 / net.layers[l].affine.norm() ** 2)
            u = net.layers[l - 1].affine.forward(xs[l - 1])
            xs[l] = aux_step(net.layers[l - 1], net.layers[l], xs[l], u, x_next, tau)
            after = net.energy(xs, y, alpha, reg)
            assert (after <= before + 1e-12).all()


@pytest.mark.parametrize("make_net", [dense_net, conv_net])
def test_lifted_cd_energy_does_not_increase_when_x0_block_is_solved(make_net):
    """Block minimisation in x_0 (warm-started PDHG steps on the strongly convex sub-problem
    with R = ½‖·‖², solved to rounding) plus the monotone steps (17) make J non-increasing
    sweep by sweep; with TV (inner loop far from solved) J still falls overall."""
    net = make_net(1)
    g = torch.Generator().manual_seed(16)
    x_true = torch.rand(2, *net.input_shape, generator=g)
    y = net.forward(x_true)
    y = net.layers[-1].activation.project_domain(y + 0.05 * torch.randn(y.shape, generator=g))
    res = lifted_cd(net, y, 1e-2, reg=SquaredNorm(), max_iter=15, inner_iters=50, tol=0.0)
    energy = res.history["energy"]
    assert (energy[1:] <= energy[:-1] + 1e-10 * energy[0]).all()
    assert (energy[-1] < 0.9 * energy[0]).all()
    for layer, xl in zip(net.layers, res.aux):
        assert layer.activation.in_domain(xl).all()
    tv = lifted_cd(net, y, 1e-2, max_iter=8, inner_iters=300, inner_tol=1e-7, tol=0.0)
    assert (tv.history["energy"][-1] < 0.9 * tv.history["energy"][0]).all()


def test_lifted_cd_with_one_layer_is_pdhg():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=17, scale=2.0)
    y = image_data(net, 2, seed=18)
    a = pdhg(net, y, 0.02, max_iter=500, tol=1e-9)
    b = lifted_cd(net, y, 0.02, max_iter=500, inner_iters=1, tol=1e-9)
    assert torch.equal(a.x, b.x) and torch.equal(a.dual, b.dual)
    assert torch.equal(a.iterations, b.iterations)
    assert torch.allclose(a.history["objective"], b.history["energy"], rtol=1e-12, atol=0)


def test_solvers_follow_input_dtype():
    net = perceptron(20, (1, 5, 5), ReLU(), seed=19)
    y = image_data(net, 2, seed=20).float()
    for res in (pdhg(net, y, 0.01, max_iter=5), lifted_cd(net, y, 0.01, max_iter=5, inner_iters=2),
                landweber(net, y, max_iter=5)):
        assert res.x.dtype == torch.float32 and res.x.shape == (2, 1, 5, 5)


def test_results_are_deterministic():
    net = conv_net(2)
    y = net.forward(torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(21)))
    a, b = lifted_cd(net, y, 0.01, max_iter=20, inner_iters=20), lifted_cd(net, y, 0.01, max_iter=20, inner_iters=20)
    assert torch.equal(a.x, b.x)
