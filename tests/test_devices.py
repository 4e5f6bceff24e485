"""Device-agnostic solvers: on every available device (CPU, and CUDA where present) the
results stay on the data's device and dtype and agree with the CPU float64 solve."""

import pytest
import torch
from torch import nn

from lbreg.network import LiftedNetwork
from lbreg.operators import div2d, grad2d, tv
from lbreg.solvers import admm, landweber, lifted_cd, pdhg


def encoder() -> LiftedNetwork:
    torch.manual_seed(0)  # module initialisation only
    seq = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 30), nn.ReLU())
    return LiftedNetwork.from_module(seq.double(), input_shape=(1, 12, 12))


def perceptron() -> LiftedNetwork:
    torch.manual_seed(1)
    return LiftedNetwork.from_module(nn.Sequential(nn.Flatten(), nn.Linear(100, 40), nn.ReLU()).double(),
                                     input_shape=(1, 10, 10))


def test_solvers_run_on_the_data_device_and_match_cpu(device):
    g = torch.Generator().manual_seed(2)
    net1, net2 = perceptron(), encoder()
    y1 = net1.forward(torch.rand(3, 1, 10, 10, generator=g, dtype=torch.float64))
    y2 = net2.forward(torch.rand(3, 1, 12, 12, generator=g, dtype=torch.float64))
    runs = [
        lambda y: pdhg(net1, y, 0.05, max_iter=300),
        lambda y: landweber(net1, y, delta=0.01, max_iter=300),
        lambda y: lifted_cd(net2, y, 0.05, max_iter=20, inner_iters=20),
    ]
    for run, y in zip(runs, (y1, y1, y2)):
        ref, res = run(y), run(y.to(device))
        assert res.x.device.type == device.type and res.x.dtype == torch.float64
        assert all(a.device.type == device.type for a in res.aux)
        assert torch.allclose(res.x.cpu(), ref.x, atol=1e-9, rtol=1e-9)
        assert torch.equal(res.iterations, ref.iterations)


def conv_layer() -> LiftedNetwork:
    torch.manual_seed(3)
    return LiftedNetwork.from_module(nn.Sequential(nn.Conv2d(1, 3, 4, 2, 1), nn.ReLU()).double(),
                                     input_shape=(1, 12, 12))


def test_div_is_negative_adjoint_of_grad_on_device(device):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 9, 11, generator=g, dtype=torch.float64).to(device)
    p = torch.randn(3, 2, 2, 9, 11, generator=g, dtype=torch.float64).to(device)
    lhs, rhs = (grad2d(x) * p).sum(), -(x * div2d(p)).sum()
    assert grad2d(x).device == x.device and torch.isclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tv(x).cpu(), tv(x.cpu()), rtol=1e-12, atol=0)


@pytest.mark.parametrize("make_net", [perceptron, conv_layer], ids=["dense", "conv"])
def test_admm_on_device_matches_cpu(make_net, device):
    net = make_net()
    g = torch.Generator().manual_seed(5)
    y = net.forward(torch.rand(2, *net.input_shape, generator=g, dtype=torch.float64))
    ref = admm(net, y, 0.05, max_iter=200, tol=1e-8)
    res = admm(net.to(device), y.to(device), 0.05, max_iter=200, tol=1e-8)
    assert res.x.device.type == device.type and res.x.dtype == torch.float64
    torch.testing.assert_close(res.x.cpu(), ref.x, atol=1e-8, rtol=0)


def test_float32_data_gives_float32_results_on_device(device):
    net = perceptron().to(device, torch.float32)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 1, 10, 10, generator=g).to(device)
    y = net.forward(x)
    for res in (pdhg(net, y, 0.05, max_iter=50), admm(net, y, 0.05, max_iter=50),
                landweber(net, y, max_iter=50)):
        assert res.x.dtype == torch.float32 and res.x.device.type == device.type
        assert torch.isfinite(res.x).all()
