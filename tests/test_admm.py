"""ADMM (lbreg.solvers.admm): the same minimiser as cvxpy and pdhg, exact x-updates, the u-prox,
batching, and why it exists (the ill-conditioned circle problem)."""

import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from conftest import assert_tv_kkt, cvxpy_minimiser, image_data, objective, perceptron
from lbreg.activations import HardTanh, Identity, LeakyReLU, ReLU, Sigmoid, SoftShrink, Tanh
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.regularizers import TV, SquaredNorm
from lbreg.solvers import admm, lifted_cd, pdhg
from lbreg.instances import circle_problem
from lbreg.solvers.admm import ADMM_CHECK_EVERY, bregman_prox
from lbreg.solvers.xupdate import FUSED_MAX_IMAGES, NULL_RTOL, _Diagonal, _seen_null_space, x_solver

pytestmark = pytest.mark.usefixtures("float64_default", "one_thread")


# --------------------------------------------------------------------------- the u-prox


@pytest.mark.parametrize(
    "activation",
    [ReLU(), Identity(), LeakyReLU(0.2), HardTanh(), HardTanh(0.0, 6.0), SoftShrink(0.3), Sigmoid(), Tanh()],
    ids=repr,
)
def test_bregman_prox_matches_numerical_argmin(activation):
    r"""prox_{G/ρ}(w) = argmin_u B_Ψ(y, u) + ρ/2 (u - w)², elementwise, by a scalar minimiser."""
    g = torch.Generator().manual_seed(0)
    lo, hi = activation.domain
    y = activation.project_domain(2 * torch.randn(12, generator=g))
    if math.isfinite(lo) and math.isfinite(hi):  # keep y inside the open interval
        y = lo + (hi - lo) * torch.rand(12, generator=g)
    w = 3 * torch.randn(12, generator=g)
    for rho in (0.05, 1.0, 20.0):
        u = bregman_prox(activation, y, w, rho)
        for yi, wi, ui in zip(y.tolist(), w.tolist(), u.tolist()):
            def f(t: float, yi=yi, wi=wi) -> float:
                pair = torch.tensor([[yi]]), torch.tensor([[t]])
                return float(activation.bregman(*pair, check=False)) + 0.5 * rho * (t - wi) ** 2

            ref = minimize_scalar(f, bracket=(wi - 1.0, wi + 1.0), tol=1e-12).x
            assert abs(ui - ref) < 1e-6 * (1 + abs(ref)), (rho, yi, wi, ui, ref)
            assert f(ui) <= f(ref) + 1e-12


# --------------------------------------------------------------------------- the minimiser


@pytest.mark.parametrize(
    "kind, activation",
    [("relu", ReLU()), ("leaky", LeakyReLU(0.2)), ("sigmoid", Sigmoid()), ("identity", Identity())],
)
def test_admm_matches_cvxpy_and_pdhg_minimisers(kind, activation):
    """Both α of a batch (one factorisation each) against Clarabel to 1e-6; at α = 0.1 also
    against a long pdhg run to 1e-4 (at α = 0.01 pdhg needs ~5x more iterations)."""
    net = perceptron(40, (1, 8, 8), activation, seed=1, scale=2.0)
    y1 = image_data(net, 1, seed=2)
    alphas = torch.tensor([0.01, 0.1])
    res = admm(net, y1.expand(2, -1), alphas, tol=1e-7, max_iter=3_000)
    for i, alpha in enumerate(alphas.tolist()):
        f_admm = objective(net, y1, res.x[i : i + 1], alpha)
        f_cvx = objective(net, y1, cvxpy_minimiser(net, y1, alpha, kind), alpha)
        assert abs(f_admm - f_cvx) / abs(f_cvx) < 1e-6, (alpha, f_admm, f_cvx)
    long_run = pdhg(net, y1, 0.1, max_iter=2_000, tol=1e-7)
    f_pdhg, f_admm = objective(net, y1, long_run.x, 0.1), objective(net, y1, res.x[1:], 0.1)
    assert abs(f_pdhg - f_admm) / abs(f_admm) < 1e-4, (f_pdhg, f_admm)


