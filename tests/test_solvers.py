"""Solvers: agreement with an independent solver, the paper's theory, batching, monotonicity."""

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import assert_tv_kkt, cvxpy_minimiser, image_data, objective, perceptron, psi_table, scalar_min
from lbreg.activations import HardTanh, LeakyReLU, ReLU, Sigmoid, SoftShrink, Tanh
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.operators import div2d, grad2d, project_dual_ball
from lbreg.regularizers import TV, SquaredNorm
from lbreg.solvers import admm, aux_step, default_steps, landweber, lifted_cd, pdhg, pdhg_step, primal_dual_gap
from lbreg.solvers.result import freeze, freeze_, sample_norm

pytestmark = pytest.mark.usefixtures("float64_default")


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
    assert_tv_kkt(net, y, alpha, res.x, res.dual, stationarity_tol=1e-7, pairing_rtol=1e-6)


def test_primal_dual_gap_is_nonnegative_for_any_dual_feasible_pair():
    """Fenchel-Young and Cauchy-Schwarz: G_ρ(x, z) >= 0 for every x and every z in C."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=30, scale=2.0)
    y = image_data(net, 4, seed=31)
    g = torch.Generator().manual_seed(32)
    for _ in range(5):
        x = torch.randn(4, 1, 6, 6, generator=g)
        z = TV().prox_conj(3 * torch.randn(4, 1, 2, 6, 6, generator=g))
        for radius in (1e-3, 1.0):
            assert (primal_dual_gap(net, y, x, z, 0.05, radius=radius) >= -1e-12).all()
    x = torch.randn(4, 1, 6, 6, generator=g)
    assert (primal_dual_gap(net, y, x, 0.1 * torch.randn(4, 1, 6, 6, generator=g), 0.05,
                            reg=SquaredNorm()) >= -1e-12).all()


@pytest.mark.parametrize("isotropic", [True, False])
def test_primal_dual_gap_is_infinite_outside_the_dual_ball(isotropic):
    """R*(z) = +inf off C: a sample whose z leaves the ball gets an infinite gap; the others,
    and a projected z (on the sphere up to rounding), keep finite ones."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=30, scale=2.0)
    y, reg = image_data(net, 3, seed=31), TV(isotropic)
    g = torch.Generator().manual_seed(33)
    x = torch.randn(3, 1, 6, 6, generator=g)
    z = reg.prox_conj(5 * torch.randn(3, 1, 2, 6, 6, generator=g))  # mostly on the sphere
    z[1, 0, 0, 2, 3] = 1.0 + 1e-9  # beyond the rounding slack of the test, not by much
    gap = primal_dual_gap(net, y, x, z, 0.05, reg=reg)
    assert torch.isinf(gap[1]) and torch.isfinite(gap[[0, 2]]).all()


def test_pdhg_gap_certifies_the_objective_gap_and_vanishes_at_the_minimiser():
    """The recorded gap bounds f(x_k) - f(x*) (x* by Clarabel) whenever ρ >= ||x_k - x*||,
    is >= 0 along the run, and goes to ~0 as pdhg converges to the cvxpy minimiser."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=1, scale=3.0)
    y = image_data(net, 1, seed=2)
    alpha = 0.05
    x_ref = cvxpy_minimiser(net, y, alpha, "relu")
    f_ref = float(objective(net, y, x_ref, alpha))
    snapshots = {}
    res = pdhg(net, y, alpha, max_iter=100_000, tol=1e-9, check_every=25,
               callback=lambda info: snapshots.__setitem__(info["iteration"], (info["x"].clone(), info["z"].clone())))
    assert res.success
    gap, its = res.history["gap"][:, 0], res.history["gap_iteration"]
    assert gap.shape == its.shape and its[0] == 0 and its[-1] >= res.iterations[0]
    assert (gap >= -1e-12).all()
    assert float(gap[-1]) < 1e-6 * f_ref
    assert abs(float(objective(net, y, res.x, alpha)) - f_ref) < 1e-6 * f_ref
    assert torch.allclose(gap[-1:], primal_dual_gap(net, y, res.x, res.dual, alpha), rtol=1e-12, atol=0)
    for k in (25, 100, 400, 1600):
        x, z = snapshots[k]
        dist = float(torch.linalg.vector_norm(x - x_ref))
        bound = float(primal_dual_gap(net, y, x, z, alpha, radius=dist))
        assert float(objective(net, y, x, alpha)) - f_ref <= bound + 1e-7 * f_ref, k
        assert torch.allclose(res.history["gap"][int((its == k).nonzero()[0, 0])],
                              primal_dual_gap(net, y, x, z, alpha, radius=res.params["gap_radius"]))


def test_gap_radius_default_is_sqrt_n():
    """primal_dual_gap's default radius rho = sqrt(n), the diameter of [0, 1]^n (n = 36 here)."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=30, scale=2.0)
    y = image_data(net, 2, seed=31)
    res = pdhg(net, y, 0.05, max_iter=20)
    assert res.params["gap_radius"] == pytest.approx(6.0)
    torch.testing.assert_close(primal_dual_gap(net, y, res.x, res.dual, 0.05),
                               primal_dual_gap(net, y, res.x, res.dual, 0.05, radius=6.0))


def test_squared_norm_conjugate_and_gap_at_the_minimiser():
    """R = 1/2||.||^2: R*(z) = 1/2||z||^2 (Fenchel-Young equality R(x) + R*(x) = ||x||^2), and the
    gap of a converged Tikhonov solve vanishes."""
    reg = SquaredNorm()
    x = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(reg.R(x) + reg.conj_value(x), x.flatten(1).pow(2).sum(1), rtol=1e-14, atol=0)
    net = perceptron(40, (1, 6, 6), ReLU(), seed=1, scale=2.0)
    y = image_data(net, 1, seed=2)
    res = pdhg(net, y, 0.1, reg, max_iter=50_000, tol=1e-10)
    assert res.success
    assert 0.0 <= float(primal_dual_gap(net, y, res.x, res.dual, 0.1, reg)) < 1e-7


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


