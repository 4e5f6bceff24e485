"""Bad input gets a clear error that names the problem, never a silent wrong answer."""

import pytest
import torch
from torch import nn

from lbreg.activations import ReLU, Sigmoid
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.solvers import admm, aux_step, landweber, lifted_cd, pdhg, primal_dual_gap


def perceptron(activation=None) -> LiftedNetwork:
    W = torch.randn(12, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, in_shape=(1, 4, 4)), activation or ReLU())])


def deep() -> LiftedNetwork:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU()).double()
    return LiftedNetwork.from_module(seq, input_shape=(1, 4, 4))


NET = perceptron()
Y = torch.rand(2, 12, dtype=torch.float64)

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
    ("alpha a string", lambda: pdhg(NET, Y, "0.1"), TypeError, "alpha"),
    ("negative tau_x", lambda: pdhg(NET, Y, 0.1, tau_x=-1.0), ValueError, "tau_x"),
    ("zero tau_z", lambda: pdhg(NET, Y, 0.1, tau_z=0.0), ValueError, "tau_z"),
    ("negative max_iter", lambda: pdhg(NET, Y, 0.1, max_iter=-5), ValueError, "max_iter"),
    ("fractional max_iter", lambda: lifted_cd(NET, Y, 0.1, max_iter=2.5), TypeError, "max_iter"),
    ("negative tol", lambda: pdhg(NET, Y, 0.1, tol=-1e-5), ValueError, "tol"),
    ("x0 of the wrong shape", lambda: pdhg(NET, Y, 0.1, x0=torch.zeros(2, 1, 5, 5, dtype=torch.float64)), ValueError, "x0"),
    ("x0 with another batch size", lambda: pdhg(NET, Y, 0.1, x0=torch.zeros(3, 1, 4, 4, dtype=torch.float64)), ValueError, "x0"),
    ("deep network handed to pdhg", lambda: pdhg(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1), ValueError, "depth"),
    ("not a LiftedNetwork", lambda: pdhg(nn.Linear(16, 12), Y, 0.1), TypeError, "LiftedNetwork"),
    ("zero inner_iters", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, inner_iters=0), ValueError, "inner_iters"),
    ("tau_aux of the wrong length", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, tau_aux=[0.1, 0.2]), ValueError, "tau_aux"),
    ("negative tau_aux", lambda: lifted_cd(deep(), torch.rand(1, 6, dtype=torch.float64), 0.1, tau_aux=[-0.1]), ValueError, "tau_aux"),
    ("zero tau in aux_step", lambda: aux_step(deep().layers[0], deep().layers[1], torch.rand(1, 8, dtype=torch.float64),
                                               torch.rand(1, 8, dtype=torch.float64), torch.rand(1, 6, dtype=torch.float64),
                                               torch.zeros(1, dtype=torch.float64)), ValueError, "tau"),
    ("negative delta", lambda: landweber(NET, Y, delta=-0.1), ValueError, "delta"),
    ("negative step", lambda: landweber(NET, Y, step=-1.0), ValueError, "step"),
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
    ("input_shape that does not fit", lambda: LiftedNetwork.from_module(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU()), input_shape=(1, 20, 20)), ValueError, "input_shape"),
]


@pytest.mark.parametrize("description, call, exc, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_named_error(description, call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()
