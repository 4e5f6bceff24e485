r"""The exact x-update of ADMM (`lbreg.solvers.admm`): a linear solve with :math:`\rho_uW^\top W + \rho_dK^\top K`.

Three solvers of :math:`(\rho_uW^\top W + \rho_dK^\top K)\,x = r`, chosen by `x_solver`:
Woodbury around the DCT-diagonalised Neumann Laplacian (dense :math:`W`, :math:`m<n`),
a Cholesky factor of the assembled matrix (dense :math:`W`, small :math:`n`), and
warm-started conjugate gradients (maps without a matrix, e.g. convolutions).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..network import AffineMap
from ..regularizers import TV, Regularizer, SquaredNorm
from .result import bview, sample_norm

__all__ = ["XStep", "x_solver", "DENSE_MAX_N", "CG_ITERS"]

# Largest input dimension n for which a dense n×n system is assembled and factorised
# (Cholesky path for m >= n or a regulariser without a known diagonalisation of KᵀK).
DENSE_MAX_N = 5000
# Conjugate-gradient steps per ADMM iteration for maps without a matrix (convolutions);
# warm-started from the previous x, so few steps suffice once the iterates settle.
CG_ITERS = 30


def _dct_matrix(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    r"""Orthonormal DCT-II matrix :math:`C_{kj} = c_k\cos(\pi(2j+1)k/2N)`.

    :math:`c_0=\sqrt{1/N}`, else :math:`c_k=\sqrt{2/N}`; :math:`C` is orthogonal.
    """
    k = torch.arange(size, dtype=torch.float64, device=device)[:, None]
    j = torch.arange(size, dtype=torch.float64, device=device)[None, :]
    c = torch.cos(math.pi * (2 * j + 1) * k / (2 * size)) * math.sqrt(2.0 / size)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype)


class _Diagonal:
    r"""An orthonormal transform :math:`Q` with :math:`K^\top K = Q^\top\operatorname{diag}(\lambda)Q`.

    TV (Neumann forward differences): the 2-D DCT-II along the last two axes, with
    :math:`\lambda_{kl} = 4\sin^2(\pi k/2H) + 4\sin^2(\pi l/2W)`; its null space is spanned by
    the constant image of each channel. `SquaredNorm` (:math:`K=I`): :math:`Q=I`, :math:`\lambda=1`.
    """

    def __init__(self, reg: Regularizer, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device) -> None:
        self.shape = shape
        if isinstance(reg, TV):
            h, w = shape[-2], shape[-1]
            self.ch, self.cw = _dct_matrix(h, dtype, device), _dct_matrix(w, dtype, device)
            lh = 4 * torch.sin(math.pi * torch.arange(h, dtype=torch.float64) / (2 * h)) ** 2
            lw = 4 * torch.sin(math.pi * torch.arange(w, dtype=torch.float64) / (2 * w)) ** 2
            lam = (lh[:, None] + lw[None, :]).expand(shape).clone()
            lam[..., 0, 0] = 0.0  # exactly zero: the constant image of each channel
        else:
            self.ch = self.cw = None
            lam = torch.ones(shape, dtype=torch.float64)
        self.eig = lam.to(device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        """:math:`Qx` for ``x`` of shape ``(B, *shape)``."""
        return x if self.ch is None else self.ch @ x @ self.cw.T

    def inverse(self, c: Tensor) -> Tensor:
        r""":math:`Q^\top c` for ``c`` of shape ``(B, *shape)``."""
        return c if self.ch is None else self.ch.T @ c @ self.cw


def _diagonalise(reg: Regularizer, shape: tuple[int, ...], like: Tensor) -> _Diagonal | None:
    """The diagonalisation of KᵀK for TV (on ``(..., H, W)`` inputs) and SquaredNorm, else None."""
    if type(reg) is TV and len(shape) >= 2:
        return _Diagonal(reg, shape, like.dtype, like.device)
    if type(reg) is SquaredNorm:
        return _Diagonal(reg, shape, like.dtype, like.device)
    return None


class XStep:
    r"""The exact x-update of ADMM, together with :math:`W^\top\nu_u` for the dual residual.

    ``step(w, v, nu, x)`` returns :math:`x^+ = M^{-1}r` with
    :math:`M = \rho_uW^\top W + \rho_dK^\top K` and
    :math:`r = \rho_uW^\top w + \rho_dK^\top v`, the product :math:`Wx^+`, and :math:`W^\top\nu`
    (two passes over :math:`W`: the adjoint of the stacked ``[w, nu]`` and :math:`Wx^+`).
    Subclasses implement ``solve(r, x)``; ``x`` is the warm start (used by CG only).
    """

    kind = ""

    def __init__(self, affine: AffineMap, reg: Regularizer, rho_u: float, rho_d: float) -> None:
        self.affine, self.reg, self.rho_u, self.rho_d = affine, reg, rho_u, rho_d

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(x_new, W x_new, Wᵀ nu)`` for ``w, nu`` ``(B, *out_shape)``, ``v`` ``(B, *dual_shape)``.

        ``nu=None`` skips :math:`W^\top\nu` (returned as None).
        """
        batch = w.shape[0]
        both = self.affine.adjoint(w if nu is None else torch.cat([w, nu]))
        r = self.rho_u * both[:batch] + self.rho_d * self.reg.K_adj(v)
        x_new = self.solve(r, x)
        return x_new, self.affine.linear(x_new), None if nu is None else both[batch:]


