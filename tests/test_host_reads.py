"""No host synchronisation per iteration beyond the stopping tests (issue #3).

On any device, the calls that read a tensor's value on the host (``bool``, ``int``, ``item``,
``tolist``, ``nonzero``, ``.cpu()``, ...) are counted, with a `TorchFunctionMode`; on CUDA these
are the calls that wait for the GPU, and there the synchronisations that CUDA itself reports
(`torch.cuda.set_sync_debug_mode`) are counted as well: they include copies of host data to
the GPU (a tensor made of a Python number on the device), which the first count cannot see. Each solver runs 10 and 60 iterations
(tolerance 0, so that no sample stops): the 50 more iterations may add only the reads of the
stopping tests they hold, every ``check_every = 10`` iterations.
"""

import warnings

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lbreg.network import LiftedNetwork
from lbreg.solvers import admm, landweber, lifted_cd, pdhg

HOST_READS = frozenset({"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "nonzero",
                        "cpu", "numpy"})
SHORT, LONG = 10, 60
TESTS = (LONG - SHORT) // 10  # stopping tests in the 50 more iterations


class HostReads(TorchFunctionMode):
    """Counts the calls that read a tensor's value on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += getattr(func, "__name__", "") in HOST_READS
        return func(*args, **(kwargs or {}))


def host_reads(run) -> int:
    with HostReads() as mode:
        run()
    return mode.count


def cuda_syncs(run) -> int:
    """Synchronisations that CUDA reports during ``run``."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def problems(device: torch.device):
    torch.manual_seed(0)  # module initialisation only
    dense = LiftedNetwork.from_module(nn.Sequential(nn.Flatten(), nn.Linear(256, 80), nn.ReLU()).double(),
                                      input_shape=(1, 16, 16)).to(device)
    conv = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 30), nn.ReLU())
    cnn = LiftedNetwork.from_module(conv.double(), input_shape=(1, 16, 16)).to(device)
    two = nn.Sequential(nn.Flatten(), nn.Linear(256, 80), nn.ReLU(), nn.Linear(80, 20), nn.ReLU())
    deep = LiftedNetwork.from_module(two.double(), input_shape=(1, 16, 16)).to(device)
    g = torch.Generator().manual_seed(1)
    y_dense = dense.forward(torch.rand(4, 1, 16, 16, generator=g, dtype=torch.float64).to(device))
    y_cnn = cnn.forward(torch.rand(4, 1, 16, 16, generator=g, dtype=torch.float64).to(device))
    first = LiftedNetwork.from_layers([cnn.layers[0]])
    y_conv = first.forward(torch.rand(4, 1, 16, 16, generator=g, dtype=torch.float64).to(device))
    y_deep = deep.forward(torch.rand(4, 1, 16, 16, generator=g, dtype=torch.float64).to(device))
    return dense, y_dense, cnn, y_cnn, first, y_conv, deep, y_deep


# solver -> (run for n iterations, host reads allowed per stopping test)
def cases(device: torch.device) -> dict:
    dense, y_dense, cnn, y_cnn, first, y_conv, deep, y_deep = problems(device)
    return {
        "pdhg": (lambda n: pdhg(dense, y_dense, 0.05, max_iter=n, tol=0), 1),
        # admm: the test, and the count of samples that passed it (to shrink the working batch)
        "admm dense": (lambda n: admm(dense, y_dense, 0.05, max_iter=n, tol=0), 2),
        "admm conv": (lambda n: admm(first, y_conv, 0.05, max_iter=n, tol=0), 2),
        "landweber": (lambda n: landweber(dense, y_dense, max_iter=n), 1),
        "lifted_cd": (lambda n: lifted_cd(cnn, y_cnn, 0.05, max_iter=n, tol=0), 1),
        # 20 admm iterations per sweep (dense W_1: no CG): a test after 10 (2 reads; the one
        # after 20 ends the call and reads nothing), so 20 per outer test
        "lifted_cd, x0 by admm": (lambda n: lifted_cd(deep, y_deep, 0.05, max_iter=n, tol=0,
                                                      x0_solver="admm", inner_tol=0), 1 + 2 * 10),
    }


@pytest.mark.parametrize("name", ["pdhg", "admm dense", "admm conv", "landweber", "lifted_cd",
                                  "lifted_cd, x0 by admm"])
def test_host_reads_only_at_stopping_tests(name, device):
    run, per_test = cases(device)[name]
    run(3)  # first call: caches (spectral norms, factorisations) are not per iteration
    extra = host_reads(lambda: run(LONG)) - host_reads(lambda: run(SHORT))
    assert extra <= per_test * TESTS, f"{name}: {extra} host reads in {LONG - SHORT} iterations"
    if device.type == "cuda":
        extra = cuda_syncs(lambda: run(LONG)) - cuda_syncs(lambda: run(SHORT))
        assert extra <= per_test * TESTS, f"{name}: {extra} CUDA synchronisations in {LONG - SHORT} iterations"
