"""Properties of the proximal activations and of B_Psi (PAPER_MATH §1; §6 items 1-3, 6, 8).

Independent references: Psi is re-implemented below from the activation table, and the
Moreau envelope, F*, prox_Psi, prox_{tPsi} and the sup in Lemma 1 are computed by bounded
scalar minimisation (scipy), not by the library.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torch.overrides import TorchFunctionMode

from conftest import psi_table, scalar_min
from lbreg.activations import (
    Activation,
    HardTanh,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SoftShrink,
    Tanh,
    activation_of,
)

F64 = torch.float64
ACTS = [ReLU(), Identity(), LeakyReLU(0.2), HardTanh(), HardTanh(0.0, 6.0), HardTanh(0.25, 1.75),
        SoftShrink(0.5), Sigmoid(), Tanh()]
MODULES = [nn.ReLU(), nn.Identity(), nn.LeakyReLU(0.2), nn.Hardtanh(), nn.ReLU6(), nn.Hardtanh(0.25, 1.75),
           nn.Softshrink(0.5), nn.Sigmoid(), nn.Tanh()]
POSITIVELY_HOMOGENEOUS = [ReLU(), Identity(), LeakyReLU(0.2)]
all_acts = pytest.mark.parametrize("act", ACTS, ids=repr)


# ---- independent references ---------------------------------------------------------
def envelope(act: Activation, z: float) -> float:
    return scalar_min(lambda u: 0.5 * (u - z) ** 2 + psi_table(act, u), z, abs(z) + 3, act)[1]


def samples_in_domain(act: Activation, n: int, seed: int = 0) -> torch.Tensor:
    """n random points of dom Psi, including its finite endpoints."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = act.domain
    if math.isinf(lo) and math.isinf(hi):
        y = 2 * torch.randn(n, generator=g, dtype=F64)
    elif math.isinf(hi):
        y = 2 * torch.rand(n, generator=g, dtype=F64)
        y[0] = lo
    else:
        y = lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)
        y[0], y[1] = lo, hi
    return y