@pytest.mark.parametrize("solver", [pdhg, lifted_cd], ids=["pdhg", "lifted_cd"])
def test_given_step_sizes_replace_the_defaults(solver):
    """tau_x and tau_z passed by the caller are the steps taken: the iterates are pdhg_step's
    with them (lifted_cd of depth 1 is pdhg), and params records them."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, 2, seed=8)
    alpha, tau_x, tau_z = torch.tensor([0.01, 0.05]), 0.02, 3.0
    default_x, default_z = default_steps(net.layers[0].affine.norm(), alpha, TV())
    assert not torch.allclose(default_x, torch.tensor(tau_x)) and not torch.allclose(default_z, torch.tensor(tau_z))
    res = solver(net, y, alpha, max_iter=20, tol=0.0, tau_x=tau_x, tau_z=tau_z)
    assert torch.equal(res.params["tau_x"], torch.full((2,), tau_x))
    assert torch.equal(res.params["tau_z"], torch.full((2,), tau_z))
    x, z = torch.zeros_like(res.x), torch.zeros_like(res.dual)
    for _ in range(20):
        x, z, _, _ = pdhg_step(net.layers[0].affine, net.layers[0].activation, y, x, z, alpha, TV(),
                               torch.full((2,), tau_x), torch.full((2,), tau_z))
    torch.testing.assert_close(res.x, x, rtol=0, atol=1e-13)
    torch.testing.assert_close(res.dual, z, rtol=0, atol=1e-13)


@pytest.mark.parametrize("reg", [TV(), SquaredNorm()], ids=repr)
def test_pdhg_loop_is_the_public_step_iterated(reg):
    """pdhg carries Kx between iterations, takes ‖x_new - x‖ as τ_x‖∇_x L‖ and evaluates the
    objectives of a block of OBJECTIVE_BLOCK = 10 iterations at once (checks every 7th); the
    same iterates, objectives and changes as pdhg_step applied k times (to rounding)."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, 2, seed=8)
    alpha = torch.tensor([0.01, 0.05])
    res = pdhg(net, y, alpha, reg, max_iter=43, tol=0.0, check_every=7)
    assert res.history["objective"].shape == (43, 2)
    tau_x, tau_z = res.params["tau_x"], res.params["tau_z"]
    x, z = torch.zeros_like(res.x), torch.zeros_like(res.dual)
    for k in range(43):
        x_new, z_new, obj, residual = pdhg_step(net.layers[0].affine, net.layers[0].activation, y, x, z,
                                                alpha, reg, tau_x, tau_z)
        torch.testing.assert_close(res.history["objective"][k], obj, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(res.history["residual"][k], residual, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(res.history["change_x"][k], (x_new - x).flatten(1).norm(dim=1),
                                   rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(res.history["change_z"][k], (z_new - z).flatten(1).norm(dim=1),
                                   rtol=1e-9, atol=1e-14)
        x, z = x_new, z_new
    torch.testing.assert_close(res.x, x, rtol=0, atol=1e-13)
    torch.testing.assert_close(res.dual, z, rtol=0, atol=1e-13)


def test_pdhg_step_takes_numbers_or_per_sample_tensors():
    """alpha, tau_x and tau_z given as numbers are shared by all samples: the step equals the one
    with per-sample tensors of those values; a non-positive or misshapen value names itself."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, 2, seed=8)
    layer, x, z = net.layers[0], torch.ones(2, 1, 6, 6), torch.zeros(2, 1, 2, 6, 6)
    by_numbers = pdhg_step(layer.affine, layer.activation, y, x, z, 0.05, TV(), 0.3, 2.0)
    by_tensors = pdhg_step(layer.affine, layer.activation, y, x, z, torch.full((2,), 0.05), TV(),
                           torch.full((2,), 0.3), torch.full((2,), 2.0))
    for a, b in zip(by_numbers, by_tensors):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="tau_x must be finite and > 0"):
        pdhg_step(layer.affine, layer.activation, y, x, z, 0.05, TV(), 0.0, 2.0)
    with pytest.raises(ValueError, match=r"tau_z must be a number or a tensor of shape \(2,\)"):
        pdhg_step(layer.affine, layer.activation, y, x, z, 0.05, TV(), 0.3, torch.ones(3))


class _GenericTV(TV):
    """TV through the generic path of pdhg (the bound buffers serve `TV` itself only)."""


def test_pdhg_step_is_eq14_written_out():
    """One step of eq. (14) from a random (x, z), written out with grad2d, div2d and the dual-ball
    projection rather than the library's step:
    x+ = x - tau_x[W^T(sigma(Wx+b) - y) - alpha div z],  z+ = proj(z + tau_z alpha grad(2x+ - x))."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, 2, seed=8)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 1, 6, 6, generator=g)
    z = project_dual_ball(torch.randn(2, 1, 2, 6, 6, generator=g))
    alpha, tau_x, tau_z = torch.tensor([0.05, 0.2]), torch.tensor([0.3, 0.1]), torch.tensor([2.0, 0.5])
    layer = net.layers[0]
    x_new, z_new, _, _ = pdhg_step(layer.affine, layer.activation, y, x, z, alpha, TV(), tau_x, tau_z)
    a4, tx4, tz5 = alpha.view(2, 1, 1, 1), tau_x.view(2, 1, 1, 1), tau_z.view(2, 1, 1, 1, 1)
    x_ref = x - tx4 * (layer.affine.adjoint(torch.relu(layer.affine.forward(x)) - y) - a4 * div2d(z))
    z_ref = project_dual_ball(z + tz5 * alpha.view(2, 1, 1, 1, 1) * grad2d(2 * x_ref - x))
    torch.testing.assert_close(x_new, x_ref, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(z_new, z_ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("isotropic", [True, False])
@pytest.mark.parametrize("in_shape", [(1, 6, 6), (2, 5, 7)], ids=["1x6x6", "2x5x7"])
def test_pdhg_tv_buffers_take_the_generic_step_bit_for_bit(isotropic, in_shape):
    """pdhg's bound-buffer step for TV (`_TVBuffers`) computes what `_step` computes with the
    regulariser's own operators, bit for bit: iterates, duals, every history entry, and the
    per-sample stopping (the two samples stop at different iterations, so freezing is
    exercised); a callback gets copies that later iterations do not overwrite."""
    net = perceptron(30, in_shape, ReLU(), seed=7, scale=2.0)
    y = image_data(net, 2, seed=8)
    alpha = torch.tensor([0.01, 0.05])
    seen = {}
    results = [pdhg(net, y, alpha, reg, max_iter=400, tol=0.05, check_every=7,
                    callback=lambda info, seen=seen, key=key: seen.setdefault(key, {})
                    .update({info["iteration"]: info["x"]}))
               for key, reg in (("buffers", TV(isotropic)), ("generic", _GenericTV(isotropic)))]
    fast, generic = results
    assert fast.iterations[0] != fast.iterations[1] and bool(fast.converged.all())
    assert torch.equal(fast.iterations, generic.iterations)
    assert torch.equal(fast.x, generic.x) and torch.equal(fast.dual, generic.dual)
    for key, value in generic.history.items():
        if key != "time":
            assert torch.equal(fast.history[key], value), key
    for k in (1, 2, 10, int(fast.iterations.max())):
        assert torch.equal(seen["buffers"][k], seen["generic"][k]), k


def test_pdhg_stopped_by_a_callback_records_the_objective_of_every_iteration_run():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, 2, seed=8)
    full = pdhg(net, y, 0.01, max_iter=30, tol=0.0, check_every=4)
    cut = pdhg(net, y, 0.01, max_iter=30, tol=0.0, check_every=4, callback=lambda info: info["iteration"] == 9)
    assert cut.history["objective"].shape == (9, 2) and cut.history["residual"].shape == (9, 2)
    assert torch.equal(cut.history["objective"], full.history["objective"][:9])


def test_converged_sample_stops_changing_while_others_run():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=9, scale=2.0)
    y = image_data(net, 2, seed=10)
    snapshots = []
    res = pdhg(net, y, torch.tensor([0.1, 0.01]), max_iter=20_000, tol=1e-6, check_every=7,
               callback=lambda info: snapshots.append((info["x"].clone(), info["z"].clone())))
    fast, slow = int(res.iterations[0]), int(res.iterations[1])
    assert res.success and fast < slow
    for i, final in enumerate((res.x, res.dual)):  # x and z of the first sample
        frozen = torch.stack([s[i][0] for s in snapshots[fast - 1 :]])
        assert (frozen == frozen[0]).all() and torch.equal(final[0], frozen[0])
        assert not torch.equal(snapshots[fast][i][1], snapshots[-1][i][1])


def test_pdhg_stops_when_both_changes_are_below_tol():
    """A converged sample's last iteration is the first with ||dx|| < tol and ||dz|| < tol, and
    earlier one of the two alone was below tol without stopping it."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=9, scale=2.0)
    y = image_data(net, 2, seed=10)
    tol = 1e-6
    res = pdhg(net, y, torch.tensor([0.1, 0.01]), max_iter=20_000, tol=tol, check_every=7)
    assert res.success
    cx, cz = res.history["change_x"], res.history["change_z"]
    for s in range(2):
        K = int(res.iterations[s])
        both = (cx[:K, s] < tol) & (cz[:K, s] < tol)
        assert bool(both[K - 1]) and not bool(both[: K - 1].any())
        assert bool(((cx[: K - 1, s] < tol) ^ (cz[: K - 1, s] < tol)).any())


def test_freeze_in_place_equals_freeze():
    active = torch.tensor([True, False, True])
    new, old = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    expected = freeze(active, new, old)
    assert torch.equal(expected[1], old[1]) and torch.equal(expected[::2], new[::2])
    assert freeze_(active, new, old) is new and torch.equal(new, expected)


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


@pytest.mark.parametrize("eta", [1.0, 3.0])
def test_landweber_iterates_stay_in_range_of_Wt_and_stop_by_discrepancy(eta):
    """PAPER_MATH §6 item 11, and the discrepancy principle's stopping index: the first K with
    ||N(x^K) - y^delta|| <= eta delta."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=12, scale=3.0)
    g = torch.Generator().manual_seed(13)
    x_true = torch.rand(1, 1, 8, 8, generator=g)
    y = net.forward(x_true)
    y_delta = ReLU().project_domain(y + 0.05 * torch.randn(y.shape, generator=g))
    delta = torch.linalg.vector_norm(y_delta - y)
    res = landweber(net, y_delta, delta=delta, eta=eta, max_iter=5_000)
    assert res.success
    W = net.layers[0].affine.linear(torch.eye(64).reshape(64, 1, 8, 8)).reshape(64, -1).T  # (m, n)
    Q, _ = torch.linalg.qr(W.T)  # orthonormal basis of range(Wᵀ)
    x = res.x.reshape(-1)
    assert torch.linalg.vector_norm(x - Q @ (Q.T @ x)) < 1e-10 * torch.linalg.vector_norm(x)
    K = int(res.iterations[0])
    disc = res.history["discrepancy"][:, 0]
    assert K >= 1 and bool((disc[:K] > eta * delta).all())
    assert torch.linalg.vector_norm(net.forward(res.x) - y_delta) <= eta * delta


def test_landweber_default_step_is_one_over_the_squared_norm():
    """PAPER_MATH §4.1: tau = 1/||W||^2 from x^0 = 0, so x^1 = -tau W^T(sigma(b) - y^delta)."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=12, scale=3.0)
    y = image_data(net, 1, seed=13)
    W, b = net.layers[0].affine.weight, net.layers[0].affine.bias
    tau = 1.0 / float(torch.linalg.matrix_norm(W, 2)) ** 2
    res = landweber(net, y, max_iter=1)
    assert res.params["step"] == pytest.approx(tau, rel=1e-12)
    torch.testing.assert_close(res.x.reshape(1, -1), -tau * (torch.relu(b) - y) @ W, rtol=1e-12, atol=1e-14)


def test_landweber_samples_stop_by_their_own_discrepancy_and_equal_single_runs():
    """Per-sample delta: the samples stop at different iterations (discrepancy principle each),
    a stopped sample keeps its x while the others run on, so each equals its single run."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=12, scale=3.0)
    g = torch.Generator().manual_seed(21)
    y = net.forward(torch.rand(3, 1, 8, 8, generator=g))
    noise = torch.tensor([[0.02], [0.05], [0.1]]) * torch.randn(y.shape, generator=g)
    y_delta = ReLU().project_domain(y + noise)
    delta = torch.linalg.vector_norm(y_delta - y, dim=1)
    batched = landweber(net, y_delta, delta=delta, max_iter=5_000)
    assert batched.converged.all() and len(set(batched.iterations.tolist())) == 3
    for i in range(3):
        single = landweber(net, y_delta[i : i + 1], delta=float(delta[i]), max_iter=5_000)
        assert single.iterations[0] == batched.iterations[i]
        torch.testing.assert_close(batched.x[i], single.x[0], rtol=0, atol=1e-13)


def test_landweber_default_step_on_a_deep_network_is_one_over_the_product_of_squared_norms():
    """For depth L the default step is 1/prod_l ||W_l||^2 (a Lipschitz bound of the classical
    gradient for 1-Lipschitz activations), with each ||W_l|| the largest singular value."""
    torch.manual_seed(0)  # module initialisation only
    seq = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU()).double()
    net = LiftedNetwork.from_module(seq, input_shape=(16,))
    norms = [float(torch.linalg.matrix_norm(m.weight.detach(), 2)) for m in (seq[0], seq[2])]
    res = landweber(net, torch.rand(1, 8, generator=torch.Generator().manual_seed(3)), variant="classical", max_iter=1)
    assert res.params["step"] == pytest.approx(1.0 / (norms[0] ** 2 * norms[1] ** 2), rel=1e-9)


def test_landweber_classical_variant_on_a_deep_network_decreases_the_residual():
    torch.manual_seed(0)  # module initialisation only (unseeded, the test depended on test order)
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


@pytest.mark.parametrize("activation", [LeakyReLU(0.2), SoftShrink(0.3), HardTanh(), HardTanh(0.0, 6.0), Sigmoid(), Tanh()],
                         ids=repr)
def test_aux_step_is_the_numerical_argmin_of_eq17(activation):
    """PAPER_MATH §6 item 6: componentwise, x_l^{k+1} = argmin_x 1/2 x^2 + Ψ(x) - x(u - g)
    + (x - x_l^k)^2/(2 tau) with g = W_{l+1}^T(sigma_{l+1}(W_{l+1} x_l^k + b_{l+1}) - x_{l+1}^k),
    against a bounded scalar minimiser (ReLU's prox ignores the step, so other activations)."""
    g_ = torch.Generator().manual_seed(3)
    n, m = 6, 4
    W, b = torch.randn(m, n, generator=g_), torch.randn(m, generator=g_)
    following = Layer(AffineMap.from_matrix(W, b), ReLU())
    this = Layer(AffineMap.from_matrix(torch.eye(n)), activation)
    x_l = activation.project_domain(torch.randn(1, n, generator=g_)).clamp(-0.9, 0.9)
    u = 2 * torch.randn(1, n, generator=g_)
    x_next = torch.rand(1, m, generator=g_)
    grad = (torch.relu(x_l @ W.T + b) - x_next) @ W
    for tau in (0.05, 0.7, 3.0):
        new = aux_step(this, following, x_l, u, x_next, torch.tensor([tau]))
        for i in range(n):
            xk, ui, gi = float(x_l[0, i]), float(u[0, i]), float(grad[0, i])

            def f(x, xk=xk, ui=ui, gi=gi):
                return 0.5 * x * x + psi_table(activation, x) - x * (ui - gi) + (x - xk) ** 2 / (2 * tau)

            best = scalar_min(f, 0.0, 20.0, activation)[0]
            assert abs(float(new[0, i]) - best) < 1e-6, (tau, i, float(new[0, i]), best)


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


@pytest.mark.parametrize("x0_solver", ["pdhg", "admm"])
@pytest.mark.parametrize("make_net", [dense_net, conv_net], ids=["dense", "conv"])
def test_lifted_cd_records_the_lifted_energy_at_the_start_of_each_sweep(make_net, x0_solver):
    """history["energy"][k] (assembled from the steps' own products) is J(x_0, x_1, ...) of
    eq. (3) at the iterate entering sweep k, for every sample."""
    net = make_net(6)
    g = torch.Generator().manual_seed(19)
    x_true = torch.rand(2, *net.input_shape, generator=g)
    y = net.layers[-1].activation.project_domain(net.forward(x_true) + 0.05 * torch.randn(2, 20, generator=g))
    alpha = torch.tensor([1e-2, 3e-2])
    states = []
    res = lifted_cd(net, y, alpha, max_iter=6, tol=0.0, x0_solver=x0_solver, inner_iters=2,
                    callback=lambda info: states.append([info["x"].clone(), *(a.clone() for a in info["aux"])]))
    start = [torch.zeros_like(x_true), *net.states(torch.zeros_like(x_true))[1 : net.depth]]
    for k, xs in enumerate([start, *states[:-1]]):
        torch.testing.assert_close(res.history["energy"][k], net.energy(xs, y, alpha, TV(), check=False),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("inner_iters", [1, 3])
@pytest.mark.parametrize("deep", [False, True], ids=["one layer", "conv"])
def test_lifted_cd_change_is_the_largest_change_of_a_sweep(deep, inner_iters):
    """history["change"][k] is max(‖Δx_0‖, ‖Δz‖, ‖Δx_l‖) over sweep k, for one PDHG step per
    sweep (taken from the step) and for several (taken from the sweep's start and end); on the
    one-layer net ‖Δz‖ is the largest in some sweeps and ‖Δx_0‖ in others."""
    if deep:
        net = conv_net(4)
        y = net.forward(torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(41)))
    else:
        net = perceptron(30, (1, 12, 12), ReLU(), seed=17, scale=2.0)
        y = image_data(net, 2, seed=18)
    states = []
    res = lifted_cd(net, y, 1e-2, max_iter=5, tol=0.0, inner_iters=inner_iters, inner_tol=0.0,
                    callback=lambda info: states.append([info["x"].clone(), info["z"].clone(),
                                                         *(a.clone() for a in info["aux"])]))
    x = torch.zeros(2, 1, 12, 12)
    start = [x, torch.zeros(2, 1, 2, 12, 12), *net.states(x)[1 : net.depth]]
    for k, (before, after) in enumerate(zip([start, *states[:-1]], states)):
        expected = torch.stack([sample_norm(b - a) for a, b in zip(before, after)]).amax(dim=0)
        torch.testing.assert_close(res.history["change"][k], expected, rtol=1e-12, atol=0)
    assert (res.history["inner_iterations"] == inner_iters).all()


def test_lifted_cd_with_one_layer_is_pdhg():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=17, scale=2.0)
    y = image_data(net, 2, seed=18)
    a = pdhg(net, y, 0.02, max_iter=500, tol=1e-9)
    b = lifted_cd(net, y, 0.02, max_iter=500, inner_iters=1, tol=1e-9)
    assert torch.equal(a.x, b.x) and torch.equal(a.dual, b.dual)
    assert torch.equal(a.iterations, b.iterations)
    assert torch.allclose(a.history["objective"], b.history["energy"], rtol=1e-12, atol=0)


def test_lifted_cd_sample_that_stops_keeps_its_variables_while_others_sweep():
    """Two samples of a conv net stopping at sweeps 112 and 1,080: the first keeps x_0, z and
    every auxiliary variable from its stop on, so they equal its own single solve."""
    net = conv_net(0)
    y = net.forward(torch.rand(2, *net.input_shape, generator=torch.Generator().manual_seed(21)))
    batched = lifted_cd(net, y, torch.tensor([1.0, 0.1]), max_iter=1200, tol=1e-3)
    single = lifted_cd(net, y[:1], 1.0, max_iter=1200, tol=1e-3)
    assert batched.converged.all() and batched.iterations[0] == single.iterations[0] < batched.iterations[1]
    for a, b in zip([batched.x, batched.dual, *batched.aux], [single.x, single.dual, *single.aux]):
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-12)


