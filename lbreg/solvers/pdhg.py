"""Generalised primal-dual hybrid gradient method for the perceptron problem, eqs. (13)-(14)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from .._checks import check_exact_tensor, check_int, check_positive
from ..activations import Activation, activation_of
from ..network import AffineMap, LiftedNetwork
from ..regularizers import TV, Regularizer
from .result import (
    IterationLog,
    Result,
    bview,
    check_alpha,
    check_data,
    check_iterate,
    check_perceptron,
    check_regularizer,
    check_start,
    freeze_,
    sample_norm,
)

__all__ = ["pdhg", "pdhg_step", "default_steps", "primal_dual_gap"]

# Iterations whose objectives pdhg evaluates together: it keeps that many copies of y and of
# Wx+b, so the block is capped independently of check_every.
OBJECTIVE_BLOCK = 10


def default_steps(norm_W: float, alpha: Tensor, reg: Regularizer) -> tuple[Tensor, Tensor]:
    r"""The paper's step sizes for eq. (14), per sample.

    .. math::
        \tau_z = \frac{1}{\alpha\,\|K\|^2} \;(= \tfrac{1}{8\alpha} \text{ for TV}),\qquad
        \tau_x = \frac{1}{\|W\|^2 + \alpha},

    which gives equality in the Chambolle-Pock (2016) condition
    :math:`(1/\tau_x - \|W\|^2)/\tau_z \ge \alpha^2\|K\|^2` (PAPER_MATH §3, "Step sizes").
    An estimate of :math:`\|W\|` a little low (power iteration, `AffineMap.norm`, for
    convolutions) breaks that equality but not convergence: the gradient of
    :math:`B_\Psi(y, W\cdot+b)` is :math:`\|W\|^2`-Lipschitz (:math:`\sigma` is a proximal map),
    and the Condat-Vũ condition (Condat 2013, Thm 3.1)
    :math:`1/\tau_x - \tau_z\alpha^2\|K\|^2 > \|W\|^2/2` reads, for these steps,
    :math:`\|W\|_{\rm est}^2 > \|W\|^2/2`.

    Args:
        norm_W: spectral norm :math:`\|W\|`.
        alpha: ``(B,)`` regularisation parameters.
        reg: the regulariser, whose ``norm_K_sq`` bounds :math:`\|K\|^2`.

    Returns:
        ``(tau_x, tau_z)``, each ``(B,)``.
    """
    if not isinstance(reg, Regularizer):
        raise TypeError(f"reg must be a lbreg.regularizers.Regularizer, got {type(reg).__name__}")
    tau_z = 1.0 / (alpha * reg.norm_K_sq)
    tau_x = 1.0 / (norm_W**2 + alpha)
    return tau_x, tau_z


@torch.no_grad()
def pdhg_step(
    affine: AffineMap,
    activation: Activation,
    y: Tensor,
    x: Tensor,
    z: Tensor,
    alpha: float | Tensor,
    reg: Regularizer,
    tau_x: float | Tensor,
    tau_z: float | Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""One step of the generalised PDHG method, eq. (14) (eq. (13) for a general regulariser).

    .. math::
        x^{k+1} &= x^k - \tau_x\big[W^\top(\sigma(Wx^k+b) - y) + \alpha K^\top z^k\big],\\
        z^{k+1} &= \operatorname{prox}_{\tau_z\alpha R^*}\big(z^k + \tau_z\alpha K(2x^{k+1}-x^k)\big),

    which for TV (:math:`K=\nabla`, :math:`K^\top=-\operatorname{div}`) is the pixelwise
    projection of eq. (14b). The gradient uses :math:`\nabla_z B_\Psi(y, z) = \sigma(z) - y`
    and needs no derivative of :math:`\sigma`.

    Args:
        affine: the layer's affine map :math:`x \mapsto Wx+b`.
        activation: the layer's activation :math:`\sigma = \operatorname{prox}_\Psi`.
        y: data ``(B, *out_shape)``.
        x, z: current primal ``(B, *in_shape)`` and dual ``(B, *reg.dual_shape)`` iterates.
        alpha, tau_x, tau_z: the parameter and step sizes, each a positive number (shared by
            all samples) or a tensor of ``B`` positive values (one per sample).
        reg: the regulariser :math:`R(K\cdot)` (`TV()` for eq. (14)).

    Returns:
        ``(x_new, z_new, objective, residual)`` where ``objective`` is
        :math:`B_\Psi(y, Wx^k+b) + \alpha R(Kx^k)` and ``residual`` the norm of the
        Lagrangian's gradient :math:`\|W^\top(\sigma(Wx^k+b)-y) + \alpha K^\top z^k\|`, both
        per sample at the *incoming* iterate ``(x^k, z^k)``.
        Computed without autograd, as in the solvers: inputs that require grad are constants.
    """
    activation = activation_of(activation)
    if not isinstance(affine, AffineMap):
        raise TypeError(f"affine must be a lbreg.network.AffineMap, got {type(affine).__name__}")
    if not isinstance(reg, Regularizer):
        raise TypeError(f"reg must be an lbreg Regularizer such as TV(), got {type(reg).__name__}")
    batch = check_iterate(x, "x", affine.in_shape).shape[0]
    check_iterate(z, "z (the dual iterate)", reg.dual_shape(affine.in_shape), batch)
    check_iterate(y, "y", affine.out_shape, batch)
    for t, name in ((x, "x"), (y, "y")):
        affine._operand(t, name)  # the weights' dtype and device
    activation.check_domain(y)
    alpha, tau_x, tau_z = (check_alpha(value, batch, x, name=name)
                           for value, name in ((alpha, "alpha"), (tau_x, "tau_x"), (tau_z, "tau_z")))
    x_new, z_new, _, objective, residual = _step(
        affine, activation, y, x, z, reg.K(x), alpha, reg, bview(tau_x, x), bview(tau_z * alpha, z))
    return x_new, z_new, objective, residual


