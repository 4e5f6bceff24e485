r"""Over-relaxed ADMM for the perceptron problem (6)/(11): a fast solver of pdhg's objective.

The paper's PDHG (14) takes the primal step :math:`\tau_x = 1/(\|W\|^2+\alpha)`, so for a badly
scaled :math:`W` (the circle with :math:`N(0,1)` weights, :math:`\|W\|^2\approx7.5\cdot10^3`)
its 10,000 iterations leave the problem unsolved (PAPER_MATH §5 item 2). This module solves
the *same* problem by the alternating direction method of multipliers on the splitting
:math:`u = Wx+b`, :math:`d = Kx`, with the :math:`x`-update solved exactly, so that readers
can be shown the true minimiser (Boyd et al. 2011, §3 and §3.4.3; Eckstein & Bertsekas 1992).
"""

from __future__ import annotations

import copy
import math
from numbers import Real
from typing import Any, Callable

import torch
from torch import Tensor

from .._checks import check_int, check_positive, check_real
from ..activations import Activation, activation_of
from ..network import _EXACT_NORM_MAX, AffineMap, LiftedNetwork
from ..operators import gram_norm_sq
from ..regularizers import Regularizer
from .result import (
    IterationLog,
    Result,
    bview,
    check_alpha,
    check_data,
    check_perceptron,
    check_regularizer,
    check_start,
    sample_norm,
)
from .pdhg import _dual_start
from .xupdate import XStep, x_solver

__all__ = ["admm", "bregman_prox"]


def bregman_prox(activation: Activation, y: Tensor, w: Tensor, rho: float) -> Tensor:
    r"""Proximal map of :math:`G = B_\Psi(y,\cdot)/\rho`, the u-update of ADMM.

    With :math:`F=\tfrac12|\cdot|^2+\Psi` and :math:`G(u) = B_\Psi(y,u) = F^*(u)-\langle y,u\rangle+F(y)`
    (eq. (4)), completing the square gives
    :math:`\operatorname{prox}_{G/\rho}(w) = \operatorname{prox}_{F^*/\rho}(v)` with
    :math:`v = w + y/\rho`. Moreau's identity
    :math:`v = \operatorname{prox}_{F^*/\rho}(v) + \tfrac1\rho\operatorname{prox}_{\rho F}(\rho v)`
    and
    :math:`\operatorname{prox}_{\rho F}(s) = \arg\min_u \tfrac{1+\rho}2\big(u-\tfrac{s}{1+\rho}\big)^2
    + \rho\Psi(u) = \operatorname{prox}_{\frac{\rho}{1+\rho}\Psi}\big(\tfrac{s}{1+\rho}\big)` give

    .. math::
        \operatorname{prox}_{G/\rho}(w) = w + \frac1\rho\Big[y -
        \operatorname{prox}_{\frac{\rho}{1+\rho}\Psi}\Big(\frac{\rho w + y}{1+\rho}\Big)\Big],

    which needs only ``activation.prox`` (closed form, or safeguarded Newton for sigmoid and
    tanh). ReLU check: for :math:`\rho w+y>0` it is :math:`(\rho w+y)/(1+\rho)`, the minimiser
    of :math:`\tfrac12u^2-yu+\tfrac\rho2(u-w)^2`; else :math:`w+y/\rho\le0`.

    Args:
        activation: the layer's activation :math:`\sigma = \operatorname{prox}_\Psi`.
        y: data in dom Ψ, any shape.
        w: same shape.
        rho: penalty :math:`\rho > 0`.

    Returns:
        Tensor of the shape of ``w``.
    """
    activation = activation_of(activation)
    rho = check_positive(rho, "rho")
    if not isinstance(w, Tensor) or not w.is_floating_point():
        raise TypeError(f"w must be a real floating tensor, got {getattr(w, 'dtype', type(w).__name__)}")
    activation.check_domain(y)
    if y.shape != w.shape:
        raise ValueError(f"y and w must have the same shape, got y: {tuple(y.shape)} and w: {tuple(w.shape)}")
    return _bregman_prox(activation, y, w, rho)


def _bregman_prox(activation: Activation, y: Tensor, w: Tensor, rho: float) -> Tensor:
    """`bregman_prox` on checked arguments (the ADMM loop's)."""
    s = activation.prox(torch.add(y, w, alpha=rho).div_(1.0 + rho), rho / (1.0 + rho))
    return torch.add(w, y - s, alpha=1.0 / rho)