def test_lifted_cd_inner_loop_stops_like_pdhg():
    """Depth 1, one sweep of up to N inner steps with inner_tol: the inner loop is pdhg with the
    same stopping test (both changes below the tolerance), so x and the step counts agree."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=17, scale=2.0)
    y = image_data(net, 2, seed=18)
    ref = pdhg(net, y, 0.05, max_iter=3000, tol=1e-6)
    res = lifted_cd(net, y, 0.05, max_iter=1, inner_iters=3000, inner_tol=1e-6, tol=0.0)
    assert torch.equal(res.history["inner_iterations"][0], ref.iterations)
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=1e-12)


def test_lifted_cd_default_is_the_papers_sweep():
    """x0_solver="pdhg" (the default) is one step (16) = eq. (14) on x_0 with data x_1, then
    one step (17) per auxiliary variable, from x_l^0 = σ_l(W_l x_{l-1}^0 + b_l)."""
    net = conv_net(4)
    y = net.forward(torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(40)))
    alpha, reg = 1e-2, TV()
    res = lifted_cd(net, y, alpha, max_iter=6, tol=0.0)
    assert res.params["x0_solver"] == "pdhg" and res.params["inner_iters"] == 1
    a = torch.full((2,), alpha)
    tau_x, tau_z = default_steps(net.layers[0].affine.norm(), a, reg)
    x = torch.zeros(2, 1, 12, 12)
    z = torch.zeros(2, 1, 2, 12, 12)
    aux = net.states(x)[1 : net.depth]
    for _ in range(6):
        x, z, _, _ = pdhg_step(net.layers[0].affine, net.layers[0].activation, aux[0], x, z, a, reg, tau_x, tau_z)
        prev = x
        for l in range(1, net.depth):
            x_next = aux[l] if l + 1 < net.depth else y
            tau = torch.full((2,), 1 / net.layers[l].affine.norm() ** 2)
            prev = aux_step(net.layers[l - 1], net.layers[l], aux[l - 1], net.layers[l - 1].affine.forward(prev),
                            x_next, tau)
            aux[l - 1] = prev
    assert torch.equal(res.x, x) and torch.equal(res.dual, z)
    assert all(torch.equal(r, a_) for r, a_ in zip(res.aux, aux))


def test_lifted_cd_with_admm_x0_solver_reaches_lower_energy_in_the_same_sweeps():
    net = conv_net(3)
    g = torch.Generator().manual_seed(41)
    y = net.forward(torch.rand(2, 1, 12, 12, generator=g))
    alpha, reg = 1e-2, TV()
    paper = lifted_cd(net, y, alpha, max_iter=8, tol=0.0)
    fast = lifted_cd(net, y, alpha, max_iter=8, tol=0.0, x0_solver="admm", inner_iters=10)
    assert fast.params["x0_solver"] == "admm" and (fast.history["inner_iterations"] <= 10).all()
    e_paper = net.energy([paper.x, *paper.aux], y, alpha, reg)
    e_fast = net.energy([fast.x, *fast.aux], y, alpha, reg)
    assert (e_fast <= e_paper).all(), (e_fast, e_paper)
    assert torch.linalg.vector_norm(fast.dual, dim=-3).max() <= 1 + 1e-12
    with pytest.raises(ValueError, match="x0_solver"):
        lifted_cd(net, y, alpha, max_iter=1, x0_solver="cg")


@pytest.mark.parametrize("make_net", [conv_net, dense_net], ids=["conv", "dense"])
def test_lifted_cd_admm_sweep_is_admm_on_the_first_layer(make_net):
    """One sweep with x0_solver="admm" solves (15a) exactly as `admm` called on the first layer
    with data x_1 (the x-update prepared once per call gives the same iterates)."""
    net = make_net(5)
    g = torch.Generator().manual_seed(43)
    y = net.forward(torch.rand(2, *net.input_shape, generator=g))
    alpha = torch.tensor([1e-2, 3e-2])
    res = lifted_cd(net, y, alpha, max_iter=1, tol=0.0, x0_solver="admm", inner_iters=12, inner_tol=1e-9)
    x0 = torch.zeros(2, *net.input_shape)
    first = LiftedNetwork.from_layers([net.layers[0]])
    ref = admm(first, net.states(x0)[1], alpha, TV(), x0=x0, max_iter=12, tol=1e-9)
    assert torch.allclose(res.x, ref.x, rtol=0, atol=1e-12)
    assert torch.allclose(res.dual, ref.dual, rtol=0, atol=1e-12)
    assert torch.equal(res.history["inner_iterations"][0], ref.iterations)


def test_lifted_cd_admm_sweeps_continue_one_admm_run():
    """Depth 1: sweeps with x0_solver="admm" carry admm's splitting variables and multipliers,
    so three sweeps of 20 iterations are one admm run of 60."""
    net = perceptron(20, (1, 8, 8), ReLU(), seed=7)
    y = image_data(net, 3, seed=8)
    ref = admm(net, y, 1e-2, max_iter=60, tol=0.0)
    res = lifted_cd(net, y, 1e-2, max_iter=3, tol=0.0, x0_solver="admm", inner_iters=20, inner_tol=0.0)
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=1e-13)
    torch.testing.assert_close(res.dual, ref.dual, rtol=0, atol=1e-13)


@pytest.mark.parametrize("make_net", [dense_net, conv_net], ids=["dense", "conv"])
def test_lifted_cd_resumed_from_its_result_is_one_longer_run(make_net):
    """With the paper's sweep, (x_0, z, x_1, ..., x_{L-1}) is the whole state: 30 sweeps resumed
    from a 30-sweep result's (x, dual, aux) are sweeps 31-60 of one run, bit for bit, energies
    included; restarted from x alone, the auxiliary variables and z start over."""
    net = make_net(6)
    y = net.forward(torch.rand(3, *net.input_shape, generator=torch.Generator().manual_seed(23)))
    one = lifted_cd(net, y, 1e-2, max_iter=60, tol=0.0)
    first = lifted_cd(net, y, 1e-2, max_iter=30, tol=0.0)
    resumed = lifted_cd(net, y, 1e-2, max_iter=30, tol=0.0, x0=first.x, z0=first.dual, aux0=first.aux)
    for a, b in zip([resumed.x, resumed.dual, *resumed.aux], [one.x, one.dual, *one.aux]):
        assert torch.equal(a, b)
    assert torch.equal(resumed.history["energy"], one.history["energy"][30:])
    restarted = lifted_cd(net, y, 1e-2, max_iter=30, tol=0.0, x0=first.x)
    assert (restarted.x - one.x).abs().max() > 1e-4


def test_lifted_cd_admm_resumed_with_its_dual_continues_the_run():
    """With x0_solver="admm" the multipliers restart from z0 (as admm's z0), not from zero: the
    resumed run ends within 1e-5 of one longer run (7e-7 here); without z0 over 2x further (3e-6),
    without aux0 over 100x (4e-3)."""
    net = dense_net(6)
    y = net.forward(torch.rand(3, *net.input_shape, generator=torch.Generator().manual_seed(23)))
    kw = {"tol": 0.0, "x0_solver": "admm"}
    one, first = lifted_cd(net, y, 1e-2, max_iter=60, **kw), lifted_cd(net, y, 1e-2, max_iter=30, **kw)
    resumed = lifted_cd(net, y, 1e-2, max_iter=30, x0=first.x, z0=first.dual, aux0=first.aux, **kw)
    without_z0 = lifted_cd(net, y, 1e-2, max_iter=30, x0=first.x, aux0=first.aux, **kw)
    without_aux0 = lifted_cd(net, y, 1e-2, max_iter=30, x0=first.x, z0=first.dual, **kw)
    error, error_z0, error_aux0 = (float((r.x - one.x).abs().max()) for r in (resumed, without_z0, without_aux0))
    assert error < 1e-5 and error_z0 > 2 * error and error_aux0 > 100 * error


@pytest.mark.parametrize("aux0, error, pattern", [
    (torch.zeros(3, 40), TypeError, "aux0 must be a list of the 2 auxiliary variables"),
    ([torch.zeros(3, 40)], ValueError, "aux0 must hold 2 tensors"),
    ([torch.zeros(3, 40), torch.zeros(3, 31)], ValueError, r"aux0\[1\] \(x_2\) must have shape \(3, 30\)"),
    ([torch.full((3, 40), -1.0), torch.zeros(3, 30)], ValueError, r"aux0\[0\] \(x_1\)"),
    ([torch.zeros(3, 40), torch.full((3, 30), math.nan)], ValueError, r"aux0\[1\] \(x_2\) contains NaN or infinite entries"),
    ([torch.zeros(3, 40, device="meta"), torch.zeros(3, 30)], ValueError, r"aux0\[0\] \(x_1\) is on the 'meta' device"),
], ids=["tensor", "too few", "shape", "outside dom Psi (ReLU)", "NaN", "meta"])
def test_lifted_cd_names_a_bad_auxiliary_start(aux0, error, pattern):
    net = dense_net(6)
    y = net.forward(torch.rand(3, *net.input_shape, generator=torch.Generator().manual_seed(23)))
    with pytest.raises(error, match=pattern):
        lifted_cd(net, y, 1e-2, max_iter=2, aux0=aux0)


def test_lifted_cd_admm_fixed_point_solves_the_x0_subproblem():
    """At convergence of the sweeps (x0_solver="admm", tol 1e-10), x_0 is the minimiser of (15a)
    with data x_1 (admm to 1e-12 from zero): a sweep cut after ``inner_iters`` that restarted the
    multipliers would stop at a biased point instead (3e-3 relative here)."""
    torch.manual_seed(9)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU()).double()
    net = LiftedNetwork.from_module(seq, input_shape=(1, 8, 8))
    g = torch.Generator().manual_seed(47)
    y = net.forward(torch.rand(2, *net.input_shape, generator=g))
    res = lifted_cd(net, y, 1e-2, max_iter=1_000, tol=1e-10, x0_solver="admm", inner_iters=20)
    assert res.converged.all(), res.message
    first = LiftedNetwork.from_layers([net.layers[0]])
    sub = admm(first, res.aux[0], 1e-2, max_iter=20_000, tol=1e-12)
    assert sub.converged.all()
    assert (res.x - sub.x).flatten(1).norm(dim=1).max() <= 1e-7 * sub.x.flatten(1).norm(dim=1).min()


def test_solvers_follow_input_dtype():
    """The solvers run in the data's dtype, also from a float64 warm start with float32 data."""
    net = perceptron(20, (1, 5, 5), ReLU(), seed=19)
    y = image_data(net, 2, seed=20).float()
    x0 = torch.zeros(2, 1, 5, 5, dtype=torch.float64)
    for res in (pdhg(net, y, 0.01, max_iter=5), lifted_cd(net, y, 0.01, max_iter=5, inner_iters=2),
                landweber(net, y, max_iter=5), pdhg(net, y, 0.01, max_iter=5, x0=x0),
                lifted_cd(net, y, 0.01, max_iter=5, inner_iters=2, x0=x0), landweber(net, y, max_iter=5, x0=x0),
                admm(net, y, 0.01, max_iter=5, x0=x0)):
        assert res.x.dtype == torch.float32 and res.x.shape == (2, 1, 5, 5)


def test_results_are_deterministic():
    net = conv_net(2)
    y = net.forward(torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(21)))
    a, b = lifted_cd(net, y, 0.01, max_iter=20, inner_iters=20), lifted_cd(net, y, 0.01, max_iter=20, inner_iters=20)
    assert torch.equal(a.x, b.x)