def test_pdhg_converges_with_a_low_norm_estimate():
    """default_steps: a ‖W‖ estimate 20% low (0.64 ‖W‖² > ‖W‖²/2, Condat-Vũ) still converges."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=1, scale=2.0)
    y1 = image_data(net, 1, seed=2)
    norm_sq = net.layers[0].affine.norm() ** 2
    tau_x = 1.0 / (0.64 * norm_sq + 0.1)
    run = pdhg(net, y1, 0.1, tau_x=tau_x, max_iter=4_000, tol=0.0)
    ref = admm(net, y1, 0.1, tol=1e-9, max_iter=3_000)
    f_pdhg, f_admm = objective(net, y1, run.x, 0.1), objective(net, y1, ref.x, 0.1)
    assert abs(f_pdhg - f_admm) / abs(f_admm) < 1e-7, (f_pdhg, f_admm)  # measured 1.5e-8


def test_admm_kkt_and_dual_at_termination():
    """Stationarity W^T(σ(Wx+b) - y) + α K^T z ≈ 0, |z_ij| ≤ 1 and ⟨z, ∇x⟩ ≈ TV(x)."""
    net = perceptron(50, (1, 10, 10), ReLU(), seed=3, scale=3.0)
    y = image_data(net, 2, seed=4)
    alpha = 0.1
    res = admm(net, y, alpha, tol=1e-10, max_iter=20_000)
    assert res.success
    assert_tv_kkt(net, y, alpha, res.x, res.dual, stationarity_tol=1e-6, pairing_rtol=1e-5)


def test_admm_stops_only_when_the_dual_residual_test_holds():
    """The documented stopping test: at termination ||W^T nu_u + K^T nu_d|| <= tol (sqrt n
    + max(||W^T nu_u||, ||K^T nu_d||)); with the returned dual z, W^T nu_u + K^T nu_d is the
    stationarity residual W^T(sigma(Wx+b) - y) + alpha K^T z up to the last step."""
    net = perceptron(40, (1, 8, 8), ReLU(), seed=1, scale=2.0)
    y = image_data(net, 1, seed=2)
    layer, tol, n = net.layers[0], 1e-6, 64
    for alpha in (0.01, 0.1):
        res = admm(net, y, alpha, tol=tol, max_iter=20_000)
        assert res.success
        g = layer.affine.adjoint(layer.activation(layer.affine.forward(res.x)) - y)
        kz = alpha * TV().K_adj(res.dual)
        bound = tol * (math.sqrt(n) + max(float(g.norm()), float(kz.norm())))
        assert float((g + kz).norm()) <= 1.05 * bound


def test_admm_with_squared_norm_is_ridge_regression():
    """Identity activation and R = ½‖·‖²: x = (WᵀW + αI)⁻¹ Wᵀ(y - b)."""
    net = perceptron(30, (1, 6, 6), Identity(), seed=5, scale=2.0)
    y = image_data(net, 2, seed=6)
    res = admm(net, y, 0.05, reg=SquaredNorm(), tol=1e-12, max_iter=5_000)
    assert res.success
    affine = net.layers[0].affine
    W, b = affine.weight, affine.bias
    x = torch.linalg.solve(W.T @ W + 0.05 * torch.eye(36), W.T @ (y - b).T).T
    assert torch.allclose(res.x.reshape(2, -1), x, atol=1e-8, rtol=0)


def _matrix(op, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of a linear map ``op`` on images of ``shape`` (rows: its flattened outputs)."""
    n = math.prod(shape)
    return op(torch.eye(n).reshape(n, *shape)).reshape(n, -1).T