class _WoodburySolver(XStep):
    r"""Exact x-update for dense :math:`W` with :math:`m < n` and a diagonalised :math:`K^\top K`.

    :math:`K^\top K = Q^\top\Lambda Q` is singular for TV (constants), so write
    :math:`M = A + UCU^\top` with :math:`A = \rho_d K^\top K + \gamma EE^\top` (invertible,
    diagonal in the :math:`Q` basis; :math:`E` the orthonormal null vectors of :math:`K^\top K`,
    :math:`\gamma = \rho_d\,\mathrm{mean}(\lambda)`), :math:`U = [W^\top, E]`,
    :math:`C = \operatorname{diag}(\rho_u I_m, -\gamma I)`. Woodbury's identity
    :math:`M^{-1} = A^{-1} - A^{-1}U T^{-1}U^\top A^{-1}` then needs the capacitance matrix

    .. math::
        T = C^{-1} + U^\top A^{-1}U = \begin{pmatrix} S & G\\ G^\top & 0\end{pmatrix},\qquad
        S = \rho_u^{-1}I + WA^{-1}W^\top,\quad G = WE/\gamma,

    (the zero block because :math:`A^{-1}E = E/\gamma`), inverted through :math:`S^{-1}` and the
    inverse of the small Schur complement :math:`\Sigma = G^\top S^{-1}G`, both formed once
    from Cholesky factors. The identity is exact, so the x-update is exact to rounding. A null
    vector with :math:`We = 0` (then :math:`M` is singular) is left in :math:`A` only, which for
    right-hand sides in :math:`\operatorname{range}(W^\top)+\operatorname{range}(K^\top)`
    returns the solution orthogonal to :math:`e`, again an exact minimiser of the x-subproblem.

    **A step** with :math:`r = \rho_uW^\top w + \rho_dK^\top v`: since
    :math:`\rho_u WA^{-1}W^\top = \rho_u S - I`, Woodbury's correction reduces to the
    multiplier :math:`c = \rho_u(w - Wx^+)`,

    .. math::
        c = S^{-1}\big(w - \rho_d\,WA^{-1}K^\top v + Gq\big),\qquad
        x^+ = A^{-1}\big(W^\top c + \rho_dK^\top v\big) - Eq/\gamma,\qquad
        Wx^+ = w - c/\rho_u,

    where :math:`q = -\Sigma^{-1}\big(G^\top c_0 + \rho_dE^\top A^{-1}K^\top v\big)` with
    :math:`c_0 = S^{-1}(w - \rho_dWA^{-1}K^\top v)` costs :math:`C'` numbers per
    sample. The whole step runs in the :math:`Q` basis, where :math:`A` is diagonal and the
    null vectors are unit vectors: with :math:`V = WQ^\top` stored (once, instead of
    :math:`W`), it makes two passes over that :math:`m\times n` matrix (:math:`V` applied to
    :math:`QA^{-1}K^\top v`, and :math:`V^\top` applied to the stacked ``[c, ν]``, which also
    yields :math:`QW^\top\nu`), one :math:`m\times m` product, one forward DCT (of
    :math:`K^\top v`) and one inverse DCT.
    """

    kind = "woodbury"

    def __init__(self, affine: AffineMap, reg: Regularizer, diag: _Diagonal, rho_u: float,
                 rho_d: float) -> None:
        super().__init__(affine, reg, rho_u, rho_d)
        W = affine.weight
        m, n = W.shape
        self.diag, self.m, self.n = diag, m, n
        eig = diag.eig.reshape(n)
        null = eig == 0
        self.gamma = rho_d * float(eig.mean())
        self.a = torch.where(null, torch.full_like(eig, self.gamma), rho_d * eig)  # eigenvalues of A
        self.v = diag.forward(W.reshape(m, *diag.shape)).reshape(m, n)  # V = W Qᵀ, W in the Q basis
        wawt = (self.v / self.a) @ self.v.T  # W A⁻¹ Wᵀ
        eye = torch.eye(m, dtype=W.dtype, device=W.device)
        self.s_inv = _spd_inverse(0.5 * (wawt + wawt.T) + eye / rho_u)  # S⁻¹
        # the null vectors E are unit vectors in the Q basis, so WE = V[:, null] and Eᵀ = coefficients
        idx = null.nonzero().reshape(-1)
        we = self.v[:, idx]
        keep = torch.linalg.vector_norm(we, dim=0) > 1e-12 * torch.linalg.matrix_norm(W)
        self.null = idx[keep]
        self.g = we[:, keep] / self.gamma  # G (m, C')
        self.bordered = self.g.shape[1] > 0
        if self.bordered:
            self.h = self.s_inv @ self.g  # S⁻¹G (m, C')
            self.sigma_inv = _spd_inverse(self.g.T @ self.h)  # Σ⁻¹ (C', C')

    def _to_q(self, t: Tensor) -> Tensor:
        """Coefficients ``(B, n)`` in the Q basis of ``t`` ``(B, *shape)``."""
        return self.diag.forward(t.reshape(t.shape[0], *self.diag.shape)).reshape(t.shape[0], self.n)

    def _from_q(self, c: Tensor) -> Tensor:
        """The image ``(B, *shape)`` with Q-basis coefficients ``c`` ``(B, n)``."""
        return self.diag.inverse(c.reshape(c.shape[0], *self.diag.shape))

    def _border(self, c: Tensor, ak: Tensor) -> tuple[Tensor, Tensor | None]:
        """The null-space border: ``c + q hᵀ`` and ``q``, from ``c = (·) S⁻¹`` and Q A⁻¹(·) ``ak``."""
        if not self.bordered:
            return c, None
        q = -(c @ self.g + self.rho_d * ak[:, self.null]) @ self.sigma_inv
        return c + q @ self.h.T, q

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        batch = w.shape[0]
        akv = self._to_q(self.reg.K_adj(v)) / self.a  # Q A⁻¹Kᵀv (B, n)
        w = w.reshape(batch, self.m)
        c, q = self._border((w - self.rho_d * (akv @ self.v.T)) @ self.s_inv, akv)  # pass 1
        rows = c if nu is None else torch.cat([c, nu.reshape(batch, self.m)])
        both = rows @ self.v  # pass 2: Q Wᵀc (and Q Wᵀν)
        x_hat = torch.add(both[:batch] / self.a, akv, alpha=self.rho_d)
        if q is not None:
            x_hat[:, self.null] -= q / self.gamma
        out = self._from_q(x_hat if nu is None else torch.cat([x_hat, both[batch:]]))
        wx = (w - c / self.rho_u).reshape(batch, *self.affine.out_shape)
        return out[:batch], wx, None if nu is None else out[batch:]

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        """:math:`M^{-1}r` for ``r`` ``(B, *in_shape)`` (used by tests; `step` is the fast path)."""
        ar = self._to_q(r) / self.a  # Q A⁻¹ r
        p = (ar @ self.v.T) @ self.s_inv  # S⁻¹ W A⁻¹ r
        out = ar - (p @ self.v) / self.a
        if self.bordered:
            q = (p @ self.g - ar[:, self.null]) @ self.sigma_inv  # Eᵀ A⁻¹ r = Eᵀ r / γ
            out = out + ((q @ self.h.T) @ self.v) / self.a
            out[:, self.null] -= q / self.gamma
        return self._from_q(out).reshape(r.shape)