@pytest.mark.parametrize("name", ["pdhg", "admm", "lifted_cd", "landweber"])
def test_solvers_treat_data_and_weights_that_require_grad_as_constants(name):
    """Data computed by a module outside torch.no_grad() (so y and W require grad) give the same
    result as detached ones, with no autograd history kept across the iterations."""
    torch.manual_seed(11)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU()).double()
    x_true = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(12))
    y = seq(x_true)
    assert y.requires_grad
    net = LiftedNetwork.from_module(seq, input_shape=(1, 8, 8))
    solver = {"pdhg": lambda n, d: pdhg(n, d, 1e-2, max_iter=30),
              "admm": lambda n, d: admm(n, d, 1e-2, max_iter=30),
              "lifted_cd": lambda n, d: lifted_cd(n, d, 1e-2, max_iter=30),
              "landweber": lambda n, d: landweber(n, d, max_iter=30)}[name]
    res = solver(net, y)
    assert not res.x.requires_grad and res.x.grad_fn is None
    with torch.no_grad():
        ref = solver(LiftedNetwork.from_module(seq, input_shape=(1, 8, 8)), y.detach())
    assert torch.equal(res.x, ref.x)


def test_landweber_stopped_by_a_callback_says_so_without_delta():
    net = perceptron(20, (1, 8, 8), ReLU(), seed=13)
    y = image_data(net, 2, seed=14)
    res = landweber(net, y, max_iter=100, callback=lambda state: state["iteration"] >= 5)
    assert res.iterations.tolist() == [5, 5] and not res.converged.any()
    assert "stopped by the callback" in res.message, res.message