@pytest.mark.parametrize("isotropic", [True, False], ids=["isotropic", "anisotropic"])
@pytest.mark.parametrize("m", [20, 50], ids=["woodbury", "cholesky"])
def test_admm_is_relaxed_admm_written_out(m, isotropic):
    """The iteration of admm's docstring (Boyd et al. 2011, §3.4.3) with dense matrices: x by a
    linear solve, the ReLU u-prox in closed form, the TV d-prox by shrinkage. admm's recorded
    objectives and residuals of 25 iterations are this loop's, to rounding."""
    net = perceptron(m, (1, 6, 6), ReLU(), seed=3, scale=2.0)
    y = image_data(net, 2, seed=4)
    alpha, rho_u, rho_d, theta, reg = 0.05, 0.7, 0.9, 1.6, TV(isotropic)
    res = admm(net, y, alpha, reg, rho=(rho_u, rho_d), relax=theta, max_iter=25, tol=0.0, check_every=1)
    assert res.params["x_update"] == ("woodbury" if m < 36 else "cholesky")
    W, b = net.layers[0].affine.weight, net.layers[0].affine.bias
    K = _matrix(reg.K, (1, 6, 6))  # (72, 36)
    M = rho_u * W.T @ W + rho_d * K.T @ K
    x = torch.zeros(2, 36)
    u, d = x @ W.T + b, x @ K.T
    lam_u, lam_d = torch.zeros_like(u), torch.zeros_like(d)
    for k in range(25):
        x = torch.linalg.solve(M, (rho_u * (u - b - lam_u) @ W + rho_d * (d - lam_d) @ K).T).T
        u_hat, d_hat = theta * (x @ W.T + b) + (1 - theta) * u, theta * (x @ K.T) + (1 - theta) * d
        w, v, s = u_hat + lam_u, d_hat + lam_d, alpha / rho_d
        # argmin_u ½u² - yu + ρ/2 (u - w)² over u >= 0 (B_Ψ(y, ·) for ReLU, up to a constant)
        u = torch.where(rho_u * w + y > 0, (rho_u * w + y) / (1 + rho_u), w + y / rho_u)
        if isotropic:  # shrink each pixel's gradient vector by s
            v2 = v.reshape(2, 2, 36)
            d = (v2 * torch.clamp(1 - s / v2.norm(dim=1, keepdim=True), min=0)).reshape(2, 72)
        else:
            d = torch.sign(v) * torch.clamp(v.abs() - s, min=0)
        lam_u, lam_d = lam_u + u_hat - u, lam_d + d_hat - d
        z, kx = x @ W.T + b, (x @ K.T).reshape(2, 2, 36)
        tv = kx.norm(dim=1).sum(1) if isotropic else kx.abs().sum((1, 2))
        bregman = (0.5 * y**2 + 0.5 * torch.relu(z) ** 2 - y * z).sum(1)
        r_pri = torch.hypot((z - u).norm(dim=1), (x @ K.T - d).norm(dim=1))
        r_dual = (rho_u * lam_u @ W + rho_d * lam_d @ K).norm(dim=1)
        for name, value in [("objective", bregman + alpha * tv), ("primal_residual", r_pri),
                            ("dual_residual", r_dual)]:
            torch.testing.assert_close(res.history[name][k], value, rtol=1e-9, atol=1e-12, msg=f"{name}, {k}")
    torch.testing.assert_close(res.x.reshape(2, 36), x, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- batching


@pytest.mark.parametrize("alphas", [[0.01, 0.05, 0.2], [0.05] * 6])
def test_batched_admm_equals_single_solves(alphas):
    """Three penalty groups, and one group of six samples (more than FUSED_MAX_IMAGES, so the
    batch composes the DCT with ∇ while the single solves use the fused products)."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=7, scale=2.0)
    y = image_data(net, len(alphas), seed=8)
    alphas = torch.tensor(alphas)
    batched = admm(net, y, alphas, tol=1e-5)
    assert batched.success and batched.params["x_update"] == "woodbury"
    for i in range(len(alphas)):
        single = admm(net, y[i : i + 1], float(alphas[i]), tol=1e-5)
        assert torch.allclose(batched.x[i], single.x[0], atol=1e-10, rtol=0)
        assert batched.iterations[i] == single.iterations[0]
        assert torch.allclose(batched.params["rho_d"][i], single.params["rho_d"][0])


def test_finished_samples_leave_the_batch_one_check_at_a_time():
    """Four samples stopping at different checks (so the working batch shrinks three times,
    across two penalty groups) give exactly the single solves."""
    net = perceptron(30, (1, 6, 6), ReLU(), seed=13, scale=2.0)
    y = image_data(net, 4, seed=14)
    alphas = torch.tensor([0.2, 0.01, 0.2, 0.05])
    batched = admm(net, y, alphas, tol=1e-7, check_every=1)
    assert batched.success and len(set(batched.iterations.tolist())) >= 3
    for i in range(4):
        single = admm(net, y[i : i + 1], float(alphas[i]), tol=1e-7, check_every=1)
        assert batched.iterations[i] == single.iterations[0]
        assert torch.allclose(batched.x[i], single.x[0], atol=1e-10, rtol=0)
        assert torch.allclose(batched.dual[i], single.dual[0], atol=1e-10, rtol=0)
        last = int(single.iterations[0]) - 1
        assert torch.allclose(batched.history["objective"][last, i], single.history["objective"][last, 0],
                              atol=1e-10, rtol=0)
        assert (batched.history["objective"][last:, i] == batched.history["objective"][last, i]).all()


def test_converged_sample_stops_changing_while_others_run():
    net = perceptron(30, (1, 6, 6), ReLU(), seed=9, scale=2.0)
    y = image_data(net, 2, seed=10)
    snapshots = []
    res = admm(net, y, torch.tensor([0.2, 0.01]), tol=1e-9, check_every=7,
               callback=lambda info: snapshots.append(info["x"].clone()))
    first = int(torch.argmin(res.iterations))
    fast, slow = int(res.iterations[first]), int(res.iterations[1 - first])
    assert res.success and fast < slow
    frozen = torch.stack([s[first] for s in snapshots[fast - 1 :]])
    assert (frozen == frozen[0]).all()
    assert torch.equal(frozen[0], res.x[first])
    assert not torch.equal(snapshots[fast][1 - first], snapshots[-1][1 - first])


def test_admm_follows_input_dtype():
    net = perceptron(20, (1, 5, 5), ReLU(), seed=11)
    y = image_data(net, 2, seed=12).float()
    res = admm(net, y, 0.01, max_iter=5)
    assert res.x.dtype == torch.float32 and res.x.shape == (2, 1, 5, 5)
    assert res.dual.dtype == torch.float32


def _conv_perceptron() -> LiftedNetwork:
    torch.manual_seed(15)  # module initialisation only
    conv = nn.Conv2d(1, 4, 3, padding=1).double()
    return LiftedNetwork.from_module(nn.Sequential(conv, nn.ReLU()), input_shape=(1, 8, 8))


def _weakly_sees_constants(m: int, ratio: float) -> LiftedNetwork:
    """A perceptron on 12×12 images whose W sees the constant image only weakly,
    ||We|| = ``ratio`` ||W||_F: for ratios below 3.5e-3 (10 sqrt(eps) of float32) and far above
    1.5e-7 (that of float64, where the solvers' set-up decides what W sees)."""
    g = torch.Generator().manual_seed(0)
    n = 144
    W = torch.randn(m, n, generator=g) / math.sqrt(n)
    W = W - W.mean(dim=1, keepdim=True)
    direction = torch.randn(m, generator=g)
    W = W + ratio * W.norm() * (direction / direction.norm())[:, None] / math.sqrt(n)
    b = 0.1 * torch.randn(m, generator=g)
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b, in_shape=(1, 12, 12)), ReLU())])


