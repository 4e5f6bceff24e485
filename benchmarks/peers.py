r"""The circle objective solved by peer libraries: PyProximal (``bench`` extra) and ODL (if installed).

Both minimise the same :math:`f(x) = B_\Psi(y^\delta, Wx+b) + \alpha\,\mathrm{TV}_{\rm iso}(x)`
(ReLU, PAPER_MATH §4.1) by their own primal-dual hybrid gradient method (Chambolle-Pock) on
:math:`\min_x g(Lx)` with :math:`L = [W; \nabla]` and
:math:`g(u, p) = B_\Psi(y^\delta, u+b) + \alpha\|p\|_{2,1}`, from :math:`x=0`, float64, with
their gradient operators (forward differences, Neumann boundary: identical to
``lbreg.operators.grad2d``, checked in ``check_operators``). Steps
:math:`\tau=\sigma=1/\|L\|` (the libraries' documented condition :math:`\tau\sigma\|L\|^2<1`,
with :math:`\|L\|` by power iteration, 0.99 safety). The prox of the data term,
:math:`\operatorname{prox}_{sB_\Psi(y,\cdot+b)}`, is the closed form of
``lbreg.solvers.admm.bregman_prox`` for ReLU, written in NumPy.

Each runner returns ``(setup_seconds, iterates)`` where ``iterates`` is a list of
``(seconds_since_start, iteration, x)``; objectives are evaluated afterwards, outside the
timed loop (a copy of :math:`x` every ``record_every`` iterations is the only overhead).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def available() -> dict[str, str | None]:
    """Versions of the peer libraries, ``None`` for those that do not import."""
    out: dict[str, str | None] = {}
    for name in ("odl", "pyproximal"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            out[name] = None
    return out


def relu_bregman_prox(w: np.ndarray, y: np.ndarray, s: float) -> np.ndarray:
    r""":math:`\operatorname{prox}_{sB(y,\cdot)}(w)` for ReLU: :math:`w + s[y - \max(0, (w/s+y)/(1+1/s))]`."""
    rho = 1.0 / s
    return w + (y - np.maximum((rho * w + y) / (1.0 + rho), 0.0)) / rho


def _norm_L(W: np.ndarray, shape: tuple[int, int], grad, iters: int = 200) -> float:
    """‖[W; ∇]‖ by power iteration on WᵀW + ∇ᵀ∇ (seeded)."""
    from lbreg.operators import div2d, grad2d
    import torch

    v = np.random.default_rng(0).standard_normal(W.shape[1])
    lam = 0.0
    for _ in range(iters):
        g = grad2d(torch.from_numpy(v.reshape(shape))).numpy()
        w = W.T @ (W @ v) - div2d(torch.from_numpy(g)).numpy().ravel()
        lam_new = float(v @ w)
        v = w / np.linalg.norm(w)
        if abs(lam_new - lam) <= 1e-8 * lam_new:
            lam = lam_new
            break
        lam = lam_new
    return float(np.sqrt(lam))


def _recorder(niter: int, record_every: int, as_array: Callable[[Any], np.ndarray]):
    """``(iterates, callback)``: the callback appends ``(seconds, k, copy of x_k)`` every
    ``record_every`` iterations and at ``niter``, seconds counted from this call."""
    iterates = []
    t0 = time.perf_counter()
    counter = {"k": 0}

    def callback(xk):
        counter["k"] += 1
        if counter["k"] % record_every == 0 or counter["k"] == niter:
            iterates.append((time.perf_counter() - t0, counter["k"], as_array(xk)))

    return iterates, callback


def run_odl(W, b, y, alpha, shape, niter, record_every):
    """ODL's ``odl.solvers.pdhg`` on the circle objective."""
    import odl

    start = time.perf_counter()
    space = odl.uniform_discr([0, 0], list(shape), shape, dtype="float64")  # unit cells
    data_space = odl.rn(W.shape[0], dtype="float64")

    class Matrix(odl.Operator):
        def __init__(self, mat, dom, ran):
            super().__init__(dom, ran, linear=True)
            self.mat = mat

        def _call(self, x):
            return self.mat @ x.asarray().ravel()

        @property
        def adjoint(self):
            outer = self

            class Adjoint(odl.Operator):
                def __init__(self):
                    super().__init__(outer.range, outer.domain, linear=True)

                def _call(self, u):
                    return (outer.mat.T @ u.asarray()).reshape(shape)

                @property
                def adjoint(self):
                    return outer

            return Adjoint()

    class DataConj(odl.solvers.Functional):
        """h*(v) with h(u) = B(y, u + b): prox_{s h*}(v) = v - s prox_{h/s}(v/s) (Moreau)."""

        def __init__(self):
            super().__init__(data_space, linear=False)

        @property
        def proximal(self):
            def make(sigma):
                sig = float(sigma)

                class Prox(odl.Operator):
                    def __init__(self):
                        super().__init__(data_space, data_space)

                    def _call(self, v):
                        w = v.asarray() / sig
                        return v.asarray() - sig * (relu_bregman_prox(w + b, y, 1.0 / sig) - b)

                return Prox()

            return make

    class Data(odl.solvers.Functional):
        def __init__(self):
            super().__init__(data_space, linear=False)

        @property
        def convex_conj(self):
            return DataConj()

    grad = odl.Gradient(space, method="forward", pad_mode="symmetric")
    L = odl.BroadcastOperator(Matrix(W, space, data_space), grad)
    g = odl.solvers.SeparableSum(Data(), alpha * odl.solvers.GroupL1Norm(grad.range, exponent=2))
    f = odl.solvers.ZeroFunctional(space)
    norm = 1.0 / 0.99 * _norm_L(W, shape, grad)
    tau = sigma = 1.0 / norm
    x = space.zero()
    setup = time.perf_counter() - start
    iterates, callback = _recorder(niter, record_every, lambda xk: xk.asarray().ravel().copy())
    odl.solvers.pdhg(x, f, g, L, niter, tau, sigma, callback=callback)
    return setup, iterates, {"tau": tau, "sigma": sigma, "norm_L": norm * 0.99}


