"""Bad input gets a clear error that names the problem, never a silent wrong answer."""

import pytest
import torch
from torch import nn

from lbreg.activations import ReLU, Sigmoid
from lbreg.instances import circle_problem, random_perceptron
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.operators import power_norm
from lbreg.parameter_choice import a_priori, discrepancy_principle, grid_search
from lbreg.regularizers import TV
from lbreg.solvers import admm, aux_step, landweber, lifted_cd, pdhg, primal_dual_gap
from lbreg.theory import (conjugate_gradient, example1_admissible, example1_alpha, example1_bound, lemma1_conjugate,
                          loglog_slope, numerical_bregman_conjugate, psi_bracket, source_condition_instance,
                          theorem2_bound, theorem2_lhs)


def perceptron(activation=None) -> LiftedNetwork:
    W = torch.randn(12, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, in_shape=(1, 4, 4)), activation or ReLU())])


def deep() -> LiftedNetwork:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU()).double()
    return LiftedNetwork.from_module(seq, input_shape=(1, 4, 4))


def with_hook(module: nn.Module) -> nn.Module:
    module.register_forward_hook(lambda mod, inputs, out: 3 * out)
    return module


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class StandardisedConv2d(nn.Conv2d):
    """Weight standardisation: forward is Conv2d's, but the helper it calls is replaced."""

    def _conv_forward(self, x, w, b):
        return super()._conv_forward(x, (w - w.mean()) / w.std(), b)


def with_instance_forward(module: nn.Linear) -> nn.Linear:
    module.forward = lambda v: 2 * nn.functional.linear(v, module.weight, module.bias)
    return module


def nan_in(module: nn.Linear, name: str) -> nn.Linear:
    with torch.no_grad():
        getattr(module, name)[0] = float("nan")
    return module


def zero_layer(net: LiftedNetwork, index: int) -> LiftedNetwork:
    layers = list(net.layers)
    W = layers[index].affine.matrix
    layers[index] = Layer(AffineMap.from_matrix(torch.zeros_like(W), in_shape=layers[index].affine.in_shape),
                          layers[index].activation)
    return LiftedNetwork.from_layers(layers)


NET = perceptron()
Y = torch.rand(2, 12, dtype=torch.float64)
X = torch.rand(2, 1, 4, 4, dtype=torch.float64)

