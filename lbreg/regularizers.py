r"""Regularisers for the saddle-point form of eq. (12), and Bregman-type distances.

The PDHG solver treats :math:`\alpha R(Kx)` through its conjugate,

.. math::
    \min_x \max_z\ B_\Psi(y^\delta, Wx+b) + \alpha\langle Kx, z\rangle - \alpha R^*(z),

so a :class:`Regularizer` provides :math:`R` (``R``) and :math:`R\circ K` (``value``), the
operator :math:`K` and its adjoint, :math:`\operatorname{prox}_{sR^*}`, and a bound on
:math:`\|K\|^2` (PAPER_MATH §3). The distances of PAPER_MATH §2 ("Bregman distances") follow.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lbreg._checks import check_bool, check_float_tensor, check_positive
from lbreg.operators import _check_field, add_div_, grad2d, mixed_norm, project_dual_ball

__all__ = [
    "Regularizer",
    "TV",
    "SquaredNorm",
    "bregman_distance",
    "symmetric_distance",
    "burbea_rao",
]


def _inner(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product of two ``(B, ...)`` tensors, shape ``(B,)`` (``B = 0`` included)."""
    return (a * b).reshape(a.shape[0], math.prod(a.shape[1:])).sum(dim=1)


def _check_batches(**tensors: Tensor) -> None:
    """Each a real floating ``(B, ...)`` tensor (a batch axis and the data), all of one shape."""
    for name, t in tensors.items():
        check_float_tensor(t, name, 2, "(B, ...): one row per sample")
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{', '.join(shapes)} must have one shape, got {shapes}")