def _step(
    affine: AffineMap,
    activation: Activation,
    y: Tensor,
    x: Tensor,
    z: Tensor,
    kx: Tensor,
    alpha: Tensor,
    reg: Regularizer,
    tau_x: Tensor,
    s: Tensor,
    wx: Tensor | None = None,
    y_in_domain: bool = False,
    with_objective: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]:
    r"""`pdhg_step` given :math:`Kx^k` (``kx``), with the per-sample steps ``tau_x`` and
    :math:`s = \tau_z\alpha` already shaped to broadcast against ``x`` and ``z`` (`bview`, done
    once per solve) and, if known, ``wx`` :math:`= Wx^k+b`; ``y_in_domain=True``: the caller
    validated ``y`` (a solver's data), so the objective needs no masking of entries outside
    dom Ψ (`Activation.bregman`).

    Returns ``(x_new, z_new, kx_new, objective, residual)``: :math:`K(2x^{k+1}-x^k)` is formed
    as :math:`2Kx^{k+1}-Kx^k` and :math:`R(Kx^k)` from ``kx``, so that a loop that carries
    :math:`Kx` applies :math:`K` once per iteration; the objective shares :math:`\sigma(Wx^k+b)-y`
    with the gradient (`Activation.bregman_and_grad`); the projection (14b) runs in place on
    the step's own tensor; a sample with ``tau_x`` = 0 keeps its :math:`x` exactly.
    ``with_objective=False``: the objective is not evaluated (returned as None), for a loop that
    does not record it.
    """
    wx = affine.forward(x) if wx is None else wx
    if with_objective:
        bregman, residual_y = activation.bregman_and_grad(y, wx, y_in_domain=y_in_domain)
    else:
        residual_y = activation.bregman_grad(y, wx)
    grad = _grad_x(affine, residual_y, z, alpha.view(tau_x.shape), reg)
    x_new = torch.addcmul(x, tau_x, grad, value=-1.0)
    kx_new = reg.K(x_new)
    z_new = reg.prox_conj_(torch.addcmul(z, s, kx_new, value=2.0).addcmul_(s, kx, value=-1.0), s)
    objective = bregman + alpha * reg.R(kx) if with_objective else None
    return x_new, z_new, kx_new, objective, sample_norm(grad)