MIXED = {"woodbury": lambda: perceptron(20, (1, 6, 6), ReLU(), seed=31, scale=8.0),
         "cholesky": lambda: perceptron(50, (1, 6, 6), Sigmoid(), seed=32),
         "cg": _conv_perceptron,
         "woodbury, W weakly sees constants": lambda: _weakly_sees_constants(40, 3e-3),
         "cholesky, W weakly sees constants": lambda: _weakly_sees_constants(200, 1e-3)}


@pytest.mark.parametrize("case", MIXED)
def test_float32_x_update_follows_the_float64_iteration(case):
    """``x_update_dtype=torch.float32`` on float64 data: the same x-update kind, built on W
    rounded to float32, inside the float64 iteration; it stops by the same test at about the same
    iteration and reaches the float64 run's objective to float32 accuracy, and what it returns is
    float64. Which constant images W sees is decided at float64's precision: a W that sees them
    only weakly keeps them in the x-system."""
    kind, net = case.split(",")[0], MIXED[case]()
    y = image_data(net, 3, seed=33)
    runs = {dtype: admm(net, y, 0.02, tol=1e-6, max_iter=5_000, x_update_dtype=dtype)
            for dtype in (None, torch.float32)}
    full, mixed = runs[None], runs[torch.float32]
    assert full.success and mixed.success
    assert full.params["x_update"] == mixed.params["x_update"] == kind
    assert full.params["x_update_dtype"] == torch.float64 and mixed.params["x_update_dtype"] == torch.float32
    assert mixed.x.dtype == mixed.dual.dtype == torch.float64
    assert (mixed.iterations - full.iterations).abs().max() <= 0.2 * full.iterations.max()
    f_full, f_mixed = objective(net, y, full.x, 0.02), objective(net, y, mixed.x, 0.02)
    assert ((f_mixed - f_full).abs() / f_full).max() < 1e-5


@pytest.mark.parametrize("case", MIXED)
def test_float32_x_update_step_is_the_float64_step_to_float32_rounding(case):
    """One x-update with ``dtype=torch.float32`` against the float64 one from the same inputs:
    equal to float32's rounding, amplified by the system's conditioning, but not to float64's,
    so the step does run in single precision; its outputs come back in float64."""
    net = MIXED[case]()
    affine, reg, shape = net.layers[0].affine, TV(), net.input_shape
    like = torch.zeros(1, dtype=torch.float64)
    g = torch.Generator().manual_seed(34)
    w = torch.randn(3, *affine.out_shape, generator=g)
    v = torch.randn(3, *reg.dual_shape(shape), generator=g)
    outs = {}
    for dtype in (None, torch.float32):
        solver = x_solver(affine, reg, 0.3, 2.0, like, dtype)
        state, wx, kx, _ = solver.step(w, v, None, solver.state(torch.zeros(3, *shape)))
        outs[dtype] = (solver.image(state), wx, kx)
    for full, mixed in zip(outs[None], outs[torch.float32]):
        assert mixed.dtype == torch.float64
        error = float((mixed - full).norm() / full.norm())
        assert 1e-12 < error < 1e-4


@pytest.mark.slow
def test_float32_x_update_on_the_circle_follows_the_float64_iteration():
    """The circle with N(0,1) weights (PAPER_MATH §4.1), where ‖W‖² ≈ 7.5·10³ makes the
    x-system ill-conditioned: at the tolerance of `benchmarks/bench_batch.py` (1e-5) a float32
    x-update stops within 10 iterations of the float64 one, at the same objective to 1e-6."""
    p = circle_problem("normal", seed=0, size=64, m=512)
    y = p.y.double()
    full, mixed = (admm(p.network, y, 0.015, tol=1e-5, x_update_dtype=dtype) for dtype in (None, torch.float32))
    assert full.success and mixed.success and mixed.params["x_update"] == "woodbury"
    assert abs(int(mixed.iterations) - int(full.iterations)) <= 10
    f_full, f_mixed = (objective(p.network, y, res.x, 0.015) for res in (full, mixed))
    assert abs(float(f_mixed - f_full)) / float(f_full) < 1e-6


# --------------------------------------------------------------------------- the x-update