class _HostSyncs(TorchDispatchMode):
    """Counts the operations inside the ``with`` block that copy a tensor's value to the host
    (``item``, ``bool``, ``nonzero``): on a GPU each waits for the device."""

    SYNC = {torch.ops.aten._local_scalar_dense, torch.ops.aten.item, torch.ops.aten.is_nonzero,
            torch.ops.aten.nonzero}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket in self.SYNC
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name, per_check", [("pdhg", 1), ("admm", 2), ("lifted_cd", 1), ("landweber", 1)])
def test_solvers_synchronise_the_host_only_at_their_checks(name, per_check):
    """Twenty more iterations (check_every=10) add exactly two checks' host synchronisations and
    none per iteration (admm's check also asks whether to compact the batch); lifted_cd on a
    net with ReLU and leaky-ReLU auxiliary layers, whose steps (17) take a checked tau."""
    net = perceptron(20, (1, 5, 5), ReLU(), seed=23)
    y = image_data(net, 2, seed=24)
    deep = dense_net(25)
    y_deep = deep.forward(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(26)))
    run = {"pdhg": lambda k: pdhg(net, y, 0.01, max_iter=k, tol=0.0),
           "admm": lambda k: admm(net, y, 0.01, max_iter=k, tol=0.0),
           "lifted_cd": lambda k: lifted_cd(deep, y_deep, 0.01, max_iter=k, tol=0.0),
           "landweber": lambda k: landweber(net, y, max_iter=k)}[name]
    run(5)  # the norms of the maps are computed (and cached) on the first call
    counts = []
    for iters in (20, 40):
        with _HostSyncs() as syncs:
            run(iters)
        counts.append(syncs.count)
    assert counts[1] - counts[0] == 2 * per_check