# --------------------------------------------------------------------------- penalties

# Default ρ_d = _RHO_D_PER_ALPHA · α and over-relaxation (see `admm`, "Penalty").
_RHO_D_PER_ALPHA = 15.0
ADMM_RELAX = 1.8
ADMM_CHECK_EVERY = 10  # iterations between stopping tests

Splitting = tuple[Tensor, Tensor, Tensor, Tensor]
r"""ADMM's state besides x: ``(u, λ_u, v_d, λ_d)``, with :math:`d = v_d - \lambda_d` (see `_admm`)."""


def _norm_sq(affine: AffineMap) -> float:
    r""":math:`\|W\|^2`: top eigenvalue of the smaller Gram matrix (dense maps), else power iteration.

    The Gram matrix is formed and decomposed in single precision (relative error about
    :math:`10^{-6}`, ample for a penalty, at half the set-up cost of double precision).
    """
    W = affine.matrix
    if W is not None and min(W.shape) <= _EXACT_NORM_MAX:
        return gram_norm_sq(W.to(torch.float32))
    return affine.norm() ** 2


def _penalties(
    rho: Any, alpha: Tensor, affine: AffineMap, reg: Regularizer
) -> tuple[Tensor, Tensor, float | None]:
    r"""Per-sample ``(rho_u, rho_d)`` ``(B,)`` and :math:`\|W\|` (None when not needed), checked
    by `_check_resolution`."""
    if rho is None:
        norm_sq = _norm_sq(affine)
        if norm_sq == 0.0:
            raise ValueError("W is zero, so the data term does not depend on x and the default "
                             "penalty rho_u = rho_d ||K||^2 / ||W||^2 is undefined; pass rho")
        rho_d = _RHO_D_PER_ALPHA * alpha
        rho_u = rho_d * reg.norm_K_sq / norm_sq
        _check_resolution(rho_u, rho_d, alpha, "the default penalty (see admm, 'Penalty')")
        return rho_u, rho_d, math.sqrt(norm_sq)
    if isinstance(rho, (tuple, list)):
        if len(rho) != 2:
            raise ValueError(f"rho must be a positive number or a pair (rho_u, rho_d), got {rho!r}")
        pair = check_positive(rho[0], "rho[0] (rho_u)"), check_positive(rho[1], "rho[1] (rho_d)")
    elif isinstance(rho, bool) or not isinstance(rho, Real):
        raise TypeError(
            f"rho must be None, a positive number or a pair (rho_u, rho_d), got {type(rho).__name__}"
        )
    else:
        pair = (check_positive(rho, "rho"),) * 2
    rho_u, rho_d = torch.full_like(alpha, pair[0]), torch.full_like(alpha, pair[1])
    _check_resolution(rho_u, rho_d, alpha, "the given rho")
    return rho_u, rho_d, None


def _check_resolution(rho_u: Tensor, rho_d: Tensor, alpha: Tensor, source: str) -> None:
    r"""Raise ValueError unless :math:`\rho_u` and :math:`\alpha/\rho_d` lie in
    :math:`[\epsilon, 1/\epsilon]`, :math:`\epsilon` the machine epsilon of the data's dtype.

    The u-update :math:`w + (y - s)/\rho_u` weighs :math:`w` against the data term, whose
    curvature is at most 1, and the d-update weighs :math:`v` against :math:`\alpha/\rho_d`
    times the regulariser: outside that band one side is lost to rounding, the step leaves its
    input unchanged, the multipliers stay at zero and the residual test passes at a point far
    from the minimiser (a random 20×36 ReLU perceptron at :math:`\alpha = 10^{-20}` in float64,
    or :math:`10^{-9}` in float32, "converged" at an objective of 27.7, where its true input
    scores below :math:`10^{-10}`).
    """
    eps = torch.finfo(alpha.dtype).eps
    for name, value in (("rho_u", rho_u), ("alpha / rho_d", alpha / rho_d)):
        bad = ~((value >= eps) & (value <= 1.0 / eps))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"admm: {name} = {float(value[i]):.3g} for alpha = {float(alpha[i]):.3g} (sample {i}; "
                f"{source}) lies outside [eps, 1/eps] of {alpha.dtype} (eps = {eps:.3g}), where "
                "ADMM's prox steps lose one of their terms to rounding and the stopping test passes "
                "far from the minimiser; use an alpha nearer the scale of the data term, float64, "
                "or pass rho")