def _spd_inverse(mat: Tensor) -> Tensor:
    """The inverse of a symmetric positive definite matrix through its Cholesky factor (symmetrised)."""
    inv = torch.cholesky_inverse(torch.linalg.cholesky(mat))
    return 0.5 * (inv + inv.T)


class _CholeskySolver(XStep):
    r"""Exact x-update through the Cholesky factor of the assembled :math:`n\times n` :math:`M`.

    Used for dense :math:`W` with :math:`m\ge n` (or a regulariser without a known
    diagonalisation of :math:`K^\top K`). If :math:`M` is singular because a null vector
    :math:`e` of :math:`K^\top K` has :math:`We=0`, :math:`\rho_d ee^\top` is added, which
    returns the solution orthogonal to :math:`e` (exact for the consistent right-hand sides
    of ADMM).
    """

    kind = "cholesky"

    def __init__(self, affine: AffineMap, reg: Regularizer, diag: _Diagonal | None, rho_u: float,
                 rho_d: float) -> None:
        super().__init__(affine, reg, rho_u, rho_d)
        W, shape = affine.weight, affine.in_shape
        n = W.shape[1]
        eye = torch.eye(n, dtype=W.dtype, device=W.device)
        ktk = torch.cat([reg.K_adj(reg.K(eye[i : i + 256].reshape(-1, *shape))).reshape(-1, n)
                         for i in range(0, n, 256)])  # KᵀK column block by column block
        mat = rho_u * (W.T @ W) + rho_d * 0.5 * (ktk + ktk.T)
        if diag is not None and bool((diag.eig == 0).any()):
            idx = (diag.eig == 0).nonzero()
            e = torch.zeros((idx.shape[0], *shape), dtype=W.dtype, device=W.device)
            e[(torch.arange(idx.shape[0]), *idx.T)] = 1.0
            e = diag.inverse(e).reshape(-1, n)
            dead = torch.linalg.vector_norm(W @ e.T, dim=0) <= 1e-12 * torch.linalg.matrix_norm(W)
            mat = mat + rho_d * (e[dead].T @ e[dead])
        chol, info = torch.linalg.cholesky_ex(mat)
        if int(info) != 0:
            raise ValueError(
                "the x-update matrix ρ_u WᵀW + ρ_d KᵀK is singular (W and the regulariser's K "
                "share a null vector), so the minimiser is not unique; use a regulariser whose "
                "K has a trivial null space on it (e.g. SquaredNorm)"
            )
        self.chol, self.n = chol, n

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        """:math:`M^{-1}r` for ``r`` ``(B, *in_shape)``; ``x`` is unused."""
        flat = r.reshape(r.shape[0], self.n)
        return torch.cholesky_solve(flat.T, self.chol).T.reshape(r.shape)


