"""Device-agnostic solvers: on every available device (CPU, and CUDA where present) the
results stay on the data's device and dtype and agree with the CPU float64 solve."""

import pytest
import torch
from torch import nn

from lbreg.network import LiftedNetwork
from lbreg.solvers import landweber, lifted_cd, pdhg

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def encoder() -> LiftedNetwork:
    torch.manual_seed(0)  # module initialisation only
    seq = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 30), nn.ReLU())
    return LiftedNetwork.from_module(seq.double(), input_shape=(1, 12, 12))


def perceptron() -> LiftedNetwork:
    torch.manual_seed(1)
    return LiftedNetwork.from_module(nn.Sequential(nn.Flatten(), nn.Linear(100, 40), nn.ReLU()).double(),
                                     input_shape=(1, 10, 10))


@pytest.mark.parametrize("device", DEVICES)
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
        assert res.x.device.type == device and res.x.dtype == torch.float64
        assert all(a.device.type == device for a in res.aux)
        assert torch.allclose(res.x.cpu(), ref.x, atol=1e-9, rtol=1e-9)
        assert torch.equal(res.iterations, ref.iterations)
