r"""Problem instances and bounds of the paper's theory for the perceptron (PAPER_MATH §2).

For a single layer :math:`x\mapsto\sigma(Wx+b)`, :math:`\sigma=\operatorname{prox}_\Psi`, the
regularisation operator (6) with :math:`R=\tfrac12\|\cdot\|^2` is

.. math::
    x_\alpha\in\arg\min_x\ B_\Psi(y^\delta, Wx+b) + \tfrac\alpha2\|x\|^2 ,

and the source condition (8) reads :math:`x^\dagger = W^\top v^\dagger`. This module builds
instances that satisfy (8) by construction (:func:`source_condition_instance`), solves them with
:func:`lbreg.solvers.pdhg` (:func:`solve_tikhonov`), and evaluates both sides of Theorem 2,
eq. (9) (:func:`theorem2_lhs`, :func:`theorem2_bound`), the a-priori rule and bound of
Example 1 (:func:`example1_alpha`, :func:`example1_bound`, :func:`example1_admissible`), and
both sides of Lemma 1 (:func:`lemma1_conjugate`, :func:`numerical_bregman_conjugate`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lbreg._checks import (
    check_bool,
    check_exact_tensor,
    check_finite,
    check_float_tensor,
    check_int,
    check_positive,
    check_positive_values,
    check_real,
    check_real_tensor,
)
from lbreg.activations import Activation, ReLU, _sum_per_sample, activation_of
from lbreg.data import as_generator
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.operators import div2d, grad2d
from lbreg.regularizers import SquaredNorm, burbea_rao, symmetric_distance
from lbreg.solvers import Result, pdhg
from lbreg.solvers.result import check_alpha

__all__ = [
    "SourceConditionInstance",
    "source_condition_instance",
    "solve_tikhonov",
    "theorem2_lhs",
    "theorem2_bound",
    "psi_bracket",
    "example1_alpha",
    "example1_bound",
    "example1_admissible",
    "lemma1_conjugate",
    "numerical_bregman_conjugate",
    "conjugate_gradient",
    "tv_subgradient",
    "loglog_slope",
]


def _as_batch(values: float | Sequence[float] | Tensor, like: Tensor, name: str) -> Tensor:
    """A ``(B,)`` tensor of ``values`` in ``like``'s dtype (a number gives ``B = 1``)."""
    t = check_real_tensor(values, name, like=like).reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} must hold at least one value")
    return t


def _check_rows(activation: Activation, y_delta: Tensor, v_dag: Tensor) -> Tensor:
    r"""Check :math:`y^\delta` ``(B, m)`` (in dom Ψ) and :math:`v^\dagger` ``(m,)`` or ``(B, m)``;
    return :math:`v^\dagger` as ``(B, m)``."""
    check_float_tensor(y_delta, "y_delta", 2, "(B, m)")
    if y_delta.dim() != 2 or y_delta.numel() == 0:
        raise ValueError(f"y_delta must have shape (B, m) with B, m >= 1, got {tuple(y_delta.shape)}")
    activation.check_domain(y_delta, "y_delta")
    batch, m = y_delta.shape
    check_float_tensor(v_dag, "v_dag", 1, f"({m},) or ({batch}, {m})")
    if tuple(v_dag.shape) not in ((m,), (1, m), (batch, m)):
        raise ValueError(
            f"v_dag must have shape ({m},) or ({batch}, {m}) like y_delta, got {tuple(v_dag.shape)}"
        )
    check_finite(v_dag, "v_dag")
    return v_dag.expand_as(y_delta)


# --------------------------------------------------------------------------- instances


