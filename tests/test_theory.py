"""lbreg.theory: source-condition instances, Theorem 2, Example 1, Lemma 1; the theory notebook."""

import math
import re

import pytest
import torch
from torch import nn

from conftest import cell_text
from lbreg.activations import HardTanh, Identity, LeakyReLU, ReLU, Sigmoid, SoftShrink, Tanh
from lbreg.operators import tv
from lbreg.theory import (
    conjugate_gradient,
    example1_admissible,
    example1_alpha,
    example1_bound,
    lemma1_conjugate,
    loglog_slope,
    numerical_bregman_conjugate,
    psi_bracket,
    solve_tikhonov,
    source_condition_instance,
    theorem2_bound,
    theorem2_lhs,
    tv_subgradient,
)

pytestmark = pytest.mark.usefixtures("float64_default")


ACTIVATIONS = [ReLU(), LeakyReLU(0.2), HardTanh(), HardTanh(0.0, 6.0), SoftShrink(0.5), Sigmoid(), Tanh(), Identity()]


@pytest.mark.parametrize("cond", [None, 100.0])
def test_source_condition_instance_satisfies_the_source_condition(cond):
    inst = source_condition_instance(30, 6, ReLU(), [0.0, 1e-3, 1e-1], 0, n_sources=2, cond=cond,
                                     margin=0.5, v_norm=0.3)
    assert inst.y_delta.shape == (6, 30) and inst.x_dag.shape == (6, 6)
    assert torch.allclose(torch.linalg.matrix_norm(inst.W, ord=2), torch.tensor(1.0))
    if cond is not None:
        s = torch.linalg.svdvals(inst.W)
        assert torch.allclose(s[0] / s[-1], torch.tensor(cond))
    assert torch.allclose(inst.x_dag, inst.v_dag @ inst.W)  # eq. (8) with ∇R(x) = x
    z = inst.x_dag @ inst.W.T + inst.b
    assert torch.allclose(inst.y, torch.relu(z))
    assert bool((z[inst.v_dag != 0] >= 0.5).all())  # v† lives where y is safely positive
    assert torch.allclose(inst.v_norm, torch.full((6,), 0.3))
    assert torch.equal(inst.v_dag[0], inst.v_dag[2])  # rows are source-major
    assert not torch.equal(inst.v_dag[0], inst.v_dag[3])
    assert bool((inst.y_delta >= 0).all())
    assert torch.allclose(inst.delta_sq, ReLU().bregman(inst.y_delta, z))
    assert float(inst.delta_sq[0]) == 0.0 and torch.equal(inst.y_delta[0], inst.y[0])


@pytest.mark.parametrize("seed", range(5))
def test_source_condition_support_is_safely_active_for_a_large_v_norm(seed):
    """Wx† + b >= margin on supp v† also when ||v†|| is large, which needs the ||W_i|| v_norm
    term of the support rule."""
    inst = source_condition_instance(200, 10, ReLU(), 0.0, seed, v_norm=2.0, margin=0.1)
    z = inst.x_dag @ inst.W.T + inst.b
    assert bool((z[inst.v_dag != 0] >= 0.1).all())


def test_source_condition_instance_is_reproducible_and_validates():
    a = source_condition_instance(20, 4, None, 0.01, 7)
    b = source_condition_instance(20, 4, None, 0.01, torch.Generator().manual_seed(7))
    assert torch.equal(a.W, b.W) and torch.equal(a.y_delta, b.y_delta)
    with pytest.raises(ValueError, match="cond"):
        source_condition_instance(4, 6, cond=10.0)
    with pytest.raises(ValueError, match="noise_std"):
        source_condition_instance(20, 4, noise_std=-1.0)
    with pytest.raises(ValueError, match="margin"):
        source_condition_instance(3, 2, margin=50.0)


def test_solve_tikhonov_meets_the_optimality_condition_per_row():
    """Batched rows with different α: Wᵀ(σ(Wx+b) − y^δ) + αx = 0 for R = ½‖·‖² (eq. (6))."""
    inst = source_condition_instance(40, 8, LeakyReLU(0.3), [1e-2, 1e-1, 1e-2], 1)
    alpha = torch.tensor([1e-2, 1e-1, 1.0])
    res = solve_tikhonov(inst, alpha, tol=1e-11)
    assert res.success
    x = res.x
    residual = inst.activation(x @ inst.W.T + inst.b) - inst.y_delta
    grad = residual @ inst.W + alpha[:, None] * x
    assert float(grad.abs().max()) < 1e-8
    # a shared number works too and gives the same row
    res1 = solve_tikhonov(inst, 0.1, tol=1e-11)
    assert torch.allclose(res1.x[1], x[1], atol=1e-8)