class _CGSolver(XStep):
    r"""Conjugate gradients on :math:`Mx=r`, :math:`M = \rho_u W^\top W + \rho_d K^\top K` matrix-free.

    For maps without a stored matrix (convolutions, pooling). Batched, warm-started from the
    current iterate, a fixed number ``iters`` of steps with no host synchronisation; a sample
    whose residual falls below ``rtol``·‖r‖ is frozen. The x-update is then inexact, but the
    stopping test of `admm` certifies the returned point independently of it.
    """

    kind = "cg"

    def __init__(self, affine: AffineMap, reg: Regularizer, rho_u: float, rho_d: float,
                 iters: int = CG_ITERS, rtol: float = 1e-14) -> None:
        super().__init__(affine, reg, rho_u, rho_d)
        self.iters, self.rtol = iters, rtol

    def apply(self, v: Tensor) -> Tensor:
        r""":math:`Mv` for ``v`` of shape ``(B, *in_shape)``."""
        return (self.rho_u * self.affine.adjoint(self.affine.linear(v))
                + self.rho_d * self.reg.K_adj(self.reg.K(v)))

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        """CG from ``x`` on ``M· = r``, both ``(B, *in_shape)``."""
        thresh = (self.rtol * sample_norm(r)) ** 2
        res = r - self.apply(x)
        p = res
        rr = sample_norm(res) ** 2
        one = torch.ones_like(rr)
        for _ in range(self.iters):
            mp = self.apply(p)
            pmp = (p * mp).reshape(p.shape[0], -1).sum(1)
            go = (rr > thresh) & (pmp > 0)
            step = torch.where(go, rr / torch.where(go, pmp, one), torch.zeros_like(rr))
            x = x + bview(step, x) * p
            res = res - bview(step, res) * mp
            rr_new = sample_norm(res) ** 2
            beta = torch.where(go, rr_new / torch.where(go, rr, one), torch.zeros_like(rr))
            p = res + bview(beta, p) * p
            rr = torch.where(go, rr_new, rr)
        return x


def x_solver(affine: AffineMap, reg: Regularizer, rho_u: float, rho_d: float,
             like: Tensor) -> XStep:
    """The x-update: Woodbury (dense, m < n, KᵀK diagonalised), Cholesky (dense, n small), else CG."""
    shape = affine.in_shape
    n, m = math.prod(shape), math.prod(affine.out_shape)
    W = affine.weight
    dense = W is not None and W.dim() == 2 and tuple(W.shape) == (m, n)
    diag = _diagonalise(reg, shape, like)
    if dense and m < n and diag is not None:
        return _WoodburySolver(affine, reg, diag, rho_u, rho_d)
    if dense and n <= DENSE_MAX_N:
        return _CholeskySolver(affine, reg, diag, rho_u, rho_d)
    return _CGSolver(affine, reg, rho_u, rho_d)