@dataclass(frozen=True)
class SourceConditionInstance:
    r"""Perceptron inverse problems with the source condition (8), :math:`R=\tfrac12\|\cdot\|^2`.

    One network :math:`(W, b, \sigma)` and ``B`` rows, each row a source element, its exact
    data and one noisy draw.

    Attributes:
        W: weight matrix ``(m, n)``, :math:`\|W\|=1`.
        b: bias ``(m,)``.
        activation: the activation :math:`\sigma=\operatorname{prox}_\Psi`.
        v_dag: source elements :math:`v^\dagger` ``(B, m)``, supported where :math:`y` is
            safely inside :math:`\operatorname{dom}\Psi` (``margin``).
        x_dag: :math:`x^\dagger = W^\top v^\dagger` ``(B, n)``, so that
            :math:`W^\top v^\dagger=\nabla R(x^\dagger)`: eq. (8).
        y: exact data :math:`\sigma(Wx^\dagger+b)` ``(B, m)``.
        y_delta: noisy data :math:`y^\delta` ``(B, m)``, in dom Ψ.
        delta_sq: :math:`\delta^2 = B_\Psi(y^\delta, Wx^\dagger+b)` ``(B,)``, the noise bound of
            Theorem 2 (attained).
        noise_std: the Gaussian standard deviation of each row ``(B,)``.
    """

    W: Tensor
    b: Tensor
    activation: Activation
    v_dag: Tensor
    x_dag: Tensor
    y: Tensor
    y_delta: Tensor
    delta_sq: Tensor
    noise_std: Tensor

    @property
    def delta(self) -> Tensor:
        r""":math:`\delta=\sqrt{B_\Psi(y^\delta, Wx^\dagger+b)}` per row, ``(B,)``."""
        return self.delta_sq.sqrt()

    @property
    def v_norm(self) -> Tensor:
        r""":math:`\|v^\dagger\|` per row, ``(B,)``."""
        return torch.linalg.vector_norm(self.v_dag, dim=1)

    def network(self) -> LiftedNetwork:
        r"""The single-layer network :math:`x\mapsto\sigma(Wx+b)` as a `LiftedNetwork`."""
        layer = Layer(AffineMap.from_matrix(self.W, self.b), self.activation)
        return LiftedNetwork.from_layers([layer])