@pytest.mark.parametrize("activation", [ReLU(), LeakyReLU(0.3)])
def test_theorem2_bound_holds_on_random_instances(activation):
    """Eq. (9) for c in {1/4, 1/2, 1} on random instances satisfying (8) (PAPER_MATH §6 item 7)."""
    stds, alphas = [1e-3, 1e-1], [1e-2, 1e-1, 1.0]
    inst = source_condition_instance(40, 8, activation, [s for s in stds for _ in alphas], 2,
                                     n_sources=3)
    alpha = torch.tensor([a for _ in stds for a in alphas] * 3)
    res = solve_tikhonov(inst, alpha, tol=1e-11)
    assert res.success
    for c in (0.25, 0.5, 1.0):
        lhs = theorem2_lhs(inst, res.x, alpha, c)
        rhs = theorem2_bound(activation, inst.y_delta, inst.v_dag, alpha, inst.delta_sq, c)
        assert bool((lhs <= rhs * (1 + 1e-6)).all()), (c, (lhs / rhs).max())
        assert bool((lhs > 0).all())


def test_theorem2_sides_by_hand():
    inst = source_condition_instance(10, 3, ReLU(), [0.05], 3)
    x = torch.randn(1, 3, generator=torch.Generator().manual_seed(0))
    alpha, c = 0.2, 0.5
    data = ReLU().bregman(inst.y_delta, x @ inst.W.T + inst.b)
    expected = (1 - c) * data + alpha * ((x - inst.x_dag) ** 2).sum(1)
    assert torch.allclose(theorem2_lhs(inst, x, alpha, c), expected)
    leaky = LeakyReLU(0.5)
    y = torch.tensor([[0.3, -0.2, 1.0]])
    v = torch.tensor([0.1, 0.4, -0.2])
    shift = alpha / c * v
    bracket = (leaky.psi(y + shift) + leaky.psi(y - shift) - 2 * leaky.psi(y)).sum()
    rhs = (1 + c) * 0.01 + alpha**2 / c * (v @ v) + c * bracket
    assert torch.allclose(theorem2_bound(leaky, y, v, alpha, 0.01, c), rhs.reshape(1))
    with pytest.raises(ValueError, match="c must lie"):
        theorem2_bound(leaky, y, v, alpha, 0.01, 1.5)


def test_relu_bracket_is_zero_iff_example1_admissible():
    g = torch.Generator().manual_seed(4)
    y = torch.rand(200, 5, generator=g)
    v = torch.randn(200, 5, generator=g)
    for c in (0.5, 1.0):
        bracket = psi_bracket(ReLU(), y, v, 0.3, c)
        ok = example1_admissible(y, v, 0.3, c)
        assert bool(ok.any()) and not bool(ok.all())
        assert torch.equal(bracket == 0, ok)
        assert bool(torch.isinf(bracket[~ok]).all())


def test_leaky_relu_bracket_obeys_remark1_bound():
    """Remark 1: Ψ' ℓ-Lipschitz ⇒ bracket ≤ ℓ α² ‖v†‖² / c²."""
    g = torch.Generator().manual_seed(5)
    act = LeakyReLU(0.25)
    y, v = torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)
    for alpha in (1e-3, 0.1, 2.0):
        for c in (0.25, 1.0):
            bracket = psi_bracket(act, y, v, alpha, c)
            bound = act.lipschitz_grad_psi * alpha**2 * (v**2).sum(1) / c**2
            assert bool((bracket >= -1e-12).all() & (bracket <= bound + 1e-12).all())


@pytest.mark.parametrize("c", [0.25, 0.5, 1.0])
def test_example1_alpha_balances_the_bound(c):
    """α(δ) minimises (1+c)δ²/α + α‖v‖²/c, whose minimum is Example 1's bound."""
    delta, v_norm = torch.tensor([1e-3, 0.1]), 0.7
    alpha = example1_alpha(delta, v_norm, c)
    value = (1 + c) * delta**2 / alpha + alpha * v_norm**2 / c
    assert torch.allclose(value, example1_bound(delta, v_norm, c))
    for factor in (0.9, 1.1):
        a = alpha * factor
        assert bool(((1 + c) * delta**2 / a + a * v_norm**2 / c > value).all())
    if c == 1.0:
        assert torch.allclose(alpha, math.sqrt(2) * delta / v_norm)
        assert torch.allclose(example1_bound(delta, v_norm), 2 * math.sqrt(2) * v_norm * delta)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=repr)
