"""Shared fixtures and helpers: papermill runs of notebooks, float64 and one-thread modes,
small random perceptrons, an independent (cvxpy/Clarabel) minimiser, and the activation table's
Psi with a bounded scalar minimiser (independent references for the prox steps)."""

from pathlib import Path

import math

import nbformat
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import xlogy

from lbreg.activations import Activation, LeakyReLU, Sigmoid, SoftShrink, Tanh
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.operators import grad2d, tv
from lbreg.regularizers import TV

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, parameters: dict, out_dir: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with ``parameters`` injected into its ``parameters`` cell.

    Runs in the notebooks folder (as the book does) and returns the executed notebook, whose
    outputs the calling test inspects. A failing cell raises ``PapermillExecutionError``.
    """
    import papermill as pm

    out = out_dir / name
    pm.execute_notebook(
        str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3",
        cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
    )
    return nbformat.read(out, as_version=4)


def cell_text(nb: nbformat.NotebookNode, tag: str) -> str:
    """All text output of the code cells tagged ``tag``."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code" and tag in cell.get("metadata", {}).get("tags", []):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    texts.append(o.get("text", ""))
                elif "data" in o and "text/plain" in o["data"]:
                    texts.append(o["data"]["text/plain"])
    return "".join(texts)


@pytest.fixture
def notebook_runner(tmp_path):
    return lambda name, parameters: run_notebook(name, parameters, tmp_path)


def perceptron(m: int, shape: tuple[int, ...], activation, seed: int, scale: float = 1.0) -> LiftedNetwork:
    """A random single-layer network x -> σ(Wx + b) on inputs of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    W = scale * torch.randn(m, n, generator=g) / math.sqrt(n)
    b = 0.1 * torch.randn(m, generator=g)
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b, in_shape=shape), activation)])


def image_data(net: LiftedNetwork, batch: int, seed: int, noise: float = 0.01) -> torch.Tensor:
    """Noisy data of random binary images, clipped into dom Ψ."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *net.input_shape, generator=g).round()
    y = net.forward(x)
    return net.layers[-1].activation.project_domain(y + noise * torch.randn(y.shape, generator=g))


def assert_tv_kkt(net: LiftedNetwork, y, alpha: float, x, z, *, stationarity_tol: float,
                  pairing_rtol: float) -> None:
    """Optimality of (x, z) for B_Ψ(y, Wx+b) + α TV(x) (PAPER_MATH §6 item 9): stationarity
    W^T(σ(Wx+b) - y) + α K^T z ≈ 0, dual feasibility |z_ij| ≤ 1 and ⟨z, ∇x⟩ = TV(x)."""
    layer = net.layers[0]
    stationarity = layer.affine.adjoint(layer.activation(layer.affine.forward(x)) - y) + alpha * TV().K_adj(z)
    assert stationarity.abs().max() < stationarity_tol
    assert torch.linalg.vector_norm(z, dim=-3).max() <= 1 + 1e-12
    pairing = (z * grad2d(x)).flatten(1).sum(1)
    assert torch.allclose(pairing, tv(x), rtol=pairing_rtol, atol=1e-8)


def objective(net: LiftedNetwork, y, x, alpha, reg=TV()) -> torch.Tensor:
    """The single-layer objective B_Ψ(y, Wx+b) + α R(x), per sample."""
    layer = net.layers[0]
    return layer.activation.bregman(y, layer.affine.forward(x)) + alpha * reg.value(x)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every available device: the CPU, and CUDA where present (the GPU run of the suite)."""
    return torch.device(request.param)


@pytest.fixture
def float64_default():
    """Float64 as the default dtype for one test (restored afterwards for the other test files);
    a module opts in with ``pytestmark = pytest.mark.usefixtures("float64_default")``."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def one_thread():
    """One intra-op thread for small problems, so that tests do not oversubscribe a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cvxpy_minimiser(net: LiftedNetwork, y: torch.Tensor, alpha: float, kind: str) -> torch.Tensor:
    """Minimise B_Ψ(y, Wx+b) + α TV_iso(x) with Clarabel, as an independent reference.

    ``kind`` names the activation's conjugate F* = (½‖·‖² + Ψ)*: ``"relu"``, ``"leaky"``,
    ``"sigmoid"`` or ``"identity"``. Float64, one sample.
    """
    import cvxpy as cp

    shape = net.input_shape
    n = math.prod(shape)
    eye = torch.eye(n, dtype=torch.float64)
    affine = net.layers[0].affine.to(dtype=torch.float64)
    W = affine.linear(eye.reshape(n, *shape)).reshape(n, -1).T.numpy()
    b = affine.forward(torch.zeros(1, *shape, dtype=torch.float64)).reshape(-1).numpy()
    D = grad2d(eye.reshape(n, *shape)).reshape(n, 2, -1)  # rows of the gradient operator
    D1, D2 = D[:, 0, :].T.numpy(), D[:, 1, :].T.numpy()
    yv = y.reshape(-1).double().numpy()
    x = cp.Variable(n)
    zz = W @ x + b
    if kind == "relu":  # F*(z) = ½ max(z, 0)²
        conj = 0.5 * cp.sum_squares(cp.pos(zz))
    elif kind == "leaky":  # F*(z) = ½ max(z,0)² + a/2 min(z,0)²
        a = net.layers[0].activation.slope
        conj = 0.5 * cp.sum_squares(cp.pos(zz)) + 0.5 * a * cp.sum_squares(cp.neg(zz))
    elif kind == "sigmoid":  # F*(z) = log(1 + e^z)
        conj = cp.sum(cp.logistic(zz))
    elif kind == "identity":  # F*(z) = ½ z²
        conj = 0.5 * cp.sum_squares(zz)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    tv_iso = cp.sum(cp.norm(cp.vstack([D1 @ x, D2 @ x]), 2, axis=0))
    problem = cp.Problem(cp.Minimize(conj - yv @ zz + alpha * tv_iso))
    # 1e-8: tighter tolerances end in Clarabel's "AlmostSolved" (cvxpy: "may be inaccurate")
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-8, tol_gap_rel=1e-8, tol_feas=1e-8)
    if problem.status != cp.OPTIMAL:
        raise RuntimeError(f"Clarabel did not solve the reference problem: status {problem.status}")
    return torch.from_numpy(x.value).reshape(1, *shape)


def psi_table(act: Activation, u: float) -> float:
    """Psi from the activation table of PAPER_MATH §1 (+inf off dom Psi)."""
    lo, hi = act.domain
    if not lo <= u <= hi:
        return math.inf
    if isinstance(act, LeakyReLU):
        return (1 - act.slope) / (2 * act.slope) * min(u, 0.0) ** 2
    if isinstance(act, SoftShrink):
        return act.lam * abs(u)
    if isinstance(act, Sigmoid):
        return float(xlogy(u, u) + xlogy(1 - u, 1 - u) - u * u / 2)
    if isinstance(act, Tanh):
        return float(0.5 * (xlogy(1 + u, 1 + u) + xlogy(1 - u, 1 - u)) - u * u / 2)
    return 0.0  # ReLU, Identity, HardTanh on their domains


def scalar_min(f, centre: float, radius: float, act: Activation) -> tuple[float, float]:
    """(argmin, min) of a scalar convex f on dom Psi ∩ [centre - radius, centre + radius]."""
    lo = max(act.domain[0], centre - radius)
    hi = min(act.domain[1], centre + radius)
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-12, "maxiter": 2000})
    return min([(res.x, res.fun), (lo, f(lo)), (hi, f(hi))], key=lambda p: p[1])
