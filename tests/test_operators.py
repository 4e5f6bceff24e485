"""Discrete operators, TV and regularisers (PAPER_MATH §3; §6 checks 4 and 5)."""

import math

import numpy as np
import pytest
import torch

from lbreg.operators import (
    GRAM_MIN_ROWS, add_div_, div2d, gram, grad2d, gram_norm_sq, mixed_norm, power_norm, project_dual_ball, tv,
)
from lbreg.regularizers import (
    TV,
    SquaredNorm,
    bregman_distance,
    burbea_rao,
    symmetric_distance,
)

DT = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=DT)


def _disc() -> torch.Tensor:
    """The circle image of §4.1: 1[s_i² + s_j² <= 0.25], s = linspace(-1, 1, 64), shape (1, 1, 64, 64)."""
    s = torch.linspace(-1.0, 1.0, 64, dtype=DT)
    return ((s[:, None] ** 2 + s[None, :] ** 2) <= 0.25).to(DT)[None, None]


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


# ---------------------------------------------------------------- gradient and divergence


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 6), (2, 3, 8, 5), (2, 1, 1, 9), (1, 2, 6, 1)])
def test_div_is_negative_adjoint_of_grad(shape):
    x = _randn(*shape, seed=1)
    p = _randn(*shape[:-2], 2, *shape[-2:], seed=2)
    g = grad2d(x)
    assert g.shape == (*shape[:-2], 2, *shape[-2:])
    assert div2d(p).shape == shape
    lhs, rhs = _dot(g, p), -_dot(x, div2d(p))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_grad_of_a_tensor_that_requires_grad_is_the_same_and_backpropagates_minus_div():
    """grad2d takes a separate path when autograd records (out= does not): the same values, and
    the gradient of <grad2d(x), p> with respect to x is grad2d's adjoint, -div p."""
    x, p = _randn(2, 5, 7, seed=1), _randn(2, 2, 5, 7, seed=2)
    leaf = x.clone().requires_grad_()
    g = grad2d(leaf)
    assert g.requires_grad and torch.equal(g.detach(), grad2d(x))
    (g * p).sum().backward()
    torch.testing.assert_close(leaf.grad, -div2d(p), rtol=1e-14, atol=1e-14)


def test_add_div_adds_a_scaled_divergence_in_place():
    p, out = _randn(3, 2, 2, 6, 9), _randn(3, 2, 6, 9, seed=1)
    scale = torch.tensor([0.5, -2.0, 3.0], dtype=DT).reshape(3, 1, 1, 1)
    expected = out + scale * div2d(p)
    assert add_div_(out, p, scale) is out
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)


def test_grad_is_forward_difference_with_neumann_boundary():
    x = _randn(2, 6, 5)
    ref = torch.zeros(2, 2, 6, 5, dtype=DT)
    for i in range(6):
        for j in range(5):
            if i < 5:
                ref[:, 0, i, j] = x[:, i + 1, j] - x[:, i, j]
            if j < 4:
                ref[:, 1, i, j] = x[:, i, j + 1] - x[:, i, j]
    assert torch.equal(grad2d(x), ref)
    assert torch.count_nonzero(grad2d(torch.full((3, 4, 4), 2.5, dtype=DT))) == 0


def test_div_matches_paper_formula():
    h, w = 5, 4
    p = _randn(2, h, w, seed=3)

    def comp(k: int, i: int, j: int) -> float:  # 0-based, zero outside the formula's range
        if k == 0 and not 0 <= i < h - 1:
            return 0.0
        if k == 1 and not 0 <= j < w - 1:
            return 0.0
        return float(p[k, i, j])

    ref = torch.tensor(
        [
            [comp(0, i, j) - comp(0, i - 1, j) + comp(1, i, j) - comp(1, i, j - 1) for j in range(w)]
            for i in range(h)
        ],
        dtype=DT,
    )
    torch.testing.assert_close(div2d(p), ref, rtol=0, atol=1e-14)


def test_power_norm_of_gradient_on_64x64():
    grad, grad_adj = grad2d, (lambda p: -div2d(p))
    exact = 8.0 * math.cos(math.pi / 128) ** 2  # 4 + 4cos(π/64): largest eigenvalue of -Δ_Neumann
    default = power_norm(grad, grad_adj, (64, 64)) ** 2
    at_500 = power_norm(grad, grad_adj, (64, 64), n_iter=500) ** 2
    converged = power_norm(grad, grad_adj, (64, 64), n_iter=5000, tol=1e-12) ** 2
    assert default <= at_500 <= converged <= exact + 1e-12 <= 8.0
    # PAPER_MATH §3 quotes 7.9875, the value power iteration reaches after ~500 iterations
    assert at_500 == pytest.approx(7.9875, abs=1e-3)
    assert converged == pytest.approx(exact, abs=1e-4)