def test_lemma1_numerical_conjugate_matches_closed_form(activation):
    """PAPER_MATH §6 item 3: sup_z ⟨w,z⟩ − B_Ψ(y,z) = F(y+w) − F(y)."""
    g = torch.Generator().manual_seed(6)
    y = activation(2 * torch.randn(30, 3, generator=g))
    lo, hi = activation.domain
    t = 0.02 + 0.96 * torch.rand(30, 3, generator=g)
    if math.isfinite(lo) and math.isfinite(hi):
        u = lo + (hi - lo) * t
    elif math.isfinite(lo):
        u = lo + 4 * t
    else:
        u = 8 * t - 4
    w = u - y
    numerical = numerical_bregman_conjugate(activation, y, w)
    assert torch.allclose(numerical, lemma1_conjugate(activation, y, w), atol=1e-10, rtol=0)


def test_numerical_conjugate_rejects_unattained_supremum():
    y = torch.tensor([[0.5]])
    with pytest.raises(ValueError, match="not attained"):
        numerical_bregman_conjugate(ReLU(), y, torch.tensor([[-1.0]]))  # y + w < 0: sup = +inf
    assert torch.isinf(lemma1_conjugate(ReLU(), y, torch.tensor([[-1.0]]))).all()


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=repr)
def test_conjugate_gradient_is_sigma(activation):
    z = torch.linspace(-6, 6, 97) + 1e-3  # avoid the kinks, where autograd is one-sided
    assert torch.allclose(conjugate_gradient(activation, z), activation(z), atol=1e-12)


@pytest.mark.parametrize("isotropic", [True, False])
def test_tv_subgradient_is_a_subgradient(isotropic):
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 1, 6, 7, generator=g).round()
    p = tv_subgradient(x, isotropic)
    assert torch.allclose((p * x).sum((1, 2, 3)), tv(x, isotropic))  # ⟨p, x⟩ = TV(x)
    for _ in range(20):  # TV(u) ≥ TV(x) + ⟨p, u − x⟩, i.e. TV(u) ≥ ⟨p, u⟩
        u = torch.randn(2, 1, 6, 7, generator=g)
        assert bool((tv(u, isotropic) >= (p * u).sum((1, 2, 3)) - 1e-12).all())