class _TVBuffers:
    r"""`_step` for `TV` on fixed buffers: the arithmetic of `_step`, bit for bit, on two sets
    of :math:`(x, z, Kx)` that swap roles every iteration, with every view of them bound once.

    At batch 1 a pdhg iteration is bound by the number of tensor operations and views it
    creates, not by arithmetic: binding the gradient components, the shifted slices of
    :math:`x` and of :math:`z` once per solve, and writing every result with ``out=``, leaves
    the operations of the step but drops the validation, allocation and view creation that
    `TV.K`, `TV.add_K_adj_`, `TV.prox_conj_` and `TV.R` do per call. The boundary zeros of
    :math:`Kx` (last row of component 0, last column of component 1) are written once.
    Circle problem, batch 1, one thread, :math:`W` cut to one row so that only the library's
    own operations remain: 0.28 ms per iteration instead of 0.39 ms.
    Returned tensors are buffers, overwritten two iterations later.
    """

    def __init__(self, reg: TV, x: Tensor, z: Tensor, kx: Tensor, alpha: Tensor) -> None:
        self.isotropic = reg.isotropic
        self.alpha = bview(alpha, x)  # per-sample α, shaped once for αKᵀz
        self.sets = [_TVSet(x.clone(), z.clone(), kx.clone()),
                     _TVSet(torch.empty_like(x), torch.empty_like(z), kx.clone())]

    @property
    def current(self) -> _TVSet:
        return self.sets[0]

    def step(self, affine: AffineMap, activation: Activation, y: Tensor, wx: Tensor,
             tau_x: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """`_step` (``with_objective=False``) from the current set into the other, which then
        becomes current: ``(x_new, z_new, kx_new, R(Kx^k), residual)``."""
        cur, nxt = self.sets
        grad = affine.adjoint(activation.bregman_grad(y, wx))
        h, w = grad.shape[-2], grad.shape[-1]
        a = self.alpha  # αKᵀz = -α div z, added as `add_div_` does
        grad.narrow(-2, 0, h - 1).addcmul_(cur.z0_rows, a, value=-1.0)
        grad.narrow(-2, 1, h - 1).addcmul_(cur.z0_rows, a, value=1.0)
        grad.narrow(-1, 0, w - 1).addcmul_(cur.z1_cols, a, value=-1.0)
        grad.narrow(-1, 1, w - 1).addcmul_(cur.z1_cols, a, value=1.0)
        torch.addcmul(cur.x, tau_x, grad, value=-1.0, out=nxt.x)
        torch.sub(nxt.x_down, nxt.x_rows, out=nxt.kx0_rows)
        torch.sub(nxt.x_right, nxt.x_cols, out=nxt.kx1_cols)
        torch.addcmul(cur.z, s, nxt.kx, value=2.0, out=nxt.z).addcmul_(s, cur.kx, value=-1.0)
        if self.isotropic:  # `project_dual_ball`, radius 1, in place
            torch.hypot(nxt.z0, nxt.z1, out=nxt.pixel)
            nxt.z.div_(nxt.pixel_field.clamp_(min=1.0))
            r_kx = torch.hypot(cur.kx0, cur.kx1, out=cur.pixel)
        else:
            nxt.z.clamp_(-1.0, 1.0)
            r_kx = torch.add(cur.kx0.abs(), cur.kx1.abs(), out=cur.pixel)
        self.sets.reverse()
        return nxt.x, nxt.z, nxt.kx, r_kx.reshape(r_kx.shape[0], -1).sum(dim=1), sample_norm(grad)


class _TVSet:
    """One set of `_TVBuffers`: ``x`` ``(B, ..., H, W)``, ``z`` and ``kx`` ``(B, ..., 2, H, W)``,
    their views, and a pixel buffer for the projection and R."""

    def __init__(self, x: Tensor, z: Tensor, kx: Tensor) -> None:
        h, w = x.shape[-2], x.shape[-1]
        self.x, self.z, self.kx = x, z, kx
        self.x_down, self.x_rows = x.narrow(-2, 1, h - 1), x.narrow(-2, 0, h - 1)
        self.x_right, self.x_cols = x.narrow(-1, 1, w - 1), x.narrow(-1, 0, w - 1)
        self.kx0, self.kx1 = kx.select(-3, 0), kx.select(-3, 1)
        self.kx0_rows, self.kx1_cols = self.kx0.narrow(-2, 0, h - 1), self.kx1.narrow(-1, 0, w - 1)
        self.z0, self.z1 = z.select(-3, 0), z.select(-3, 1)
        self.z0_rows, self.z1_cols = self.z0.narrow(-2, 0, h - 1), self.z1.narrow(-1, 0, w - 1)
        self.pixel_field = z.new_empty(*z.shape[:-3], 1, h, w)
        self.pixel = self.pixel_field.select(-3, 0)


def _grad_x(affine: AffineMap, residual_y: Tensor, z: Tensor, alpha: Tensor, reg: Regularizer) -> Tensor:
    r"""The Lagrangian's gradient :math:`\nabla_x\mathcal L = W^\top(\sigma(Wx+b)-y) + \alpha K^\top z`
    of eq. (14a), given ``residual_y`` :math:`= \sigma(Wx+b)-y` and ``alpha`` shaped to
    broadcast against :math:`x`."""
    return reg.add_K_adj_(affine.adjoint(residual_y), z, alpha)


def _gap_radius(network: LiftedNetwork, radius: float | None, name: str) -> float:
    r"""The radius :math:`\rho` of `primal_dual_gap`: ``radius``, or :math:`\sqrt n` by default."""
    return math.sqrt(math.prod(network.input_shape)) if radius is None else check_positive(radius, name)


def _gap_from_residual(
    kx: Tensor, z: Tensor, alpha: Tensor, reg: Regularizer, residual: Tensor, radius: float,
    r_kx: Tensor | None = None,
) -> Tensor | None:
    r"""`primal_dual_gap` from :math:`Kx` and the Lagrangian's gradient norm known at :math:`(x, z)`
    (and :math:`R(Kx)`, ``r_kx``, if known)."""
    conj = reg.conj_value(z)
    if conj is None:
        return None
    pairing = (kx * z).reshape(kx.shape[0], -1).sum(dim=1)
    r_kx = reg.R(kx) if r_kx is None else r_kx
    return alpha * (r_kx + conj - pairing) + radius * residual


def _objectives(activation: Activation, y_rows: Tensor, pending: list[tuple[Tensor, Tensor]],
                alpha: Tensor) -> Tensor:
    r"""The objectives :math:`B_\Psi(y, Wx^k+b) + \alpha R(Kx^k)` of consecutive iterates, one row
    ``(B,)`` each, from their pairs :math:`(Wx^k+b,\ R(Kx^k))` in ``pending``: :math:`B_\Psi` is
    evaluated once for all of them (``y_rows``: ``y`` repeated at least ``len(pending)`` times
    along the batch axis, validated data), with the values of one evaluation per iterate."""
    n, batch = len(pending), alpha.shape[0]
    wx = torch.cat([w for w, _ in pending])
    bregman = activation.bregman(y_rows[: n * batch], wx, check=False, y_in_domain=True)
    return bregman.view(n, batch) + alpha * torch.stack([r for _, r in pending])


@torch.no_grad()
def primal_dual_gap(
    network: LiftedNetwork,
    y: Tensor,
    x: Tensor,
    z: Tensor,
    alpha: float | Tensor,
    reg: Regularizer | None = None,
    radius: float | None = None,
) -> Tensor:
    r"""Partial primal-dual gap of the saddle problem (12) at :math:`(x, z)`, per sample.

    With the Lagrangian :math:`\mathcal L(x, z) = B_\Psi(y, Wx+b) + \alpha\langle Kx, z\rangle
    - \alpha R^*(z)` and the primal objective :math:`P(x) = \max_z\mathcal L(x, z) =
    B_\Psi(y, Wx+b) + \alpha R(Kx)` of (11), the gap on the ball
    :math:`\{x' : \|x'-x\|\le\rho\}` (Chambolle & Pock 2011, §2) is bounded, by convexity of
    :math:`\mathcal L(\cdot, z)`, by

    .. math::
        G_\rho(x, z) = \alpha\big[R(Kx) + R^*(z) - \langle Kx, z\rangle\big]
            + \rho\,\big\|W^\top(\sigma(Wx+b) - y) + \alpha K^\top z\big\|
        \;\ge\; P(x) - \min_{\|x'-x\|\le\rho}\mathcal L(x', z) \;\ge\; 0 .

    Both terms are non-negative (Fenchel-Young; for TV and :math:`z\in C`,
    :math:`\langle\nabla x, z\rangle\le\mathrm{TV}(x)`), and both vanish exactly at a saddle
    point (the optimality conditions of PAPER_MATH §6 item 9). Whenever
    :math:`\|x - x^\star\|\le\rho` for a minimiser :math:`x^\star`, it certifies
    :math:`P(x) - P(x^\star)\le G_\rho(x, z)`. The default :math:`\rho = \sqrt n`
    (:math:`n` entries of :math:`x`) is the diameter of :math:`[0,1]^n`: a bound for images
    with values in :math:`[0, 1]`.

    Args:
        network: a depth-1 `LiftedNetwork`.
        y: data ``(B, *output_shape)``.
        x: ``(B, *input_shape)``.
        z: ``(B, *reg.dual_shape)``,
            in the dual domain (for TV, pixelwise in the unit ball: any pdhg or admm ``dual``;
            a sample whose ``z`` lies outside gets the gap :math:`+\infty`, as :math:`R^*(z)` is).
        alpha: :math:`\alpha > 0`, a number or ``(B,)``.
        reg: the regulariser; default `TV()`. Must be `TV` or `SquaredNorm` (whose
            :math:`R^*` is known).
        radius: :math:`\rho`; default :math:`\sqrt n`.

    Returns:
        ``(B,)`` gaps, without autograd history (a certificate, computed as the solvers compute:
        under ``torch.no_grad()``).
    """
    network = check_perceptron(network, "primal_dual_gap")
    reg = check_regularizer(reg, network)
    y = check_data(network, y)
    for t, name in ((x, "x"), (z, "z")):
        if not isinstance(t, Tensor):  # None would be the solvers' zero start, not an iterate
            raise TypeError(f"{name} must be a torch.Tensor (an iterate), got {type(t).__name__}")
    x, z = check_start(network, x, y, name="x"), _dual_start(reg, network, z, y, name="z")
    if reg.conj_value(z) is None:
        raise TypeError(f"reg must be TV or SquaredNorm (known conjugate R*), got {type(reg).__name__}")
    alpha_t = check_alpha(alpha, y.shape[0], y)
    rho = _gap_radius(network, radius, "radius")
    layer = network.layers[0]
    return _gap_at(layer.affine.to(device=y.device, dtype=y.dtype), layer.activation, reg, y, x, z, alpha_t, rho)[0]


def _gap_at(affine: AffineMap, activation: Activation, reg: Regularizer, y: Tensor, x: Tensor, z: Tensor,
            alpha: Tensor, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""`primal_dual_gap` at validated ``(x, z)``, with the :math:`Wx+b` and :math:`R(Kx)` it
    computed on the way, for a caller that also wants the objective there."""
    wx, kx = affine.forward(x), reg.K(x)
    r_kx = reg.R(kx)
    grad = _grad_x(affine, activation.bregman_grad(y, wx), z, bview(alpha, x), reg)
    return _gap_from_residual(kx, z, alpha, reg, sample_norm(grad), radius, r_kx), wx, r_kx


@torch.no_grad()
def pdhg(
    network: LiftedNetwork,
    y: Tensor,
    alpha: float | Tensor,
    reg: Regularizer | None = None,
    *,
    tau_x: float | None = None,
    tau_z: float | None = None,
    max_iter: int = 10_000,
    tol: float = 1e-5,
    x0: Tensor | None = None,
    z0: Tensor | None = None,
    check_every: int = 10,
    gap_radius: float | None = None,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> Result:
    r"""Invert a single-layer network by the generalised PDHG method, eq. (14).

    Solves the regularised perceptron problem (6) in its saddle form (12),

    .. math::
        \min_x \max_z\; B_\Psi\big(y^\delta, Wx+b\big) + \alpha\langle Kx, z\rangle - \alpha R^*(z),

    for every sample of the batch, from :math:`x^0 = 0, z^0 = 0` (the paper's start), stopping a
    sample when :math:`\|x^{k+1}-x^k\| < \mathrm{tol}` and :math:`\|z^{k+1}-z^k\| < \mathrm{tol}`
    (absolute, per sample) or at ``max_iter``.

    Args:
        network: a `LiftedNetwork` of depth 1 (one affine map and its activation).
        y: noisy data :math:`y^\delta`, ``(B, *output_shape)``, inside dom Ψ.
        alpha: regularisation parameter :math:`\alpha > 0`, a number or one per sample ``(B,)``.
        reg: the regulariser :math:`R(K\cdot)`; default isotropic `TV()`.
        tau_x, tau_z: step sizes; default the paper's, see `default_steps`.
        max_iter: iteration budget (the paper: 10,000).
        tol: threshold of the change-based stopping test (the paper: 1e-5).
        x0, z0: optional starting points (warm starts).
        check_every: how often the host checks whether any sample is still running, and
            how often the primal-dual gap is recorded.
        gap_radius: the radius :math:`\rho` of `primal_dual_gap` (default :math:`\sqrt n`). The
            recorded gap bounds :math:`P(x^k)-P(x^\star)` only while
            :math:`\|x^k-x^\star\|\le\rho`, which the default ensures for images with
            values in [0, 1]; pass a larger radius for inputs of a wider range.
        progress: show a tqdm progress bar.
        callback: called after each iteration with a dict (``iteration``, ``x``, ``z``,
            ``active``); returning ``True`` stops the solver.

    Returns:
        `Result` with ``x``, ``dual = z``, per-sample ``iterations`` and ``converged``, and
        ``history`` holding ``objective``, ``residual``, ``change_x`` and ``change_z`` per
        iteration (row ``k`` at iterate ``k``), and, for TV and `SquaredNorm`, ``gap``
        ``(C, B)``: `primal_dual_gap` at the iterates ``gap_iteration`` ``(C,)`` (every
        ``check_every``-th iterate from 0, and the returned one last); ``message`` then also
        gives the gap at the returned iterate for the sample where it is largest relative to
        its objective there (an upper bound, loose while the gradient term is large), a check
        on the change-based stopping test, which passes early where the steps are tiny. The gap reuses the
        step's products with :math:`W`, so it costs no extra matrix product except for the
        returned iterate (its gap and objective), and no host synchronisation. ``params`` holds ``tau_x``,
        ``tau_z``, ``norm_W``, ``gap_radius``.
        Tensors without autograd history: the solver runs under ``torch.no_grad()``, so
        data or weights that require grad are constants to it.
    """
    network = check_perceptron(network, "pdhg")
    reg = check_regularizer(reg, network)
    max_iter = check_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol", allow_zero=True)
    check_every = check_int(check_every, "check_every", minimum=1)
    y = check_data(network, y)
    network = network.to(device=y.device, dtype=y.dtype)
    batch = y.shape[0]
    alpha_t = check_alpha(alpha, batch, y)
    layer = network.layers[0]
    norm_W = layer.affine.norm()
    tau_x_t, tau_z_t = default_steps(norm_W, alpha_t, reg)
    if tau_x is not None:
        tau_x_t = torch.full_like(alpha_t, check_positive(tau_x, "tau_x"))
    if tau_z is not None:
        tau_z_t = torch.full_like(alpha_t, check_positive(tau_z, "tau_z"))

    radius = _gap_radius(network, gap_radius, "gap_radius")
    gaps: list[Tensor] = []
    gap_its: list[int] = []

    x = check_start(network, x0, y)
    z = _dual_start(reg, network, z0, y)
    with_gap = reg.conj_value(z) is not None
    log = IterationLog(batch, y, max_iter=max_iter, check_every=check_every, progress=progress,
                       desc="pdhg", callback=callback)
    kx, s = reg.K(x), bview(tau_z_t * alpha_t, z)
    # a finished sample takes a zero step (its entry here is set to 0), so that its x stays
    # exactly where it stopped; its z is frozen below
    tau_x_running = bview(tau_x_t, x).clone()
    # the objective of iterate k is recorded from (Wx^k+b, R(Kx^k)) once per OBJECTIVE_BLOCK
    # iterations: B_Ψ evaluated for the whole block at once, seven tensor operations per
    # iteration fewer (the values are those of one evaluation per iterate)
    block = min(OBJECTIVE_BLOCK, max_iter)
    y_rows = y.repeat(block, *[1] * (y.dim() - 1))
    pending: list[tuple[Tensor, Tensor]] = []
    # TV: the same step on bound buffers (`_TVBuffers`); x, z, kx are then its buffers
    buffers = _TVBuffers(reg, x, z, kx, alpha_t) if type(reg) is TV else None
    if buffers is not None:
        x, z, kx = buffers.current.x, buffers.current.z, buffers.current.kx
    k = 0
    while k < max_iter:
        wx = layer.affine.forward(x)
        if buffers is None:
            x_new, z_new, kx_new, _, residual = _step(
                layer.affine, layer.activation, y, x, z, kx, alpha_t, reg, tau_x_running, s, wx,
                y_in_domain=True, with_objective=False,  # y checked by check_data
            )
            r_kx = reg.R(kx)
        else:
            x_new, z_new, kx_new, r_kx, residual = buffers.step(
                layer.affine, layer.activation, y, wx, tau_x_running, s)
        pending.append((wx, r_kx))
        if with_gap and k % check_every == 0:
            gaps.append(_gap_from_residual(kx, z, alpha_t, reg, residual, radius, r_kx))
            gap_its.append(k)
        # ‖x_new - x‖ = tau_x ‖∇_x L‖ for a running sample
        change_x, change_z = tau_x_t * residual, sample_norm(z_new - z)
        log.record(residual=residual, change_x=change_x, change_z=change_z)
        x, z, kx = x_new, freeze_(log.active, z_new, z), kx_new
        done = (change_x < tol) & (change_z < tol)
        log.update(done)
        tau_x_running.masked_fill_(bview(done, x), 0.0)
        k += 1
        if len(pending) == block:
            log.record_rows(objective=_objectives(layer.activation, y_rows, pending, alpha_t))
            pending = []
        # a callback may keep what it is given: copies of buffers that later iterations overwrite
        state = {"x": x, "z": z} if buffers is None or callback is None else {"x": x.clone(), "z": z.clone()}
        if not log.keep_going(k, state):
            break
    if pending:
        log.record_rows(objective=_objectives(layer.activation, y_rows, pending, alpha_t))

    iterations, converged, message, history = log.finish("pdhg", tol, x)
    if with_gap:
        # the returned iterate (the loop recorded gaps only at iterates before it): its gap,
        # and its objective from the same product with W
        gap, wx, r_kx = _gap_at(layer.affine, layer.activation, reg, y, x, z, alpha_t, radius)
        gaps.append(gap)
        gap_its.append(k)
        history["gap"] = torch.stack(gaps).cpu()
        history["gap_iteration"] = torch.tensor(gap_its, dtype=torch.int64)
        objective = _objectives(layer.activation, y, [(wx, r_kx)], alpha_t)
        message += _gap_note(history["gap"][-1], objective[0].cpu())
    return Result(
        x=x, aux=[], dual=z, iterations=iterations, converged=converged, message=message,
        history=history, alpha=alpha_t.cpu(),
        params={"tau_x": tau_x_t.cpu(), "tau_z": tau_z_t.cpu(), "norm_W": norm_W, "tol": tol,
                "max_iter": max_iter, "gap_radius": radius},
    )


def _gap_note(gap: Tensor, objective: Tensor) -> str:
    r"""The message's report of the certified bound :math:`G_\rho` at the returned iterates, for
    the sample where it is largest relative to its objective :math:`P(x)` there (absolute where
    :math:`P(x) = 0`). The change-based stopping test passes early where the steps are tiny
    (data of small magnitude, a large :math:`\alpha`); this bound does not depend on the step
    sizes."""
    gap = gap.clamp_min(0.0)  # G_rho >= 0; a negative value is rounding
    inf = torch.full_like(gap, math.inf)
    relative = torch.where(objective > 0, gap / objective, torch.where(gap > 0, inf, torch.zeros_like(gap)))
    relative = relative.where(gap.isfinite() & objective.isfinite(), -inf)  # a diverged sample: none
    if bool((relative == -inf).all()):
        return ""
    worst = int(relative.argmax())
    share = (f"{float(relative[worst]):.1e} of its objective" if math.isfinite(relative[worst])
             else "where its objective is 0")
    return (f"; primal-dual gap bound at the returned iterate: {float(gap[worst]):.1e}, {share} "
            f"(sample {worst}, the largest such ratio; history['gap'])")


def _dual_start(reg: Regularizer, network: LiftedNetwork, z0: Tensor | None, y: Tensor,
                name: str = "z0") -> Tensor:
    """Zero dual start (the paper's) or a validated copy of ``z0`` (called ``name`` in errors)."""
    shape = (y.shape[0], *reg.dual_shape(network.input_shape))
    if z0 is None:
        return torch.zeros(shape, device=y.device, dtype=y.dtype)
    check_exact_tensor(z0, name, shape)
    return z0.to(device=y.device, dtype=y.dtype).clone(memory_format=torch.contiguous_format)