def test_lifted_cd_start_can_be_a_fixed_point():
    """The documented trap of the zero start: with every first-layer bias negative, x_1 = 0, x_0
    gets no gradient and the (17) step keeps x_1 at 0, so one sweep ends the run at x_0 = 0;
    a start x0 that activates the layer moves."""
    g = torch.Generator().manual_seed(40)
    W1 = torch.randn(12, 16, generator=g, dtype=torch.float64)
    W2 = 0.1 * torch.randn(5, 12, generator=g, dtype=torch.float64)
    net = LiftedNetwork.from_layers([
        Layer(AffineMap.from_matrix(W1, torch.full((12,), -1.0, dtype=torch.float64), in_shape=(1, 4, 4)), ReLU()),
        Layer(AffineMap.from_matrix(W2), ReLU())])
    y = torch.rand(2, 5, generator=g, dtype=torch.float64)
    stuck = lifted_cd(net, y, 0.01, max_iter=200)
    assert stuck.iterations.tolist() == [1, 1] and bool(stuck.converged.all())
    assert torch.equal(stuck.x, torch.zeros_like(stuck.x))
    moved = lifted_cd(net, y, 0.01, max_iter=200, x0=torch.ones(2, 1, 4, 4, dtype=torch.float64))
    assert (moved.iterations > 1).all() and (moved.x - 1).abs().amax() > 1e-3