CASES = [
    # (description, call, exception, message fragment)
    ("y of the wrong shape", lambda: pdhg(NET, torch.rand(2, 11, dtype=torch.float64), 0.1), ValueError, "y"),
    ("y without batch dimension", lambda: pdhg(NET, torch.rand(12, dtype=torch.float64)[None, None], 0.1), ValueError, "y"),
    ("NaN in y", lambda: pdhg(NET, torch.full((1, 12), float("nan"), dtype=torch.float64), 0.1), ValueError, "y"),
    ("Inf in y", lambda: lifted_cd(NET, torch.full((1, 12), float("inf"), dtype=torch.float64), 0.1), ValueError, "y"),
    ("y outside dom Ψ (ReLU, negative)", lambda: pdhg(NET, -Y, 0.1), ValueError, "y"),
    ("y outside dom Ψ (sigmoid, > 1)", lambda: pdhg(perceptron(Sigmoid()), Y + 1.5, 0.1), ValueError, "y"),
    ("y not a tensor", lambda: pdhg(NET, Y.tolist(), 0.1), TypeError, "y"),
    ("integer y", lambda: pdhg(NET, torch.ones(2, 12, dtype=torch.int64), 0.1), TypeError, "y"),
    ("half-precision y (admm)", lambda: admm(NET, Y.half(), 0.1), TypeError, "float32 or float64"),
    ("bfloat16 y (pdhg)", lambda: pdhg(NET, Y.bfloat16(), 0.1), TypeError, "float32 or float64"),
    ("alpha = 0", lambda: pdhg(NET, Y, 0.0), ValueError, "alpha"),
    ("alpha < 0", lambda: lifted_cd(NET, Y, -1.0), ValueError, "alpha"),
    ("alpha NaN", lambda: pdhg(NET, Y, float("nan")), ValueError, "alpha"),
    ("alpha of the wrong batch size", lambda: pdhg(NET, Y, torch.tensor([0.1, 0.2, 0.3])), ValueError, "alpha"),
    ("alpha a string", lambda: pdhg(NET, Y, "0.1"), TypeError, "alpha must be a real number, got str"),
    ("negative tau_x", lambda: pdhg(NET, Y, 0.1, tau_x=-1.0), ValueError, "tau_x"),
    ("zero tau_z", lambda: pdhg(NET, Y, 0.1, tau_z=0.0), ValueError, "tau_z"),
    ("negative max_iter", lambda: pdhg(NET, Y, 0.1, max_iter=-5), ValueError, "max_iter"),
    ("fractional max_iter", lambda: lifted_cd(NET, Y, 0.1, max_iter=2.5), TypeError, "max_iter"),
    ("negative tol", lambda: pdhg(NET, Y, 0.1, tol=-1e-5), ValueError, "tol"),
    ("infinite tol", lambda: admm(NET, Y, 0.1, tol=float("inf")), ValueError, "tol must be finite"),
    ("NaN in the dual start z0", lambda: pdhg(NET, Y, 0.1, z0=torch.full((2, 1, 2, 4, 4), float("nan"), dtype=torch.float64)),
        ValueError, "z0 contains NaN or infinite entries"),
    ("complex dual start z0", lambda: pdhg(NET, Y, 0.1, z0=torch.zeros((2, 1, 2, 4, 4), dtype=torch.complex128)),
        TypeError, "z0 must have a real floating dtype"),
    ("dual start z0 on the meta device", lambda: pdhg(NET, Y, 0.1, z0=torch.zeros((2, 1, 2, 4, 4), device="meta")),
        ValueError, "z0 is on the 'meta' device"),
    ("x0 of the wrong shape", lambda: pdhg(NET, Y, 0.1, x0=torch.zeros(2, 1, 5, 5, dtype=torch.float64)), ValueError, "x0"),
    ("x0 with another batch size", lambda: pdhg(NET, Y, 0.1, x0=torch.zeros(3, 1, 4, 4, dtype=torch.float64)), ValueError, "x0"),
    ("deep network handed to pdhg", lambda: pdhg(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1), ValueError, "depth"),
    ("not a LiftedNetwork", lambda: pdhg(nn.Linear(16, 12), Y, 0.1), TypeError, "LiftedNetwork"),
    ("zero inner_iters", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, inner_iters=0), ValueError, "inner_iters"),
    ("tau_aux of the wrong length", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, tau_aux=[0.1, 0.2]), ValueError, "tau_aux"),
    ("a zero later layer under lifted_cd's default tau_aux", lambda: lifted_cd(zero_layer(deep(), 1), torch.rand(1, 6, dtype=torch.float64), 0.1),
        ValueError, "weight of layer 2 is zero"),
    ("a zero first layer under lifted_cd's admm", lambda: lifted_cd(zero_layer(deep(), 0), torch.rand(1, 6, dtype=torch.float64), 0.1,
                                                                   x0_solver="admm"), ValueError, "W_1 is zero"),
    ("float32 data into a float64 network", lambda: NET(X.float()), TypeError, "x is torch.float32 on cpu but the weights are torch.float64"),
    ("integer data into a network", lambda: NET(X.long()), TypeError, "x must have a real floating dtype"),
    ("float32 data into an adjoint", lambda: NET.layers[0].affine.adjoint(Y.float()), TypeError, "u is torch.float32"),
    ("negative tau_aux", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, tau_aux=[-0.1]), ValueError, "tau_aux"),
    ("zero tau in aux_step", lambda: aux_step(deep().layers[0], deep().layers[1], torch.rand(1, 8, dtype=torch.float64),
                                               torch.rand(1, 8, dtype=torch.float64), torch.rand(1, 6, dtype=torch.float64),
                                               torch.zeros(1, dtype=torch.float64)), ValueError, "tau"),
    ("negative delta", lambda: landweber(NET, Y, delta=-0.1), ValueError, "delta"),
    ("delta of a shape unlike (B,)", lambda: landweber(NET, Y, delta=torch.ones(2, 2)), ValueError,
        r"delta must be a number or hold one value per sample \(2\), got shape \(2, 2\)"),
    ("negative step", lambda: landweber(NET, Y, step=-1.0), ValueError, "step"),
    ("discrepancy factor below 1", lambda: landweber(NET, Y, delta=0.1, eta=0.5), ValueError, r"eta must be finite and >= 1, got 0.5 \(Morozov"),
    ("discrepancy factor 0", lambda: landweber(NET, Y, delta=0.1, eta=0.0), ValueError, r"eta must be finite and >= 1, got 0.0 \(Morozov"),
    ("Bregman Landweber on a deep network", lambda: landweber(deep(), torch.rand(1, 6, dtype=torch.float64)), ValueError, "variant"),
    ("unknown Landweber variant", lambda: landweber(NET, Y, variant="masked"), ValueError, "variant"),
    ("wrong regulariser type", lambda: pdhg(NET, Y, 0.1, reg="tv"), TypeError, "reg"),
    ("wrong regulariser type (primal_dual_gap)", lambda: primal_dual_gap(
        NET, Y, torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2, 2, 4, 4, dtype=torch.float64), 0.1,
        reg="tv"), TypeError, "Regularizer"),
    ("wrong regulariser type (lifted_cd)", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, reg="tv"),
        TypeError, "Regularizer"),
    ("empty batch (pdhg)", lambda: pdhg(NET, Y[:0], 0.1), ValueError, "no samples"),
    ("empty batch (admm)", lambda: admm(NET, Y[:0], 0.1), ValueError, "no samples"),
    ("empty batch (lifted_cd)", lambda: lifted_cd(deep(), torch.rand(0, 6, dtype=torch.float64), 0.1), ValueError, "no samples"),
    ("empty batch (landweber)", lambda: landweber(NET, Y[:0]), ValueError, "no samples"),
    ("TV on inputs without image axes (admm)", lambda: admm(LiftedNetwork.from_layers(
        [Layer(AffineMap.from_matrix(torch.ones(12, 16, dtype=torch.float64), in_shape=(16,)), ReLU())]), Y, 0.1),
        ValueError, "input_shape"),
    ("TV on inputs without image axes (pdhg)", lambda: pdhg(LiftedNetwork.from_layers(
        [Layer(AffineMap.from_matrix(torch.ones(12, 16, dtype=torch.float64), in_shape=(16,)), ReLU())]), Y, 0.1),
        ValueError, "input_shape"),
    ("deep network handed to primal_dual_gap", lambda: primal_dual_gap(
        deep(), torch.rand(1, 6, dtype=torch.float64), torch.zeros(1, 1, 4, 4, dtype=torch.float64),
        torch.zeros(1, 2, 4, 4, dtype=torch.float64), 0.1), ValueError, "depth"),
    ("zero W under admm's default penalty", lambda: admm(LiftedNetwork.from_layers(
        [Layer(AffineMap.from_matrix(torch.zeros(12, 16, dtype=torch.float64), in_shape=(1, 4, 4)), ReLU())]), Y, 0.1),
        ValueError, "W is zero"),
    ("dual of the wrong shape in primal_dual_gap", lambda: primal_dual_gap(
        NET, Y, torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2, 2, 4, 4, dtype=torch.float64), 0.1),
        ValueError, "z must have shape"),
    ("x of the wrong shape in primal_dual_gap", lambda: primal_dual_gap(
        NET, Y, torch.zeros(2, 1, 5, 4, dtype=torch.float64), torch.zeros(2, 1, 2, 4, 4, dtype=torch.float64), 0.1),
        ValueError, "x"),
    ("max-pooling in the network", lambda: LiftedNetwork.from_module(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)), input_shape=(1, 8, 8)), TypeError, "MaxPool2d"),
    ("a 1-D convolution in the network", lambda: LiftedNetwork.from_module(
        nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Unflatten(1, (1, 8)), nn.Conv1d(1, 1, 3)), input_shape=(6,)),
        TypeError, r"Conv1d is not an activation, and not an affine map lbreg can lift \(nn.Linear"),
    ("layer normalisation in the network", lambda: LiftedNetwork.from_module(
        nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4)), input_shape=(6,)), TypeError, "LayerNorm is not an activation"),
    ("input_shape that does not fit", lambda: LiftedNetwork.from_module(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU()), input_shape=(1, 20, 20)), ValueError, "input_shape"),
    ("fractional input_shape", lambda: LiftedNetwork.from_module(nn.Linear(6, 4), (6.9,)), TypeError, "input_shape"),
    ("a forward hook", lambda: LiftedNetwork.from_module(nn.Sequential(with_hook(nn.Linear(6, 4)), nn.ReLU()), (6,)),
        TypeError, "Linear at index 0 has forward hooks"),
    ("old-style spectral_norm (a pre-hook)", lambda: AffineMap.from_module(nn.utils.spectral_norm(nn.Linear(6, 4)), (6,)),
        TypeError, "parametrizations"),
    ("a Sequential subclass with its own forward", lambda: LiftedNetwork.from_module(
        nn.Sequential(Residual(nn.Linear(6, 6), nn.ReLU()), nn.Linear(6, 3)), (6,)), TypeError, "Residual at index 0 overrides forward"),
    ("a Conv2d subclass replacing a helper of forward", lambda: LiftedNetwork.from_module(
        nn.Sequential(StandardisedConv2d(1, 2, 3), nn.ReLU()), (1, 6, 6)), TypeError,
        "StandardisedConv2d at index 0 overrides _conv_forward of Conv2d"),
    ("forward replaced on the instance", lambda: LiftedNetwork.from_module(
        nn.Sequential(with_instance_forward(nn.Linear(6, 4)), nn.ReLU()), (6,)), TypeError,
        "Linear at index 0 overrides forward of Linear"),
    ("data on the meta device", lambda: pdhg(NET, Y.to("meta"), 0.1), ValueError, "y is on the 'meta' device"),
    ("a module on the meta device", lambda: LiftedNetwork.from_module(nn.Linear(6, 4, device="meta"), (6,)),
        ValueError, r"layers\[0\].*its weight is on the 'meta' device"),
    ("an uninitialised lazy module", lambda: LiftedNetwork.from_module(nn.Sequential(nn.LazyLinear(4), nn.ReLU()), (6,)),
        TypeError, "lazy module"),
    ("NaN in a bias", lambda: LiftedNetwork.from_module(nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nan_in(nn.Linear(4, 3), "bias")), (6,)),
        ValueError, r"layers\[1\].*bias contains NaN"),
    ("NaN in a weight", lambda: LiftedNetwork.from_module(nan_in(nn.Linear(6, 4), "weight"), (6,)), ValueError, "weight contains NaN"),
    ("Inf in a matrix", lambda: LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(torch.full((2, 3), float("inf"))), ReLU())]),
        ValueError, "weight contains NaN or infinite entries"),
    ("alpha underflowing in float32", lambda: pdhg(NET, Y.float(), 1e-46), ValueError, "alpha must lie between"),
    ("per-sample alpha underflowing in float32", lambda: lifted_cd(NET, Y.float(), torch.tensor([1e-2, 1e-46], dtype=torch.float64)),
        ValueError, "alpha must lie between"),
    ("alpha overflowing float32", lambda: admm(NET, Y.float(), 1e39), ValueError, "alpha must lie between"),
    ("tau_aux a number", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, tau_aux=0.5), TypeError, "tau_aux"),
    ("Landweber on a zero network", lambda: landweber(LiftedNetwork.from_layers(
        [Layer(AffineMap.from_matrix(torch.zeros(12, 16, dtype=torch.float64), in_shape=(1, 4, 4)), ReLU())]), Y),
        ValueError, "weight is zero"),
    ("energy with alpha < 0", lambda: NET.energy([X], Y, -5.0, TV()), ValueError, "alpha"),
    ("energy with alpha of the wrong batch size", lambda: NET.energy([X], Y, torch.ones(3), TV()), ValueError, "alpha"),
    ("grid_search with NaN in the reference", lambda: grid_search(NET, Y, [1e-2], torch.full_like(X, float("nan")), solver="pdhg"),
        ValueError, "reference"),
    ("grid_search with a list as reference", lambda: grid_search(NET, Y, [1e-2], X.tolist(), solver="pdhg"), TypeError, "reference"),
    ("grid_search on an empty batch", lambda: grid_search(NET, Y[:0], [1e-2], X[:0], solver="pdhg"), ValueError, "no samples"),
    ("grid_search with a 2-D grid", lambda: grid_search(NET, Y, [[1e-2, 1e-1]], X, solver="pdhg"), ValueError,
        r"alphas must be one grid, a sequence or a 1-D tensor, got shape \(1, 2\)"),
    ("discrepancy_principle on an empty batch", lambda: discrepancy_principle(NET, Y[:0], 0.1, solver="pdhg"),
        ValueError, "no samples"),
    ("discrepancy_principle with a list as data", lambda: discrepancy_principle(NET, Y.tolist(), 0.1, solver="pdhg"),
        TypeError, "y_delta"),
    ("a_priori with data outside dom Ψ", lambda: a_priori(NET, -Y, 0.1, 1.0, solver="pdhg"), ValueError, "y_delta"),
]