@pytest.mark.parametrize("m, reg", [(40, TV()), (40, SquaredNorm()), (100, TV()), (100, SquaredNorm())])
def test_exact_x_update_solves_its_linear_system(m, reg):
    """Woodbury (m < n) and Cholesky (m >= n): (ρ_u WᵀW + ρ_d KᵀK) x = r to rounding."""
    g = torch.Generator().manual_seed(13)
    shape = (1, 8, 8)
    affine = AffineMap.from_matrix(torch.randn(m, 64, generator=g), torch.randn(m, generator=g), in_shape=shape)
    rho_u, rho_d = 0.3, 4.0
    solver = x_solver(affine, reg, rho_u, rho_d, torch.zeros(1))
    assert solver.kind == ("woodbury" if m < 64 else "cholesky")
    w, nu = torch.randn(3, m, generator=g), torch.randn(3, m, generator=g)
    v = torch.randn(3, *reg.dual_shape(shape), generator=g)
    state, wx, kx, wt_nu = solver.step(w, v, nu, solver.state(torch.zeros(3, *shape)))
    x = solver.image(state)
    assert torch.allclose(solver.state(x), state, atol=1e-12, rtol=0)
    r = rho_u * affine.adjoint(w) + rho_d * reg.K_adj(v)
    residual = rho_u * affine.adjoint(affine.linear(x)) + rho_d * reg.K_adj(reg.K(x)) - r
    assert (residual.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).max() < 1e-10
    assert torch.allclose(wx, affine.linear(x), atol=1e-10, rtol=0)
    assert torch.allclose(kx, reg.K(x), atol=1e-10, rtol=0)
    assert torch.allclose(wt_nu, affine.adjoint(nu), atol=1e-10, rtol=0)


def _blind_to_constants(case: str, dtype: torch.dtype) -> AffineMap:
    """A dense W that does not see some combination of the constant images of its input's
    channels (the null space of KᵀK for TV); drawn in float64, then cast to ``dtype``."""
    g = torch.Generator().manual_seed(17)
    if case.startswith("zero row sums"):  # W e = 0 for the one constant image
        W = torch.randn(100 if case.endswith("m >= n") else 40, 64, generator=g, dtype=torch.float64)
        W, shape = W - W.mean(dim=1, keepdim=True), (1, 8, 8)
    elif case == "more channels than outputs":  # 8 constant images, 5 outputs
        W, shape = torch.randn(5, 8 * 16, generator=g, dtype=torch.float64), (8, 4, 4)
    else:  # both channels weighted alike: W(e_0 - e_1) = 0
        V = torch.randn(20, 16, generator=g, dtype=torch.float64)
        W, shape = torch.cat([V, V], dim=1), (2, 4, 4)
    return AffineMap.from_matrix(W.to(dtype), in_shape=shape)


BLIND = ["zero row sums", "zero row sums, m >= n", "more channels than outputs", "sum of two channels"]