class Regularizer(ABC):
    r"""Convex regulariser :math:`x \mapsto R(Kx)` in the saddle form of eq. (12).

    Attributes:
        norm_K_sq: an upper bound on :math:`\|K\|^2`, used for the step sizes.
    """

    norm_K_sq: float

    @abstractmethod
    def R(self, p: Tensor) -> Tensor:
        """:math:`R(p)` per sample, ``(B, *dual_shape) -> (B,)``: the function of eq. (11) applied
        to :math:`p = Kx` (``value(x) = R(K(x))``)."""

    def value(self, x: Tensor) -> Tensor:
        """:math:`R(Kx)` per sample; ``x`` of shape ``(B, ...)``, returns ``(B,)``."""
        return self.R(self.K(x))

    @abstractmethod
    def K(self, x: Tensor) -> Tensor:
        """The linear operator :math:`K`, ``(B, *input_shape) -> (B, *dual_shape)``."""

    @abstractmethod
    def K_adj(self, p: Tensor) -> Tensor:
        r"""The adjoint :math:`K^\top`, ``(B, *dual_shape) -> (B, *input_shape)``."""

    def add_K_adj_(self, out: Tensor, p: Tensor, scale: float | Tensor) -> Tensor:
        r"""``out`` :math:`\mathrel{+}= s\,K^\top p` in place (and returned), ``s`` = ``scale``.

        ``out`` is ``(B, *input_shape)``, ``p`` ``(B, *dual_shape)``, ``scale`` a number or a
        tensor broadcastable to ``out`` (per-sample ``(B, 1, ..., 1)``); a number is passed to
        the kernel as it is (no tensor made of it, so no copy to a GPU).
        """
        if isinstance(scale, Tensor):
            return out.addcmul_(self.K_adj(p), scale)
        return out.add_(self.K_adj(p), alpha=scale)

    @abstractmethod
    def prox_conj(self, p: Tensor, s: float | Tensor) -> Tensor:
        r""":math:`\operatorname{prox}_{sR^*}(p)`, same shape as ``p``; ``s`` is a number or a
        tensor broadcastable to ``p`` (per-sample steps come as ``(B, 1, ..., 1)``)."""

    def prox_conj_(self, p: Tensor, s: float | Tensor) -> Tensor:
        r"""`prox_conj`, in place on ``p`` where the regulariser can (TV, `SquaredNorm`), and
        returned: for a solver's loop that owns ``p``."""
        return self.prox_conj(p, s)

    def prox_conj_scaled(self, v: Tensor, s: float | Tensor) -> Tensor:
        r""":math:`\operatorname{prox}_{(sR)^*}(v) = s\operatorname{prox}_{R^*/s}(v/s) = v - \operatorname{prox}_{sR}(v)`.

        The second form is the conjugate's scaling :math:`(sR)^*(p) = sR^*(p/s)`, the third
        Moreau's identity: the scaled dual :math:`\lambda_d` of ADMM's d-update
        (`lbreg.solvers.admm`). ``v`` is ``(B, *dual_shape)``, ``s`` > 0 a number or a tensor
        broadcastable to ``v`` (per sample ``(B, 1, ..., 1)``).
        """
        return self.prox_conj(v / s, 1.0 / s).mul_(s)

    @abstractmethod
    def dual_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the dual variable ``z`` (without batch axis) for inputs of ``input_shape``."""

    def subgradient_from_dual(self, z: Tensor) -> Tensor:
        r""":math:`K^\top z`, in :math:`\partial(R\circ K)(x)` when :math:`z\in\partial R(Kx)`."""
        return self.K_adj(z)

    def conj_value(self, z: Tensor) -> Tensor | None:
        r""":math:`R^*(z)` per sample, ``(B,)``, for ``z`` in the dual domain; ``None`` where the
        regulariser does not know its conjugate (then no primal-dual gap is available)."""
        return None


class TV(Regularizer):
    r"""Total variation :math:`R(Kx)=\|\nabla x\|_{2,1}` (or :math:`\|\nabla x\|_{1,1}`), eq. (11).

    :math:`K=\nabla` (:func:`~lbreg.operators.grad2d`, forward differences, Neumann boundary),
    :math:`K^\top=-\operatorname{div}`, :math:`R^*=\chi_C` with the pixelwise unit ball
    :math:`C` (Euclidean if isotropic, :math:`\ell_\infty` otherwise), so
    :math:`\operatorname{prox}_{sR^*}=\operatorname{proj}_C` for every :math:`s`, and
    :math:`\|K\|^2\le 8`.

    Args:
        isotropic: isotropic (``True``, the paper's solver) or anisotropic TV.
    """

    norm_K_sq = 8.0

    def __init__(self, isotropic: bool = True) -> None:
        self.isotropic = check_bool(isotropic, "isotropic")

    def __repr__(self) -> str:
        return f"TV(isotropic={self.isotropic})"

    def R(self, p: Tensor) -> Tensor:
        return mixed_norm(p, isotropic=self.isotropic)

    def value(self, x: Tensor) -> Tensor:
        r""":math:`\mathrm{TV}(x)` per sample; ``x`` of shape ``(B, ..., H, W)``, returns ``(B,)``."""
        check_float_tensor(x, "x", 3, "(B, ..., H, W): a batch of images; x[None] for one image")
        return super().value(x)

    def K(self, x: Tensor) -> Tensor:
        return grad2d(x)

    def K_adj(self, p: Tensor) -> Tensor:
        _check_field(p, 3, "(..., 2, H, W)")
        return self.add_K_adj_(p.new_zeros(*p.shape[:-3], *p.shape[-2:]), p, 1.0)  # -div p

    def add_K_adj_(self, out: Tensor, p: Tensor, scale: float | Tensor) -> Tensor:
        r"""``out`` :math:`\mathrel{-}= s\operatorname{div}p`, without forming :math:`\operatorname{div}p`
        (`lbreg.operators.add_div_`)."""
        return add_div_(out, p, scale, value=-1.0)

    def prox_conj(self, p: Tensor, s: float | Tensor = 1.0) -> Tensor:
        return project_dual_ball(p, isotropic=self.isotropic)

    def prox_conj_(self, p: Tensor, s: float | Tensor = 1.0) -> Tensor:
        return project_dual_ball(p, isotropic=self.isotropic, out=p)

    def prox_conj_scaled(self, v: Tensor, s: float | Tensor) -> Tensor:
        r"""The projection onto the ball :math:`sC` (`Regularizer.prox_conj_scaled`), in one
        pass over ``v`` rather than three."""
        return project_dual_ball(v, isotropic=self.isotropic, radius=s)

    def dual_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(n) for n in input_shape)
        if len(shape) < 2:
            raise ValueError(
                f"input_shape must end in the image axes (..., H, W) for TV, got {shape}: give the "
                "network an image input shape (input_shape=(C, H, W)), or use reg=SquaredNorm() for a vector"
            )
        return (*shape[:-2], 2, *shape[-2:])

    def conj_value(self, z: Tensor) -> Tensor:
        r""":math:`R^*=\chi_C`: 0 on the pixelwise unit ball :math:`C`, where every pdhg or admm
        dual iterate lies (it is projected onto :math:`C`), and :math:`+\infty` for a sample with
        a pixel outside (beyond :math:`1+16\epsilon`, with :math:`\epsilon` the dtype's rounding
        unit, so that the rounding of a projection still counts as inside)."""
        z0, z1 = z[..., 0, :, :].abs(), z[..., 1, :, :].abs()
        pix = torch.hypot(z0, z1) if self.isotropic else torch.maximum(z0, z1)
        outside = (pix > 1.0 + 16 * torch.finfo(z.dtype).eps).reshape(z.shape[0], -1).any(dim=1)
        return z.new_zeros(z.shape[0]).masked_fill_(outside, math.inf)

    def subgradient_from_dual(self, z: Tensor) -> Tensor:
        r""":math:`p_\alpha=-\operatorname{div} z`, in :math:`\partial\mathrm{TV}(x_\alpha)` at a saddle point.

        PAPER_MATH §4.4.
        """
        return self.K_adj(z)


def _check_step(s: float | Tensor) -> float | Tensor:
    r"""A step :math:`s \ge 0` of :math:`\operatorname{prox}_{sR^*}`; a tensor (the solvers'
    checked per-sample steps) is not inspected, which would synchronise the host."""
    return s if isinstance(s, Tensor) else check_positive(s, "the step s of prox_(sR*)", allow_zero=True)


class SquaredNorm(Regularizer):
    r""":math:`R(x)=\tfrac12\|x\|^2` with :math:`K=I`, :math:`R^*=\tfrac12\|\cdot\|^2`.

    :math:`\operatorname{prox}_{sR^*}(p)=p/(1+s)`, :math:`\|K\|^2=1`. Its symmetric Bregman
    distance is :math:`\|u-v\|^2` (PAPER_MATH §6, item 7).
    """

    norm_K_sq = 1.0

    def __repr__(self) -> str:
        return "SquaredNorm()"

    def R(self, p: Tensor) -> Tensor:
        return 0.5 * _inner(p, p)

    def K(self, x: Tensor) -> Tensor:
        return x

    def K_adj(self, p: Tensor) -> Tensor:
        return p

    def prox_conj(self, p: Tensor, s: float | Tensor) -> Tensor:
        return p / (1.0 + _check_step(s))

    def prox_conj_(self, p: Tensor, s: float | Tensor) -> Tensor:
        return p.div_(1.0 + _check_step(s))

    def dual_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(n) for n in input_shape)

    def conj_value(self, z: Tensor) -> Tensor:
        r""":math:`R^*(z)=\tfrac12\|z\|^2 = R(z)`."""
        return self.R(z)


Functional = Regularizer | Callable[[Tensor], Tensor]


def _as_function(f: Functional) -> Callable[[Tensor], Tensor]:
    if isinstance(f, Regularizer):
        return f.value
    if callable(f):
        return f
    raise TypeError(
        f"expected a Regularizer or a callable (B, ...) -> (B,), got {type(f).__name__}"
    )


def bregman_distance(reg: Functional, u: Tensor, v: Tensor, p: Tensor) -> Tensor:
    r"""Generalised Bregman distance :math:`D_R^p(u,v)=R(u)-R(v)-\langle p,u-v\rangle`.

    Here :math:`p\in\partial R(v)` (PAPER_MATH §2).

    Args:
        reg: a :class:`Regularizer` (its ``value``) or a callable ``(B, ...) -> (B,)``.
        u, v, p: tensors of one shape ``(B, ...)``.

    Returns:
        Tensor of shape ``(B,)``.
    """
    _check_batches(u=u, v=v, p=p)
    f = _as_function(reg)
    return f(u) - f(v) - _inner(p, u - v)


def symmetric_distance(reg: Functional, u: Tensor, v: Tensor, p_u: Tensor, p_v: Tensor) -> Tensor:
    r"""Symmetric (Jeffreys) Bregman distance :math:`\langle p_u-p_v,u-v\rangle`.

    Here :math:`p_u\in\partial R(u)` and :math:`p_v\in\partial R(v)`; it equals
    :math:`D_R^{p_v}(u,v)+D_R^{p_u}(v,u)` (PAPER_MATH §2). ``reg`` is not evaluated (kept for
    a uniform signature).

    Returns:
        Tensor of shape ``(B,)``.
    """
    _check_batches(u=u, v=v, p_u=p_u, p_v=p_v)
    return _inner(p_u - p_v, u - v)


def burbea_rao(f: Functional, u: Tensor, v: Tensor) -> Tensor:
    r"""Burbea–Rao gap :math:`\tfrac12(f(u)+f(v))-f(\tfrac{u+v}2)` per sample (Definition 1).

    Args:
        f: a :class:`Regularizer` (its ``value``) or a callable ``(B, ...) -> (B,)``.
        u, v: tensors of one shape ``(B, ...)``.

    Returns:
        Tensor of shape ``(B,)``.
    """
    g = _as_function(f)
    return 0.5 * (g(u) + g(v)) - g(0.5 * (u + v))