def source_condition_instance(
    m: int,
    n: int,
    activation: Activation | None = None,
    noise_std: float | Sequence[float] | Tensor = 0.01,
    generator: torch.Generator | int = 0,
    *,
    n_sources: int = 1,
    v_norm: float = 0.25,
    margin: float = 0.5,
    cond: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> SourceConditionInstance:
    r"""A random perceptron and data with the source condition (8), :math:`R=\tfrac12\|\cdot\|^2`.

    The construction, in this order from ``generator``:

    1. :math:`W\in\mathbb R^{m\times n}` with :math:`\|W\|=1`: i.i.d. Gaussian entries scaled to
       unit spectral norm (``cond=None``), or :math:`W=U\operatorname{diag}(s)V^\top` with
       random orthonormal :math:`U, V` (the Q factors of Gaussian matrices) and singular values
       :math:`s` log-spaced from 1 down to ``1/cond`` (an ill-conditioned operator; needs
       :math:`m\ge n`).
    2. :math:`b\sim N(0, I_m)`. The safely active units are
       :math:`S=\{i: b_i\ge\text{margin}+\|W_{i,:}\|\,\text{v\_norm}\}`.
    3. For each of ``n_sources`` sources: :math:`v^\dagger = g\odot\mathbf 1_S`,
       :math:`g\sim N(0,I_m)`, scaled to :math:`\|v^\dagger\|=` ``v_norm``, and
       :math:`x^\dagger=W^\top v^\dagger`, which is (8): :math:`W^\top v^\dagger\in\partial
       R(x^\dagger)=\{x^\dagger\}`. Since :math:`|(Wx^\dagger)_i|\le\|W_{i,:}\|\,\|v^\dagger\|`,
       the pre-activation :math:`Wx^\dagger+b\ge\text{margin}` on
       :math:`\operatorname{supp}v^\dagger\subseteq S`: for ReLU, :math:`y_i\ge\text{margin}` there,
       as Example 1's admissibility condition :math:`|v^\dagger_i|\le c\,y^\delta_i/\alpha` needs.
    4. For each source and each entry of ``noise_std`` (rows source-major:
       row ``k * len(noise_std) + j`` holds source ``k`` and ``noise_std[j]``):
       :math:`y=\sigma(Wx^\dagger+b)`, :math:`y^\delta=P_{\operatorname{dom}\Psi}(y+\text{std}\,
       \varepsilon)` with a fresh :math:`\varepsilon\sim N(0,I_m)`, and
       :math:`\delta^2=B_\Psi(y^\delta, Wx^\dagger+b)` (Theorem 2's noise bound, attained).

    Args:
        m, n: output and input dimensions.
        activation: σ; default :class:`~lbreg.activations.ReLU`.
        noise_std: one standard deviation or a sequence of them.
        generator: a ``torch.Generator`` (advanced by the draws) or an int seed.
        n_sources: number of independent source elements :math:`v^\dagger` for this network.
        v_norm: :math:`\|v^\dagger\|`.
        margin: the lower bound of the exact pre-activation on :math:`\operatorname{supp}v^\dagger`.
        cond: condition number of :math:`W` (log-spaced singular values), or ``None``.
        dtype: floating dtype (float64 by default, PAPER_MATH §6).

    Returns:
        A :class:`SourceConditionInstance` with ``B = n_sources * len(noise_std)`` rows.

    Raises:
        ValueError: non-positive sizes or ``v_norm``, ``cond < 1`` or not finite, ``cond`` with
            ``m < n``, a negative standard deviation, or no unit in :math:`S`.
        TypeError: sizes that are not integers, ``margin``, ``cond`` or ``noise_std`` that are
            not real numbers (a bool is not), a ``dtype`` other than float32/float64, or an activation
            that is neither an lbreg `Activation` nor a torch activation that
            :func:`~lbreg.activations.activation_of` converts.
    """
    m, n = check_int(m, "m", minimum=1), check_int(n, "n", minimum=1)
    n_sources = check_int(n_sources, "n_sources", minimum=1)
    v_norm = check_positive(v_norm, "v_norm")
    margin = check_real(margin, "margin")
    cond = None if cond is None else check_real(cond, "cond", minimum=1.0)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64 (the solvers' dtypes), got {dtype!r}")
    activation = ReLU() if activation is None else activation_of(activation)
    g = as_generator(generator)
    if cond is None:
        W = torch.randn(m, n, generator=g, dtype=dtype)
        W = W / torch.linalg.matrix_norm(W, ord=2)
    else:
        if m < n:
            raise ValueError(
                f"cond needs m >= n for an SVD with n singular values, got m={m}, n={n}"
            )
        U, _ = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=dtype))
        V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=dtype))
        s = torch.logspace(0.0, -math.log10(cond), n, dtype=dtype)
        W = (U * s) @ V.T
    b = torch.randn(m, generator=g, dtype=dtype)
    support = b >= margin + torch.linalg.vector_norm(W, dim=1) * v_norm
    if not bool(support.any()):
        raise ValueError(
            f"no unit has b_i >= margin + ||W_i|| v_norm (margin={margin}, v_norm={v_norm}); "
            "lower them or raise m"
        )
    v = torch.randn(n_sources, m, generator=g, dtype=dtype) * support
    v = v * (v_norm / torch.linalg.vector_norm(v, dim=1, keepdim=True))
    std = _as_batch(noise_std, b, "noise_std")
    check_positive_values(std, "noise_std", allow_zero=True)
    v = v.repeat_interleave(std.numel(), dim=0)
    std = std.repeat(n_sources)
    x_dag = v @ W
    z = x_dag @ W.T + b
    y = activation(z)
    eps = torch.randn(y.shape, generator=g, dtype=dtype)
    y_delta = activation.project_domain(y + std[:, None] * eps)
    delta_sq = activation.bregman(y_delta, z)
    return SourceConditionInstance(W, b, activation, v, x_dag, y, y_delta, delta_sq, std)