def test_landweber_meeting_the_discrepancy_exactly_at_max_iter_counts_as_converged():
    """landweber.py:115-117: with delta given, the iterate x^K at K = max_iter is tested too."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=12, scale=3.0).to(dtype=torch.float64)
    g = torch.Generator().manual_seed(13)
    x_true = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64)
    yv = net.forward(x_true)
    y_delta = ReLU().project_domain(yv + 0.05 * torch.randn(yv.shape, generator=g, dtype=torch.float64))
    delta = float(torch.linalg.vector_norm(y_delta - yv))
    free = landweber(net, y_delta, delta=delta, max_iter=5000)
    K = int(free.iterations[0])
    assert free.success and K >= 2
    at = landweber(net, y_delta, delta=delta, max_iter=K)
    assert bool(at.converged[0]) and int(at.iterations[0]) == K
    torch.testing.assert_close(at.x, free.x, rtol=0, atol=0)
    short = landweber(net, y_delta, delta=delta, max_iter=K - 1)
    assert not bool(short.converged[0]) and int(short.iterations[0]) == K - 1
    assert float(torch.linalg.vector_norm(net.forward(short.x) - y_delta)) > delta
    zero = landweber(net, y_delta, delta=delta, max_iter=0)
    assert torch.equal(zero.x, torch.zeros_like(zero.x)) and int(zero.iterations[0]) == 0


def test_pdhg_message_reports_the_certified_gap_where_the_change_test_passes_far_from_the_minimiser():
    net = perceptron(40, (1, 8, 8), ReLU(), seed=0)
    y = image_data(net, 2, seed=10, noise=0.0).double()
    net = net.to(dtype=torch.float64)

    def note(res, alpha):  # the gap at the returned iterate over the objective there
        ratio = res.history["gap"][-1] / net.energy([res.x], y, alpha, reg=TV())
        k = int(ratio.argmax())
        return (f"{float(res.history['gap'][-1, k]):.1e}, {float(ratio[k]):.1e} of its objective "
                f"(sample {k}, the largest such ratio; history['gap'])")

    good = pdhg(net, y, 1e-2)
    assert bool(good.converged.all()) and good.message.endswith(note(good, 1e-2))
    assert float((good.history["gap"][-1] / net.energy([good.x], y, 1e-2, reg=TV())).max()) < 1e-3
    # alpha = 1e6: tau_x ~ 1/alpha, so x barely moves and the change test passes at the first
    # iteration, an objective ~10 times the minimum's; the message's bound says so
    early = pdhg(net, y, 1e6)
    assert early.iterations.tolist() == [1, 1] and bool(early.converged.all())
    minimum = net.energy([admm(net, y, 1e6, tol=1e-10, max_iter=5000).x], y, 1e6, reg=TV())
    assert bool((net.energy([early.x], y, 1e6, reg=TV()) > 5 * minimum).all())
    assert early.message.endswith(note(early, 1e6))
    assert float((early.history["gap"][-1] / net.energy([early.x], y, 1e6, reg=TV())).max()) > 0.5
    # one iteration from a start that is not x0 = 0: the note is at the returned iterate
    short = pdhg(net, y, 1e-2, max_iter=1, x0=torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64))
    assert short.message.endswith(note(short, 1e-2))
    assert "gap bound" in pdhg(net, y, 1e-2, max_iter=0).message


def test_pdhg_gap_note_of_a_zero_objective_and_a_rounding_negative_gap():
    from lbreg.solvers.pdhg import _gap_note

    assert _gap_note(torch.tensor([1e-13, 0.2]), torch.tensor([0.0, 1.0])).startswith(
        "; primal-dual gap bound at the returned iterate: 1.0e-13, where its objective is 0 (sample 0")
    assert ": 0.0e+00, 0.0e+00 of its objective (sample 0" in _gap_note(torch.tensor([-1e-17]), torch.tensor([2.0]))
    assert ": 0.0e+00, 0.0e+00 of its objective" in _gap_note(torch.tensor([0.0]), torch.tensor([0.0]))


@pytest.mark.parametrize("solve", [
    lambda net, y: pdhg(net, y, 0.01, tau_x=1e6, max_iter=100),
    lambda net, y: landweber(net, y, step=1e6, max_iter=100),
    lambda net, y: landweber(net, y, 1e-3, step=1e6, max_iter=100),
], ids=["pdhg", "landweber", "landweber-delta"])
def test_a_diverged_sample_is_reported_not_converged_and_warned(solve):
    """Steps far beyond the convergence condition drive a sample's iterate to NaN/Inf: the run
    says so (message, warning), and the sample counts as not converged; the other sample, on
    data that keeps it at its start (y = N(0) from x = 0: zero gradient), does not."""
    net = perceptron(30, (1, 5, 5), ReLU(), seed=0)
    y = torch.cat([image_data(net, 1, seed=1, noise=0.0), net.forward(torch.zeros(1, 1, 5, 5))])
    with pytest.warns(RuntimeWarning, match=r"1/2 samples diverged .*samples \[0\]\)"):
        res = solve(net, y)
    assert not torch.isfinite(res.x[0]).all() and torch.isfinite(res.x[1]).all()
    assert not bool(res.converged[0]) and "diverged" in res.message
    assert "gap bound" not in res.message or "sample 1" in res.message  # pdhg: the finite sample's gap


def test_a_callback_that_is_not_callable_is_refused_before_the_first_iteration():
    net = perceptron(30, (1, 5, 5), ReLU(), seed=0)
    with pytest.raises(TypeError, match="callback must be callable"):
        pdhg(net, image_data(net, 1, seed=1), 0.01, callback=5)


def test_the_single_step_functions_name_a_misshapen_non_finite_or_out_of_domain_argument():
    """pdhg_step and aux_step are public: a wrong argument gets an error naming it, not a
    broadcast of a (B, 1) tensor or a NaN step."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7)
    y = image_data(net, 2, seed=8)
    layer, x, z = net.layers[0], torch.ones(2, 1, 6, 6), torch.zeros(2, 1, 2, 6, 6)
    step = lambda **kw: pdhg_step(layer.affine, kw.get("act", layer.activation), kw.get("y", y), kw.get("x", x),
                                  kw.get("z", z), 0.05, kw.get("reg", TV()), 0.3, 2.0)
    for kwargs, error, match in [
        ({"y": y[:, :1]}, ValueError, r"y must have shape \(2, 30\)"),
        ({"y": -y - 1}, ValueError, "y must lie in dom Ψ"),
        ({"x": x.int()}, TypeError, "x must have a real floating dtype"),
        ({"x": x.clone().fill_(float("nan"))}, ValueError, "x contains NaN or infinite entries"),
        ({"z": z[:, :, :1]}, ValueError, r"z \(the dual iterate\) must have shape \(2, 1, 2, 6, 6\)"),
        ({"reg": None}, TypeError, "reg must be an lbreg Regularizer"),
        ({"act": nn.GELU()}, TypeError, "GELU"),
    ]:
        with pytest.raises(error, match=match):
            step(**kwargs)
    assert torch.equal(step(act=nn.ReLU())[0], step()[0])  # a torch activation is lifted

    deep = LiftedNetwork.from_module(nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 5),
                                                   nn.ReLU()).double(), input_shape=(1, 6, 6))
    x1, u, x2, tau = torch.rand(2, 8), torch.rand(2, 8), torch.rand(2, 5), torch.full((2,), 0.1)
    aux = lambda **kw: aux_step(deep.layers[0], deep.layers[1], kw.get("x_l", x1), kw.get("u", u),
                                kw.get("x_next", x2), kw.get("tau", tau))
    for kwargs, match in [({"u": u[:1]}, r"u must have shape \(2, 8\)"), ({"x_next": -x2}, "x_next must lie in dom Ψ"),
                          ({"x_l": x1 * float("nan")}, "x_l contains NaN or infinite entries"), ({"tau": tau[:1]}, r"tau must hold one step per sample, shape \(2,\)")]:
        with pytest.raises(ValueError, match=match):
            aux(**kwargs)