def test_power_norm_is_seeded_and_matches_matrix_norm():
    A = _randn(30, 20, seed=4)
    fwd, adj = (lambda v: v @ A.T), (lambda u: u @ A)
    ref = float(torch.linalg.matrix_norm(A, 2))
    est = power_norm(fwd, adj, (1, 20), n_iter=2000, tol=1e-14)
    assert est == pytest.approx(ref, rel=1e-8)
    for c in (1e-6, 1e6):  # the stopping test is relative: the same iterations for cA
        scaled = power_norm(lambda v: c * fwd(v), lambda u: c * adj(u), (1, 20), n_iter=2000, tol=1e-14)
        assert scaled == pytest.approx(c * est, rel=1e-12)
    assert power_norm(fwd, adj, (1, 20), n_iter=5) == power_norm(fwd, adj, (1, 20), n_iter=5)
    assert power_norm(fwd, adj, (1, 20), generator=3, n_iter=5) == power_norm(
        fwd, adj, (1, 20), generator=_gen(3), n_iter=5
    )
    A32 = A.float()
    est32 = power_norm(
        lambda v: v @ A32.T, lambda u: u @ A32, (1, 20), dtype=torch.float32, n_iter=2000
    )
    assert est32 == pytest.approx(ref, rel=1e-5)


# ---------------------------------------------------------------- TV and the dual ball


def test_tv_of_disc_matches_reference_numbers():
    x = _disc()
    assert int(x.sum()) == 788
    assert float(x.norm()) == pytest.approx(28.0713, abs=5e-5)
    assert float(tv(x, isotropic=False)) == pytest.approx(128.0, abs=1e-12)
    assert float(tv(x, isotropic=True)) == pytest.approx(116.8701, abs=5e-5)


def test_tv_is_per_sample_and_sums_channels():
    x = _randn(3, 2, 6, 5)
    t = tv(x)
    assert t.shape == (3,)
    per_channel = tv(x[:, :1]) + tv(x[:, 1:])
    torch.testing.assert_close(t, per_channel)
    torch.testing.assert_close(tv(2.0 * x + 1.0), 2.0 * t)
    assert torch.all(tv(x, isotropic=True) <= tv(x, isotropic=False))


@pytest.mark.parametrize("isotropic", [True, False])
def test_projection_lands_in_ball_and_is_identity_inside(isotropic):
    p = 3.0 * _randn(2, 3, 2, 5, 6)
    q = project_dual_ball(p, isotropic=isotropic)
    if isotropic:
        assert torch.all(torch.linalg.vector_norm(q, dim=-3) <= 1.0 + 1e-12)
    else:
        assert torch.all(q.abs() <= 1.0)
    torch.testing.assert_close(project_dual_ball(q, isotropic=isotropic), q, rtol=1e-15, atol=1e-15)
    inside = 0.1 * _randn(2, 2, 4, 4, seed=5) / 2.0
    torch.testing.assert_close(project_dual_ball(inside, isotropic=isotropic), inside)