# --------------------------------------------------------------------------- solving


def _check_instance(instance: object) -> None:
    if not isinstance(instance, SourceConditionInstance):
        raise TypeError(f"instance must be a SourceConditionInstance (from source_condition_instance), "
                        f"got {type(instance).__name__}")


def solve_tikhonov(
    instance: SourceConditionInstance,
    alpha: float | Sequence[float] | Tensor,
    *,
    max_iter: int = 100_000,
    tol: float = 1e-10,
    check_every: int = 10,
) -> Result:
    r"""Regularised solutions (6) with :math:`R=\tfrac12\|\cdot\|^2`, by :func:`lbreg.solvers.pdhg`.

    .. math::
        x_\alpha = \arg\min_x\ B_\Psi(y^\delta, Wx+b) + \tfrac\alpha2\|x\|^2
        \quad\text{for every row of } y^\delta,

    all rows in one batched call (:math:`R^*=\tfrac12\|\cdot\|^2`, so the dual step of eq. (13)
    uses :math:`\operatorname{prox}_{sR^*}(p)=p/(1+s)`, :math:`s=\tau_z\alpha` per row).

    Args:
        instance: the problem, ``B`` rows.
        alpha: :math:`\alpha>0` per row, a number (shared) or ``B`` values.
        max_iter, tol, check_every: passed to :func:`~lbreg.solvers.pdhg`.

    Returns:
        The solver's `Result`; ``result.x`` is ``(B, n)``.
    """
    _check_instance(instance)
    batch = instance.y_delta.shape[0]
    alpha_t = check_real_tensor(alpha, "alpha", like=instance.y_delta).reshape(-1)
    if alpha_t.numel() == 1:
        alpha_t = alpha_t.expand(batch)
    if alpha_t.numel() != batch:
        raise ValueError(
            f"alpha must be a number or hold one value per row ({batch}), got {alpha_t.numel()}"
        )
    return pdhg(instance.network(), instance.y_delta, alpha_t.clone(), reg=SquaredNorm(),
                max_iter=max_iter, tol=tol, check_every=check_every)


# --------------------------------------------------------------------------- Theorem 2


def theorem2_lhs(
    instance: SourceConditionInstance, x_alpha: Tensor, alpha: float | Tensor, c: float
) -> Tensor:
    r"""Left-hand side of Theorem 2, eq. (9), for :math:`R=\tfrac12\|\cdot\|^2`.

    .. math::
        (1-c)\,B_\Psi(y^\delta, Wx_\alpha+b) + \alpha\,D^{\rm symm}_R(x_\alpha, x^\dagger),
        \qquad D^{\rm symm}_R(x_\alpha,x^\dagger)
        =\langle x_\alpha-x^\dagger, x_\alpha-x^\dagger\rangle=\|x_\alpha-x^\dagger\|^2,

    the symmetric distance with :math:`\nabla R(x)=x` (PAPER_MATH §6 item 7).

    Args:
        instance: the problem; its ``y_delta`` has ``B`` rows.
        x_alpha: regularised solutions ``(B, n)``, one per row of ``y_delta``.
        alpha: the :math:`\alpha` of each row, a number or ``(B,)``.
        c: the constant :math:`c\in(0,1]` of (9).

    Returns:
        ``(B,)``.
    """
    _check_instance(instance)
    _check_c(c)
    x_dag = instance.x_dag
    check_exact_tensor(x_alpha, "x_alpha", tuple(x_dag.shape), dtype=x_dag.dtype)
    alpha_t = check_alpha(alpha, x_dag.shape[0], x_dag)
    d_symm = symmetric_distance(SquaredNorm(), x_alpha, x_dag, x_alpha, x_dag)
    data = instance.activation.bregman(instance.y_delta, x_alpha @ instance.W.T + instance.b)
    return (1.0 - c) * data + alpha_t * d_symm