def test_loglog_slope_recovers_power_laws():
    x = torch.logspace(-4, -1, 9)
    assert loglog_slope(x, 3 * x**1.5) == pytest.approx(1.5, abs=1e-12)
    assert loglog_slope([1.0, 10.0], [2.0, 0.2]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        loglog_slope([1.0, 2.0], [1.0, -1.0])


@pytest.mark.notebook
def test_theory_notebook_fast_run(notebook_runner):
    nb = notebook_runner("01_theory.ipynb", {
        "n_instances": 4, "sources_per_network": 2, "noise_stds": [1e-2, 1e-1],
        "alphas": [0.1, 1.0], "n_deltas": 4, "rate_sources": 1, "rate_m": 30, "rate_n": 10,
        "rate_std_range": [1e-6, 1e-4], "n_lemma": 20, "tol": 1e-8,
    })
    text = cell_text(nb, "key-numbers")
    pattern = r"worst lhs/rhs of \(9\), c = \S+\s+<= 1\s+([\d.]+)"
    ratios = [float(r) for r in re.findall(pattern, text)]
    assert len(ratios) == 3 and all(0 < r <= 1 for r in ratios), text
    assert "(4 instances, 16 problems)" in text
    slopes = re.findall(r"fitted slope, \S+ W\s+\S+\s+(-?[\d.]+)", text)
    assert len(slopes) == 2 and all(math.isfinite(float(s)) for s in slopes), text
    below = re.search(r"D_symm <= 2 sqrt2 \|v\| delta\s+all\s+(\d+)/(\d+)", text)
    assert below and below.group(1) == below.group(2) == "8", text
    assert re.search(r"Lemma 1.*< 1e-10", text), text
    assert re.search(r"on the grid\s+yes\s+yes", text), text


def test_source_condition_rows_are_source_major_with_the_noise_cycling_inside():
    """Row k*S + j holds source k and noise_std[j] (S = len(noise_std)): the S rows of one
    source share v†, x† and the exact data y, the std cycles within each source, and the
    row with std 0 has y^δ = y."""
    stds = [0.0, 1e-3, 1e-1]
    S = len(stds)
    inst = source_condition_instance(30, 6, ReLU(), stds, 0, n_sources=2)
    for k in range(2):
        first = k * S
        for j in range(S):
            assert torch.equal(inst.v_dag[first + j], inst.v_dag[first])
            assert torch.equal(inst.x_dag[first + j], inst.x_dag[first])
            assert torch.equal(inst.y[first + j], inst.y[first])
        assert torch.equal(inst.noise_std[first:first + S], torch.tensor(stds))
        assert torch.equal(inst.y_delta[first], inst.y[first])
    assert not torch.equal(inst.v_dag[0], inst.v_dag[S])


@pytest.mark.parametrize("c", [0.0, -0.25, 1.5])
def test_theorem2_and_example1_reject_c_outside_0_1(c):
    """c ∈ (0, 1] in (9): c = 0 would divide by zero in α/c and α²/c, so every function taking
    c rejects it (and negative or > 1 values) with the same message."""
    inst = source_condition_instance(10, 3, ReLU(), [0.05], 3)
    y = torch.tensor([[0.3, -0.2, 1.0]])
    v = torch.tensor([0.1, 0.4, -0.2])
    calls = [
        lambda: example1_alpha(0.1, 0.5, c),
        lambda: example1_bound(0.1, 0.5, c),
        lambda: example1_admissible(y.abs(), v, 0.2, c),
        lambda: psi_bracket(LeakyReLU(0.5), y, v, 0.2, c),
        lambda: theorem2_bound(LeakyReLU(0.5), y, v, 0.2, 0.01, c),
        lambda: theorem2_lhs(inst, inst.x_dag, 0.2, c),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="c must lie"):
            call()


def test_loglog_slope_needs_two_points():
    """A slope needs at least two points: one point (where the centred fit is 0/0) is an error,
    not NaN."""
    with pytest.raises(ValueError, match="length >= 2"):
        loglog_slope([1.0], [2.0])
    with pytest.raises(ValueError, match="length >= 2"):
        loglog_slope(torch.tensor([3.0]), torch.tensor([5.0]))


def test_source_condition_instance_accepts_a_torch_activation():
    """A torch activation module is converted with activation_of, as `Layer` does, instead of
    failing later on a missing ``project_domain``."""
    a = source_condition_instance(20, 4, nn.ReLU(), 0.01, 7)
    b = source_condition_instance(20, 4, ReLU(), 0.01, 7)
    assert isinstance(a.activation, ReLU)
    assert torch.equal(a.y_delta, b.y_delta) and torch.equal(a.delta_sq, b.delta_sq)


def test_example1_takes_delta_zero_and_broadcasts_v_norm():
    """δ = 0 is a valid noise level (α(0) = 0, bound 0); a per-row ‖v†‖ broadcasts against a
    shared δ; only shapes that do not broadcast are refused."""
    delta = torch.tensor([0.0, 0.1])
    assert torch.equal(example1_alpha(delta, 0.5), math.sqrt(2) * delta / 0.5)
    assert float(example1_bound(0.0, 0.5)) == 0.0
    v_norm = torch.tensor([0.5, 1.0])
    assert torch.allclose(example1_alpha(0.1, v_norm), math.sqrt(2) * 0.1 / v_norm)
    with pytest.raises(ValueError, match="broadcastable"):
        example1_alpha(torch.ones(2), torch.ones(3))


def test_theorem2_bound_is_unchanged_by_a_row_per_alpha_and_delta_sq():
    """alpha and delta_sq as one number or one value per row give the same bound."""
    inst = source_condition_instance(10, 3, ReLU(), [0.05, 0.1], 3)
    shared = theorem2_bound(ReLU(), inst.y_delta, inst.v_dag, 0.1, 0.01, 0.5)
    per_row = theorem2_bound(ReLU(), inst.y_delta, inst.v_dag, torch.full((2,), 0.1), torch.full((2,), 0.01), 0.5)
    assert torch.equal(shared, per_row)
