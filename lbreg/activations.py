r"""Proximal activations $\sigma = \operatorname{prox}_\Psi$ and the Bregman penalty $B_\Psi$.

Every activation of a liftable network is the proximal map of a proper, convex, lsc
$\Psi:\mathbb R\to\mathbb R\cup\{+\infty\}$, applied elementwise (eq. (5)). With
$F = \tfrac12|\cdot|^2 + \Psi$ the lifted penalty is (eq. (4))

$$B_\Psi(y, z) = F(y) + F^*(z) - \langle y, z\rangle
             = \tfrac12\|y - z\|^2 + \Psi(y) - \operatorname{env}_\Psi(z) \ge 0,$$

zero iff $y = \sigma(z)$, with $\nabla_z B_\Psi(y, z) = \sigma(z) - y$. Each class evaluates
$B_\Psi$ in an algebraically equivalent, cancellation-free form (stated in its docstring),
so that $B_\Psi(\sigma(z), z)$ is zero to rounding even for large $|z|$. ``prox(v, t)`` is
$\operatorname{prox}_{t\Psi}$, needed by the coordinate-descent step (17).

Formulas: the activation table of PAPER_MATH §1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbreg._checks import check_finite, check_positive, check_positive_values, check_real, nonfinite_message

__all__ = [
    "Activation",
    "ReLU",
    "Identity",
    "LeakyReLU",
    "HardTanh",
    "SoftShrink",
    "Sigmoid",
    "Tanh",
    "activation_of",
]

_INF = math.inf
_NAN = math.nan
# Safeguarded Newton iterations of the sigmoid / tanh prox: over t in [1e-8, 1e8] and
# |v| <= 1000 at most 20 are needed for 1e-12 accuracy in float64; 40 leaves a margin.
_NEWTON_ITERS = 40
# Fixed point u = sigmoid(u), the minimiser of the sigmoid's Psi (Psi'(u) = logit(u) - u).
_SIGMOID_PSI_ARGMIN = 0.6590460684074066


def _require_float(x: object, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _sum_per_sample(b: Tensor) -> Tensor:
    """``(B, ...)`` summed over every non-batch axis, ``(B,)``."""
    return b if b.ndim == 1 else b.sum(dim=tuple(range(1, b.ndim)))


def _softplus(z: Tensor) -> Tensor:
    """log(1 + e^z). PyTorch's default threshold 20 returns z for z > 20, an error of
    2e-9 that float64 would see; 40 keeps the error below float64 resolution."""
    return F.softplus(z, beta=1.0, threshold=40.0 if z.dtype == torch.float64 else 20.0)


def _binary_kl(p: Tensor, q: Tensor, zz: Tensor) -> Tensor:
    r"""$p\log p + q\log q + p\,\mathrm{sp}(-zz) + q\,\mathrm{sp}(zz)$ with $p + q = 1$: the
    binary KL divergence of $(p, q)$ from $(\mathrm{sigmoid}(zz), \mathrm{sigmoid}(-zz))$."""
    return torch.xlogy(p, p) + torch.xlogy(q, q) + p * _softplus(-zz) + q * _softplus(zz)


def _sigmoid_and_derivative(w: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(w)
    return s, s * (1 - s)


def _tanh_and_derivative(w: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.tanh(w)
    return s, 1 - s * s


def _prox_saturating(
    v: Tensor,
    t: Tensor,
    s_ds: Callable[[Tensor], tuple[Tensor, Tensor]],
    s_inv: Callable[[Tensor], Tensor],
    s_range: tuple[float, float],
    w_min: float,
) -> Tensor:
    r"""Solve $(1-t)\,u + t\,s^{-1}(u) = v$ for $u$ in the range of $s$ (sigmoid or tanh).

    Substituting $u = s(w)$ gives $h(w) = (1-t)s(w) + tw - v$, strictly increasing for every
    $t > 0$ ($h' = t + (1-t)s'(w)$ lies between $t$ and $t + (1-t)\max s'$, both $> 0$). The
    root is bracketed by $tw \in v - (1-t)\,s_{\rm range}$ and, since the prox moves $v$
    towards $\arg\min\Psi = s(w_{\min})$, by $w$ between $s^{-1}(v)$ and $w_{\min}$.
    Vectorised Newton on $w$; a step that leaves the (open) bracket is replaced by its
    midpoint, clamped to $|w| \le 40$ where that stays inside (beyond, $s$ is constant in
    float64 and one Newton step is exact).
    Fixed iteration count, no host synchronisation; working in $w$ keeps $u$ accurate next
    to the boundary of dom Ψ.

    Args:
        v: right-hand side, any shape.
        t: positive, broadcastable to ``v``.
        s_ds: $w \mapsto (s(w), s'(w))$.
        s_inv: $s^{-1}$ ($\pm\infty$ at the range ends).
        s_range: open range of $s$.
        w_min: $s^{-1}(\arg\min\Psi)$.
    Returns:
        $u$, broadcast shape of ``v`` and ``t``.
    """
    a = 1.0 - t
    ends = (a * s_range[0], a * s_range[1])
    w_v, w_c = s_inv(v.clamp(*s_range)), torch.full_like(v, w_min)
    lo = torch.maximum((v - torch.maximum(*ends)) / t, torch.minimum(w_v, w_c))
    hi = torch.minimum((v - torch.minimum(*ends)) / t, torch.maximum(w_v, w_c))
    # The analytic bounds can coincide with the root; widen them so Newton may land there.
    lo, hi = lo - 1e-6 * (1 + lo.abs()), hi + 1e-6 * (1 + hi.abs())

    def midpoint(lo: Tensor, hi: Tensor) -> Tensor:
        mid = 0.5 * (lo + hi)
        clamped = mid.clamp(-40.0, 40.0)
        return torch.where((clamped > lo) & (clamped < hi), clamped, mid)

    w = midpoint(lo, hi)
    for _ in range(_NEWTON_ITERS):
        sw, dsw = s_ds(w)
        h = a * sw + t * w - v
        lo = torch.where(h < 0, w, lo)
        hi = torch.where(h > 0, w, hi)
        step = w - h / (a * dsw + t)
        keep = ((step > lo) & (step < hi)) | (step == w)
        w = torch.where(keep, step, midpoint(lo, hi))
    return s_ds(w)[0]


class Activation(ABC):
    r"""Proximal activation $\sigma = \operatorname{prox}_\Psi$, applied elementwise.

    $$F = \tfrac12|\cdot|^2 + \Psi,\qquad
    B_\Psi(y, z) = F(y) + F^*(z) - \langle y, z\rangle\ \text{(eq. (4))},\qquad
    B_\Psi(y, z) = 0 \iff y = \sigma(z)\ \text{(eq. (5))}.$$

    Subclasses implement ``_sigma``, ``_psi`` (on dom Ψ), ``_conj``, ``_prox``, and the stable
    Bregman distance (for y in dom Ψ) as ``_bregman`` or, where its stable form contains
    $\sigma(z) - y$, as ``_bregman_and_grad`` (one evaluation then serves both); this class
    validates inputs and handles the domain.

    Attributes:
        name: display name used in error messages.
        domain: closed interval dom Ψ of one component, e.g. ``(0.0, inf)``.
        lipschitz_grad_psi: Lipschitz constant ℓ of Ψ' (Remark 1) where it exists, else None.
    """

    name: str = "Activation"
    domain: tuple[float, float] = (-_INF, _INF)
    lipschitz_grad_psi: float | None = None

    # ---- subclass hooks -------------------------------------------------------------
    @abstractmethod
    def _sigma(self, z: Tensor) -> Tensor: ...

    @abstractmethod
    def _psi(self, u: Tensor) -> Tensor: ...

    @abstractmethod
    def _conj(self, z: Tensor) -> Tensor: ...

    @abstractmethod
    def _prox(self, v: Tensor, t: Tensor) -> Tensor: ...

    def _bregman(self, y: Tensor, z: Tensor) -> Tensor:
        r"""$B_\Psi(y, z)$ elementwise: the first value of ``_bregman_and_grad`` unless overridden."""
        return self._bregman_and_grad(y, z)[0]

    def _bregman_and_grad(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""(``_bregman(y, z)``, $\sigma(z) - y$) unless overridden."""
        return self._bregman(y, z), self._sigma(z) - y

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._bregman is Activation._bregman and cls._bregman_and_grad is Activation._bregman_and_grad:
            raise TypeError(f"{cls.__name__} must implement _bregman or _bregman_and_grad "
                            "(each defaults to the other)")

    def _params(self) -> dict[str, float]:
        return {}

    # ---- public API -----------------------------------------------------------------
    def __call__(self, z: Tensor) -> Tensor:
        r"""σ(z) = prox_Ψ(z), elementwise. Args: z (any shape). Returns: same shape."""
        _require_float(z, "z")
        return self._sigma(z)

    def psi(self, u: Tensor) -> Tensor:
        r"""Ψ(u) elementwise; $+\infty$ outside dom Ψ (never NaN there), NaN where ``u`` is NaN."""
        _require_float(u, "u")
        return self._psi(self._clip(u)).masked_fill(self._outside(u), _INF).masked_fill(u.isnan(), _NAN)

    def conj(self, z: Tensor) -> Tensor:
        r"""$F^*(z) = \sup_u\, zu - \tfrac12u^2 - \Psi(u)$ elementwise; $\nabla F^* = \sigma$."""
        _require_float(z, "z")
        return self._conj(z)

    def bregman_elementwise(self, y: Tensor, z: Tensor, *, check: bool = True,
                            y_in_domain: bool = False) -> Tensor:
        r"""$B_\Psi(y, z)$ of eq. (4), elementwise (no sum).

        Args:
            y: point in dom Ψ, any shape.
            z: pre-activation, same shape as ``y``.
            check: validate y ∈ dom Ψ and finiteness (one host synchronisation). With
                ``check=False`` entries with y ∉ dom Ψ give $+\infty$ (property 1).
            y_in_domain: with ``check=False``, the caller vouches that y ∈ dom Ψ (validated once
                before a solver's loop, or a prox output): the formula is evaluated without the
                masking of entries outside dom Ψ (three element-wise operations fewer).
        Returns:
            Tensor of the shape of ``y``.
        Raises:
            TypeError: non-floating inputs, or y and z of different dtypes.
            ValueError: shapes differ, y ∉ dom Ψ, NaN/Inf.
        """
        self._check_pair(y, z)
        if check:
            self.check_domain(y, "y")
            check_finite(z, "z")
            return self._bregman(y, z)
        if y_in_domain:
            return self._bregman(y, z)
        return self._bregman(self._clip(y), z).masked_fill(self._outside(y), _INF)

    def bregman(self, y: Tensor, z: Tensor, *, check: bool = True, y_in_domain: bool = False) -> Tensor:
        r"""$B_\Psi(y, z)$ of eq. (4), summed over all non-batch dimensions.

        Args:
            y: ``(B, ...)`` in dom Ψ. z: ``(B, ...)``, same shape. check, y_in_domain: see
                :meth:`bregman_elementwise`.
        Returns:
            ``(B,)``, one value per sample.
        """
        self._check_pair(y, z)
        if y.ndim == 0:
            raise ValueError("bregman needs a leading batch dimension; got 0-d y and z")
        return _sum_per_sample(self.bregman_elementwise(y, z, check=check, y_in_domain=y_in_domain))

    def bregman_and_grad(self, y: Tensor, z: Tensor, *, y_in_domain: bool = False) -> tuple[Tensor, Tensor]:
        r"""$B_\Psi(y, z)$ summed per sample ``(B,)`` and $\nabla_z B_\Psi(y, z) = \sigma(z) - y$,
        sharing $\sigma(z)$ and $\sigma(z) - y$ where the stable form of $B_\Psi$ contains them.

        For a solver's loop: no host synchronisation, no check of dom Ψ or finiteness (as
        :meth:`bregman` with ``check=False``); ``y_in_domain`` as in :meth:`bregman_elementwise`.
        The values equal those of :meth:`bregman` and :meth:`bregman_grad` bit for bit.
        """
        self._check_pair(y, z)
        if y.ndim == 0:
            raise ValueError("bregman_and_grad needs a leading batch dimension; got 0-d y and z")
        if y_in_domain:
            b, grad = self._bregman_and_grad(y, z)
        else:
            b, grad = self.bregman_elementwise(y, z, check=False), self._sigma(z) - y
        return _sum_per_sample(b), grad

    def bregman_grad(self, y: Tensor, z: Tensor) -> Tensor:
        r"""$\nabla_z B_\Psi(y, z) = \sigma(z) - y$ (no derivative of σ). The domain of y is
        not checked here (no host synchronisation), only types and shapes."""
        self._check_pair(y, z)
        return self._sigma(z) - y

    def prox(self, v: Tensor, t: float | Tensor, *, check: bool = True) -> Tensor:
        r"""$\operatorname{prox}_{t\Psi}(v) = \arg\min_u \tfrac12(u - v)^2 + t\Psi(u)$, elementwise.

        Used by eq. (17) with $t = \tau/(1 + \tau)$; ``prox(v, 1) == self(v)``.

        Args:
            v: any shape. t: positive finite scalar, or a tensor broadcastable to ``v``.
            check: validate ``t`` (for a tensor ``t``, one host synchronisation). A solver
                that validated its steps once passes ``check=False`` in its loop.
        Returns:
            Tensor of the shape of ``v``, in dom Ψ (with ``check``, a tensor ``t`` that does not
            broadcast to ``v``'s shape is a ValueError).
        """
        _require_float(v, "v")
        if check and isinstance(t, Tensor):
            if t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"t must be a real number or a real tensor, got a tensor of dtype {t.dtype}")
            try:
                fits = torch.broadcast_shapes(t.shape, v.shape) == v.shape
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(f"t must broadcast to the shape of v {tuple(v.shape)}, got shape {tuple(t.shape)}")
            check_positive_values(t, "t")
        elif check:
            t = check_positive(t, "t")
        # a number becomes a CPU scalar tensor, which kernels on any device take as a number
        # (made on v's device, it would be copied to a GPU at every call)
        t = torch.as_tensor(t, dtype=v.dtype, device=v.device if isinstance(t, Tensor) else "cpu")
        return self._prox(v, t)

    def in_domain(self, y: Tensor) -> Tensor:
        """Boolean tensor: y finite and in dom Ψ, elementwise."""
        _require_float(y, "y")
        return torch.isfinite(y) & ~self._outside(y)

    def project_domain(self, y: Tensor) -> Tensor:
        """Clip y into dom Ψ (e.g. noisy data before inversion); NaN stays NaN.
        Where dom Ψ = ℝ, y itself is returned (no copy)."""
        _require_float(y, "y")
        return self._clip(y)

    def check_domain(self, y: Tensor, name: str = "y") -> None:
        """Raise ValueError naming ``name`` unless every entry of y is finite and in dom Ψ."""
        _require_float(y, name)
        dom = self._domain_str()
        message = nonfinite_message(y, name)
        if message is not None:
            raise ValueError(f"{message}; {self.name} needs finite values in dom Ψ = {dom}")
        lo, hi = self.domain
        problems = []
        for bound, mask, op, ext in ((lo, y < lo, "<", "min"), (hi, y > hi, ">", "max")):
            n = int(mask.sum())
            if n:
                extreme = (y.min() if ext == "min" else y.max()).item()
                entries = "1 entry is" if n == 1 else f"{n} entries are"
                problems.append(f"{entries} {op} {bound:g} ({ext} {extreme:.7g})")
        if problems:
            raise ValueError(
                f"{name} must lie in dom Ψ = {dom} of {self.name}: {' and '.join(problems)}; "
                "clip it with the activation's project_domain (for a network's data: "
                "y = net.layers[-1].activation.project_domain(y))"
            )

    # ---- helpers --------------------------------------------------------------------
    def _outside(self, u: Tensor) -> Tensor:
        lo, hi = self.domain
        if hi == _INF:  # no comparison with an infinite bound (NaN is outside neither way)
            return u < lo
        if lo == -_INF:
            return u > hi
        return (u < lo) | (u > hi)

    def _clip(self, u: Tensor) -> Tensor:
        lo, hi = self.domain
        if lo == -_INF and hi == _INF:
            return u
        return u.clamp(min=None if lo == -_INF else lo, max=None if hi == _INF else hi)

    def _domain_str(self) -> str:
        lo, hi = self.domain
        left = "(-inf" if lo == -_INF else f"[{lo:g}"
        right = "inf)" if hi == _INF else f"{hi:g}]"
        return f"{left}, {right}"

    def _check_pair(self, y: Tensor, z: Tensor) -> None:
        _require_float(y, "y")
        _require_float(z, "z")
        if y.shape != z.shape:
            raise ValueError(
                f"y and z must have the same shape, got y: {tuple(y.shape)} and z: {tuple(z.shape)}"
            )
        if y.dtype != z.dtype:  # float32 y against float64 z loses B >= 0 to rounding
            raise TypeError(f"y and z must have the same dtype, got y: {y.dtype} and z: {z.dtype}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._params() == self._params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._params().items())))


class ReLU(Activation):
    r"""ReLU $\sigma(z) = \max(z, 0)$, the projection onto $[0, \infty)$.

    $$\Psi = \chi_{[0,\infty)},\quad \operatorname{dom}\Psi = [0,\infty),\quad
    F^*(z) = \tfrac12\max(z,0)^2,\quad \operatorname{prox}_{t\Psi} = \sigma\ \text{(eq. (17))},$$
    $$B_\Psi(y,z) = \tfrac12y^2 + \tfrac12\max(z,0)^2 - yz
                  = \tfrac12(y-\sigma(z))^2 + y\max(-z,0)\quad\text{(eq. (4), second form used)}.$$
    """

    name = "ReLU"
    domain = (0.0, _INF)

    def _sigma(self, z: Tensor) -> Tensor:
        return torch.relu(z)

    def _psi(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _conj(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2

    def _bregman_and_grad(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        # -y min(z, 0) with min(z, 0) = z - relu(z): the same value, and autograd then gives
        # relu(z) - y at z = 0 too (clamp's and relu's zero derivative there would drop the -y)
        r = torch.relu(z)
        d = r - y
        return 0.5 * d**2 - y * (z - r), d

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        return torch.relu(v)


class Identity(Activation):
    r"""Identity $\sigma(z) = z$ (an affine layer without activation).

    $$\Psi = 0,\quad \operatorname{dom}\Psi = \mathbb R,\quad F^*(z) = \tfrac12z^2,\quad
    B_\Psi(y,z) = \tfrac12(y-z)^2\ \text{(eq. (4))},\quad \operatorname{prox}_{t\Psi}(v) = v.$$
    """

    name = "Identity"
    lipschitz_grad_psi = 0.0

    def _sigma(self, z: Tensor) -> Tensor:
        return z.clone()

    def _psi(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _conj(self, z: Tensor) -> Tensor:
        return 0.5 * z**2

    def _bregman_and_grad(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        d = z - y
        return 0.5 * d**2, d

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        return v.clone()


class LeakyReLU(Activation):
    r"""Leaky ReLU $\sigma(z) = z$ for $z \ge 0$, $az$ else, with slope $a \in (0, 1]$.

    With $c = (1-a)/a$ (the Lipschitz constant ℓ of Ψ', Remark 1) and $m = \min(\sigma(z), 0)$:
    $$\Psi(u) = \tfrac c2\min(u,0)^2,\quad \operatorname{dom}\Psi = \mathbb R,\quad
    F^*(z) = \tfrac12\max(z,0)^2 + \tfrac a2\min(z,0)^2,$$
    $$B_\Psi(y,z) = \tfrac12\max(y,0)^2 + \tfrac1{2a}\min(y,0)^2 + F^*(z) - yz
      = \tfrac12(y-\sigma(z))^2 + \tfrac c2(\min(y,0) - m)^2 - c\,m\max(y,0)$$
    (eq. (4); the second form is property 2 with $D_\Psi$ written out), and (eq. (17))
    $\operatorname{prox}_{t\Psi}(v) = v$ for $v \ge 0$, $av/(a + t(1-a))$ else.

    Args:
        slope: negative slope $a \in (0, 1]$ ($a = 1$ is the identity; $a \to 0$ gives ReLU).
    """

    name = "LeakyReLU"

    def __init__(self, slope: float = 0.01) -> None:
        slope = check_real(slope, "slope")
        if not 0.0 < slope <= 1.0:
            raise ValueError(
                f"slope must lie in (0, 1] for leaky ReLU to be a proximal map, got {slope}"
            )
        self.slope = slope
        self.lipschitz_grad_psi = (1.0 - slope) / slope

    def _params(self) -> dict[str, float]:
        return {"slope": self.slope}

    def _sigma(self, z: Tensor) -> Tensor:
        return torch.where(z >= 0, z, self.slope * z)

    def _psi(self, u: Tensor) -> Tensor:
        return 0.5 * self.lipschitz_grad_psi * torch.clamp(u, max=0) ** 2

    def _conj(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2 + 0.5 * self.slope * torch.clamp(z, max=0) ** 2

    def _bregman_and_grad(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        # s and m = min(s, 0) switch branches on the same test, so that autograd takes the same
        # side at z = 0 for both and gives sigma(z) - y there; clamp's derivative at its bound
        # differs between torch releases (1 in 2.11, 0 in 2.14)
        c, negative = self.lipschitz_grad_psi, z < 0
        s = torch.where(negative, self.slope * z, z)
        m = torch.where(negative, s, 0.0)
        d = s - y
        y_neg = torch.clamp(y, max=0)
        return 0.5 * d**2 + 0.5 * c * (y_neg - m) ** 2 - c * m * torch.relu(y), d

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        a = self.slope
        return torch.where(v >= 0, v, a * v / (a + t * (1.0 - a)))


class HardTanh(Activation):
    r"""Hard tanh $\sigma(z) = \operatorname{clamp}(z, a, b)$, the projection onto $[a, b]$
    (torch's ``nn.Hardtanh(min_val=a, max_val=b)``; ``nn.ReLU6`` is $[0, 6]$).

    With $r = z - \sigma(z)$:
    $$\Psi = \chi_{[a,b]},\quad \operatorname{dom}\Psi = [a,b],\quad
    F^*(z) = z\,\sigma(z) - \tfrac12\sigma(z)^2\ \ (\tfrac12z^2\text{ on }[a,b];\ |z| - \tfrac12
    \text{ outside for }[-1,1]\text{, Huber}),$$
    $$B_\Psi(y,z) = \tfrac12y^2 + F^*(z) - yz = \tfrac12(y-\sigma(z))^2 + r\,(\sigma(z) - y)
    \quad\text{(eq. (4))},\qquad \operatorname{prox}_{t\Psi} = \sigma\ \text{(eq. (17))}.$$

    Args:
        min_val, max_val: the interval $[a, b]$, finite with $a < b$; default $[-1, 1]$.
    """

    name = "HardTanh"
    domain = (-1.0, 1.0)  # the default interval; each instance sets its own

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0) -> None:
        lo, hi = check_real(min_val, "min_val"), check_real(max_val, "max_val")
        if not lo < hi:
            raise ValueError(f"min_val must be below max_val, got min_val={lo:g}, max_val={hi:g}")
        self.domain = (lo, hi)

    def _params(self) -> dict[str, float]:
        lo, hi = self.domain
        return {} if (lo, hi) == (-1.0, 1.0) else {"min_val": lo, "max_val": hi}

    def _sigma(self, z: Tensor) -> Tensor:
        return z.clamp(*self.domain)

    def _psi(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _conj(self, z: Tensor) -> Tensor:
        s = z.clamp(*self.domain)
        outside = torch.where(s == 0, 0.0, z * s - 0.5 * s**2)  # s = 0: no 0·(-inf) = NaN
        return torch.where(s == z, 0.5 * z**2, outside)

    def _bregman_and_grad(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        s = z.clamp(*self.domain)
        d = s - y
        return 0.5 * d**2 + (z - s) * d, d

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        return v.clamp(*self.domain)


class SoftShrink(Activation):
    r"""Soft thresholding $\sigma(z) = \operatorname{sign}(z)(|z| - \lambda)_+$.

    With $r = z - \sigma(z) = \operatorname{clamp}(z, -\lambda, \lambda)$:
    $$\Psi(u) = \lambda|u|,\quad \operatorname{dom}\Psi = \mathbb R,\quad
    F^*(z) = \tfrac12(|z| - \lambda)_+^2,$$
    $$B_\Psi(y,z) = \tfrac12y^2 + \lambda|y| + F^*(z) - yz
      = \tfrac12(y-\sigma(z))^2 + \lambda|y| - r\,y\quad\text{(eq. (4))},$$
    $\operatorname{prox}_{t\Psi}(v) = \operatorname{sign}(v)(|v| - t\lambda)_+$ (eq. (17)).

    Args:
        lam: threshold $\lambda \ge 0$.
    """

    name = "SoftShrink"

    def __init__(self, lam: float = 0.5) -> None:
        self.lam = check_real(lam, "lam", minimum=0.0)

    def _params(self) -> dict[str, float]:
        return {"lam": self.lam}

    def _sigma(self, z: Tensor) -> Tensor:
        return z - z.clamp(-self.lam, self.lam)

    def _psi(self, u: Tensor) -> Tensor:
        return self.lam * u.abs()

    def _conj(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z.abs() - self.lam) ** 2

    def _bregman_and_grad(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        r = z.clamp(-self.lam, self.lam)
        d = (z - r) - y
        return 0.5 * d**2 + self.lam * y.abs() - r * y, d

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        return torch.sign(v) * torch.relu(v.abs() - t * self.lam)


class Sigmoid(Activation):
    r"""Logistic sigmoid $\sigma(z) = 1/(1 + e^{-z})$.

    $$\Psi(u) = u\log u + (1-u)\log(1-u) - \tfrac{u^2}2,\quad \operatorname{dom}\Psi = [0,1],
    \quad F^*(z) = \log(1 + e^z),$$
    $$B_\Psi(y,z) = y\log y + (1-y)\log(1-y) + \log(1+e^z) - yz
      = y\log\tfrac{y}{\sigma(z)} + (1-y)\log\tfrac{1-y}{1-\sigma(z)}\quad\text{(eq. (4))},$$
    the binary KL divergence, evaluated as $y[\log y + \mathrm{sp}(-z)] + (1-y)[\log(1-y) +
    \mathrm{sp}(z)]$ with $\mathrm{sp}$ = softplus and $0\log0 = 0$.
    $\operatorname{prox}_{t\Psi}(v)$ is the root of $(1-t)u + t\operatorname{logit}u = v$
    (eq. (17)), unique for all $t > 0$ since $\Psi'' = 1/(u(1-u)) - 1 \ge 3$.

    Ψ is the table's form, unshifted. Its minimiser is the fixed point $u^* = \sigma(u^*)
    \approx 0.65905$ (where $\Psi'(u) = \operatorname{logit}u - u$ vanishes), with
    $\min\Psi \approx -0.85884$; note $\Psi(\tfrac12) = -\log2 - \tfrac18 \approx -0.81815$ is not
    the minimum. Adding a constant changes neither σ nor $B_\Psi$ (property 5).
    """

    name = "Sigmoid"
    domain = (0.0, 1.0)

    def _sigma(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z)

    def _psi(self, u: Tensor) -> Tensor:
        return torch.xlogy(u, u) + torch.xlogy(1 - u, 1 - u) - 0.5 * u**2

    def _conj(self, z: Tensor) -> Tensor:
        return _softplus(z)

    def _bregman(self, y: Tensor, z: Tensor) -> Tensor:
        return _binary_kl(y, 1 - y, z)

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        return _prox_saturating(
            v, t, _sigmoid_and_derivative, torch.logit, (0.0, 1.0), _SIGMOID_PSI_ARGMIN
        )


class Tanh(Activation):
    r"""Hyperbolic tangent $\sigma(z) = \tanh z$.

    $$\Psi(u) = \tfrac12[(1+u)\log(1+u) + (1-u)\log(1-u)] - \tfrac{u^2}2 \ (\ge 0),\quad
    \operatorname{dom}\Psi = [-1,1],\quad F^*(z) = \log\cosh z,$$
    $$B_\Psi(y,z) = \tfrac12[(1+y)\log(1+y) + (1-y)\log(1-y)] + \log\cosh z - yz
      = B_{\rm Sigmoid}\big(\tfrac{1+y}2, 2z\big)\quad\text{(eq. (4))},$$
    a binary KL divergence, evaluated like :class:`Sigmoid` with $p = (1+y)/2$,
    $1 - p = (1-y)/2$. $\log\cosh z = |z| + \log(1 + e^{-2|z|}) - \log 2$.
    $\operatorname{prox}_{t\Psi}(v)$ is the root of $(1-t)u + t\operatorname{artanh}u = v$
    (eq. (17)), unique for all $t > 0$ since $\Psi'' = 1/(1-u^2) - 1 \ge 0$.
    """

    name = "Tanh"
    domain = (-1.0, 1.0)

    def _sigma(self, z: Tensor) -> Tensor:
        return torch.tanh(z)

    def _psi(self, u: Tensor) -> Tensor:
        return 0.5 * (torch.xlogy(1 + u, 1 + u) + torch.xlogy(1 - u, 1 - u)) - 0.5 * u**2

    def _conj(self, z: Tensor) -> Tensor:
        a = z.abs()
        return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)

    def _bregman(self, y: Tensor, z: Tensor) -> Tensor:
        return _binary_kl(0.5 * (1 + y), 0.5 * (1 - y), 2 * z)

    def _prox(self, v: Tensor, t: Tensor) -> Tensor:
        return _prox_saturating(v, t, _tanh_and_derivative, torch.atanh, (-1.0, 1.0), 0.0)


_SUPPORTED = "nn.ReLU, nn.Identity, nn.LeakyReLU, nn.Hardtanh, nn.ReLU6, nn.Softshrink, nn.Sigmoid, nn.Tanh"
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
              nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_NON_MONOTONE = (nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish)


def _not_proximal_reason(module: nn.Module) -> str:
    """Why ``module`` cannot (or, in lbreg, does not) serve as σ = prox_Ψ."""
    cls = type(module).__name__
    if isinstance(module, _MAX_POOLS):
        avg = cls.replace("Max", "Avg")
        return (f"{cls} is not a proximal map of a convex Ψ: max-pooling is not proximal, so "
                f"B_Ψ is undefined (eq. (5)); use nn.{avg}, which is linear and belongs to the "
                "affine map, as the paper suggests")
    if isinstance(module, _NON_MONOTONE):
        return (f"{cls} is not a proximal map of a convex Ψ: it is non-monotone, while every "
                "prox_Ψ is monotone and firmly nonexpansive (eq. (5))")
    if isinstance(module, nn.SELU) or (isinstance(module, nn.ELU) and module.alpha > 1.0):
        return (f"{cls} is not a proximal map of a convex Ψ: its slope exceeds 1, so it is not "
                "firmly nonexpansive (eq. (5))")
    if isinstance(module, (nn.ELU, nn.CELU, nn.Softplus)):
        return (f"{cls} is monotone with slope <= 1, hence prox_Ψ of some convex Ψ, but lbreg "
                f"does not implement its Ψ and F*; use one of {_SUPPORTED}")
    if isinstance(module, nn.Hardshrink):
        return (f"{cls} is not a proximal map of a convex Ψ: it is discontinuous, hence not "
                "firmly nonexpansive (eq. (5)); nn.Softshrink is the convex counterpart")
    from lbreg.network import _AFFINE_MODULES, _AFFINE_NAMES  # lbreg.network imports this module

    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return (f"{cls} is not an activation, and lbreg does not lift it by itself: in eval mode it is "
                "affine, so fold it into the convolution or linear map before it "
                "(torch.nn.utils.fusion.fuse_conv_bn_eval or fuse_linear_bn_eval) and lift the fused module")
    if isinstance(module, _AFFINE_MODULES):
        return (f"{cls} is an affine map, not an activation: LiftedNetwork.from_module lifts it as "
                f"the affine part of a layer; activations: {_SUPPORTED} or an lbreg Activation")
    if type(module).__module__ != nn.ReLU.__module__:  # not one of torch's activations
        return (f"{cls} is not an activation, and not an affine map lbreg can lift ({_AFFINE_NAMES}); "
                f"activations: {_SUPPORTED} or an lbreg Activation")
    return (f"{cls} is not a supported proximal activation σ = prox_Ψ of a convex Ψ "
            f"(eq. (5)); supported: {_SUPPORTED} or an lbreg Activation")


def activation_of(module: nn.Module | Activation) -> Activation:
    """The lbreg activation equal to a ``torch.nn`` activation module.

    Args:
        module: an ``nn.ReLU``, ``nn.Identity``, ``nn.LeakyReLU`` (negative_slope in (0, 1]),
            ``nn.Hardtanh`` and ``nn.ReLU6``, ``nn.Softshrink``, ``nn.Sigmoid``,
            ``nn.Tanh``, or an :class:`Activation` (returned as is).
    Returns:
        The matching :class:`Activation`.
    Raises:
        ValueError: a supported class with parameters for which it is not proximal / supported.
        TypeError: anything else, with the reason (e.g. max-pooling is not proximal), and a
            module whose forward hooks or subclass methods change what it computes.
    """
    if isinstance(module, Activation):
        return module
    if isinstance(module, nn.Module):
        from lbreg.network import _check_plain  # lbreg.network imports this module

        _check_plain(module, "")
    if isinstance(module, nn.LeakyReLU):
        a = float(module.negative_slope)
        if not 0.0 < a <= 1.0:
            raise ValueError(
                "nn.LeakyReLU negative_slope must lie in (0, 1] to be the proximal map of a "
                f"convex Ψ, got {a}" + ("; use nn.ReLU for slope 0" if a == 0.0 else "")
            )
        return LeakyReLU(a)
    if isinstance(module, nn.Hardtanh):  # also nn.ReLU6, a subclass: the projection onto [0, 6]
        return HardTanh(float(module.min_val), float(module.max_val))
    if isinstance(module, nn.Softshrink):
        return SoftShrink(float(module.lambd))
    simple = {nn.ReLU: ReLU, nn.Identity: Identity, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh}
    for cls, act in simple.items():
        if isinstance(module, cls):
            return act()
    raise TypeError(_not_proximal_reason(module))