def psi_bracket(
    activation: Activation, y_delta: Tensor, v_dag: Tensor, alpha: float | Tensor, c: float
) -> Tensor:
    r"""The Burbea–Rao bracket of eq. (9), per row.

    .. math::
        \Psi\big(y^\delta+\tfrac\alpha c v^\dagger\big)
        + \Psi\big(y^\delta-\tfrac\alpha c v^\dagger\big) - 2\Psi(y^\delta)
        = 2\,\mathrm{BR}_\Psi\big(y^\delta+\tfrac\alpha cv^\dagger,\,
        y^\delta-\tfrac\alpha cv^\dagger\big),

    with :math:`\Psi` summed over the components; :math:`+\infty` when
    :math:`y^\delta\pm\alpha v^\dagger/c` leaves :math:`\operatorname{dom}\Psi` (for ReLU the
    bracket is 0 iff :math:`|v^\dagger_i|\le c\,y^\delta_i/\alpha` for all :math:`i`, else
    :math:`+\infty`: Example 1).

    Args:
        activation: σ, whose Ψ is used.
        y_delta: ``(B, m)`` in dom Ψ.
        v_dag: ``(m,)`` or ``(B, m)``.
        alpha: :math:`\alpha>0`, a number or ``(B,)``.
        c: :math:`c\in(0,1]`.

    Returns:
        ``(B,)``.
    """
    activation = activation_of(activation)
    _check_c(c)
    v = _check_rows(activation, y_delta, v_dag)
    return _bracket(activation, y_delta, v, check_alpha(alpha, y_delta.shape[0], y_delta), c)


def _bracket(activation: Activation, y_delta: Tensor, v: Tensor, alpha: Tensor, c: float) -> Tensor:
    """The bracket of eq. (9) (`psi_bracket`) of checked arguments: ``v`` ``(B, m)``, ``alpha`` ``(B,)``."""
    shift = alpha[:, None] / c * v

    def psi(u: Tensor) -> Tensor:
        return _sum_per_sample(activation.psi(u))

    return 2.0 * burbea_rao(psi, y_delta + shift, y_delta - shift)


def theorem2_bound(
    activation: Activation,
    y_delta: Tensor,
    v_dag: Tensor,
    alpha: float | Tensor,
    delta_sq: float | Tensor,
    c: float,
) -> Tensor:
    r"""Right-hand side of Theorem 2, eq. (9), per row.

    .. math::
        (1+c)\,\delta^2 + \frac{\alpha^2}{c}\|v^\dagger\|^2
        + c\Big[\Psi\big(y^\delta+\tfrac\alpha cv^\dagger\big)
        + \Psi\big(y^\delta-\tfrac\alpha cv^\dagger\big) - 2\Psi(y^\delta)\Big],

    the bracket from :func:`psi_bracket` (Burbea–Rao, Definition 1). It bounds
    :func:`theorem2_lhs` for every :math:`c\in(0,1]` whenever :math:`y=\sigma(Wx^\dagger+b)`,
    :math:`B_\Psi(y^\delta, Wx^\dagger+b)\le\delta^2` and (8) holds.

    Args:
        activation: σ.
        y_delta: ``(B, m)``.
        v_dag: ``(m,)`` or ``(B, m)``.
        alpha: :math:`\alpha>0`, a number or ``(B,)``.
        delta_sq: :math:`\delta^2\ge0`, a number or ``(B,)``.
        c: :math:`c\in(0,1]`.

    Returns:
        ``(B,)``; :math:`+\infty` where the bracket is infinite.
    """
    activation = activation_of(activation)
    _check_c(c)
    v = _check_rows(activation, y_delta, v_dag)
    alpha_t = check_alpha(alpha, y_delta.shape[0], y_delta)
    dsq = check_alpha(delta_sq, y_delta.shape[0], y_delta, name="delta_sq", allow_zero=True)
    v_sq = _sum_per_sample(v**2)
    bracket = _bracket(activation, y_delta, v, alpha_t, c)
    return (1.0 + c) * dsq + alpha_t**2 / c * v_sq + c * bracket