def test_lifted_cd_says_when_a_sample_stopped_after_one_sweep_from_the_default_start():
    """A first ReLU layer with non-negative weights and all biases negative is off at x0 = 0:
    the default start is then a fixed point of the sweep, and the message says so (not from a
    given x0)."""
    with torch.random.fork_rng():  # nn.Linear draws its initial weights from the global generator
        torch.manual_seed(0)
        module = nn.Sequential(nn.Flatten(), nn.Linear(64, 80), nn.ReLU(), nn.Linear(80, 40), nn.ReLU()).double()
    with torch.no_grad():
        module[1].bias.fill_(-0.5)
        module[1].weight.abs_()
    x = torch.zeros(2, 1, 8, 8)
    x[..., 2:6, 2:6] = 1.0
    net = LiftedNetwork.from_module(module, input_shape=(1, 8, 8))
    y = net.forward(x)
    res = lifted_cd(net, y, 1e-3)
    assert res.iterations.tolist() == [1, 1] and float(res.x.abs().max()) == 0.0
    assert "2 samples (e.g. [0, 1]) met the test after one sweep" in res.message
    assert "after one sweep" not in lifted_cd(net, y, 1e-3, x0=torch.full((2, 1, 8, 8), 0.5), max_iter=5).message
    # the first layer alone on zero data, with aux0=[] (a depth-1 result's aux): still the default start
    first = LiftedNetwork.from_module(module[:3], input_shape=(1, 8, 8))
    res = lifted_cd(first, torch.zeros(2, 80), 1e-3, aux0=[])
    assert res.iterations.tolist() == [1, 1] and "met the test after one sweep" in res.message


def test_a_list_of_alphas_is_refused_with_the_tensor_it_should_be():
    net = perceptron(30, (1, 5, 5), ReLU(), seed=0)
    with pytest.raises(TypeError, match=r"alpha must be a number or a torch tensor of shape \(2,\).*torch.tensor\(alpha\)"):
        pdhg(net, image_data(net, 2, seed=1), [0.1, 0.2], max_iter=1)


def test_a_start_in_another_memory_layout_gives_a_contiguous_result_and_the_same_numbers():
    """x0 (and z0, aux0) are copied into the standard layout: a permuted start once carried its
    strides through the whole solve, and the last bits of the result with them."""
    from lbreg.instances import random_perceptron

    net = random_perceptron((3, 4, 4), 8, generator=0)
    gen = torch.Generator().manual_seed(1)
    y = net(torch.rand(2, 3, 4, 4, generator=gen)).relu()
    x0 = torch.rand(4, 4, 2, 3, generator=gen).permute(2, 3, 0, 1)  # (2, 3, 4, 4), not contiguous
    for solve in (lambda s: pdhg(net, y, 0.1, x0=s, max_iter=30),
                  lambda s: lifted_cd(net, y, 0.1, x0=s, max_iter=5),
                  lambda s: landweber(net, y, x0=s, max_iter=30)):
        permuted, plain = solve(x0).x, solve(x0.contiguous()).x
        assert permuted.is_contiguous()
        assert torch.equal(permuted, plain)


def test_pdhg_step_treats_inputs_that_require_grad_as_constants():
    """It runs without autograd, as the solvers do (its in-place projection once raised
    'functions with out=... arguments don't support automatic differentiation')."""
    W = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    affine = AffineMap.from_matrix(W, in_shape=(1, 4, 4))
    gen = torch.Generator().manual_seed(2)
    y, x, z = torch.rand(2, 6, generator=gen), torch.rand(2, 1, 4, 4, generator=gen), torch.zeros(2, 1, 2, 4, 4)
    args = (affine, ReLU(), y, x, z, 0.1, TV(), 0.01, 0.5)
    plain = pdhg_step(*args)
    graded = pdhg_step(affine, ReLU(), y.requires_grad_(), x.clone().requires_grad_(), z.clone().requires_grad_(),
                       torch.full((2,), 0.1, requires_grad=True), TV(), 0.01, 0.5)
    for a, b in zip(plain, graded):
        assert torch.equal(a, b.detach()) and not b.requires_grad


def test_dual_and_auxiliary_starts_in_another_layout_resume_as_contiguous_ones():
    """z0 and aux0 permuted in memory: the same numbers, bit for bit, as their contiguous copies
    (aux0 once carried its strides into the sweeps and changed the last bits)."""
    gen = torch.Generator().manual_seed(3)
    net = LiftedNetwork.from_module(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6),
                                                  nn.ReLU()).double(), input_shape=(1, 4, 4))
    y = net(torch.rand(2, 1, 4, 4, generator=gen, dtype=torch.float64))
    first = lifted_cd(net, y, 0.05, max_iter=3)
    aux0 = [first.aux[0].T.contiguous().T]  # (2, 8), column-major
    assert not aux0[0].is_contiguous()
    a = lifted_cd(net, y, 0.05, x0=first.x, z0=first.dual, aux0=aux0, max_iter=3)
    b = lifted_cd(net, y, 0.05, x0=first.x, z0=first.dual, aux0=[aux0[0].contiguous()], max_iter=3)
    assert torch.equal(a.x, b.x) and all(torch.equal(p, q) for p, q in zip(a.aux, b.aux))
    z0 = first.dual.permute(4, 3, 2, 1, 0).contiguous().permute(4, 3, 2, 1, 0)
    assert not z0.is_contiguous()
    single = LiftedNetwork.from_layers(net.layers[:1])
    y1 = single(first.x)
    p = pdhg(single, y1, 0.05, x0=first.x, z0=z0, max_iter=20)
    q = pdhg(single, y1, 0.05, x0=first.x, z0=z0.contiguous(), max_iter=20)
    assert torch.equal(p.x, q.x) and torch.equal(p.dual, q.dual) and p.dual.is_contiguous()


# ---- from a mutation audit ------------------------------------------------------------------


def test_a_float64_alpha_tensor_is_cast_to_the_data_dtype():
    """alpha given as a float64 tensor for float32 data is taken in float32 (check_alpha
    follows ``like``): every solver runs, and its x and Result.alpha are float32."""
    net = dense_net(0).to(dtype=torch.float32)
    y = net.forward(torch.rand(2, *net.input_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float32))
    alpha = torch.tensor([0.01, 0.02], dtype=torch.float64)
    res = lifted_cd(net, y, alpha, max_iter=3)
    assert res.x.dtype == res.alpha.dtype == torch.float32
    first = LiftedNetwork.from_layers([net.layers[0]])
    y1 = first.forward(torch.rand(2, *first.input_shape, generator=torch.Generator().manual_seed(6), dtype=torch.float32))
    for solve in (pdhg, admm):
        res = solve(first, y1, alpha, max_iter=3)
        assert res.x.dtype == res.alpha.dtype == torch.float32


def test_only_a_callback_returning_true_stops_the_solver():
    """The documented stop is ``return True``: a truthy 1 or a string does not stop pdhg."""
    net = perceptron(12, (1, 4, 4), ReLU(), seed=7)
    y = image_data(net, 1, seed=8)
    for value in (1, "stop"):
        res = pdhg(net, y, 0.05, max_iter=12, tol=0.0, callback=lambda state, value=value: value)
        assert int(res.iterations[0]) == 12 and "callback" not in res.message