def randn(*shape: int, seed: int = 1, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---- Psi, sigma, F* ---------------------------------------------------------------------
@all_acts
def test_psi_matches_table_and_is_inf_off_domain(act):
    u = torch.tensor([-3.0, -1.5, -1.0, -0.3, 0.0, 0.2, 0.5, 1.0, 1.2, 4.0], dtype=F64)
    got = act.psi(u)
    want = torch.tensor([psi_table(act, x) for x in u.tolist()], dtype=F64)
    assert not got.isnan().any()
    assert torch.equal(got.isinf(), want.isinf())
    fin = want.isfinite()
    torch.testing.assert_close(got[fin], want[fin], atol=1e-14, rtol=0)


@pytest.mark.parametrize("act, module", list(zip(ACTS, MODULES)), ids=[repr(a) for a in ACTS])
def test_sigma_and_activation_of_match_torch_module(act, module):
    assert activation_of(module) == act
    z = randn(200)
    torch.testing.assert_close(act(z), module(z), atol=1e-15, rtol=1e-15)


@all_acts
def test_sigma_is_numerical_prox_of_psi(act):
    for z in randn(15, seed=2).tolist():
        u, _ = scalar_min(lambda u: 0.5 * (u - z) ** 2 + psi_table(act, u), z, abs(z) + 3, act)
        assert abs(u - act(torch.tensor(z, dtype=F64)).item()) < 1e-6


@all_acts
def test_conj_is_numerical_sup(act):
    z = randn(15, seed=3)
    got = act.conj(z)
    for zi, gi in zip(z.tolist(), got.tolist()):
        _, m = scalar_min(lambda u: 0.5 * u * u + psi_table(act, u) - zi * u, 0.0, abs(zi) + 3, act)
        assert abs(gi - (-m)) < 1e-7


@all_acts
def test_conj_gradient_is_sigma(act):
    z = torch.cat([randn(50, seed=4), torch.tensor([-30.0, -12.0, 12.0, 30.0], dtype=F64)])
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(act.conj(z).sum(), z)
    torch.testing.assert_close(grad, act(z.detach()), atol=1e-12, rtol=0)


# ---- B_Psi -------------------------------------------------------------------------------
@all_acts
def test_bregman_grad_matches_autograd(act, device):
    y = samples_in_domain(act, 40, seed=5).reshape(4, 10).to(device)
    z = randn(4, 10, seed=6).to(device).requires_grad_(True)
    (grad,) = torch.autograd.grad(act.bregman(y, z).sum(), z)
    torch.testing.assert_close(act.bregman_grad(y, z.detach()), grad, atol=1e-12, rtol=0)


class InclusiveBounds(TorchFunctionMode):
    """clamp and relu with derivative 1 at their bounds instead of torch 2.14's 0 (torch 2.11's
    clamp had 1): a formula for B_Ψ must not depend on which one-sided derivative torch picks."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.relu, torch.Tensor.relu):
            return torch.where(args[0] >= 0, args[0], 0.0)
        if func in (torch.clamp, torch.Tensor.clamp):
            x, lo, hi = (*args, None, None)[:3]
            lo, hi = kwargs.get("min", lo), kwargs.get("max", hi)
            x = x if lo is None else torch.where(x >= lo, x, lo)
            return x if hi is None else torch.where(x <= hi, x, hi)
        return func(*args, **kwargs)


def kinks(act: Activation) -> tuple[float, ...]:
    """Where σ has a kink besides 0 (the ends of HardTanh's interval, ±λ of SoftShrink); smooth
    activations are checked at 0."""
    if isinstance(act, HardTanh):
        return act.domain
    return (-act.lam, act.lam) if isinstance(act, SoftShrink) else ()


@all_acts
@pytest.mark.parametrize("inclusive", [False, True], ids=["torch", "inclusive-bounds"])
def test_bregman_autograd_at_kinks_is_sigma_minus_y(act, inclusive):
    """B_Ψ is C¹ in z with gradient σ(z) - y everywhere (PAPER_MATH §1), also at σ's kinks,
    whichever one-sided derivative torch gives clamp and relu there: formulas built from relu
    and clamp alone give autograd 0 at ReLU's kink, or σ(z) - y scaled by 1/a at leaky ReLU's."""
    y = samples_in_domain(act, 6, seed=7)
    for kink in (0.0, *kinks(act)):
        z = torch.full((6,), kink, dtype=F64, requires_grad=True)
        with InclusiveBounds() if inclusive else contextlib.nullcontext():
            (grad,) = torch.autograd.grad(act.bregman_elementwise(y, z).sum(), z)
        torch.testing.assert_close(grad, act(z.detach()) - y, atol=1e-12, rtol=0, msg=f"z = {kink}")


@all_acts
def test_psi_of_nan_is_nan(act):
    assert torch.isnan(act.psi(torch.tensor([math.nan, 0.0], dtype=F64))).tolist() == [True, False]


@all_acts
def test_bregman_is_zero_at_sigma_even_for_large_z(act, device):
    z = torch.cat([torch.linspace(-30, 30, 241, dtype=F64), torch.tensor([-100.0, 100.0])])
    z = z.reshape(1, -1).to(device)
    b = act.bregman_elementwise(act(z), z)
    assert b.abs().max().item() <= 1e-12
    assert act.bregman(act(z), z).abs().item() <= 1e-10


@all_acts
def test_bregman_dominates_half_squared_distance_to_sigma(act, device):
    y = samples_in_domain(act, 300, seed=7).reshape(3, 100).to(device)
    z = randn(3, 100, seed=8).to(device)
    b = act.bregman_elementwise(y, z)
    assert (b >= -1e-14).all()
    assert (b - 0.5 * (y - act(z)) ** 2 >= -1e-12).all()


@all_acts
def test_bregman_equals_moreau_envelope_form(act):
    y = samples_in_domain(act, 12, seed=9)
    z = randn(12, seed=10, scale=2.0)
    b = act.bregman_elementwise(y, z)
    for yi, zi, bi in zip(y.tolist(), z.tolist(), b.tolist()):
        want = 0.5 * (yi - zi) ** 2 + psi_table(act, yi) - envelope(act, zi)
        assert abs(bi - want) < 1e-7


@all_acts
def test_bregman_equals_fenchel_young_gap_of_eq4(act, device):
    y = samples_in_domain(act, 200, seed=11).reshape(2, 100).to(device)
    z = randn(2, 100, seed=12, scale=2.0).to(device)
    eq4 = 0.5 * y**2 + act.psi(y) + act.conj(z) - y * z
    torch.testing.assert_close(act.bregman_elementwise(y, z), eq4, atol=1e-12, rtol=0)


@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.2)], ids=repr)
def test_lemma1_conjugate_of_bregman_in_z(act):
    """sup_z <w, z> - B_Psi(y, z) = F(y + w) - F(y)."""
    y = samples_in_domain(act, 8, seed=13)
    w = randn(8, seed=14, scale=1.5)
    if isinstance(act, ReLU):
        w = torch.clamp(y + w, min=0.1) - y

    def F(u: float) -> float:
        return 0.5 * u * u + psi_table(act, u)

    for yi, wi in zip(y.tolist(), w.tolist()):
        yt = torch.tensor(yi, dtype=F64)

        def neg(z: float) -> float:
            return -(wi * z - act.bregman_elementwise(yt, torch.tensor(z, dtype=F64)).item())

        res = minimize_scalar(neg, bounds=(-50, 50), method="bounded", options={"xatol": 1e-12})
        assert abs(-res.fun - (F(yi + wi) - F(yi))) < 1e-7


@pytest.mark.parametrize("act", POSITIVELY_HOMOGENEOUS, ids=repr)
@pytest.mark.parametrize("s", [0.3, 2.5])
def test_bregman_is_positively_2_homogeneous(act, s):
    y = samples_in_domain(act, 50, seed=15).reshape(5, 10)
    z = randn(5, 10, seed=16)
    torch.testing.assert_close(act.bregman(s * y, s * z), s**2 * act.bregman(y, z),
                               rtol=1e-12, atol=1e-13)


@all_acts
def test_bregman_is_per_sample(act):
    y = samples_in_domain(act, 3 * 2 * 4 * 5, seed=17).reshape(3, 2, 4, 5)
    z = randn(3, 2, 4, 5, seed=18)
    b = act.bregman(y, z)
    assert b.shape == (3,)
    torch.testing.assert_close(b, act.bregman_elementwise(y, z).sum(dim=(1, 2, 3)))
    singles = torch.cat([act.bregman(y[i : i + 1], z[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(b, singles, atol=1e-14, rtol=1e-14)


@all_acts
def test_bregman_of_vouched_data_equals_the_checked_value(act):
    """y_in_domain=True skips the masking only: on data in dom Ψ (boundary points included where
    the domain is closed) it returns exactly the checked value, and a prox output qualifies."""
    y = samples_in_domain(act, 40, seed=19).reshape(4, 10)  # finite endpoints included
    z = 3.0 * randn(4, 10, seed=20)
    assert torch.equal(act.bregman(y, z, check=False, y_in_domain=True), act.bregman(y, z))
    u = act.prox(randn(4, 10, seed=21), 0.7)
    assert torch.equal(act.bregman(u, z, check=False, y_in_domain=True), act.bregman(u, z, check=False))


@all_acts
def test_bregman_and_grad_equal_bregman_and_bregman_grad_bit_for_bit(act):
    """The solvers' shared evaluation gives exactly the separate values: for vouched data, for
    unvouched data in dom Ψ, and (+inf, finite gradient) for unvouched data outside it."""
    y = samples_in_domain(act, 40, seed=22).reshape(4, 10)
    z = 3.0 * randn(4, 10, seed=23)
    for vouched in (True, False):
        b, g = act.bregman_and_grad(y, z, y_in_domain=vouched)
        assert torch.equal(b, act.bregman(y, z)) and torch.equal(g, act.bregman_grad(y, z))
    if act.domain != (-math.inf, math.inf):
        y_off = y.clone()
        y_off[1, 3] = act.domain[0] - 0.5
        b, g = act.bregman_and_grad(y_off, z)
        assert torch.equal(b, act.bregman(y_off, z, check=False)) and b[1] == math.inf
        assert torch.equal(g, act.bregman_grad(y_off, z))


def test_activation_needs_one_of_the_two_bregman_hooks():
    """`_bregman` and `_bregman_and_grad` default to each other: a subclass that implements
    neither is refused when it is defined (not with a recursion error at its first use), and
    one that implements only `_bregman` gets the gradient sigma(z) - y from the default."""
    hooks = {"_sigma": lambda self, z: torch.relu(z), "_psi": lambda self, u: 0.0 * u,
             "_conj": lambda self, z: 0.5 * torch.relu(z) ** 2, "_prox": lambda self, v, t: torch.relu(v)}
    with pytest.raises(TypeError, match="_bregman or _bregman_and_grad"):
        type("Neither", (Activation,), dict(hooks))
    only = type("OnlyBregman", (Activation,), {**hooks, "_bregman": lambda self, y, z: ReLU()._bregman(y, z)})()
    y, z = torch.tensor([[0.0, 1.0, 2.0]], dtype=F64), torch.tensor([[-1.0, 0.5, 3.0]], dtype=F64)
    b, g = only.bregman_and_grad(y, z)
    assert torch.equal(b, ReLU().bregman(y, z)) and torch.equal(g, torch.relu(z) - y)


def test_bregman_off_domain_is_inf_without_check():
    b = ReLU().bregman_elementwise(torch.tensor([-0.5, 0.5], dtype=F64),
                                   torch.tensor([1.0, 1.0], dtype=F64), check=False)
    assert b[0].item() == math.inf and b[1].item() == pytest.approx(0.125)


# ---- prox_{tPsi} (eq. (17)) -------------------------------------------------------------
@all_acts
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0, 3.0])
def test_prox_matches_numerical_argmin(act, t):
    v = randn(12, seed=19, scale=2.5)
    got = act.prox(v, t)
    for vi, gi in zip(v.tolist(), got.tolist()):
        u, _ = scalar_min(lambda u: 0.5 * (u - vi) ** 2 + t * psi_table(act, u), vi, abs(vi) + 3,
                          act)
        assert abs(gi - u) < 1e-6


@all_acts
def test_prox_with_t_one_is_sigma(act, device):
    v = torch.linspace(-40, 40, 801, dtype=F64, device=device)
    torch.testing.assert_close(act.prox(v, 1.0), act(v), atol=1e-14, rtol=0)


@all_acts
def test_prox_accepts_tensor_t(act):
    v = randn(6, seed=20)
    t = torch.tensor([0.1, 0.5, 1.0, 3.0, 0.2, 7.0], dtype=F64)
    want = torch.stack([act.prox(v[i : i + 1], float(t[i]))[0] for i in range(6)])
    torch.testing.assert_close(act.prox(v, t), want, atol=1e-14, rtol=0)


@all_acts
@pytest.mark.parametrize("t", [1e-6, 1e-2, 10.0, 1e6])
def test_prox_is_monotone_and_in_domain_for_extreme_arguments(act, t, device):
    v = torch.linspace(-1000, 1000, 2001, dtype=F64, device=device)
    u = act.prox(v, t)
    assert act.in_domain(u).all()
    assert (torch.diff(u) >= 0).all()


@pytest.mark.parametrize("act", [Sigmoid(), Tanh()], ids=repr)
@pytest.mark.parametrize("t", [1e-4, 0.1, 0.5, 3.0, 1e3])
def test_newton_prox_solves_its_equation(act, t):
    """(1 - t) u + t s^{-1}(u) = v with s^{-1} = logit (sigmoid) or artanh (tanh)."""
    v = torch.cat([torch.linspace(-50, 50, 501, dtype=F64), torch.linspace(-3, 3, 601, dtype=F64)])
    u = act.prox(v, t)
    inv = torch.logit if isinstance(act, Sigmoid) else torch.atanh
    lo, hi = act.domain
    interior = (u - lo > 1e-6) & (hi - u > 1e-6)
    assert interior.sum() > 100
    lhs = (1 - t) * u + t * inv(u)
    scale = 1 + v.abs() + t * inv(u).abs()
    assert ((lhs - v).abs() / scale)[interior].max().item() < 1e-11


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("act, bad", [(ReLU(), -0.1), (Sigmoid(), 1.5), (Tanh(), -2.0),
                                      (HardTanh(), 2.0)], ids=repr)
def test_bregman_rejects_y_outside_domain(act, bad):
    y = torch.tensor([[0.0, bad]], dtype=F64)
    with pytest.raises(ValueError, match=r"^y must lie in dom Ψ"):
        act.bregman(y, torch.zeros_like(y))


def test_check_domain_message_counts_and_reports_extreme():
    y = torch.tensor([[-0.12, -0.1, -0.05, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"data must lie in dom Ψ = \[0, inf\) of ReLU: "
                                         r"3 entries are < 0 \(min -0.12\)"):
        ReLU().check_domain(y, name="data")
    ReLU().check_domain(ReLU().project_domain(y), name="data")


@pytest.mark.parametrize("which", ["y", "z"])
def test_bregman_rejects_nan(which):
    y, z = torch.full((2, 3), 0.5, dtype=F64), torch.zeros(2, 3, dtype=F64)
    (y if which == "y" else z)[1, 2] = math.nan
    with pytest.raises(ValueError, match=rf"^{which} contains NaN or infinite entries \(1 of 6\)"):
        Sigmoid().bregman(y, z)


def test_bregman_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"y: \(2, 3\) and z: \(2, 4\)"):
        Identity().bregman(torch.zeros(2, 3, dtype=F64), torch.zeros(2, 4, dtype=F64))


def test_integer_tensors_raise_type_error():
    with pytest.raises(TypeError, match="y must be a floating-point"):
        ReLU().bregman(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="z must be a floating-point"):
        ReLU()(torch.arange(3))


@pytest.mark.parametrize("t", [0.0, -1.0, math.nan, math.inf, torch.tensor([0.5, -0.1]),
                               torch.tensor([0.5, math.inf]), torch.tensor([0.5, 0.0], dtype=F64),
                               torch.zeros(2, dtype=F64), torch.tensor(0.0, dtype=F64)], ids=str)
@pytest.mark.parametrize("act", [Sigmoid(), Tanh(), SoftShrink(0.5)], ids=repr)
def test_prox_rejects_non_positive_or_infinite_t(act, t):
    """prox_{tΨ} needs t > 0 and finite in every entry: a tensor t holding a 0 is rejected like
    the number 0 (t = 0 is no proximal step; the Newton solve of sigmoid/tanh divides by t)."""
    with pytest.raises(ValueError, match="t must be finite and > 0, got"):
        act.prox(torch.zeros(2, dtype=F64), t)


@pytest.mark.parametrize("make, pattern", [
    (lambda: LeakyReLU(0.0), r"slope must lie in \(0, 1\]"),
    (lambda: LeakyReLU(1.5), r"slope must lie in \(0, 1\]"),
    (lambda: SoftShrink(-0.1), "lam must be finite and >= 0"),
    (lambda: SoftShrink(math.inf), "lam must be finite and >= 0"),
], ids=["LeakyReLU(0)", "LeakyReLU(1.5)", "SoftShrink(-0.1)", "SoftShrink(inf)"])
def test_activation_parameters_outside_their_range_are_rejected(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("make", [lambda: LeakyReLU(True), lambda: SoftShrink(False), lambda: LeakyReLU("0.1")],
                         ids=["LeakyReLU(True)", "SoftShrink(False)", "LeakyReLU('0.1')"])
def test_activation_parameters_must_be_real_numbers(make):
    """LeakyReLU(True) reads like nn.LeakyReLU's ``inplace``; as the number 1 it would be the
    identity, silently. A bool or a string is a TypeError."""
    with pytest.raises(TypeError, match="must be a real number, got (bool|str)"):
        make()


def test_torch_modules_with_tensor_parameters_are_lifted():
    """nn.Softshrink and nn.LeakyReLU run with a 0-dim tensor parameter; activation_of reads it
    as the number it holds."""
    assert activation_of(nn.Softshrink(torch.tensor(0.25))) == SoftShrink(0.25)
    assert activation_of(nn.LeakyReLU(torch.tensor(0.25))) == LeakyReLU(0.25)


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_in_domain_is_false_for_nan_and_infinite_entries(act):
    """in_domain means finite and in dom Ψ: even where dom Ψ is unbounded (ReLU, identity),
    ±inf and NaN are not data."""
    y = torch.tensor([0.5, math.nan, math.inf, -math.inf], dtype=F64)
    assert act.in_domain(y).tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    "module, error, pattern",
    [
        (nn.MaxPool2d(2), TypeError, r"MaxPool2d is not a proximal map.*nn\.AvgPool2d"),
        (nn.GELU(), TypeError, r"GELU is not a proximal map"),
        (nn.SiLU(), TypeError, r"SiLU is not a proximal map"),
        (nn.Linear(2, 2), TypeError, r"Linear is an affine map, not an activation"),
        (nn.LayerNorm(2), TypeError, r"LayerNorm is not an activation, and not an affine map"),
        (nn.LeakyReLU(-0.1), ValueError, r"negative_slope .*\(0, 1\].*-0.1"),
    ],
    ids=lambda p: type(p).__name__ if isinstance(p, nn.Module) else None,
)
def test_activation_of_rejects_non_proximal_or_unsupported(module, error, pattern):
    with pytest.raises(error, match=pattern):
        activation_of(module)


def test_hardtanh_takes_any_interval_and_relu6_is_its_0_6_case():
    relu6 = activation_of(nn.ReLU6())
    assert relu6 == HardTanh(0.0, 6.0) and relu6.domain == (0.0, 6.0)
    assert repr(relu6) == "HardTanh(min_val=0.0, max_val=6.0)" and repr(HardTanh(-1, 1)) == "HardTanh()"
    z = torch.linspace(-3.0, 9.0, 25, dtype=F64)
    assert torch.equal(relu6(z), nn.ReLU6()(z))
    assert relu6.conj(torch.tensor([-math.inf, math.inf], dtype=F64)).tolist() == [0.0, math.inf]  # no 0·inf
    for bad, error in (((1.0, 1.0), ValueError), ((2.0, -2.0), ValueError), ((0.0, math.inf), ValueError),
                       ((False, 1.0), TypeError)):
        with pytest.raises(error, match="min_val|max_val"):
            HardTanh(*bad)


def test_activation_of_returns_activation_instances_unchanged():
    act = LeakyReLU(0.3)
    assert activation_of(act) is act
    assert repr(act) == "LeakyReLU(slope=0.3)"
    with pytest.raises(ValueError, match="slope"):
        LeakyReLU(0.0)


# ---- misc --------------------------------------------------------------------------------
@all_acts
def test_lipschitz_constant_of_grad_psi(act):
    if act.lipschitz_grad_psi is None:
        assert not isinstance(act, (Identity, LeakyReLU))
        return
    u = torch.linspace(-3, 3, 601, dtype=F64).requires_grad_(True)
    psi = act.psi(u)  # Psi = 0 (Identity) carries no graph
    d = torch.autograd.grad(psi.sum(), u)[0] if psi.requires_grad else torch.zeros_like(u)
    ratio = (torch.diff(d) / torch.diff(u.detach())).abs().max().item()
    assert ratio == pytest.approx(act.lipschitz_grad_psi, abs=1e-12)


@all_acts
def test_float32_inputs_give_float32_results(act):
    z = randn(4, 6, seed=21).float()
    y = act(z)
    outs = [y, act.psi(y), act.conj(z), act.bregman(y, z), act.bregman_grad(y, z),
            act.prox(z, 0.3), act.project_domain(z)]
    assert all(o.dtype == torch.float32 for o in outs)
    assert act.bregman(y, z).abs().max().item() < 1e-5
    torch.testing.assert_close(act.prox(z, 0.3), act.prox(z.double(), 0.3).float(),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("act", [Sigmoid(), Tanh()], ids=repr)
@pytest.mark.parametrize("t", [1e-8, 1e-6, 1e6, 1e8])
def test_newton_prox_solves_its_equation_at_the_ends_of_its_range(act, t):
    """prox_{tΨ}(v) = u solves (1 - t)u + t σ^{-1}(u) = v to rounding over the whole documented
    range t in [1e-8, 1e8] (the comment on ``_NEWTON_ITERS``), not only at moderate t."""
    v = torch.cat([torch.linspace(-50, 50, 501, dtype=F64),
                   torch.linspace(-3, 3, 601, dtype=F64)])
    u = act.prox(v, t)
    inverse = torch.logit if isinstance(act, Sigmoid) else torch.atanh
    lo, hi = act.domain
    interior = (u - lo > 1e-6) & (hi - u > 1e-6)
    assert interior.sum() > 100
    residual = ((1 - t) * u + t * inverse(u) - v).abs() / (1 + v.abs() + t * inverse(u).abs())
    assert residual[interior].max().item() < 1e-11


def test_sigmoid_conjugate_is_softplus_to_float64_resolution():
    """F*(z) = log(1 + e^z): F*(z) - F*(-z) = z, and F*(z) = z + log1p(e^{-z}), to float64
    rounding also for 20 < z < 40 (where a float32-sized softplus threshold errs by 2e-9)."""
    z = torch.linspace(0.0, 40.0, 4001, dtype=F64)
    act = Sigmoid()
    torch.testing.assert_close(act.conj(z) - act.conj(-z), z, rtol=0, atol=1e-13)
    torch.testing.assert_close(act.conj(z), z + torch.log1p(torch.exp(-z)), rtol=1e-15, atol=1e-15)



# ---- from a mutation audit ----------------------------------------------------------
@pytest.mark.parametrize("act, z, projected", [
    (HardTanh(0.0, 6.0), [-1.0, 3.0, 7.0], [0.0, 3.0, 6.0]),
    (HardTanh(), [-2.0, 0.5, 2.0], [-1.0, 0.5, 1.0]),
    (Sigmoid(), [-0.5, 0.5, 1.5], [0.0, 0.5, 1.0]),
    (Tanh(), [-1.5, 0.25, 1.5], [-1.0, 0.25, 1.0]),
    (ReLU(), [-1.0, 2.0, 1e9], [0.0, 2.0, 1e9]),
], ids=repr)
def test_project_domain_is_the_projection_onto_the_closed_domain(act, z, projected):
    """project_domain clamps to [a, b] from both sides (the closure of dom Ψ), and the result
    lies in the domain."""
    out = act.project_domain(torch.tensor([z], dtype=F64))
    assert out.tolist() == [projected]
    assert bool(act.in_domain(out).all())


@pytest.mark.parametrize("lo, hi", [(-3.0, -0.5), (-2.0, 0.5), (0.25, 0.75)])
def test_hardtanh_of_any_interval_keeps_its_ends(lo, hi):
    """nn.Hardtanh(a, b) lifts to HardTanh(a, b) for intervals other than the default's and
    ReLU6's (wholly negative, ending below 1, shorter than 1): domain [a, b] and prox =
    clamp(z, a, b)."""
    act = activation_of(nn.Hardtanh(lo, hi))
    assert act.domain == (lo, hi)
    z = torch.tensor([[lo - 1.0, 0.5 * (lo + hi), hi + 1.0]], dtype=F64)
    assert act(z).tolist() == [[lo, 0.5 * (lo + hi), hi]]