def _check_c(c: float) -> None:
    if not 0.0 < check_real(c, "c") <= 1.0:
        raise ValueError(f"c must lie in (0, 1] for Theorem 2, got {c}")


# --------------------------------------------------------------------------- Example 1


def example1_alpha(delta: float | Tensor, v_norm: float | Tensor, c: float = 1.0) -> Tensor:
    r"""A-priori parameter choice of Example 1 (ReLU), balancing the two terms of eq. (9).

    .. math::
        \alpha(\delta) = \delta\,\sqrt{c(1+c)}\,/\,\|v^\dagger\|
        \qquad(=\sqrt2\,\delta/\|v^\dagger\|\ \text{for } c=1).

    Args:
        delta: noise level :math:`\delta\ge0`, a number or a tensor.
        v_norm: :math:`\|v^\dagger\|>0` of the source condition (8), a number or a tensor
            that broadcasts against ``delta``.
        c: the constant :math:`c\in(0,1]` of Theorem 2.

    Returns:
        A float64 tensor of the broadcast shape of ``delta`` and ``v_norm``.
    """
    _check_c(c)
    delta_t, v_t = _example1_args(delta, v_norm)
    return delta_t * math.sqrt(c * (1.0 + c)) / v_t


def example1_bound(delta: float | Tensor, v_norm: float | Tensor, c: float = 1.0) -> Tensor:
    r"""Example 1's error bound at :math:`\alpha(\delta)` of :func:`example1_alpha`.

    .. math::
        D^{\rm symm}_R(x_{\alpha(\delta)}, x^\dagger) \le 2\sqrt{(1+c)/c}\,\|v^\dagger\|\,\delta
        \qquad(=2\sqrt2\,\|v^\dagger\|\,\delta\ \text{for } c=1),

    valid when :func:`example1_admissible` holds (and the data term is dropped, :math:`c\le1`).

    Args:
        delta, v_norm, c: as in :func:`example1_alpha`.

    Returns:
        A float64 tensor of the broadcast shape of ``delta`` and ``v_norm``.
    """
    _check_c(c)
    delta_t, v_t = _example1_args(delta, v_norm)
    return 2.0 * math.sqrt((1.0 + c) / c) * v_t * delta_t