# --------------------------------------------------------------------------- theory, instances, operators


def _theory_cases() -> list:
    """Calls of lbreg.theory, lbreg.instances and lbreg.operators that used to return a silent
    wrong answer (a negative bound, a broadcast, a truncated size) or a raw torch error."""
    inst = source_condition_instance(10, 3, ReLU(), [0.05, 0.1], 3)
    y, v, x = inst.y_delta, inst.v_dag, inst.x_dag
    half = torch.full((3, 2), 0.5, dtype=torch.float64)
    ident = lambda t: t  # noqa: E731
    return [
        ("example1_alpha with delta < 0", lambda: example1_alpha(-1.0, 1.0), ValueError, "delta must be finite and >= 0"),
        ("example1_alpha with v_norm = 0", lambda: example1_alpha(0.1, 0.0), ValueError, "v_norm must be finite and > 0"),
        ("example1_bound with v_norm < 0", lambda: example1_bound(0.1, -1), ValueError, "v_norm must be finite and > 0"),
        ("example1_alpha with NaN delta", lambda: example1_alpha(torch.tensor([float("nan")]), 1.0), ValueError, "delta"),
        ("example1_bound with mismatched lengths", lambda: example1_bound(torch.ones(2), torch.ones(3)), ValueError,
            r"delta and v_norm must have broadcastable shapes, got \(2,\) and \(3,\)"),
        ("example1_admissible with alpha < 0", lambda: example1_admissible(y, v, -1.0), ValueError, "alpha must be finite and > 0"),
        ("theorem2_lhs with alpha < 0", lambda: theorem2_lhs(inst, x, -1.0, 1.0), ValueError, "alpha must be finite and > 0"),
        ("theorem2_lhs with 3 alphas for 2 rows", lambda: theorem2_lhs(inst, x, torch.ones(3, dtype=torch.float64), 1.0),
            ValueError, r"alpha must be a number or a tensor of shape \(2,\)"),
        ("theorem2_lhs with float32 x_alpha", lambda: theorem2_lhs(inst, x.float(), 0.1, 1.0), TypeError,
            "x_alpha must have dtype torch.float64"),
        ("theorem2_lhs with x_alpha of another shape", lambda: theorem2_lhs(inst, x[:, :2], 0.1, 1.0), ValueError,
            r"x_alpha must have shape \(2, 3\)"),
        ("theorem2_bound with delta_sq < 0", lambda: theorem2_bound(ReLU(), y, v, 0.1, -1.0, 1.0), ValueError,
            "delta_sq must be finite and >= 0"),
        ("theorem2_bound with 3 delta_sq for 2 rows", lambda: theorem2_bound(ReLU(), y, v, 0.1, torch.ones(3, dtype=torch.float64), 1.0),
            ValueError, r"delta_sq must be a number or a tensor of shape \(2,\)"),
        ("psi_bracket with alpha < 0", lambda: psi_bracket(ReLU(), y, v, -1.0, 1.0), ValueError, "alpha must be finite and > 0"),
        ("psi_bracket with alpha = 0", lambda: psi_bracket(ReLU(), y, v, 0.0, 1.0), ValueError, "alpha must be finite and > 0"),
        ("psi_bracket with 3 alphas for 1 row", lambda: psi_bracket(ReLU(), y[:1], v[:1], torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), 1.0),
            ValueError, r"alpha must be a number or a tensor of shape \(1,\)"),
        ("psi_bracket with y_delta outside dom Ψ", lambda: psi_bracket(ReLU(), -y - 1, v, 0.1, 1.0), ValueError,
            r"y_delta must lie in dom Ψ"),
        ("psi_bracket with v_dag of another width", lambda: psi_bracket(ReLU(), y, v[:, :5], 0.1, 1.0), ValueError,
            r"v_dag must have shape \(10,\) or \(2, 10\)"),
        ("numerical_bregman_conjugate with iters < 1", lambda: numerical_bregman_conjugate(Sigmoid(), half, 0 * half, iters=-1),
            ValueError, "iters must be >= 1"),
        ("numerical_bregman_conjugate with fractional iters", lambda: numerical_bregman_conjugate(Sigmoid(), half, 0 * half, iters=2.5),
            TypeError, "iters must be an integer"),
        ("numerical_bregman_conjugate with bound < 0", lambda: numerical_bregman_conjugate(Sigmoid(), half, 0 * half, bound=-1),
            ValueError, "bound must be finite and > 0"),
        ("numerical_bregman_conjugate with a broadcast w", lambda: numerical_bregman_conjugate(Sigmoid(), half, 0 * half[:1]),
            ValueError, r"w must have shape \(3, 2\)"),
        ("lemma1_conjugate with a broadcast w", lambda: lemma1_conjugate(Sigmoid(), half, 0 * half[:1]), ValueError,
            r"w must have shape \(3, 2\)"),
        ("loglog_slope with equal x", lambda: loglog_slope([1, 1, 1], [1, 2, 3]), ValueError, "two distinct values"),
        ("conjugate_gradient with integer z", lambda: conjugate_gradient(ReLU(), torch.arange(3)), TypeError,
            "z must have a real floating dtype"),
        ("source_condition_instance with fractional m", lambda: source_condition_instance(20.7, 5), TypeError, "m must be an integer"),
        ("source_condition_instance with fractional n_sources", lambda: source_condition_instance(20, 5, n_sources=1.5),
            TypeError, "n_sources must be an integer"),
        ("source_condition_instance with a non-activation", lambda: source_condition_instance(20, 4, nn.MaxPool2d(2)),
            TypeError, "MaxPool2d is not a proximal map"),
        ("random_perceptron with a fractional input_shape", lambda: random_perceptron((2.5,), 4), TypeError, "input_shape"),
        ("random_perceptron with a string dtype", lambda: random_perceptron((4,), 3, dtype="float32"), TypeError,
            "dtype must be a floating torch.dtype"),
        ("circle_problem with a fractional size", lambda: circle_problem(size=2.5), TypeError, "size must be an integer"),
        ("circle_problem with noise_std < 0", lambda: circle_problem(size=8, m=8, noise_std=-1.0), ValueError,
            "noise_std must be finite and >= 0"),
        ("power_norm with fractional n_iter", lambda: power_norm(ident, ident, (3,), n_iter=2.5), TypeError,
            "n_iter must be an integer"),
        ("power_norm with a fractional shape", lambda: power_norm(ident, ident, (1.5, 4)), TypeError,
            r"shape\[0\] must be an integer"),
    ]