@pytest.mark.parametrize("case", BLIND)
def test_x_update_when_W_does_not_see_some_constant_images(case):
    """K = ∇ annihilates each channel's constant image; where W also annihilates a combination
    of them, M = ρ_u WᵀW + ρ_d KᵀK is singular. For right-hand sides r = ρ_u Wᵀw + ρ_d Kᵀv
    (always consistent) the x-update returns the exact solution orthogonal to that combination:
    its vector of channel means lies in the row space of W's response to the constants."""
    affine = _blind_to_constants(case, torch.float64)
    shape, m = affine.in_shape, affine.out_shape[0]
    rho_u, rho_d = 0.3, 4.0
    solver = x_solver(affine, TV(), rho_u, rho_d, torch.zeros(1))
    assert solver.kind == ("cholesky" if m >= math.prod(shape) else "woodbury")
    g = torch.Generator().manual_seed(18)
    w, v = torch.randn(3, m, generator=g), torch.randn(3, *TV().dual_shape(shape), generator=g)
    state, wx, kx, _ = solver.step(w, v, None, solver.state(torch.zeros(3, *shape)))
    x = solver.image(state)
    r = rho_u * affine.adjoint(w) + rho_d * TV().K_adj(v)
    residual = rho_u * affine.adjoint(affine.linear(x)) + rho_d * TV().K_adj(TV().K(x)) - r
    assert (residual.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).max() < 1e-9
    seen = affine.linear(torch.eye(shape[0])[:, :, None, None].expand(-1, *shape))  # (C, m): W of each constant
    rank = torch.linalg.matrix_rank(seen, atol=1e-10 * affine.norm())
    blind = torch.linalg.svd(seen.T)[2][rank:]  # combinations of the channels' constants W does not see
    assert blind.shape[0] >= 1
    assert (x.mean(dim=(2, 3)) @ blind.T).abs().max() < 1e-12
    torch.testing.assert_close(wx, affine.linear(x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("case", BLIND)
def test_admm_in_float32_matches_float64_when_W_does_not_see_some_constants(case):
    """The same problem in both dtypes: float32 reaches the float64 minimiser's objective to
    float32 accuracy (the x-update's set-up runs in float64 and leaves out the directions that
    W sees only through rounding), and no sample reports convergence at a wrong point."""
    objectives = {}
    for dtype in (torch.float64, torch.float32):
        net = LiftedNetwork.from_layers([Layer(_blind_to_constants(case, dtype), ReLU())])
        x_true = torch.rand(2, *net.input_shape, generator=torch.Generator().manual_seed(19))
        y = net.forward(x_true.to(dtype))
        res = admm(net, y, 0.01, tol=1e-6 if dtype == torch.float32 else 1e-9, max_iter=5_000)
        assert torch.isfinite(res.x).all() and res.x.abs().max() < 10
        objectives[dtype] = objective(net.to(dtype=torch.float64), y.double(), res.x.double(), 0.01)
    torch.testing.assert_close(objectives[torch.float32], objectives[torch.float64], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5])  # 2 images: fused products; 10: DCT composed with ∇
def test_dct_diagonalises_the_tv_laplacian_and_applies_k(batch):
    """Q orthogonal, QKᵀKQᵀ = diag(λ), and the DCT-basis K, Kᵀ equal grad2d / -div2d."""
    g = torch.Generator().manual_seed(18)
    shape, reg = (2, 6, 5), TV()
    diag = _Diagonal(reg, shape, torch.float64, torch.device("cpu"))
    assert diag._few(batch) == (batch * shape[0] <= FUSED_MAX_IMAGES)
    x = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    p = torch.randn(batch, *reg.dual_shape(shape), generator=g, dtype=torch.float64)
    c = diag.coefficients(x)
    assert torch.allclose(diag.image(c), x, atol=1e-13, rtol=0)
    assert torch.allclose(c.norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-13, rtol=0)
    assert torch.allclose(diag.k(c), reg.K(x), atol=1e-13, rtol=0)
    assert torch.allclose(diag.kt(p), diag.coefficients(reg.K_adj(p)), atol=1e-13, rtol=0)
    laplacian = diag.coefficients(reg.K_adj(reg.K(x)))
    assert torch.allclose(laplacian, diag.eig.reshape(1, -1) * c, atol=1e-12, rtol=0)


def test_woodbury_handles_several_channels_and_the_circle_size():
    """The constant null space of KᵀK per channel, and 512×4096 with N(0,1) entries."""
    g = torch.Generator().manual_seed(14)
    for m, shape, rho in ((30, (2, 6, 5), (0.3, 4.0)), (512, (1, 64, 64), (2.4e-4, 0.225))):
        n = math.prod(shape)
        affine = AffineMap.from_matrix(torch.randn(m, n, generator=g), in_shape=shape)
        solver = x_solver(affine, TV(), *rho, torch.zeros(1))
        assert solver.kind == "woodbury"
        w = torch.randn(2, m, generator=g)
        v = torch.randn(2, 2 * n, generator=g).reshape(2, *TV().dual_shape(shape))
        state, wx, kx, _ = solver.step(w, v, None, torch.zeros(2, n))
        x = solver.image(state)
        r = rho[0] * affine.adjoint(w) + rho[1] * TV().K_adj(v)
        residual = rho[0] * affine.adjoint(affine.linear(x)) + rho[1] * TV().K_adj(TV().K(x)) - r
        assert (residual.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).max() < 1e-10
        scale = affine.linear(x).abs().max()
        assert (wx - affine.linear(x)).abs().max() < 1e-10 * scale
        assert (kx - TV().K(x)).abs().max() < 1e-10 * scale


def test_cg_x_update_on_a_conv_network():
    net = _conv_perceptron()
    affine, reg = net.layers[0].affine, TV()
    solver = x_solver(affine, reg, 0.5, 2.0, torch.zeros(1))
    assert solver.kind == "cg"
    solver.iters = 200
    g = torch.Generator().manual_seed(16)
    r = torch.randn(2, 1, 8, 8, generator=g)
    x = solver.solve(r, torch.zeros_like(r))
    residual = solver.apply(x) - r
    assert (residual.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).max() < 1e-10
    y = image_data(net, 1, seed=17)
    res = admm(net, y, 0.05, tol=1e-7, max_iter=2_000)
    assert res.success and res.params["x_update"] == "cg"
    # the same problem with the convolution as a dense matrix: exact (Cholesky) x-updates
    matrix = _matrix(affine.linear, (1, 8, 8))
    bias = affine.forward(torch.zeros(1, 1, 8, 8)).reshape(-1)
    dense = LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(matrix, bias, in_shape=(1, 8, 8),
                                                                   out_shape=affine.out_shape), ReLU())])
    ref = admm(dense, y, 0.05, tol=1e-9, max_iter=5_000)
    assert ref.params["x_update"] == "cholesky"
    f, f_ref = objective(net, y, res.x, 0.05), objective(net, y, ref.x, 0.05)
    assert abs(f - f_ref) / f_ref < 1e-6


# --------------------------------------------------------------------------- the circle


def disc_image(size: int = 64) -> torch.Tensor:
    try:
        from lbreg.data import disc
    except ImportError:  # pragma: no cover - lbreg.data is optional here
        s = torch.linspace(-1.0, 1.0, size)
        return (s[:, None] ** 2 + s[None, :] ** 2 <= 0.25).double()
    return disc(size)