class _Groups:
    """The penalties ``(rho_u, rho_d)`` ``(B,)`` for ``alpha`` and the x-update: samples sharing
    one penalty pair share one factorisation."""

    def __init__(self, affine: AffineMap, reg: Regularizer, alpha: Tensor, rho: Any,
                 like: Tensor, x_update_dtype: torch.dtype | None = None) -> None:
        rho_u, rho_d, self.norm_w = _penalties(rho, alpha, affine, reg)
        self.rho_u, self.rho_d = rho_u, rho_d
        pairs = torch.stack([rho_u, rho_d], dim=1).cpu()
        unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
        self.solvers = [(ru, x_solver(affine, reg, ru, rd, like, x_update_dtype))
                        for ru, rd in unique.tolist()]
        self.kind = self.solvers[0][1].kind
        self._group = inverse.to(like.device)  # the group of each sample
        self.members = self._members()

    def _members(self) -> list[tuple[Tensor | None, float, XStep]]:
        """``(rows, rho_u, solver)`` per group present (``rows`` None when one group holds all)."""
        if len(self.solvers) == 1:
            return [(None, *self.solvers[0])]
        rows = [(self._group == g).nonzero().reshape(-1) for g in range(len(self.solvers))]
        present = [(r, *solver) for r, solver in zip(rows, self.solvers) if r.numel() > 0]
        return [(None, ru, solver) for _, ru, solver in present] if len(present) == 1 else present

    def subset(self, rows: Tensor) -> _Groups:
        """The same penalties and x-updates for the samples ``rows`` of the batch only."""
        out = copy.copy(self)
        out.rho_u, out.rho_d, out._group = self.rho_u[rows], self.rho_d[rows], self._group[rows]
        out.members = out._members()
        return out

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """`XStep.step` of each group on its samples."""
        if len(self.members) == 1:
            return self.members[0][2].step(w, v, nu, x)
        outs = None
        for idx, _, solver in self.members:
            part = solver.step(w[idx], v[idx], None if nu is None else nu[idx], x[idx])
            if outs is None:
                outs = [None if t is None else t.new_empty((w.shape[0], *t.shape[1:])) for t in part]
            for out, t in zip(outs, part):
                if t is not None:
                    out[idx] = t
        return outs[0], outs[1], outs[2], outs[3]

    def image(self, state: Tensor) -> Tensor:
        """`XStep.image` (the groups' solvers share their representation)."""
        return self.solvers[0][1].image(state)

    def state(self, x: Tensor) -> Tensor:
        """`XStep.state`."""
        return self.solvers[0][1].state(x)

    def u_prox(self, activation: Activation, y: Tensor, v: Tensor) -> Tensor:
        """`bregman_prox` of each group (a Python-float ρ_u: no host synchronisation)."""
        if len(self.members) == 1:
            return _bregman_prox(activation, y, v, self.members[0][1])
        out = torch.empty_like(v)
        for idx, ru, _ in self.members:
            out[idx] = _bregman_prox(activation, y[idx], v[idx], ru)
        return out