@pytest.mark.parametrize("isotropic", [True, False])
def test_projection_onto_a_ball_of_radius_r_is_r_times_the_unit_projection(isotropic):
    p = 3.0 * _randn(3, 1, 2, 5, 6)
    r = torch.tensor([0.5, 2.0, 7.0], dtype=DT).reshape(3, 1, 1, 1, 1)
    expected = r * project_dual_ball(p / r, isotropic=isotropic)
    torch.testing.assert_close(project_dual_ball(p, isotropic, radius=r), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(project_dual_ball(p, isotropic, radius=0.5),
                               0.5 * project_dual_ball(2.0 * p, isotropic), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="radius must be finite and > 0"):
        project_dual_ball(p, isotropic, radius=0.0)


@pytest.mark.parametrize("flag", ["no", 0, torch.tensor(False), None], ids=repr)
def test_the_tv_flavour_flag_must_be_a_bool(flag):
    """``isotropic="no"`` (or a radius passed in its place) would read as true: the operators and
    TV take only True or False."""
    p = _randn(1, 2, 4, 4)
    for call in (lambda: TV(isotropic=flag), lambda: tv(p[:, 0], flag), lambda: mixed_norm(p, flag),
                 lambda: project_dual_ball(p, flag)):
        with pytest.raises(TypeError, match="isotropic must be a bool, got"):
            call()


def test_a_numpy_bool_is_a_tv_flavour():
    assert TV(isotropic=np.False_).isotropic is False
    p = _randn(1, 2, 4, 4)
    torch.testing.assert_close(mixed_norm(p, np.True_), mixed_norm(p, True), rtol=0, atol=0)


@pytest.mark.parametrize("s", [-1.0, math.inf, math.nan], ids=repr)
def test_squared_norm_prox_conj_refuses_a_negative_or_non_finite_step(s):
    """prox_{sR*}(p) = p/(1+s) needs s >= 0: s = -1 would divide by zero."""
    for prox in (SquaredNorm().prox_conj, SquaredNorm().prox_conj_):
        with pytest.raises(ValueError, match="step s of prox_\\(sR\\*\\) must be finite and >= 0"):
            prox(_randn(1, 3), s)


@pytest.mark.parametrize("reg", [TV(), TV(isotropic=False), SquaredNorm()], ids=repr)
def test_in_place_prox_conj_equals_the_out_of_place_one(reg):
    """prox_conj_ (the solvers' in-place step (14b)) and project_dual_ball(out=) write exactly the
    values of the out-of-place maps into their argument."""
    p = 3.0 * _randn(3, *reg.dual_shape((1, 6, 7)), seed=31)
    s = torch.tensor([0.5, 1.0, 2.0], dtype=DT).reshape(3, *[1] * (p.dim() - 1))
    expected, q = reg.prox_conj(p, s), p.clone()
    assert reg.prox_conj_(q, s).data_ptr() == q.data_ptr() and torch.equal(q, expected)
    if isinstance(reg, TV):
        out = torch.empty_like(p)
        r = project_dual_ball(p, reg.isotropic, radius=s, out=out)
        assert r is out and torch.equal(out, project_dual_ball(p, reg.isotropic, radius=s))


@pytest.mark.parametrize("reg", [TV(), TV(isotropic=False), SquaredNorm()], ids=repr)
def test_prox_conj_scaled_is_v_minus_the_prox_of_sR(reg):
    """prox_{(sR)*}(v) = s prox_{R*/s}(v/s) (the base formula) = v - prox_{sR}(v) (Moreau): d = v - λ
    is prox_{sR}(v) in closed form (SquaredNorm: v/(1+s)) or by its optimality condition (TV:
    λ/s ∈ ∂R(d), i.e. λ in the ball sC and <λ, d> = s R(d))."""
    v = 2.0 * _randn(3, *reg.dual_shape((1, 6, 7)))
    s = torch.tensor([0.05, 0.5, 3.0], dtype=DT).reshape(3, *[1] * (v.dim() - 1))
    lam = reg.prox_conj_scaled(v, s)
    torch.testing.assert_close(lam, s * reg.prox_conj(v / s, 1.0 / s), rtol=1e-14, atol=1e-15)
    d = v - lam
    if isinstance(reg, SquaredNorm):
        torch.testing.assert_close(d, v / (1.0 + s), rtol=1e-14, atol=1e-15)
        return
    ball = torch.linalg.vector_norm(lam, dim=-3) if reg.isotropic else lam.abs()
    assert torch.all(ball <= s.reshape(3, *[1] * (ball.dim() - 1)) * (1 + 1e-12))
    torch.testing.assert_close((lam * d).flatten(1).sum(1), s.flatten() * reg.R(d), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("isotropic", [True, False])
def test_tv_is_support_function_of_dual_ball(isotropic):
    reg = TV(isotropic=isotropic)
    x = _randn(3, 1, 8, 7)
    Kx = reg.K(x)
    p_star = reg.prox_conj(Kx / 1e-30, s=1.0)  # pixelwise direction of Kx
    attained = (Kx * p_star).flatten(1).sum(1)
    torch.testing.assert_close(attained, reg.value(x), rtol=1e-12, atol=1e-12)
    for seed in range(5):  # any other p in the ball gives less
        p = reg.prox_conj(3.0 * _randn(*Kx.shape, seed=seed), s=1.0)
        assert torch.all((Kx * p).flatten(1).sum(1) <= reg.value(x) + 1e-12)


def test_tv_regularizer_operators():
    reg = TV()
    x, p = _randn(2, 1, 6, 9), _randn(2, 1, 2, 6, 9, seed=1)
    assert reg.dual_shape((1, 6, 9)) == (1, 2, 6, 9)
    assert reg.K(x).shape == (2, *reg.dual_shape((1, 6, 9)))
    assert _dot(reg.K(x), p) == pytest.approx(_dot(x, reg.K_adj(p)), rel=1e-12)
    torch.testing.assert_close(reg.subgradient_from_dual(p), -div2d(p))
    torch.testing.assert_close(reg.prox_conj(p, 0.1), reg.prox_conj(p, 10.0))
    assert reg.norm_K_sq == 8.0
    assert power_norm(reg.K, reg.K_adj, (1, 1, 6, 9), n_iter=2000) ** 2 <= reg.norm_K_sq


@pytest.mark.parametrize("reg", [TV(), TV(isotropic=False), SquaredNorm()], ids=repr)
def test_R_of_K_is_the_value_and_add_K_adj_is_an_axpy(reg):
    """value(x) = R(Kx); add_K_adj_(out, p, s) = out + s Kᵀp in place, for a per-sample s."""
    x = _randn(3, 2, 6, 9)
    p = _randn(3, *reg.dual_shape((2, 6, 9)), seed=1)
    kx = reg.K(x)
    torch.testing.assert_close(reg.R(kx), reg.value(x), rtol=1e-15, atol=0)
    if isinstance(reg, TV):
        pix = kx.abs().sum(-3) if not reg.isotropic else kx.pow(2).sum(-3).sqrt()
        torch.testing.assert_close(mixed_norm(kx, reg.isotropic), pix.flatten(1).sum(1), rtol=1e-14, atol=0)
    scale = torch.tensor([0.5, -2.0, 3.0], dtype=DT).reshape(3, 1, 1, 1)
    out = _randn(3, 2, 6, 9, seed=2)
    expected = out + scale * reg.K_adj(p)
    returned = reg.add_K_adj_(out, p, scale)
    assert returned is out
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(reg.add_K_adj_(out.clone(), p, 0.25), out + 0.25 * reg.K_adj(p),
                               rtol=1e-14, atol=1e-14)


def test_tv_bregman_distance_is_nonnegative_for_a_subgradient():
    reg = TV()
    v = _randn(2, 1, 8, 8)
    xi = reg.prox_conj(reg.K(v) / 1e-30, 1.0)  # ξ ∈ C with <ξ, ∇v> = TV(v)
    p_v = reg.subgradient_from_dual(xi)
    torch.testing.assert_close(bregman_distance(reg, v, v, p_v), torch.zeros(2, dtype=DT))
    for seed in range(5):
        u = _randn(2, 1, 8, 8, seed=10 + seed)
        assert torch.all(bregman_distance(reg, u, v, p_v) >= -1e-12)


def test_squared_norm_regularizer_and_distances():
    reg = SquaredNorm()
    u, v = _randn(4, 3, 5), _randn(4, 3, 5, seed=1)
    diff_sq = (u - v).flatten(1).pow(2).sum(1)
    torch.testing.assert_close(reg.value(u), 0.5 * u.flatten(1).pow(2).sum(1))
    # R(x) = sup_z <x, z> - R*(z), attained at z = x
    torch.testing.assert_close((u * u).flatten(1).sum(1) - reg.value(u), reg.value(u))
    torch.testing.assert_close(symmetric_distance(reg, u, v, u, v), diff_sq)
    torch.testing.assert_close(bregman_distance(reg, u, v, v), 0.5 * diff_sq)
    torch.testing.assert_close(
        bregman_distance(reg, u, v, v) + bregman_distance(reg, v, u, u),
        symmetric_distance(reg, u, v, u, v),
    )
    torch.testing.assert_close(burbea_rao(reg, u, v), 0.125 * diff_sq)
    torch.testing.assert_close(burbea_rao(reg.value, u, v), burbea_rao(reg, u, v))
    # prox_{sR*}(p) = argmin_q s/2 |q|² + 1/2 |q - p|²: the gradient vanishes
    s, p = 0.7, _randn(4, 3, 5, seed=2)
    q = reg.prox_conj(p, s)
    torch.testing.assert_close(s * q + q - p, torch.zeros_like(p), rtol=0, atol=1e-14)
    assert reg.dual_shape((3, 5)) == (3, 5) and reg.norm_K_sq == 1.0


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        grad2d(torch.zeros(5, dtype=DT))
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        grad2d(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        grad2d([[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"p must have shape \(\.\.\., 2, H, W\)"):
        div2d(torch.zeros(3, 4, 4, dtype=DT))
    with pytest.raises(ValueError, match=r"x must have at least 3 dimensions \(B, \.\.\., H, W\)"):
        tv(torch.zeros(4, 4, dtype=DT))
    with pytest.raises(ValueError, match="p must have shape"):
        project_dual_ball(torch.zeros(2, 3, 4, 4, dtype=DT))
    with pytest.raises(ValueError, match=r"p must have shape \(B, \.\.\., 2, H, W\)"):
        mixed_norm(torch.zeros(2, 3, 4, 4, dtype=DT))
    with pytest.raises(ValueError, match="p must have at least 4 dimensions"):
        mixed_norm(torch.zeros(2, 4, 4, dtype=DT))
    with pytest.raises(ValueError, match="input_shape"):
        TV().dual_shape((784,))
    ident = lambda v: v  # noqa: E731
    with pytest.raises(TypeError, match="generator"):
        power_norm(ident, ident, (3,), generator="seed")
    with pytest.raises(ValueError, match="n_iter"):
        power_norm(ident, ident, (3,), n_iter=0)
    with pytest.raises(ValueError, match="shape"):
        power_norm(ident, lambda v: v[:-1], (3,))


@pytest.mark.parametrize("scale", [1.0, 1e-200, 1e200])
def test_isotropic_tv_and_projection_use_the_pixelwise_euclidean_norm(scale):
    """tv and project_dual_ball (hypot of the two components) against the textbook formulas
    sqrt(g_0² + g_1²), also where squaring would underflow or overflow."""
    x = scale * _randn(3, 2, 9, 7, seed=5)
    g = grad2d(x)
    pix = torch.sqrt((g[..., 0, :, :] / scale) ** 2 + (g[..., 1, :, :] / scale) ** 2) * scale
    assert torch.allclose(tv(x), pix.reshape(3, -1).sum(1), rtol=1e-13, atol=0)
    assert torch.allclose(mixed_norm(g), pix.reshape(3, -1).sum(1), rtol=1e-13, atol=0)
    p = scale * _randn(3, 2, 2, 9, 7, seed=6)
    norm = torch.sqrt((p[..., 0, :, :] / scale) ** 2 + (p[..., 1, :, :] / scale) ** 2) * scale
    ref = p / torch.clamp(norm, min=1.0).unsqueeze(-3)
    assert torch.allclose(project_dual_ball(p), ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("rows", [GRAM_MIN_ROWS - 1, GRAM_MIN_ROWS, GRAM_MIN_ROWS + 3, 2 * GRAM_MIN_ROWS + 1])
def test_gram_from_blocks_equals_the_product(rows):
    """Row counts below, at and above the blocked path (blocks of unequal size), a transposed
    view, and float32: the same matrix as A @ A.T up to rounding, symmetric up to rounding."""
    A = _randn(rows, 37, seed=rows)
    for mat in (A, A.T.contiguous().T, A[:, ::2]):
        ref = mat @ mat.T
        assert torch.allclose(gram(mat), ref, rtol=1e-13, atol=1e-12)
    g32 = gram(A.float())
    assert g32.dtype == torch.float32
    assert torch.allclose(g32.double(), A @ A.T, rtol=1e-4, atol=1e-4)
    g = gram(A)
    assert torch.allclose(g, g.T, rtol=1e-14, atol=1e-12)
    tall = _randn(11, rows, seed=1)  # W.T of a tall W: a non-contiguous view with many rows
    assert torch.allclose(gram(tall.T), tall.T @ tall, rtol=1e-13, atol=1e-12)
    with pytest.raises(ValueError, match="matrix"):
        gram(_randn(2, 3, 4))


def test_gram_norm_sq_is_the_squared_spectral_norm():
    """Wide and tall matrices, float64 and float32, against the SVD; a non-matrix is refused."""
    for shape in ((7, 19), (19, 7)):
        W = _randn(*shape, seed=11)
        ref = float(torch.linalg.matrix_norm(W, 2)) ** 2
        assert gram_norm_sq(W) == pytest.approx(ref, rel=1e-13)
        assert gram_norm_sq(W.float()) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="matrix"):
        gram_norm_sq(_randn(2, 3, 4))
    with pytest.raises(TypeError, match="floating"):
        gram_norm_sq(torch.ones(3, 3, dtype=torch.int64))


def test_tv_conj_value_is_the_indicator_of_the_pixelwise_ball():
    """R* = χ_C with C the pixelwise Euclidean unit ball (isotropic TV) or ℓ∞ unit ball
    (anisotropic): a pixel (0.8, 0.8) has Euclidean norm 1.13 > 1 but ℓ∞ norm 0.8 <= 1; a pixel
    (0.6, -0.8) lies on the Euclidean sphere; projected fields are inside both."""
    z = torch.zeros(3, 1, 2, 3, 3, dtype=DT)
    z[0, 0, :, 1, 1] = 0.8
    z[1, 0, 0, 2, 2], z[1, 0, 1, 2, 2] = 0.6, -0.8
    z[2, 0, 1, 0, 0] = 1.0 + 1e-6
    assert TV(isotropic=True).conj_value(z).tolist() == [math.inf, 0.0, math.inf]
    assert TV(isotropic=False).conj_value(z).tolist() == [0.0, 0.0, math.inf]
    for reg in (TV(True), TV(False)):
        w = reg.prox_conj(3 * _randn(2, 1, 2, 5, 4, seed=1))
        assert torch.equal(reg.conj_value(w), torch.zeros(2, dtype=DT))


def test_distances_reject_another_shape_with_the_same_number_of_entries():
    """⟨p, u − v⟩ pairs entries of one shape (B, ...): a subgradient of shape (1, 3) for points
    of shape (3, 1) has as many entries, but is an error, not a silent broadcast to (3, 3)."""
    u, v, p = _randn(3, 1), _randn(3, 1, seed=1), _randn(1, 3, seed=2)
    with pytest.raises(ValueError, match=r"u, v, p must have one shape, got .*'p': \(1, 3\)"):
        bregman_distance(SquaredNorm(), u, v, p)
    with pytest.raises(ValueError, match="u, v, p_u, p_v must have one shape"):
        symmetric_distance(SquaredNorm(), u, v, p, 2 * p)


def test_distances_need_a_batch_axis_and_take_an_empty_batch():
    """One flat vector is not read as a batch of scalars (one distance per entry), and an
    empty batch gives an empty result."""
    u, v = _randn(16), _randn(16, seed=1)
    with pytest.raises(ValueError, match=r"u must have at least 2 dimensions \(B, \.\.\.\)"):
        symmetric_distance(SquaredNorm(), u, v, u, v)
    with pytest.raises(ValueError, match="u must have at least 2 dimensions"):
        bregman_distance(SquaredNorm(), u, v, v)
    empty = torch.zeros(0, 1, 4, 4, dtype=DT)
    assert symmetric_distance(TV(), empty, empty, empty, empty).shape == (0,)
    with pytest.raises(ValueError, match=r"x must have at least 3 dimensions \(B, \.\.\., H, W\)"):
        TV().value(torch.zeros(4, 4, dtype=DT))  # once: "p must have ...", an argument never passed


def test_power_norm_names_the_dtype_when_the_operator_fails_on_its_start():
    W = torch.rand(3, 4, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match=r"failed on the start v, torch\.float64 .*pass the operator's dtype"):
        power_norm(lambda v: W @ v, lambda u: W.T @ u, (4,))
    assert power_norm(lambda v: W @ v, lambda u: W.T @ u, (4,), dtype=torch.float32) > 0


def test_power_norm_rejects_fractional_counts_and_a_bad_tol():
    """n_iter and the entries of shape are integers (numpy's too), not floats that int() would
    cut; tol is finite and >= 0."""
    np = pytest.importorskip("numpy")
    ident = lambda v: v  # noqa: E731
    with pytest.raises(TypeError, match="n_iter must be an integer, got float"):
        power_norm(ident, ident, (3,), n_iter=2.5)
    with pytest.raises(TypeError, match="n_iter must be an integer, got bool"):
        power_norm(ident, ident, (3,), n_iter=True)
    with pytest.raises(TypeError, match=r"shape\[0\] must be an integer, got float"):
        power_norm(ident, ident, (1.5, 4))
    for tol in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="tol must be finite and >= 0"):
            power_norm(ident, ident, (3,), tol=tol)
    with pytest.raises(TypeError, match="generator"):
        power_norm(ident, ident, (3,), generator=True)
    assert power_norm(ident, ident, (np.int64(3),), n_iter=np.int64(5)) == pytest.approx(1.0)


def test_squared_norm_on_an_empty_batch_gives_empty_values():
    """SquaredNorm of a (0, n) batch, and the Bregman distance of such batches: shape (0,)."""
    empty = torch.zeros(0, 3, dtype=DT)
    assert SquaredNorm().value(empty).shape == (0,)
    assert bregman_distance(SquaredNorm(), empty, empty, empty).shape == (0,)