@pytest.mark.slow
def test_circle_admm_reaches_the_minimiser_where_pdhg_does_not():
    """The circle with N(0,1) weights (PAPER_MATH §4.1, §5 items 1-2): ‖W‖² ≈ 7.5·10³.

    ADMM's default stopping test lands within 1e-4 (relative objective) of a tighter ADMM
    run; the paper's PDHG steps are still far after 2,000 iterations.
    """
    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(512, 4096, generator=g), torch.randn(512, generator=g)
    net = LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b, in_shape=(1, 64, 64)), ReLU())])
    y = net.forward(disc_image(64).reshape(1, 1, 64, 64))
    y = torch.relu(y + 0.005 * torch.randn(y.shape, generator=g))
    alpha = 0.015
    res = admm(net, y, alpha)
    assert res.success and res.params["x_update"] == "woodbury"
    ref = admm(net, y, alpha, tol=1e-7)
    assert ref.success
    f, f_ref = float(objective(net, y, res.x, alpha)), float(objective(net, y, ref.x, alpha))
    assert abs(f - f_ref) / f_ref < 1e-4
    slow = pdhg(net, y, alpha, max_iter=2_000, tol=0.0)
    f_pdhg = float(objective(net, y, slow.x, alpha))
    assert (f_pdhg - f_ref) / f_ref > 1e-2


@pytest.mark.slow
def test_a_dual_start_resumes_admm_as_its_docstring_says():
    """``z0`` (a result's ``dual``) restarts the multipliers where the run left them: the counts of
    admm's docstring (circle, N(0,1) weights, α = 0.015), each within one stopping test."""
    p = circle_problem("normal", seed=0)
    net, y = p.network.to(dtype=torch.float64), p.y_delta
    done = admm(net, y, 0.015)
    again = {"x0": admm(net, y, 0.015, x0=done.x), "x0, z0": admm(net, y, 0.015, x0=done.x, z0=done.dual)}
    loose = admm(net, y, 0.015, tol=1e-4)
    tight = {"one run": admm(net, y, 0.015, tol=1e-7),
             "x0": admm(net, y, 0.015, tol=1e-7, x0=loose.x),
             "x0, z0": admm(net, y, 0.015, tol=1e-7, x0=loose.x, z0=loose.dual)}
    counts = {f"restart, {k}": int(r.iterations) for k, r in again.items()}
    counts |= {"loose": int(loose.iterations)} | {f"tight, {k}": int(r.iterations) for k, r in tight.items()}
    stated = {"restart, x0": 170, "restart, x0, z0": 40, "loose": 70, "tight, one run": 540,
              "tight, x0": 510, "tight, x0, z0": 460}
    assert all(abs(counts[k] - n) <= ADMM_CHECK_EVERY for k, n in stated.items()), counts
    assert all(r.success for r in [*again.values(), loose, *tight.values()])
    # the resumed run ends where one run does, to the tolerance of its test
    f = {k: float(objective(net, y, r.x, 0.015)) for k, r in tight.items()}
    assert abs(f["x0, z0"] - f["one run"]) / f["one run"] < 1e-6


def test_a_bad_dual_start_is_refused_naming_z0():
    with pytest.raises(ValueError, match=r"z0 must have shape \(2, 1, 2, 4, 4\)"):
        admm(NET, Y, 0.1, z0=torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="z0 contains NaN or infinite entries"):
        admm(NET, Y, 0.1, z0=torch.full((2, 1, 2, 4, 4), math.nan))


# --------------------------------------------------------------------------- bad input

NET = perceptron(12, (1, 4, 4), ReLU(), seed=18)
Y = torch.rand(2, 12, generator=torch.Generator().manual_seed(19))


def deep() -> LiftedNetwork:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU()).double()
    return LiftedNetwork.from_module(seq, input_shape=(1, 4, 4))