# --------------------------------------------------------------------------- bools, flags, shapes


def _probe_cases() -> list:
    """Inputs that were read silently (True as 1, "no" as true, a vector's samples as image rows,
    a complex bias cut to its real part, None as the zero iterate) or failed with a raw torch error."""
    from lbreg.baselines import autograd_tv, tv_smooth
    from lbreg.operators import project_dual_ball
    from lbreg.parameter_choice import restrict_grid
    from lbreg.solvers import pdhg_step
    from lbreg.theory import solve_tikhonov

    inst = source_condition_instance(20, 4, generator=0)
    vec = random_perceptron((16,), 8)
    y_vec = vec(torch.rand(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).relu()
    grid = grid_search(NET, Y, [1e-2, 1e-1], X, solver="pdhg", max_iter=5)
    return [
        ("energy with alpha True", lambda: NET.energy([X], Y, True, TV()), TypeError, "alpha must be a real number"),
        ("solve_tikhonov with alpha [True, 0.1]", lambda: solve_tikhonov(inst, [True, 0.1]), TypeError, "alpha must be"),
        ("grid_search with True in the grid", lambda: grid_search(NET, Y, [True, 0.5], X, solver="pdhg"), TypeError,
            "alphas must be"),
        ("discrepancy_principle with True in delta", lambda: discrepancy_principle(NET, Y, [True, 0.2], solver="pdhg"),
            TypeError, "delta must be"),
        ("source_condition_instance with noise_std True", lambda: source_condition_instance(20, 4, noise_std=True),
            TypeError, "noise_std must be"),
        ("source_condition_instance with margin True", lambda: source_condition_instance(20, 4, margin=True),
            TypeError, "margin must be a real number"),
        ("source_condition_instance with an infinite cond", lambda: source_condition_instance(20, 4, cond=float("inf")),
            ValueError, "cond must be finite and >= 1"),
        ("random_perceptron with True in input_shape", lambda: random_perceptron((True, 4, 4), 8), TypeError,
            r"input_shape\[0\] is a bool"),
        ("from_module with input_shape True", lambda: LiftedNetwork.from_module(nn.Linear(1, 8), True), TypeError,
            "input_shape"),
        ("autograd_tv with a fractional input_shape", lambda: autograd_tv(lambda v: v.flatten(1), Y, 0.1,
            input_shape=(1, 4.5, 4)), TypeError, "input_shape"),
        ("prox with a bool tensor t", lambda: Sigmoid().prox(torch.zeros(2, 5), torch.tensor([True])), TypeError,
            "t must be a real number or a real tensor"),
        ("prox with a t that does not broadcast to v", lambda: ReLU().prox(torch.zeros(2, 5), torch.ones(4, 2, 5)),
            ValueError, r"t must broadcast to the shape of v \(2, 5\)"),
        ("aux_step with a bool tau", lambda: aux_step(deep().layers[0], deep().layers[1],
            torch.rand(2, 8, dtype=torch.float64), torch.rand(2, 8, dtype=torch.float64),
            torch.rand(2, 6, dtype=torch.float64), torch.tensor([True, True])), TypeError, "tau must have a real floating"),
        ("grid_search with maximize 'no'", lambda: grid_search(NET, Y, [1e-2], X, solver="pdhg", maximize="no"),
            TypeError, "maximize must be a bool"),
        ("restrict_grid with maximize 0", lambda: restrict_grid(grid, maximize=0), TypeError, "maximize must be a bool"),
        ("pdhg with progress 'no'", lambda: pdhg(NET, Y, 0.1, max_iter=2, progress="no"), TypeError,
            "progress must be a bool"),
        ("mnist_tensors with center 'no'", lambda: __import__("lbreg.data").data.mnist_tensors(False, n=1, center="no"),
            TypeError, "center must be a bool"),
        ("tv_smooth of vectors", lambda: tv_smooth(torch.rand(2, 16), 1e-3), ValueError, "x must have at least 3 dimensions"),
        ("autograd_tv on a vector input", lambda: autograd_tv(vec, y_vec, 0.1, max_iter=2), ValueError,
            r"input_shape must end in the image axes \(..., H, W\) for TV, got \(16,\)"),
        ("autograd_tv with an x0 of another layout", lambda: autograd_tv(NET, Y, 0.1, max_iter=2,
            x0=torch.zeros(2, 4, 4, 1, dtype=torch.float64)), ValueError, r"x0 must have shape \(2, 1, 4, 4\)"),
        ("from_matrix with a complex bias", lambda: AffineMap.from_matrix(torch.ones(8, 16, dtype=torch.float64),
            torch.ones(8, dtype=torch.complex128)), TypeError, "b must be real numbers"),
        ("primal_dual_gap with x None", lambda: primal_dual_gap(NET, Y, None, torch.zeros(2, 1, 2, 4, 4), 0.1),
            TypeError, "x must be a torch.Tensor"),
        ("anisotropic projection of a tensor without gradient axis", lambda: project_dual_ball(torch.rand(2, 1, 4, 4),
            isotropic=False), ValueError, "p must have shape"),
    ]


def _probe_cases_raw() -> list:
    """Inputs that failed deep inside torch or Python with a message that named nothing, or
    (mixed dtypes in B_Ψ) gave a Bregman distance below zero."""
    from lbreg.models import load_weights
    from lbreg.operators import gram_norm_sq, grad2d

    y32 = torch.rand(1, 10)
    return [
        ("bregman of float32 y and float64 z", lambda: Sigmoid().bregman(y32, torch.logit(y32.double())), TypeError,
            "y and z must have the same dtype"),
        ("power_norm of an operator that returns NaN", lambda: power_norm(lambda v: v * float("nan"), lambda u: u,
            (1, 16)), ValueError, r"adjoint\(forward\(v\)\) has NaN or infinite entries"),
        ("energy with a batch mismatch", lambda: deep().energy([X[:1], torch.rand(2, 8, dtype=torch.float64)],
            torch.rand(2, 6, dtype=torch.float64), 0.1), ValueError, "xs and y must hold the same number of samples"),
        ("from_matrix with no rows", lambda: AffineMap.from_matrix(torch.ones(0, 16)), ValueError,
            "W must have at least one row and one column"),
        ("gram_norm_sq of an empty matrix", lambda: gram_norm_sq(torch.ones(0, 4)), ValueError, "m, n >= 1"),
        ("grad2d of empty images", lambda: grad2d(torch.ones(1, 0, 4)), ValueError, "at least one pixel"),
        ("load_weights with name None", lambda: load_weights(None), TypeError, "name must be a string"),
    ]


def test_tv_of_an_empty_batch_is_empty():
    from lbreg.operators import tv

    assert tv(torch.zeros(0, 1, 4, 4)).shape == (0,)


def _meta_cases() -> list:
    """A tensor on the 'meta' device (shapes, no values) reached .item() or a copy deep inside."""
    from lbreg.data import add_noise
    from lbreg.metrics import psnr
    from lbreg.operators import gram_norm_sq
    from lbreg.theory import solve_tikhonov

    inst = source_condition_instance(20, 4, generator=0)

    def meta(*shape):
        return torch.ones(*shape, dtype=torch.float64, device="meta")

    rows = [
        ("pdhg", lambda: pdhg(NET, Y, meta(2), max_iter=2), "alpha"),
        ("admm", lambda: admm(NET, Y, meta(2), max_iter=2), "alpha"),
        ("landweber", lambda: landweber(NET, Y, meta(2), max_iter=2), "delta"),
        ("discrepancy_principle", lambda: discrepancy_principle(NET, Y, meta(2), solver="pdhg"), "delta"),
        ("check_domain", lambda: ReLU().check_domain(meta(2, 3)), "y"),
        ("bregman", lambda: Sigmoid().bregman(meta(2, 3), meta(2, 3)), "y"),
        ("prox", lambda: ReLU().prox(torch.zeros(2, 3, dtype=torch.float64), meta(2, 3)), "t"),
        ("psnr", lambda: psnr(meta(2, 3), meta(2, 3)), "x"),
        ("add_noise", lambda: add_noise(Y, meta(1), 0), "std"),
        ("example1_alpha", lambda: example1_alpha(meta(2), 1.0), "delta"),
        ("solve_tikhonov", lambda: solve_tikhonov(inst, meta(1)), "alpha"),
        ("gram_norm_sq", lambda: gram_norm_sq(meta(3, 4)), "W"),
        ("energy", lambda: NET.energy([X], Y, meta(2), TV()), "alpha"),
    ]
    return [(f"a meta {name} in {where}", call, ValueError, f"{name} is on the 'meta' device")
            for where, call, name in rows]


def _type_cases() -> list:
    """Objects of the wrong kind that failed with an AttributeError (or a message naming
    nothing) somewhere inside, instead of a TypeError naming the argument."""
    from lbreg.data import add_noise
    from lbreg.parameter_choice import make_solve
    from lbreg.solvers import default_steps, pdhg_step
    from lbreg.theory import solve_tikhonov

    y = torch.rand(2, 3, dtype=torch.float64)
    return [
        ("energy with reg 'tv'", lambda: NET.energy([X], Y, 0.1, reg="tv"), TypeError, "reg must be a lbreg.regularizers"),
        ("pdhg_step with a string map", lambda: pdhg_step("A", ReLU(), Y, X, torch.zeros(2, 1, 2, 4, 4), 0.1, TV(), 0.1, 0.1),
            TypeError, "affine must be a lbreg.network.AffineMap"),
        ("aux_step with a string layer", lambda: aux_step("a", deep().layers[1], torch.rand(2, 8), torch.rand(2, 8),
            torch.rand(2, 6), torch.full((2,), 0.1)), TypeError, "layer must be a lbreg.network.Layer"),
        ("default_steps with reg 'TV'", lambda: default_steps(1.0, torch.ones(1), "TV"), TypeError, "reg must be"),
        ("solve_tikhonov of a string", lambda: solve_tikhonov("inst", 0.1), TypeError, "instance must be a SourceConditionInstance"),
        ("theorem2_lhs of a string", lambda: theorem2_lhs("x", X, 0.1, 1.0), TypeError, "instance must be"),
        ("net.to a string dtype", lambda: NET.to(dtype="float32"), TypeError, "dtype must be a floating dtype"),
        ("LiftedNetwork of None", lambda: LiftedNetwork(None), TypeError, "layers must be a list of Layer"),
        ("from_matrix of a string", lambda: AffineMap.from_matrix("W"), TypeError, "W must be a matrix"),
        ("make_solve with a list", lambda: make_solve(NET, ["pdhg"]), ValueError, "solver must be 'pdhg'"),
        ("a solver callable returning a tensor", lambda: make_solve(NET, lambda y, a, x0: y)(Y, torch.ones(1), None),
            TypeError, "the solver callable must return a lbreg.solvers.Result .*got Tensor"),
        ("power_norm with an int shape", lambda: power_norm(lambda v: v, lambda v: v, 16), TypeError,
            "shape must be a tuple of ints"),
        ("add_noise with a seed beyond 64 bits", lambda: add_noise(y, 0.1, 2**70), ValueError, "generator must lie in"),
    ]


ALL_CASES = CASES + _theory_cases() + _probe_cases() + _probe_cases_raw() + _meta_cases() + _type_cases()


@pytest.mark.parametrize("description, call, exc, fragment", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_bad_input_raises_a_named_error(description, call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


@pytest.mark.parametrize("fn", ["psi_bracket", "theorem2_bound", "lemma1_conjugate", "conjugate_gradient"])
def test_the_theory_helpers_take_a_torch_activation_as_the_solvers_do(fn):
    """A torch module is lifted (activation_of), not read as an lbreg Activation."""
    import lbreg.theory as theory

    y = torch.rand(3, 4, dtype=torch.float64)
    v = torch.rand(4, dtype=torch.float64)
    args = {"psi_bracket": (y, v, 0.1, 1.0), "theorem2_bound": (y, v, 0.1, torch.zeros(3, dtype=torch.float64), 1.0),
            "lemma1_conjugate": (y, 0.1 * y), "conjugate_gradient": (y,)}[fn]
    f = getattr(theory, fn)
    assert torch.equal(f(nn.ReLU(), *args), f(ReLU(), *args))


def test_dtypes_and_devices_are_checked_where_they_meet():
    """A network of layers in two dtypes, an iterate in another dtype than the weights, float16
    data, NaN weights: once refused deep inside torch, or blaming the user's x."""
    from lbreg.baselines import deep_image_prior
    from lbreg.operators import gram_norm_sq

    W = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mixed = [Layer(AffineMap.from_matrix(W, in_shape=(1, 4, 4)), ReLU()), Layer(AffineMap.from_matrix(W[:3, :4].float()), ReLU())]
    with pytest.raises(TypeError, match=r"layers\[1\] is torch.float32 on cpu but layers\[0\] is torch.float64"):
        LiftedNetwork.from_layers(mixed)
    d = deep()
    with pytest.raises(TypeError, match="x_l is torch.float32 on cpu but the weights are torch.float64"):
        aux_step(d.layers[0], d.layers[1], torch.rand(2, 8), torch.rand(2, 8).double(), torch.rand(2, 6).double(),
                 torch.full((2,), 0.1, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        source_condition_instance(20, 4, dtype=torch.float16)
    with pytest.raises(TypeError, match="y must be float32 or float64, got torch.float16"):
        deep_image_prior(NET, Y.half(), 0.1, width=4, input_dim=2, max_iter=1)
    with pytest.raises(ValueError, match="W contains NaN or infinite entries"):
        gram_norm_sq(torch.full((3, 4), float("nan")))


def test_the_gap_certificate_has_no_autograd_history():
    z = torch.zeros(2, 1, 2, 4, 4, dtype=torch.float64)
    gap = primal_dual_gap(NET, Y, X.clone().requires_grad_(), z, 0.1)
    assert not gap.requires_grad and gap.grad_fn is None


def test_an_iterate_in_another_dtype_is_named():
    """Each public step names the argument whose dtype differs from the weights (B_Ψ of two
    dtypes once failed as 'y and z must have the same dtype', or silently went below 0)."""
    from lbreg.solvers import pdhg_step

    f64 = torch.float64
    d = deep()
    x1, u, x2, tau = torch.rand(2, 8, dtype=f64), torch.rand(2, 8, dtype=f64), torch.rand(2, 6, dtype=f64), torch.full((2,), 0.1, dtype=f64)
    for kwargs, name in (({"u": u.float()}, "u"), ({"x_next": x2.float()}, "x_next")):
        args = {"x_l": x1, "u": u, "x_next": x2, **kwargs}
        with pytest.raises(TypeError, match=f"{name} is torch.float32 on cpu but the weights are torch.float64"):
            aux_step(d.layers[0], d.layers[1], args["x_l"], args["u"], args["x_next"], tau)
    z = torch.zeros(2, 1, 2, 4, 4, dtype=f64)
    with pytest.raises(TypeError, match="y is torch.float32 on cpu but the weights are torch.float64"):
        pdhg_step(NET.layers[0].affine, ReLU(), Y.float(), X, z, 0.1, TV(), 0.1, 0.1)
    with pytest.raises(TypeError, match=r"xs\[1\] is torch.float32 on cpu but the weights are torch.float64"):
        d.energy([X, x1.float()], x2, 0.1)


def test_seeds_at_the_ends_of_torch_range_are_taken():
    from lbreg._checks import check_seed

    assert check_seed(-(2**63)) == -(2**63) and check_seed(2**64 - 1) == 2**64 - 1
    for seed in (-(2**63) - 1, 2**64):
        with pytest.raises(ValueError, match=r"seed must lie in \[-2\*\*63, 2\*\*64\)"):
            check_seed(seed)


def test_the_last_raw_errors_of_the_probe_are_named():
    """A float32 torch module against float64 data, an empty batch in Theorem 2's bound, strings
    in a log-log slope: once torch's or Python's own messages."""
    from lbreg.baselines import autograd_tv, deep_image_prior

    module = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU())  # float32 parameters
    with pytest.raises(TypeError, match="network's parameters are torch.float32 on cpu but y is torch.float64"):
        autograd_tv(module, Y, 0.1, input_shape=(1, 4, 4), max_iter=2)
    with pytest.raises(TypeError, match="network's parameters are torch.float32"):
        deep_image_prior(module, Y, None, input_shape=(1, 4, 4), lr=0.1, width=4, input_dim=2, max_iter=1)
    with pytest.raises(ValueError, match=r"y_delta must have shape \(B, m\) with B, m >= 1, got \(0, 4\)"):
        theorem2_bound(ReLU(), torch.zeros(0, 4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), 0.1,
                       0.0, 1.0)
    with pytest.raises(TypeError, match="x must be real numbers"):
        loglog_slope("abc", [1.0, 2.0, 3.0])