def run_pyproximal(W, b, y, alpha, shape, niter, record_every):
    """PyProximal's ``PrimalDual`` on the circle objective."""
    import pylops
    import pyproximal
    from pyproximal.ProxOperator import _check_tau

    start = time.perf_counter()

    class Zero(pyproximal.ProxOperator):
        def __call__(self, x):
            return 0.0

        @_check_tau
        def prox(self, x, tau):
            return x

    class Data(pyproximal.ProxOperator):
        def __call__(self, u):
            z = u + b
            return float(0.5 * np.sum(np.maximum(z, 0) ** 2) - y @ z + 0.5 * y @ y)

        @_check_tau
        def prox(self, u, tau):
            return relu_bregman_prox(u + b, y, tau) - b

    n = W.shape[1]
    grad = pylops.Gradient(dims=shape, edge=False, kind="forward", dtype="float64")
    A = pylops.VStack([pylops.MatrixMult(W, dtype="float64"), grad])
    g = pyproximal.VStack([Data(), pyproximal.L21(ndim=2, sigma=alpha)], nn=[W.shape[0], 2 * n])
    norm = 1.0 / 0.99 * _norm_L(W, shape, grad)
    tau = mu = 1.0 / norm
    setup = time.perf_counter() - start
    iterates, callback = _recorder(niter, record_every, lambda xk: np.array(xk, copy=True))
    pyproximal.optimization.primaldual.PrimalDual(Zero(), g, A, np.zeros(n), tau, mu, theta=1.0,
                                                  niter=niter, callback=callback, show=False)
    return setup, iterates, {"tau": tau, "mu": mu, "norm_L": norm * 0.99}


RUNNERS = {"ODL pdhg": ("odl", run_odl), "PyProximal PrimalDual": ("pyproximal", run_pyproximal)}