def _check_x_update_dtype(dtype: Any) -> torch.dtype | None:
    """``admm``'s ``x_update_dtype``: None, torch.float32 or torch.float64."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"x_update_dtype must be None, torch.float32 or torch.float64, got {dtype!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"x_update_dtype must be None, torch.float32 or torch.float64, got {dtype}")
    return dtype


# --------------------------------------------------------------------------- the solver


@torch.no_grad()
def admm(
    network: LiftedNetwork,
    y: Tensor,
    alpha: float | Tensor,
    reg: Regularizer | None = None,
    *,
    rho: float | tuple[float, float] | None = None,
    relax: float = ADMM_RELAX,
    max_iter: int = 5_000,
    tol: float = 1e-6,
    x0: Tensor | None = None,
    z0: Tensor | None = None,
    check_every: int = ADMM_CHECK_EVERY,
    x_update_dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> Result:
    r"""Invert a single-layer network by over-relaxed ADMM: the minimiser of eq. (6)/(11).

    Solves, for every sample of the batch, the problem that `pdhg` solves,

    .. math::
        \min_x\; B_\Psi\big(y^\delta, Wx+b\big) + \alpha R(Kx)
        \quad\text{as}\quad
        \min_{x,u,d}\; G(u) + \alpha R(d)\ \ \text{s.t.}\ \ u = Wx+b,\ d = Kx,

    with :math:`G = B_\Psi(y^\delta,\cdot)`, by scaled ADMM with over-relaxation
    :math:`\theta` = ``relax`` (Boyd et al. 2011, §3.1.1, §3.4.3):

    .. math::
        x^{k+1} &= \big(\rho_u W^\top W + \rho_d K^\top K\big)^{-1}
                   \big[\rho_u W^\top(u^k - b - \lambda_u^k) + \rho_d K^\top(d^k - \lambda_d^k)\big],\\
        \hat u &= \theta(Wx^{k+1}+b) + (1-\theta)u^k,\qquad
        \hat d = \theta Kx^{k+1} + (1-\theta)d^k,\\
        u^{k+1} &= \operatorname{prox}_{G/\rho_u}(\hat u + \lambda_u^k),\qquad
        d^{k+1} = \operatorname{prox}_{(\alpha/\rho_d)R}(\hat d + \lambda_d^k),\\
        \lambda_u^{k+1} &= \lambda_u^k + \hat u - u^{k+1},\qquad
        \lambda_d^{k+1} = \lambda_d^k + \hat d - d^{k+1}.

    The u-prox is `bregman_prox` (Moreau's identity and ``activation.prox``); the d-prox is
    :math:`v - s\operatorname{prox}_{R^*/s}(v/s)` with :math:`s=\alpha/\rho_d` (pixelwise
    shrinkage for TV). The x-update is exact for a dense :math:`W`: with :math:`m<n`, by Woodbury
    around the DCT-diagonalised Neumann Laplacian :math:`K^\top K`, the constant null space
    handled exactly (`lbreg.solvers.xupdate`); with :math:`m\ge n` and
    :math:`n\le` ``DENSE_MAX_N``, by a Cholesky factor of the :math:`n\times n` matrix; both
    factorised once per call and per distinct penalty, shared by the samples. Maps without a
    matrix (convolutions) and dense maps beyond ``DENSE_MAX_N`` inputs use warm-started
    conjugate gradients (``CG_ITERS`` steps per iteration, so that update is inexact);
    ``params["x_update"]`` says which was used.

    **Stopping** (per sample, certified; Boyd et al. §3.3.1, eq. (3.12), with
    :math:`\epsilon_{\rm abs}=\epsilon_{\rm rel}=` ``tol``). The multipliers
    :math:`\nu_u = \rho_u\lambda_u^{k+1}\in\partial G(u^{k+1})` and
    :math:`\nu_d = \rho_d\lambda_d^{k+1}\in\alpha\,\partial R(d^{k+1})` hold exactly after the
    prox steps, so a sample stops when

    .. math::
        r_{\rm pri} &= \big\|(Wx+b-u,\ Kx-d)\big\| \le
            \mathrm{tol}\,\big(\sqrt p + \max\{\|(Wx,Kx)\|, \|(u,d)\|, \|b\|\}\big),\\
        r_{\rm dual} &= \big\|W^\top\nu_u + K^\top\nu_d\big\| \le
            \mathrm{tol}\,\big(\sqrt n + \max\{\|W^\top\nu_u\|, \|K^\top\nu_d\|\}\big),

    with :math:`p` the number of constraints (entries of :math:`u` and :math:`d`) and
    :math:`n` that of :math:`x` (so the absolute part is an RMS tolerance per entry); that is,
    the optimality condition :math:`W^\top(\sigma(u)-y) + \alpha K^\top z = 0`,
    :math:`z\in\partial R(d)` of (6) holds with :math:`u \approx Wx+b`, :math:`d\approx Kx`
    up to the two residuals (for :math:`\theta=1`, :math:`r_{\rm dual}` is Boyd's
    :math:`\|\rho A^\top B(z^{k+1}-z^k)\|`; its relative part differs from Boyd's
    :math:`\|A^\top y\|`, which here is :math:`r_{\rm dual}` itself and tends to 0, so the larger
    of the two terms that it sums is used instead). The test runs every ``check_every`` iterations
    (and at ``max_iter``), where the step that yields :math:`x^{k+2}` also returns
    :math:`W^\top\nu_u` of iterate :math:`k+1`; an iteration costs two passes over
    :math:`W` and the O(n) work of the prox steps; the returned iterate is the last one tested.
    A sample that passes the test leaves the working batch there (its iterate is kept), so the
    later iterations of a batch cost only what its running samples cost.

    **Penalty.** Default :math:`\rho_d = 15\,\alpha` and :math:`\rho_u = \rho_d\|K\|^2/\|W\|^2`
    (:math:`8\rho_d/\|W\|^2` for TV), per sample; fixed over the run. The ratio balances the
    two blocks of the x-system (:math:`\rho_u\|W\|^2 = \rho_d\|K\|^2`) and keeps the iteration
    invariant under the rescaling :math:`(W,b,y^\delta,\alpha)\to(sW,sb,sy^\delta,s^2\alpha)`
    of the problem (PAPER_MATH §5 item 1); the level sets the shrinkage threshold
    :math:`\alpha/\rho_d` of the TV prox against the gradients of images with unit dynamic
    range (for images of range :math:`c`, divide both default penalties by :math:`c`).
    Tuned on the circle problem (§4.1) with ``relax`` = 1.8, where the iterations to a
    relative objective gap of :math:`10^{-4}` are 110, 96 and 234 for :math:`N(0,1)` weights and
    :math:`\alpha = 1.5\cdot10^{-3}, 1.5\cdot10^{-2}, 0.15`, and 187 for :math:`U(\pm1/64)`
    weights (against the objective after 6,000 iterations; ``benchmarks/bench_circle.py``, whose
    reference is the lowest of that and cvxpy's, counts 188 there), within 25% of the best
    :math:`\rho_d` of a grid. The default tolerance's
    residual test lands at a gap of about :math:`10^{-5}` there (its tail is sublinear, as
    the TV dual at flat pixels is not unique). A penalty with :math:`\rho_u` or
    :math:`\alpha/\rho_d` outside :math:`[\epsilon, 1/\epsilon]` (:math:`\epsilon` the data
    dtype's machine epsilon; with the default rule an extreme :math:`\alpha`, e.g.
    :math:`10^{-20}` in float64 or :math:`10^{-9}` in float32) is refused with a ValueError:
    there the prox steps lose a term to rounding and the stopping test would pass far from
    the minimiser.

    **Precision of the x-update.** ``x_update_dtype=torch.float32`` on float64 data builds
    the x-update on :math:`W` rounded to float32 and runs its passes over the matrix in single
    precision (half the bytes, the faster arithmetic), while the multipliers, the prox steps and
    the stopping test stay float64; the returned iterate is float64 but carries the x-update's
    float32 rounding. Float64 data is what makes this work: on the badly scaled circle problem
    an iteration wholly in float32 stalls at a relative objective gap far above 1e-4, and does
    so with a float64 x-update too (the rounding of its other, elementwise updates is what
    stalls it), while a float32 x-update inside the float64 iteration follows the float64
    iterates down to a gap of about 1e-6 (``benchmarks/bench_mixed.py`` prints all three, and
    the speed-up; Performance page, section 6). The residuals are then exact to float32
    rounding only, so a ``tol`` much below 1e-6 may not be met: such a sample ends at
    ``max_iter`` with ``converged`` False. A :math:`W` that sees the constant image only weakly
    (:math:`\|We\|/\|W\|_F` below about 1e-3) puts a large constant offset, about the inverse
    of that ratio, into the minimiser; an iteration wholly in float32 cannot resolve it: on
    12×12 test perceptrons at ratios 1e-4 to 3e-7 it passed its test between 1e-5 and 2e-2
    (relative) above the minimum, or ran to ``max_iter``. Solve such a problem in float64.

    Args:
        network: a `LiftedNetwork` of depth 1.
        y: noisy data :math:`y^\delta`, ``(B, *output_shape)``, inside dom Ψ.
        alpha: :math:`\alpha > 0`, a number or one per sample ``(B,)``.
        reg: the regulariser :math:`R(K\cdot)`; default isotropic `TV()`; `SquaredNorm` and
            anisotropic TV work too (any `Regularizer` through its ``prox_conj_scaled``).
        rho: penalty; ``None`` for the rule above, a number for :math:`\rho_u=\rho_d`, or a
            pair ``(rho_u, rho_d)``.
        relax: over-relaxation :math:`\theta\in(0,2)` (1 is plain ADMM).
        max_iter: iteration budget.
        tol: absolute and relative tolerance of the residual test.
        x0: optional starting point (warm start); then :math:`u^0 = Wx^0+b`,
            :math:`d^0 = Kx^0`, :math:`\lambda^0=0` (unless ``z0`` is given). Default zero.
        z0: optional dual start, ``(B, *reg.dual_shape)``: a previous result's ``dual``
            (:math:`z=\nu_d/\alpha`, admm's or pdhg's). The multipliers then start at
            :math:`\nu_d^0=\alpha z^0` and :math:`\nu_u^0=\sigma(Wx^0+b)-y^\delta\in\partial G(u^0)`,
            so that ``x0=result.x, z0=result.dual`` resumes a run (to a larger ``max_iter`` or a
            smaller ``tol``) or continues from a nearby :math:`\alpha` without rebuilding the
            multipliers from zero. Circle problem (:math:`N(0,1)` weights, :math:`\alpha=0.015`):
            a converged run restarted with ``x0`` alone takes 170 iterations to pass its test
            again, with ``z0`` too 40; a run stopped at ``tol=1e-4`` (70 iterations) and resumed
            to ``1e-7`` takes 460 more with ``z0`` (510 with ``x0`` alone), one run 540.
        check_every: iterations between stopping tests; each computes the residuals and the
            objective, records them, and asks the host whether any sample is still running.
        x_update_dtype: ``None`` (the data's dtype), ``torch.float32`` or ``torch.float64``:
            the precision of the x-update (see above); ``params["x_update_dtype"]`` is the one
            used.
        progress: show a tqdm progress bar.
        callback: called after each iteration with a dict (``iteration``, ``x``, ``z``,
            ``active``); returning ``True`` stops the solver.

    Returns:
        `Result` with ``x``; ``dual`` :math:`z=\nu_d/\alpha` (shape ``(B, *reg.dual_shape)``),
        which lies in :math:`\partial R(d)` (for TV the pixelwise unit ball) and is comparable
        with pdhg's :math:`z`; per-sample ``iterations``, ``converged``; ``history`` with
        ``objective`` (at :math:`x^k`), ``primal_residual``, ``dual_residual`` at each test
        (row ``j`` is iterate ``history["iteration"][j]``; every iteration for
        ``check_every=1``);
        ``params`` with ``rho_u``, ``rho_d`` (``(B,)``), ``relax``, ``x_update``
        (``"woodbury"``, ``"cholesky"`` or ``"cg"``), ``x_update_dtype``, ``norm_W`` (None when ``rho`` is
        given), ``tol``, ``max_iter``.
        Tensors without autograd history: the solver runs under ``torch.no_grad()``, so
        data or weights that require grad are constants to it.
    """
    network = check_perceptron(network, "admm")
    reg = check_regularizer(reg, network)
    relax = check_real(relax, "relax")
    if not 0.0 < relax < 2.0:
        raise ValueError(f"relax must lie in (0, 2) for over-relaxed ADMM to converge, got {relax}")
    max_iter = check_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol", allow_zero=True)
    check_every = check_int(check_every, "check_every", minimum=1)
    y = check_data(network, y)
    network = network.to(device=y.device, dtype=y.dtype)
    alpha_t = check_alpha(alpha, y.shape[0], y)
    x_update_dtype = _check_x_update_dtype(x_update_dtype)
    groups = _Groups(network.layers[0].affine, reg, alpha_t, rho, y, x_update_dtype)
    x = check_start(network, x0, y)
    splitting = None if z0 is None else _splitting_from(network, reg, groups, y, x, alpha_t,
                                                       _dual_start(reg, network, z0, y))
    x, z, log, _ = _admm(network, y, alpha_t, reg, groups, x, relax=relax, max_iter=max_iter, tol=tol,
                         check_every=check_every, progress=progress, callback=callback,
                         splitting=splitting)
    iterations, converged, message, history = log.finish("admm", tol, x)
    params = {"rho_u": groups.rho_u.cpu(), "rho_d": groups.rho_d.cpu(), "relax": relax,
              "x_update": groups.kind, "x_update_dtype": y.dtype if x_update_dtype is None else x_update_dtype,
              "norm_W": groups.norm_w, "tol": tol, "max_iter": max_iter}
    return Result(x=x, aux=[], dual=z, iterations=iterations, converged=converged, message=message,
                  history=history, alpha=alpha_t.cpu(), params=params)


def _splitting_from(network: LiftedNetwork, reg: Regularizer, groups: _Groups, y: Tensor, x: Tensor,
                    alpha: Tensor, z: Tensor) -> Splitting:
    r"""ADMM's state at a primal-dual pair :math:`(x, z)`: :math:`u = Wx+b`, :math:`d = Kx`,
    :math:`\lambda_u = (\sigma(u)-y^\delta)/\rho_u` (so :math:`\nu_u\in\partial G(u)` holds, as
    after a u-prox) and :math:`\lambda_d = (\alpha/\rho_d)\,z`."""
    layer = network.layers[0]
    u = layer.affine.forward(x)
    lam_u = layer.activation.bregman_grad(y, u).div_(bview(groups.rho_u, u))
    lam_d = bview(alpha / groups.rho_d, z) * z
    return u, lam_u, reg.K(x).add_(lam_d), lam_d


def _admm(network: LiftedNetwork, y: Tensor, alpha_t: Tensor, reg: Regularizer, groups: _Groups,
          x: Tensor, *, relax: float, max_iter: int, tol: float, check_every: int,
          progress: bool = False, callback: Callable[[dict[str, Any]], Any] | None = None,
          splitting: Splitting | None = None) -> tuple[Tensor, Tensor, IterationLog, Splitting]:
    """The loop of `admm` on checked arguments, with the x-update ``groups`` prepared for
    ``alpha_t`` (so that `lifted_cd` prepares it once for all its sweeps).

    ``splitting``: the state ``(u, λ_u, v_d, λ_d)`` (whole batch) that a previous call returned,
    to continue from (then ``x`` only warm-starts a CG x-update); ``None`` starts from
    :math:`u = Wx+b`, :math:`d = Kx` and zero multipliers. Returns ``x``, ``z`` and the
    iteration log, all on the data's device (no host synchronisation beyond the stopping tests),
    and the state after each sample's last iteration (at its stopping test for a sample that
    passed one), so that a call continued from it runs on as one longer call would.
    """
    batch = y.shape[0]
    layer = network.layers[0]
    affine, act = layer.affine, layer.activation
    b = affine.forward(torch.zeros_like(x[:1]))  # (1, *out_shape)
    if splitting is None:
        u, v_d = affine.forward(x), reg.K(x)
        lam_u, lam_d = torch.zeros_like(u), torch.zeros_like(v_d)
    else:
        u, lam_u, v_d, lam_d = splitting
    sqrt_n, sqrt_p = math.sqrt(x[0].numel()), math.sqrt(u[0].numel() + v_d[0].numel())
    x_out, z_out = torch.empty_like(x), torch.empty_like(v_d)
    state_out = [torch.empty_like(t) for t in (u, lam_u, v_d, lam_d)]
    # Finished samples leave the working batch at the check that stops them (their iterate goes
    # to x_out, z_out): `rows` are the batch indices of the working samples (None while all run).
    rows, alpha_w, whole_groups = None, alpha_t, groups
    s_d = bview(alpha_w / groups.rho_d, v_d)  # d-prox parameter α/ρ_d
    # x is carried as the x-update's state (`XStep.state`), made an image only where needed
    x = groups.state(x)
    # The d-block is carried as (v_d, λ_d) with d = v_d - λ_d and λ_d = s_d z (scaled dual):
    # the relaxed point is then θKx + (1-θ)v_d + θλ_d, which saves a full-size pass per iteration.
    x_next, wx_next, kx_next, _ = groups.step(u - b - lam_u, torch.add(v_d, lam_d, alpha=-2.0), None, x)
    recorded: dict[str, Tensor] = {}

    def whole(name: str, value: Tensor) -> Tensor:
        """A per-sample record for the whole batch (finished samples keep their last value)."""
        recorded[name] = value if rows is None else recorded[name].index_copy(0, rows, value)
        return recorded[name]

    log = IterationLog(batch, y, max_iter=max_iter, check_every=check_every, progress=progress,
                       desc="admm", callback=callback)
    k = 0
    while k < max_iter:
        check = (k + 1) % check_every == 0 or k + 1 == max_iter
        wx, kx = wx_next, kx_next  # W x^{k+1} (without b), K x^{k+1}
        v_u = torch.add(lam_u, wx, alpha=relax).add_(u, alpha=1.0 - relax).add_(b, alpha=relax)
        v_d = torch.lerp(v_d, kx, relax).add_(lam_d, alpha=relax)
        u = groups.u_prox(act, y, v_u)
        lam_u = v_u.sub_(u)
        lam_d = reg.prox_conj_scaled(v_d, s_d)  # λ_d = s_d z, z = ν_d/α ∈ ∂R(d)
        # iterate k+1 is (x_next, u, d = v_d - λ_d, λ); its step gives x^{k+2} (and Wᵀλ_u to test it)
        x = x_next
        x_next, wx_next, kx_next, wt_lam = groups.step(
            u - b - lam_u, torch.add(v_d, lam_d, alpha=-2.0), lam_u if check else None, x)
        log.count()
        if check:
            d, wxb = v_d - lam_d, wx + b
            wt_nu = bview(groups.rho_u, wt_lam) * wt_lam
            kt_nu = reg.K_adj(bview(groups.rho_d, lam_d) * lam_d)  # Kᵀ(α z)
            r_pri = torch.hypot(sample_norm(wxb - u), sample_norm(kx - d))
            r_dual = sample_norm(wt_nu + kt_nu)
            scale_pri = torch.maximum(
                torch.maximum(torch.hypot(sample_norm(wx), sample_norm(kx)),
                              torch.hypot(sample_norm(u), sample_norm(d))),
                sample_norm(b).expand(x.shape[0]),
            )
            scale_dual = torch.maximum(sample_norm(wt_nu), sample_norm(kt_nu))
            objective = act.bregman(y, wxb, check=False, y_in_domain=True) + alpha_w * reg.R(kx)
            log.record(at=k + 1, objective=whole("objective", objective),
                       primal_residual=whole("primal_residual", r_pri),
                       dual_residual=whole("dual_residual", r_dual))
            done = (r_pri <= tol * (sqrt_p + scale_pri)) & (r_dual <= tol * (sqrt_n + scale_dual))
            log.deactivate(done if rows is None else torch.zeros_like(log.active).index_copy(0, rows, done))
            # one host check: compact the working batch (pointless after the last iteration)
            if k + 1 < max_iter and 0 < int(done.sum()) < done.numel():
                gone, keep = done.nonzero().reshape(-1), (~done).nonzero().reshape(-1)
                at = gone if rows is None else rows[gone]
                x_out[at], z_out[at] = groups.image(x[gone]), (lam_d / s_d)[gone]
                for out, t in zip(state_out, (u, lam_u, v_d, lam_d)):
                    out[at] = t[gone]
                rows = keep if rows is None else rows[keep]
                x, u, v_d, lam_d, lam_u, x_next, wx_next, kx_next, y, alpha_w, s_d = (
                    t[keep] for t in (x, u, v_d, lam_d, lam_u, x_next, wx_next, kx_next, y,
                                      alpha_w, s_d))
                groups = whole_groups.subset(rows)
        k += 1
        state = None
        if callback is not None:  # the whole batch, finished samples at their final iterate
            state = {"x": _merge(x_out, rows, groups.image(x)), "z": _merge(z_out, rows, lam_d / s_d)}
        if not log.keep_going(k, state):
            break

    x, z = _merge(x_out, rows, groups.image(x)), _merge(z_out, rows, lam_d / s_d)
    splitting = tuple(_merge(out, rows, t) for out, t in zip(state_out, (u, lam_u, v_d, lam_d)))
    return x, z, log, splitting


def _merge(out: Tensor, rows: Tensor | None, working: Tensor) -> Tensor:
    """The whole batch: ``out`` (finished samples) with the ``working`` samples at ``rows``."""
    return working if rows is None else out.index_copy(0, rows, working)