@pytest.mark.parametrize(
    "call, exception, fragment",
    [
        (lambda: admm(NET, Y, 0.0), ValueError, "alpha"),
        (lambda: admm(NET, Y, -0.1), ValueError, "alpha"),
        (lambda: admm(NET, Y, 0.1, relax=0.0), ValueError, "relax"),
        (lambda: admm(NET, Y, 0.1, relax=2.0), ValueError, "relax"),
        (lambda: admm(NET, Y, 0.1, relax="1.5"), TypeError, "relax"),
        (lambda: admm(NET, Y, 0.1, rho=0.0), ValueError, "rho"),
        (lambda: admm(NET, Y, 0.1, rho=-1.0), ValueError, "rho"),
        (lambda: admm(NET, Y, 0.1, rho=(1.0, 0.0)), ValueError, "rho"),
        (lambda: admm(NET, Y, 0.1, rho=(1.0, 2.0, 3.0)), ValueError, "rho"),
        (lambda: admm(NET, Y, 0.1, rho="big"), TypeError, "rho"),
        (lambda: admm(deep(), torch.rand(1, 6), 0.1), ValueError, "depth"),
        (lambda: admm(nn.Linear(16, 12), Y, 0.1), TypeError, "LiftedNetwork"),
        (lambda: admm(NET, Y, 0.1, reg="tv"), TypeError, "reg"),
        (lambda: admm(NET, -Y, 0.1), ValueError, "y"),
        (lambda: admm(NET, Y, 0.1, tol=-1.0), ValueError, "tol"),
        (lambda: admm(NET, Y, 0.1, max_iter=1.5), TypeError, "max_iter"),
        (lambda: admm(NET, Y, 0.1, x_update_dtype="float32"), TypeError, "x_update_dtype"),
        (lambda: admm(NET, Y, 0.1, x_update_dtype=torch.float16), ValueError, "x_update_dtype"),
        (lambda: admm(NET, Y, 0.1, x_update_dtype=torch.int32), ValueError, "x_update_dtype"),
    ],
    ids=["alpha0", "alpha<0", "relax0", "relax2", "relax-str", "rho0", "rho<0", "rho_d0", "rho-triple",
         "rho-str", "depth", "not-network", "reg", "y-domain", "tol", "max_iter", "x-dtype-str",
         "x-dtype-half", "x-dtype-int"],
)
def test_bad_input_raises_naming_the_argument(call, exception, fragment):
    with pytest.raises(exception, match=fragment):
        call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_penalties_beyond_the_dtype_s_resolution_are_refused_at_the_band_edges(dtype):
    """ρ_u and α/ρ_d must lie in [eps, 1/eps]: outside, the prox steps lose a term to rounding
    and the residual test passes far from the minimiser (before the check, a 20×36 ReLU
    perceptron at α = 1e-20 in float64 'converged' at objective 27.7, its true input's < 1e-10)."""
    net, y, eps = NET.to(dtype=dtype), Y.to(dtype), torch.finfo(dtype).eps
    per_alpha = float(admm(net, y[:1], 1.0, max_iter=1).params["rho_u"][0])  # ρ_u / α (default rule)
    for alpha in (2 * eps / per_alpha, 0.5 / (eps * per_alpha)):  # inside the band: runs
        assert admm(net, y, alpha, max_iter=2).iterations.tolist() == [2, 2]
    for alpha in (0.5 * eps / per_alpha, 2 / (eps * per_alpha)):
        with pytest.raises(ValueError, match=rf"rho_u = .* outside \[eps, 1/eps\] of {dtype}"):
            admm(net, y, torch.tensor([1e-2, alpha], dtype=dtype))
    with pytest.raises(ValueError, match="the given rho"):
        admm(net, y, 1e-2, rho=0.5 * eps)
    with pytest.raises(ValueError, match=r"alpha / rho_d .* the given rho"):
        admm(net, y, 1e-2, rho=(1.0, 1e-2 / (0.5 * eps)))


def test_lifted_cd_with_the_admm_sub_solver_refuses_an_unresolvable_alpha():
    with pytest.raises(ValueError, match="rho_u"):
        lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 1e-20, x0_solver="admm")


def test_bregman_prox_names_a_bad_rho_shape_or_data():
    y, w = torch.rand(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    for args, error, match in [((y, w, 0.0), ValueError, "rho must be finite and > 0"),
                               ((y, w, True), TypeError, "rho must be a real number"),
                               ((y[:, :1], w, 1.0), ValueError, "y and w must have the same shape"),
                               ((-y - 1, w, 1.0), ValueError, "y must lie in dom Ψ")]:
        with pytest.raises(error, match=match):
            bregman_prox(ReLU(), *args)


@pytest.mark.parametrize("c, seen", [(1e-2, 1), (2e-7, 1), (1e-7, 0), (1e-8, 0)])
def test_seen_null_space_threshold_is_ten_sqrt_eps_of_float64(c, seen):
    """A null direction counts as seen by W when ||We|| > NULL_RTOL sqrt(eps_64) ||W||_F =
    1.49e-7 ||W||_F (here ||W||_F = 1, ||We|| = c): the solvers' set-up is float64, whatever
    the working dtype."""
    assert NULL_RTOL == 10.0
    we = torch.tensor([[c], [0.0]], dtype=torch.float64)
    basis, blind = _seen_null_space(we, torch.tensor(1.0, dtype=torch.float64))
    assert (basis.shape[1], blind.shape[1]) == (seen, 1 - seen)


@pytest.mark.parametrize("m", [40, 200], ids=["woodbury", "cholesky"])
def test_float32_admm_keeps_weakly_seen_constants_in_the_x_system(m):
    """A whole float32 iteration on a W that sees the constant image weakly (||We|| = 3e-3
    ||W||_F, below float32's 10 sqrt(eps) but resolved by the float64 set-up) converges to the
    float64 minimiser. (Deciding at float32's eps left the constant out of the x-system: 5,000
    iterations without meeting the test, 1-15% above the minimum.)"""
    net = _weakly_sees_constants(m, 3e-3)
    y = image_data(net, 3, seed=33)
    full = admm(net, y, 0.02, tol=1e-9, max_iter=20_000)
    single = admm(net.to(dtype=torch.float32), y.float(), 0.02, tol=1e-6, max_iter=5_000)
    assert full.success and single.success
    f_full, f_single = objective(net, y, full.x, 0.02), objective(net, y, single.x.double(), 0.02)
    assert ((f_single - f_full).abs() / f_full).max() < 1e-5
