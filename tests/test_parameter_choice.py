"""lbreg.parameter_choice: discrepancy principle, a-priori rule and grid search on small random nets."""

import math

import numpy as np
import pytest
import torch

from lbreg.activations import Identity, ReLU
from lbreg.metrics import psnr
from conftest import image_data, perceptron
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.parameter_choice import (
    MAX_ALPHAS,
    a_priori,
    a_priori_alpha,
    data_residual,
    discrepancy_on_grid,
    discrepancy_principle,
    geometric_alphas,
    grid_search,
    make_solve,
    restrict_grid,
)
from lbreg.regularizers import SquaredNorm, symmetric_distance
from lbreg.solvers import Result, admm, pdhg
from lbreg.theory import example1_admissible, source_condition_instance

DTYPE = torch.float64
SHAPE = (1, 6, 6)
PDHG = {"max_iter": 300, "tol": 1e-6}  # a budget for the runs that only exercise the plumbing


def _linear_net(m: int = 20, seed: int = 0) -> LiftedNetwork:
    """x -> Wx + b on 6x6 images (an affine layer: the residual is sqrt(2 B_Psi))."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, 36, generator=g, dtype=DTYPE) / 6.0
    b = 0.1 * torch.randn(m, generator=g, dtype=DTYPE)
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b, in_shape=SHAPE), Identity())])


def _tikhonov(net: LiftedNetwork):
    """Exact minimiser of 1/2||Wx + b - y||^2 + alpha/2 ||x||^2 as a solve(y, alpha, x0) callable.

    Exact solves make the properties of minimisers (monotone data term) hold to rounding.
    """
    affine = net.layers[0].affine
    W = torch.stack([affine.linear(e.reshape(1, *SHAPE))[0] for e in torch.eye(36, dtype=DTYPE)], 1)
    b = affine.forward(torch.zeros(1, *SHAPE, dtype=DTYPE))[0]

    def solve(y, alpha, x0):
        lhs = W.T @ W + alpha[:, None, None] * torch.eye(36, dtype=DTYPE)
        x = torch.linalg.solve(lhs, ((y - b) @ W)[..., None])[..., 0].reshape(-1, *SHAPE)
        n = y.shape[0]
        return Result(x=x, aux=[], dual=None, iterations=torch.zeros(n, dtype=torch.int64),
                      converged=torch.ones(n, dtype=torch.bool), message="closed form",
                      history={}, alpha=alpha.cpu(), params={})

    return solve


def _two_layer_net(seed: int = 0) -> LiftedNetwork:
    """ReLU layer 36 -> 24, then an affine layer 24 -> 12 (the CNN's structure, in small)."""
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(24, 36, generator=g, dtype=DTYPE) / 6.0
    b1 = 0.2 + 0.1 * torch.randn(24, generator=g, dtype=DTYPE)
    W2 = torch.randn(12, 24, generator=g, dtype=DTYPE) / math.sqrt(24)
    b2 = 0.1 * torch.randn(12, generator=g, dtype=DTYPE)
    return LiftedNetwork.from_layers([
        Layer(AffineMap.from_matrix(W1, b1, in_shape=SHAPE), ReLU()),
        Layer(AffineMap.from_matrix(W2, b2), Identity()),
    ])


def _data(net: LiftedNetwork, stds: list[float], seed: int = 1):
    """Piecewise-constant images, their exact data and noisy data with delta = ||y_delta - y||."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(stds), *SHAPE, dtype=DTYPE)
    for k in range(len(stds)):
        i, j = torch.randint(0, 3, (2,), generator=g).tolist()
        x[k, 0, i:i + 3, j:j + 3] = 1.0
    y = net.forward(x)
    noise = torch.randn(y.shape, generator=g, dtype=DTYPE)
    y_delta = y + torch.tensor(stds, dtype=DTYPE)[:, None] * noise
    return x, y_delta, (y_delta - y).norm(dim=1)


# --------------------------------------------------------------------------- discrepancy principle


def test_geometric_alphas_decrease_from_alpha_max_to_alpha_min():
    a = geometric_alphas(1e-2, 1e-4, 0.5)
    assert float(a[0]) == 1e-2 and float(a[-1]) == 1e-4
    assert bool((a[1:] < a[:-1]).all())
    assert torch.allclose(a[1:-1] / a[:-2], torch.tensor(0.5, dtype=torch.float64))
    assert geometric_alphas(1.0, 1.0, 0.5).tolist() == [1.0]


def test_data_residual_follows_the_data_dtype_like_the_solvers():
    """A float32 network with float64 data (the solvers cast the network to the data): the
    residual is computed in float64, equal to that of the network cast by hand."""
    net64 = _linear_net()
    net32 = net64.to(dtype=torch.float32)
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    y = net64.forward(x) + 0.01
    res = data_residual(net32, x, y)
    assert res.dtype == DTYPE
    torch.testing.assert_close(res, data_residual(net32.to(dtype=DTYPE), x, y), rtol=0, atol=0)


@pytest.mark.parametrize("tau", [1.0, 1.5])
def test_discrepancy_alpha_has_residual_in_the_band_of_tau_delta(tau):
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.05, 0.1, 0.2])
    band = 0.05
    choice = discrepancy_principle(net, y_delta, delta, solver=_tikhonov(net), tau=tau, alpha_max=10.0,
                                   alpha_min=1e-8, factor=0.25, band=band, max_refine=12)
    assert choice.status == ["band"] * 3
    residual = data_residual(net, choice.result.x, y_delta)
    assert torch.allclose(residual, choice.trail["residual"].gather(0, choice.index[None])[0])
    target = tau * delta
    assert bool((residual <= target).all())
    assert bool((residual >= (1 - band) * target).all())
    assert torch.allclose(choice.target, target)
    assert torch.allclose(choice.result.alpha, choice.alpha)  # the result was solved at the chosen alpha


def test_discrepancy_residual_is_monotone_in_alpha_on_the_trail():
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.05, 0.2])
    choice = discrepancy_principle(net, y_delta, delta, solver=_tikhonov(net), alpha_max=10.0,
                                   alpha_min=1e-8, factor=0.25, max_refine=6)
    for b in range(2):
        tried = ~torch.isnan(choice.trail["alpha"][:, b])
        alphas, residuals = choice.trail["alpha"][tried, b], choice.trail["residual"][tried, b]
        assert alphas.numel() >= 4
        order = alphas.argsort()
        r = residuals[order]
        assert bool((r[1:] >= r[:-1]).all()), (alphas[order], r)
        # every alpha above the chosen one misses tau*delta; the chosen one meets it
        chosen = choice.alpha[b]
        assert bool((residuals[alphas > chosen] > delta[b]).all())
        assert float(residuals[alphas == chosen][0]) <= float(delta[b])


def test_discrepancy_samples_stop_independently_and_match_single_runs():
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.01, 0.3])
    kwargs = {"solver": "pdhg", "alpha_max": 1.0, "alpha_min": 1e-4, "factor": 0.1, "max_refine": 2,
              "max_iter": 100}
    both = discrepancy_principle(net, y_delta, delta, **kwargs)
    tried = (~torch.isnan(both.trail["alpha"])).sum(0)
    assert tried[0] > tried[1]  # the low-noise sample walks further down the sequence
    assert float(both.alpha[0]) < float(both.alpha[1])
    for b in range(2):
        alone = discrepancy_principle(net, y_delta[b:b + 1], delta[b:b + 1], **kwargs)
        assert float(alone.alpha[0]) == pytest.approx(float(both.alpha[b]), rel=1e-12)
        assert torch.allclose(alone.result.x[0], both.result.x[b], atol=1e-10)
        assert int(alone.result.iterations[0]) == int(both.result.iterations[b])


def test_discrepancy_principle_with_lifted_cd_on_a_two_layer_net():
    net = _two_layer_net()
    _, y_delta, delta = _data(net, [0.05, 0.1])
    choice = discrepancy_principle(net, y_delta, delta, solver="lifted_cd", alpha_max=1e-1,
                                   alpha_min=1e-4, factor=0.1, max_refine=2, max_iter=150)
    assert choice.result.x.shape == (2, *SHAPE) and len(choice.result.aux) == 1
    assert all(s in ("band", "fits") for s in choice.status)
    residual = data_residual(net, choice.result.x, y_delta)
    assert bool((residual <= delta).all())
    # the residual is N(x_alpha) - y_delta through the forward states, eq. (1)
    assert torch.allclose(residual, (net.forward(choice.result.x) - y_delta).norm(dim=1))


def test_discrepancy_with_zero_noise_ends_at_alpha_min():
    net = _linear_net()
    _, y_delta, _ = _data(net, [0.0])
    choice = discrepancy_principle(net, y_delta, 0.0, solver="pdhg", alpha_max=1e-2, alpha_min=1e-3,
                                   factor=0.5, max_iter=200)
    assert choice.status == ["alpha_min"] and float(choice.alpha[0]) == pytest.approx(1e-3)


def test_discrepancy_accepts_a_solve_callable():
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.1])
    calls, exact = [], _tikhonov(net)

    def solve(y, alpha, x0):
        calls.append((alpha.clone(), x0 is None))
        return exact(y, alpha, x0)

    choice = discrepancy_principle(net, y_delta, delta, solver=solve, alpha_max=10.0, alpha_min=1e-8,
                                   factor=0.1, max_refine=0)
    assert calls[0][1] and not any(cold for _, cold in calls[1:])  # warm starts after the first
    assert [float(a[0]) for a, _ in calls] == choice.trail["alpha"][:, 0].tolist()


# --------------------------------------------------------------------------- a-priori rule


def test_a_priori_alpha_matches_sqrt2_delta_over_v_norm():
    delta = torch.tensor([0.0, 0.1, 0.4], dtype=torch.float64)
    assert torch.allclose(a_priori_alpha(delta, 0.5), math.sqrt(2) * delta / 0.5)
    assert float(a_priori_alpha(0.3, 2.0, c=0.5)) == pytest.approx(0.3 * math.sqrt(0.75) / 2.0)


def test_a_priori_solves_at_the_alpha_of_its_constant_c():
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.05, 0.2])
    choice = a_priori(net, y_delta, delta, 0.5, c=0.5, solver="pdhg", max_iter=5)
    expected = a_priori_alpha(delta, 0.5, c=0.5)
    assert not torch.allclose(expected, a_priori_alpha(delta, 0.5))
    torch.testing.assert_close(choice.alpha, expected.to(choice.alpha.dtype))
    torch.testing.assert_close(choice.result.alpha, choice.alpha.cpu())


def test_a_priori_rule_attains_the_rate_of_example_1():
    inst = source_condition_instance(40, 10, ReLU(), [0.01, 0.03, 0.1], 0, v_norm=0.3)
    choice = a_priori(inst.network(), inst.y_delta, inst.delta, inst.v_norm, solver="pdhg",
                      reg=SquaredNorm(), max_iter=20_000, tol=1e-12)
    assert choice.result.success
    expected = math.sqrt(2) * inst.delta / inst.v_norm
    assert torch.allclose(choice.alpha, expected) and torch.allclose(choice.result.alpha, expected)
    assert bool(example1_admissible(inst.y_delta, inst.v_dag, choice.alpha).all())
    x = choice.result.x
    d_symm = symmetric_distance(SquaredNorm(), x, inst.x_dag, x, inst.x_dag)
    assert bool((d_symm <= 2 * math.sqrt(2) * inst.v_norm * inst.delta).all())


# --------------------------------------------------------------------------- grid search


def test_grid_search_returns_the_argmax_of_the_metric():
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.2, 0.4])
    grid = [1e-4, 1e-3, 1e-2, 1e-1]
    choice = grid_search(net, y_delta, grid, x_true, solver="pdhg", **PDHG)
    metric = choice.trail["metric"]
    assert len(set(choice.index.tolist())) > 1  # the samples prefer different alphas
    assert metric.shape == (4, 3)
    assert torch.equal(choice.index, metric.argmax(0))
    assert torch.allclose(choice.alpha, torch.tensor(grid, dtype=DTYPE)[metric.argmax(0)])
    assert torch.allclose(psnr(choice.result.x, x_true), metric.max(0).values)
    # each trail entry is the PSNR of that alpha's own solve
    for g, a in enumerate(grid):
        alone = pdhg(net, y_delta, a, **PDHG)
        assert torch.allclose(psnr(alone.x, x_true), metric[g], atol=1e-8)
    # minimising a distance instead picks the argmin
    dist = grid_search(net, y_delta, grid, x_true, solver="pdhg",
                       metric=lambda x, r: (x - r).flatten(1).norm(dim=1), maximize=False, **PDHG)
    assert torch.equal(dist.index, dist.trail["metric"].argmin(0))
    assert torch.equal(dist.index, choice.index)  # PSNR is monotone in the l2 error


def test_the_rules_take_admm_by_name_and_it_solves_each_grid_value_as_alone():
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.2])
    grid = [1e-3, 1e-2, 1e-1]
    kw = {"tol": 1e-9, "max_iter": 3000}
    choice = grid_search(net, y_delta, grid, x_true, solver="admm", **kw)
    for g, a in enumerate(grid):
        alone = admm(net, y_delta, a, **kw)
        assert torch.allclose(psnr(alone.x, x_true), choice.trail["metric"][g], atol=1e-6)
    # the same minimisers as pdhg's: the two solvers agree on the choice
    assert torch.equal(choice.index, grid_search(net, y_delta, grid, x_true, solver="pdhg", max_iter=20_000,
                                                 tol=1e-9).index)
    dp = discrepancy_principle(net, y_delta, 0.2 * torch.ones(2, dtype=DTYPE), solver="admm",
                               alpha_max=1e-1, alpha_min=1e-3, **kw)
    assert bool(dp.result.converged.all())


def test_grid_search_in_chunks_equals_one_batch():
    net = _two_layer_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.1])
    grid = torch.tensor([1e-3, 1e-2, 1e-1])
    one = grid_search(net, y_delta, grid, x_true, max_iter=50)
    chunked = grid_search(net, y_delta, grid, x_true, max_iter=50, batch_size=4)
    assert torch.allclose(one.trail["metric"], chunked.trail["metric"])
    assert torch.allclose(one.solves.x, chunked.solves.x)
    assert one.solves.x.shape == (6, *SHAPE) and torch.equal(one.index, chunked.index)
    assert one.solves.history.keys() == chunked.solves.history.keys()  # once 'time' only unchunked


@pytest.mark.parametrize("tau", [1.0, 1.5])
def test_discrepancy_on_grid_picks_the_largest_fitting_alpha(tau):
    """The largest grid value with residual <= tau delta ("fits"); where even the largest grid
    value fits (a third sample with a large delta), status "alpha_max"."""
    net = _linear_net()
    x_true, y_delta, delta = _data(net, [0.05, 0.2, 0.1])
    delta[2] = 1e3
    grid = torch.logspace(-6, 1, 15)
    searched = grid_search(net, y_delta, grid, x_true, solver=_tikhonov(net))
    choice = discrepancy_on_grid(searched, delta, tau=tau)
    for b in range(3):
        fits = searched.trail["residual"][:, b] <= tau * delta[b]
        assert float(choice.alpha[b]) == pytest.approx(float(grid[fits].max()))
        assert torch.allclose(choice.result.x[b], searched.solves.x[choice.index[b] * 3 + b])
    assert choice.status == ["fits", "fits", "alpha_max"]
    torch.testing.assert_close(choice.target, (tau * delta).to(choice.target.dtype))


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kwargs, name", [
    ({"tau": 0.9}, "tau"),
    ({"delta": -0.1}, "delta"),
    ({"alpha_max": 0.0}, "alpha_max"),
    ({"alpha_min": -1e-3}, "alpha_min"),
    ({"factor": 1.5}, "factor"),
    ({"factor": 1.0}, "factor"),
    ({"band": 1.0}, "band"),
    ({"max_refine": -1}, "max_refine"),
])
def test_discrepancy_principle_rejects_bad_inputs(kwargs, name):
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.1])
    args = {"delta": delta, **kwargs}
    with pytest.raises(ValueError, match=name):
        discrepancy_principle(net, y_delta, solver="pdhg", max_iter=5, **args)


@pytest.mark.parametrize("alphas", [[], [1e-3, 0.0], [-1e-2]])
def test_grid_search_rejects_empty_or_non_positive_grids(alphas):
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.1])
    with pytest.raises(ValueError, match="alphas"):
        grid_search(net, y_delta, alphas, x_true, solver="pdhg", max_iter=5)


def test_a_priori_rejects_bad_inputs():
    with pytest.raises(ValueError, match="delta"):
        a_priori_alpha(-0.1, 1.0)
    with pytest.raises(ValueError, match="v_norm"):
        a_priori_alpha(0.1, 0.0)
    net = _linear_net()
    _, y_delta, _ = _data(net, [0.0])
    with pytest.raises(ValueError, match="delta"):
        a_priori(net, y_delta, 0.0, 1.0, solver="pdhg")
    with pytest.raises(ValueError, match="tau"):
        discrepancy_on_grid(grid_search(net, y_delta, [1e-2], torch.zeros(1, *SHAPE, dtype=DTYPE),
                                        solver="pdhg", max_iter=5), 0.1, tau=0.5)
    with pytest.raises(ValueError, match="solver"):
        make_solve(net, "admm-typo")
    y2 = torch.cat([y_delta, y_delta])
    with pytest.raises(ValueError, match=r"v_norm must be a number or hold one value per sample \(2\)"):
        a_priori(net, y2, 0.1, torch.ones(3), solver="pdhg")


def test_integer_options_take_numpy_integers():
    """max_refine and batch_size are integers in any integer type (numpy's too); a float is a
    TypeError naming the option."""
    net = _linear_net()
    x_true, y_delta, delta = _data(net, [0.1])
    exact = _tikhonov(net)
    plain = discrepancy_principle(net, y_delta, delta, solver=exact, max_refine=2)
    numpy_int = discrepancy_principle(net, y_delta, delta, solver=exact, max_refine=np.int64(2))
    assert torch.equal(plain.alpha, numpy_int.alpha)
    grid = grid_search(net, y_delta, [1e-2, 1e-1], x_true, solver=exact, batch_size=np.int32(1))
    assert torch.equal(grid.alpha, grid_search(net, y_delta, [1e-2, 1e-1], x_true, solver=exact).alpha)
    with pytest.raises(TypeError, match="max_refine must be an integer"):
        discrepancy_principle(net, y_delta, delta, solver=exact, max_refine=2.0)


def test_rules_leave_the_start_to_the_rule_or_to_a_callable():
    """x0 is the rules' business (zero start, then warm starts): passing it as a solver option
    is a TypeError naming it, and a callable that replaces None supplies another start."""
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.1])
    with pytest.raises(TypeError, match="x0 is chosen by the rule"):
        discrepancy_principle(net, y_delta, delta, solver="pdhg", x0=torch.zeros(1, *SHAPE, dtype=DTYPE))
    starts = []

    def solve(y, alpha, x0):
        start = y.new_full((len(y), *net.input_shape), 0.5) if x0 is None else x0
        starts.append(start.clone())
        return pdhg(net, y, alpha, x0=start, max_iter=0)

    a_priori(net, y_delta, delta, 1.0, solver=solve)
    assert len(starts) == 1 and torch.equal(starts[0], torch.full((1, *SHAPE), 0.5, dtype=DTYPE))


def test_restrict_grid_is_the_grid_search_on_the_sub_grid():
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.2, 0.4])
    grid = torch.logspace(-6, 1, 15)
    full = grid_search(net, y_delta, grid, x_true, solver=_tikhonov(net))
    sub = grid_search(net, y_delta, grid[grid <= 1e-3], x_true, solver=_tikhonov(net))
    restricted = restrict_grid(full, alpha_max=1e-3)
    assert torch.allclose(restricted.alpha, sub.alpha)
    assert torch.allclose(restricted.result.x, sub.result.x)
    assert restricted.status == sub.status
    with pytest.raises(ValueError, match="alpha_min"):
        restrict_grid(full, alpha_min=100.0)


def test_discrepancy_refinement_bisects_in_log_alpha():
    """Step 2 of `discrepancy_principle`: the first refinement tries sqrt(alpha_k alpha_{k-1}),
    the geometric mean of the bracket (the last descent value, which fits, and the one before)."""
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.05, 0.2])
    choice = discrepancy_principle(net, y_delta, delta, solver=_tikhonov(net), alpha_max=10.0,
                                   alpha_min=1e-8, factor=0.1, band=0.0, max_refine=1)
    for s in range(2):
        tried = choice.trail["alpha"][:, s]
        tried = tried[~torch.isnan(tried)]
        assert tried.numel() >= 3
        fit, miss = float(tried[-2]), float(tried[-3])
        assert float(tried[-1]) == pytest.approx(math.sqrt(fit * miss), rel=1e-12)


def test_discrepancy_on_grid_returns_the_smallest_alpha_when_nothing_fits():
    """delta = 0: no grid value fits, so the rule returns the grid's smallest alpha with status
    "alpha_min"."""
    net = _linear_net()
    x, y_delta, _ = _data(net, [0.05, 0.2])
    grid = torch.logspace(-4, 0, 5, dtype=DTYPE)
    choice = discrepancy_on_grid(grid_search(net, y_delta, grid, x, solver=_tikhonov(net)), 0.0)
    assert choice.status == ["alpha_min", "alpha_min"]
    assert torch.equal(choice.alpha, torch.full((2,), 1e-4, dtype=DTYPE))


@pytest.mark.parametrize("alpha_max, alpha_min, factor, k", [
    (1e-2, 1e-4, 0.1, 2), (1.0, 1e-6, 0.1, 6), (0.3, 0.3 * 0.2**3, 0.2, 3), (1.0, 0.125, 0.5, 3),
])
def test_geometric_alphas_spanning_whole_factors_has_no_extra_point(alpha_max, alpha_min, factor, k):
    """alpha_min = alpha_max q^k: the sequence is alpha_max q^0, ..., q^k, k + 1 values with ratio
    q throughout (the rounding of q^k must not add a near-duplicate of alpha_min)."""
    a = geometric_alphas(alpha_max, alpha_min, factor)
    assert a.numel() == k + 1
    assert float(a[0]) == alpha_max and float(a[-1]) == alpha_min
    torch.testing.assert_close(a[1:] / a[:-1], torch.full((k,), factor, dtype=torch.float64),
                               rtol=1e-12, atol=0)


def test_geometric_alphas_rejects_factor_one():
    """q ∈ (0, 1): q = 1 never decreases (and log q = 0), so it is a ValueError naming factor."""
    with pytest.raises(ValueError, match="factor"):
        geometric_alphas(1e-2, 1e-4, 1.0)


def test_geometric_alphas_refuses_a_sequence_longer_than_max_alphas():
    """A factor near 1 would build (and the discrepancy descent solve) an unbounded number of
    values (1 - 1e-12 from 1e-2 to 1e-4: 4.6e12, all memory): a ValueError naming factor. The
    longest admitted sequence still builds."""
    assert MAX_ALPHAS == 1_000
    q = 0.01 ** (1 / (MAX_ALPHAS - 1))  # 1e-2 ... 1e-4 in exactly MAX_ALPHAS values
    assert geometric_alphas(1e-2, 1e-4, q * (1 - 1e-12)).numel() == MAX_ALPHAS
    for factor in (q * (1 + 1e-9), 1 - 1e-12):
        with pytest.raises(ValueError, match="factor=.* more than MAX_ALPHAS=1000"):
            geometric_alphas(1e-2, 1e-4, factor)
    with pytest.raises(ValueError, match="MAX_ALPHAS"):
        discrepancy_principle(_linear_net(), torch.zeros(1, 20, dtype=DTYPE), 0.1, factor=1 - 1e-12)


def test_discrepancy_counts_a_residual_equal_to_tau_delta_as_fitting():
    """The rule is ||N(x_α) − y^δ|| <= τδ: with δ set to the residual at α_max itself (τ = 1),
    α_max already fits, so the rule stops there with status "alpha_max"."""
    net = _linear_net()
    _, y_delta, _ = _data(net, [0.1, 0.2])
    solve = _tikhonov(net)
    alpha_max = 1e-2
    x = solve(y_delta, torch.full((2,), alpha_max, dtype=DTYPE), None).x
    delta = data_residual(net, x, y_delta)
    choice = discrepancy_principle(net, y_delta, delta, solver=solve, alpha_max=alpha_max,
                                   alpha_min=1e-4, factor=0.5)
    assert choice.status == ["alpha_max"] * 2
    assert choice.alpha.tolist() == [alpha_max] * 2


def test_discrepancy_refinement_is_warm_started_from_the_larger_alpha():
    """Step 2: each bisection solve starts from the solution at the bracket's larger α (the
    smallest α tried so far whose residual misses τδ), when warm_start is on."""
    net = _linear_net()
    _, y_delta, delta = _data(net, [0.1])
    exact, calls = _tikhonov(net), []

    def solve(y, alpha, x0):
        calls.append((float(alpha[0]), None if x0 is None else x0.clone()))
        return exact(y, alpha, x0)

    sequence = geometric_alphas(10.0, 1e-8, 0.1).tolist()
    discrepancy_principle(net, y_delta, delta, solver=solve, alpha_max=10.0, alpha_min=1e-8,
                          factor=0.1, band=0.0, max_refine=3)
    refinements = [i for i, (a, _) in enumerate(calls) if a not in sequence]
    assert len(refinements) == 3

    def residual(a):
        return float(data_residual(net, exact(y_delta, torch.tensor([a], dtype=DTYPE), None).x, y_delta)[0])

    for i in refinements:
        a, x0 = calls[i]
        misses = [b for b, _ in calls[:i] if b > a and residual(b) > float(delta[0])]
        hi = min(misses)
        assert x0 is not None
        torch.testing.assert_close(x0, exact(y_delta, torch.tensor([hi], dtype=DTYPE), None).x,
                                   rtol=0, atol=1e-12)


def test_restrict_grid_bounds_are_inclusive():
    """The sub-grid [α_min, α_max] is closed: bounds equal to a grid value keep that value, so
    [α_g, α_g] restricts the search to α_g alone."""
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.2])
    grid = torch.logspace(-6, 1, 8, dtype=DTYPE)
    full = grid_search(net, y_delta, grid, x_true, solver=_tikhonov(net))
    for g in grid.tolist():
        sub = restrict_grid(full, alpha_min=g, alpha_max=g)
        assert sub.alpha.tolist() == [g, g] and sub.status == ["grid", "grid"]
    low = restrict_grid(full, alpha_min=float(grid[-2]))
    assert set(low.alpha.tolist()) <= {float(grid[-2]), float(grid[-1])}


def test_restrict_grid_keeps_the_direction_the_grid_was_searched_in():
    """A grid searched with maximize=False (an error metric) is restricted by the same rule:
    the smallest error in the sub-grid, not the largest."""
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.2])
    grid = torch.logspace(-6, 1, 8, dtype=DTYPE)

    def mse(x, ref):
        return ((x - ref) ** 2).flatten(1).mean(1)

    full = grid_search(net, y_delta, grid, x_true, metric=mse, maximize=False, solver=_tikhonov(net))
    assert full.maximize is False
    sub = restrict_grid(full, alpha_min=float(grid[1]), alpha_max=float(grid[-2]))
    inside = full.trail["metric"][1:-1]
    assert torch.equal(sub.trail["metric"][sub.index, torch.arange(2)], inside.min(dim=0).values)
    assert sub.maximize is False
    with pytest.raises(ValueError, match="searched with maximize=False"):
        restrict_grid(full, maximize=True)
    by_discrepancy = discrepancy_on_grid(full, torch.tensor([0.05, 0.2], dtype=DTYPE))
    assert by_discrepancy.maximize is False  # and so restrict_grid of it ranks the error alike
    assert torch.equal(restrict_grid(by_discrepancy).index, full.index)


@pytest.mark.parametrize("convert", [float, torch.tensor, np.float32], ids=["float", "tensor", "numpy"])
def test_geometric_alphas_takes_numbers_and_one_element_tensors_alike(convert):
    """alpha_max, alpha_min and factor as Python floats, 0-dim tensors or numpy scalars give the
    same sequence (float32 values as given, converted exactly)."""
    args = [convert(v) for v in (0.5, 0.0625, 0.5)]  # exact in float32
    assert geometric_alphas(*args).tolist() == [0.5, 0.25, 0.125, 0.0625]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"alpha_max": torch.tensor([1e-2, 1e-3])}, ValueError, r"alpha_max must be one number, got a tensor of shape \(2,\)"),
    ({"alpha_min": float("nan")}, ValueError, "alpha_min must be finite and > 0, got nan"),
    ({"factor": True}, TypeError, "factor must be a real number, got bool"),
    ({"factor": torch.tensor(True)}, TypeError, "factor must be a real number, got a tensor of dtype torch.bool"),
    ({"factor": torch.tensor(float("inf"))}, ValueError, "factor must be finite, got inf"),
])
def test_geometric_alphas_rejects_what_is_not_one_finite_real(kwargs, error, message):
    """A wrong type is a TypeError, a wrong value a ValueError; both name the argument."""
    args = {"alpha_max": 1e-2, "alpha_min": 1e-4, "factor": 0.5, **kwargs}
    with pytest.raises(error, match=message):
        geometric_alphas(**args)


def test_grid_search_rejects_a_repeated_grid_value():
    """A repeated value would be solved twice and be both the smallest and the largest grid
    value, so the pick would read as "edge": a ValueError naming alphas instead."""
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.1])
    with pytest.raises(ValueError, match="alphas must be distinct"):
        grid_search(net, y_delta, [1e-3, 1e-2, 1e-3], x_true, solver="pdhg", max_iter=5)


def test_grid_search_in_chunks_pads_histories_of_early_stopped_chunks_with_nan():
    """Chunks that stop at different iterations: _concat pads with NaN (parameter_choice.py:690-694);
    every grid solve must still equal its own unchunked solve, history rows included."""
    net = perceptron(24, (1, 6, 6), ReLU(), seed=3)
    y = image_data(net, 2, seed=4).double()
    net = net.to(dtype=DTYPE)
    x_true = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(5), dtype=DTYPE).round()
    grid = torch.tensor([1e-3, 1e-1, 1.0])
    kw = dict(solver="pdhg", max_iter=2000, tol=1e-4)
    one = grid_search(net, y, grid, x_true, **kw)
    chunked = grid_search(net, y, grid, x_true, batch_size=2, **kw)   # 3 chunks: one per alpha
    its = chunked.solves.iterations
    assert len(set(its.tolist())) > 1, its  # the chunks stopped at different iterations
    K = chunked.solves.history["residual"].shape[0]
    padded = 0
    for g in range(3):  # chunk g: both samples at grid[g]
        chunk = pdhg(net, y, float(grid[g]), max_iter=2000, tol=1e-4)
        n = chunk.history["residual"].shape[0]
        h = chunked.solves.history["residual"][:, 2 * g:2 * g + 2]
        torch.testing.assert_close(h[:n], chunk.history["residual"], rtol=1e-9, atol=1e-12)
        assert bool(torch.isnan(h[n:]).all())
        padded += K - n
        assert torch.equal(its[2 * g:2 * g + 2], chunk.iterations)
    assert padded > 0  # the padding path was exercised
    torch.testing.assert_close(chunked.solves.x, one.solves.x, rtol=1e-6, atol=1e-8)
    assert torch.equal(chunked.index, one.index)
    # the chosen result carries its own rows of the history
    for b in range(2):
        r = int(chunked.index[b]) * 2 + b
        hh = chunked.result.history["residual"][:, b]
        ref = chunked.solves.history["residual"][:, r]
        assert torch.equal(torch.isnan(hh), torch.isnan(ref))
        torch.testing.assert_close(hh[~torch.isnan(hh)], ref[~torch.isnan(ref)])


# --------------------------------------------------------------------------- input validation


def test_data_residual_checks_y_delta_against_the_output_for_the_batch_of_x():
    """Data with the right number of entries in the wrong layout, or for another batch, is an
    error naming y_delta, not a reshape into meaningless residuals."""
    net = _linear_net()  # output (20,)
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    with pytest.raises(ValueError, match=r"y_delta must have shape \(B, \*\(20,\)\)"):
        data_residual(net, x, torch.rand(4, 10, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"y_delta must hold one sample per input of x \(2\)"):
        data_residual(net, x, torch.rand(3, 20, dtype=DTYPE))
    assert data_residual(net, x[:0], torch.rand(0, 20, dtype=DTYPE)).shape == (0,)  # an empty batch


def test_grid_search_raises_on_a_nan_metric_naming_the_sample_and_alpha():
    """A NaN cannot be ranked: it must not be skipped, or picked as alphas[0] when all are NaN."""
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.1, 0.2])
    all_nan = lambda x, r: torch.full((len(x),), float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match="metric returned NaN for 6 of 6 solves, first for sample 0 at alpha=0.001"):
        grid_search(net, y_delta, [1e-3, 1e-2, 1e-1], x_true, metric=all_nan, solver=_tikhonov(net))

    def one_nan(x, r):  # row g * B + b = 3: sample 1 at the second grid value
        values = psnr(x, r)
        values[3] = float("nan")
        return values

    with pytest.raises(ValueError, match="for 1 of 6 solves, first for sample 1 at alpha=0.01"):
        grid_search(net, y_delta, [1e-3, 1e-2, 1e-1], x_true, metric=one_nan, solver=_tikhonov(net))


def test_grid_search_raises_on_a_solve_that_diverged():
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.1, 0.2])
    exact = _tikhonov(net)

    def diverging(y, alpha, x0):
        result = exact(y, alpha, x0)
        result.x[alpha < 1e-2] = float("nan")
        return result

    with pytest.raises(ValueError, match="diverged for 2 of 6 problems, first for sample 0 at alpha=0.001"):
        grid_search(net, y_delta, [1e-3, 1e-2, 1e-1], x_true, solver=diverging)


def test_grid_search_rejects_a_bad_metric_or_grid_by_name():
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.1])
    exact = _tikhonov(net)
    with pytest.raises(TypeError, match="metric must be a callable"):
        grid_search(net, y_delta, [1e-2], x_true, metric=5, solver=exact)
    with pytest.raises(ValueError, match=r"metric must return a tensor of shape \(2,\)"):
        grid_search(net, y_delta, [1e-2, 1e-1], x_true, metric=lambda x, r: psnr(x, r).mean(), solver=exact)
    with pytest.raises(TypeError, match="metric must return a real tensor"):
        grid_search(net, y_delta, [1e-2], x_true, metric=lambda x, r: 1.0, solver=exact)
    with pytest.raises(TypeError, match="alphas must be positive real numbers"):
        grid_search(net, y_delta, ["a"], x_true, solver=exact)


def test_rules_reject_numbers_of_the_wrong_type_by_name():
    net = _linear_net()
    x_true, y_delta, delta = _data(net, [0.1])
    exact = _tikhonov(net)
    with pytest.raises(TypeError, match="delta must be a real number"):
        discrepancy_principle(net, y_delta, "0.1", solver=exact)
    with pytest.raises(TypeError, match="delta must be a real number"):
        discrepancy_principle(net, y_delta, True, solver=exact)
    with pytest.raises(TypeError, match="band must be a real number, got str"):
        discrepancy_principle(net, y_delta, delta, solver=exact, band="x")
    with pytest.raises(TypeError, match="warm_start must be a bool"):
        discrepancy_principle(net, y_delta, delta, solver=exact, warm_start="no")
    with pytest.raises(TypeError, match="delta must be a real number"):
        a_priori_alpha("0.1", 1.0)
    with pytest.raises(ValueError, match=r"delta and v_norm must have broadcastable shapes, got \(2,\) and \(3,\)"):
        a_priori_alpha(torch.ones(2), torch.ones(3))
    for rule in (discrepancy_on_grid, restrict_grid):
        with pytest.raises(TypeError, match="grid must be the ParameterChoice returned by grid_search"):
            rule("x", 0.1)


# --------------------------------------------------------------------------- from a mutation audit


def test_grid_of_one_value_is_no_edge():
    """A one-point grid has no edge to warn about: status "grid" (not "edge")."""
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05, 0.1])
    choice = grid_search(net, y_delta, [1e-2], x_true, solver=_tikhonov(net))
    assert choice.status == ["grid", "grid"]


def test_grid_rules_return_alpha_in_the_dtype_of_the_data():
    """float32 data: the chosen alpha of grid_search, restrict_grid and discrepancy_on_grid is
    float32 too (the dtype of the data, as documented), though the grid is kept in float64."""
    net = _linear_net()
    x_true, y_delta, delta = _data(net, [0.05, 0.1])
    exact = _tikhonov(net)

    def solve32(y, alpha, x0):
        res = exact(y.double(), alpha.double(), None)
        res.x = res.x.float()
        return res

    grid = grid_search(net, y_delta.float(), [1e-3, 1e-2, 1e-1], x_true.float(), solver=solve32)
    assert grid.alpha.dtype == torch.float32
    assert restrict_grid(grid, 1e-3, 1e-2).alpha.dtype == torch.float32
    assert discrepancy_on_grid(grid, delta).alpha.dtype == torch.float32


def test_grid_search_refuses_batch_size_zero():
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.05])
    with pytest.raises(ValueError, match="batch_size"):
        grid_search(net, y_delta, [1e-3, 1e-2], x_true, solver=_tikhonov(net), batch_size=0)


def test_discrepancy_on_grid_counts_a_residual_equal_to_tau_delta_as_fitting():
    """The rule is ||N(x_alpha) - y_delta|| <= tau delta: with delta set to the residual at the
    middle grid value exactly, that value fits, so the choice is at least it."""
    net = _linear_net()
    x_true, y_delta, _ = _data(net, [0.1])
    grid = grid_search(net, y_delta, [1e-3, 1e-2, 1e-1], x_true, solver=_tikhonov(net))
    delta = grid.trail["residual"][1, 0]
    assert float(grid.trail["residual"][2, 0]) > float(delta)  # the largest value does not fit
    choice = discrepancy_on_grid(grid, delta)
    assert float(choice.alpha[0]) == pytest.approx(1e-2) and choice.status == ["fits"]


def test_discrepancy_on_grid_refuses_a_choice_without_solves():
    """An a-priori choice carries no grid of solves: a ValueError naming grid_search."""
    net = _linear_net()
    _, y_delta, _ = _data(net, [0.1])
    choice = a_priori(net, y_delta, 0.1, 1.0, solver=_tikhonov(net))
    with pytest.raises(ValueError, match="grid_search"):
        discrepancy_on_grid(choice, 0.1)