def _example1_args(delta: float | Tensor, v_norm: float | Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`\delta\ge0` and :math:`\|v^\dagger\|>0` as float64 tensors of broadcastable shapes."""
    delta_t = _real_values(delta, "delta", allow_zero=True)
    v_t = _real_values(v_norm, "v_norm")
    try:
        torch.broadcast_shapes(delta_t.shape, v_t.shape)
    except RuntimeError:
        raise ValueError(
            f"delta and v_norm must have broadcastable shapes, got {tuple(delta_t.shape)} "
            f"and {tuple(v_t.shape)}"
        ) from None
    return delta_t, v_t


def _real_values(values: float | Tensor, name: str, *, allow_zero: bool = False) -> Tensor:
    """A number or a floating tensor as float64, checked finite and > 0 (>= 0 with ``allow_zero``)."""
    if not isinstance(values, Tensor):
        return torch.tensor(check_positive(values, name, allow_zero=allow_zero), dtype=torch.float64)
    if not values.is_floating_point():
        raise TypeError(f"{name} must be a number or a floating tensor, got {values.dtype}")
    return check_positive_values(values.to(torch.float64), name, allow_zero=allow_zero)


def example1_admissible(
    y_delta: Tensor, v_dag: Tensor, alpha: float | Tensor, c: float = 1.0
) -> Tensor:
    r"""Example 1's condition :math:`|v^\dagger_i|\le c\,y^\delta_i/\alpha` for all :math:`i`.

    It is exactly the condition for a finite (then zero) Burbea–Rao bracket of ReLU in (9).

    Args:
        y_delta: ``(B, m)``, in dom Ψ of ReLU (:math:`y^\delta\ge0`).
        v_dag: ``(m,)`` or ``(B, m)``.
        alpha: :math:`\alpha>0`, a number or ``(B,)``.
        c: the constant :math:`c\in(0,1]` of Theorem 2.

    Returns:
        Boolean ``(B,)``.
    """
    _check_c(c)
    v = _check_rows(ReLU(), y_delta, v_dag)
    alpha_t = check_alpha(alpha, y_delta.shape[0], y_delta)[:, None]
    ok = alpha_t * v.abs() <= c * y_delta
    return ok.all(dim=1)


# --------------------------------------------------------------------------- Lemma 1


def _F(activation: Activation, u: Tensor) -> Tensor:
    r""":math:`F(u)=\tfrac12u^2+\Psi(u)`, elementwise (:math:`+\infty` off dom Ψ)."""
    return 0.5 * u**2 + activation.psi(u)


def lemma1_conjugate(activation: Activation, y: Tensor, w: Tensor) -> Tensor:
    r"""Lemma 1: the convex conjugate of :math:`F_y=B_\Psi(y,\cdot)`, in closed form.

    .. math::
        F_y^*(w) = F(y+w) - F(y),\qquad F=\tfrac12\|\cdot\|^2+\Psi .

    Args:
        activation: σ.
        y: ``(B, ...)`` in dom Ψ.
        w: same shape.

    Returns:
        ``(B,)``, summed over components (:math:`+\infty` if
        :math:`y+w\notin\operatorname{dom}\Psi`).
    """
    activation = activation_of(activation)
    _check_conjugate_args(activation, y, w)
    return _sum_per_sample(_F(activation, y + w) - _F(activation, y))


def _check_conjugate_args(activation: Activation, y: Tensor, w: Tensor) -> None:
    """Lemma 1's arguments: ``y`` ``(B, ...)`` in dom Ψ and a finite ``w`` of its shape and dtype."""
    activation.check_domain(y, "y")
    if y.dim() < 1:
        raise ValueError(f"y must have a leading batch axis (B, ...), got shape {tuple(y.shape)}")
    check_exact_tensor(w, "w", tuple(y.shape), dtype=y.dtype)


def numerical_bregman_conjugate(
    activation: Activation, y: Tensor, w: Tensor, *, bound: float = 60.0, iters: int = 200
) -> Tensor:
    r"""A numerical :math:`\sup_z\,\langle w,z\rangle-B_\Psi(y,z)`, to check Lemma 1.

    The objective is separable and concave in each :math:`z_i` (:math:`B_\Psi` is convex in its
    second argument), so each component's supremum is found by bisection on the sign of its
    derivative, computed by autograd of :meth:`~lbreg.activations.Activation.bregman_elementwise`
    (no closed form of the maximiser is used), on :math:`[-\text{bound}, \text{bound}+\pi/10]`.

    Args:
        activation: σ.
        y: ``(B, ...)`` in dom Ψ.
        w: same shape, with :math:`y+w` in the interior of dom Ψ (otherwise the
            supremum is not attained).
        bound: half-width of the search interval, > 0.
        iters: bisection steps, an integer >= 1.

    Returns:
        ``(B,)``, summed over components.

    Raises:
        ValueError: the maximiser of some component is not inside the search interval.
    """
    activation = activation_of(activation)
    _check_conjugate_args(activation, y, w)
    bound = check_positive(bound, "bound")
    iters = check_int(iters, "iters", minimum=1)

    def slope(z: Tensor) -> Tensor:
        z = z.detach().requires_grad_(True)
        value = (w * z - activation.bregman_elementwise(y, z, check=False)).sum()
        (grad,) = torch.autograd.grad(value, z)
        return grad

    # An asymmetric interval, so that no bisection midpoint falls exactly on a kink of σ
    # (0, ±λ, the ends of HardTanh's interval), where autograd returns one-sided derivatives of the stable formulas.
    lo = torch.full_like(y, -bound)
    hi = torch.full_like(y, bound + math.pi / 10)
    if not bool((slope(lo) > 0).all() & (slope(hi) < 0).all()):
        raise ValueError(
            f"the supremum over z is not attained in [-{bound:g}, {bound + math.pi / 10:g}]; "
            f"y + w must lie in the interior of dom Ψ of {activation.name} (and the maximiser "
            "inside this interval: raise bound for a domain beyond it)"
        )
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        up = slope(mid) > 0
        lo = torch.where(up, mid, lo)
        hi = torch.where(up, hi, mid)
    z = 0.5 * (lo + hi)
    with torch.no_grad():
        return _sum_per_sample(w * z - activation.bregman_elementwise(y, z, check=False))


def conjugate_gradient(activation: Activation, z: Tensor) -> Tensor:
    r""":math:`\nabla F^*(z)` by autograd of :meth:`~lbreg.activations.Activation.conj`.

    Property 3 of :math:`B_\Psi` (PAPER_MATH §1) says :math:`\nabla F^*=\sigma`.

    Args:
        activation: σ.
        z: a floating tensor of any shape.

    Returns:
        A tensor of the shape of ``z``.
    """
    activation = activation_of(activation)
    check_float_tensor(z, "z", 0, "(...)")
    z = z.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(activation.conj(z).sum(), z)
    return grad


# --------------------------------------------------------------------------- helpers


def tv_subgradient(x: Tensor, isotropic: bool = True) -> Tensor:
    r"""An element of :math:`\partial\mathrm{TV}(x)`: :math:`p=-\operatorname{div}\xi`.

    :math:`\xi_{ij}=(\nabla x)_{ij}/\|(\nabla x)_{ij}\|_2` (isotropic) or
    :math:`\operatorname{sign}((\nabla x)_{ij})` (anisotropic) where the gradient is nonzero,
    and 0 elsewhere (PAPER_MATH §4.4). Then :math:`\langle p,x\rangle=\mathrm{TV}(x)`, so
    :math:`D^p_{\rm TV}(u,x)=\mathrm{TV}(u)-\langle p,u\rangle`.

    Args:
        x: ``(B, ..., H, W)``.
        isotropic: the isotropic :math:`\xi` (default) or the anisotropic one.

    Returns:
        A tensor of the shape of ``x``.
    """
    g = grad2d(x)
    if check_bool(isotropic, "isotropic"):
        norm = torch.linalg.vector_norm(g, dim=-3, keepdim=True)
        safe = norm.clamp_min(torch.finfo(g.dtype).tiny)
        xi = torch.where(norm > 0, g / safe, torch.zeros_like(g))
    else:
        xi = torch.sign(g)
    return -div2d(xi)


def loglog_slope(x: Tensor | Sequence[float], y: Tensor | Sequence[float]) -> float:
    r"""Least-squares slope :math:`k` of :math:`\log y\approx k\log x+\text{const}` (rate fits).

    Args:
        x, y: positive values of one length (at least two), ``x`` not all equal.

    Returns:
        The fitted slope.
    """
    lx = torch.log(check_real_tensor(x, "x").reshape(-1))
    ly = torch.log(check_real_tensor(y, "y").reshape(-1))
    if lx.numel() != ly.numel() or lx.numel() < 2:
        raise ValueError(f"x and y need one length >= 2, got {lx.numel()} and {ly.numel()}")
    if not bool(torch.isfinite(lx).all() & torch.isfinite(ly).all()):
        raise ValueError("x and y must be positive and finite")
    lx_c = lx - lx.mean()
    if not bool((lx_c != 0).any()):
        raise ValueError("x must hold at least two distinct values for a slope, got all entries equal")
    return float((lx_c * (ly - ly.mean())).sum() / (lx_c**2).sum())
