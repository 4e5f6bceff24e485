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

    def step(self, w: Tensor, v: Tensor, nu: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_new, W x_new, Wᵀ nu)`` for ``w, nu`` ``(B, *out_shape)``, ``v`` ``(B, *dual_shape)``."""
        batch = w.shape[0]
        both = self.affine.adjoint(torch.cat([w, nu]))
        r = self.rho_u * both[:batch] + self.rho_d * self.reg.K_adj(v)
        x_new = self.solve(r, x)
        return x_new, self.affine.linear(x_new), both[batch:]


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

    (the zero block because :math:`A^{-1}E = E/\gamma`), solved through the Cholesky factors
    of the SPD :math:`S` and of the small Schur complement :math:`G^\top S^{-1}G`. The identity
    is exact, so the x-update is exact to rounding. A null vector with :math:`We = 0` (then
    :math:`M` is singular) is left in :math:`A` only, which for right-hand sides in
    :math:`\operatorname{range}(W^\top)+\operatorname{range}(K^\top)` returns the solution
    orthogonal to :math:`e`, again an exact minimiser of the x-subproblem.

    Factorised once per call and shared by the batch (:math:`Z = WA^{-1}` and
    :math:`S - I/\rho_u = WA^{-1}W^\top` stored). A step costs two passes over an
    :math:`m\times n` matrix: :math:`W(A^{-1}K^\top v)`, and :math:`Z^\top` applied to the stacked
    ``[ρ_u w - p, ν]``; then :math:`x^+ = Z^\top(\rho_uw-p) + \rho_dA^{-1}K^\top v - Eq/\gamma`,
    :math:`Wx^+ = (S-I/\rho_u)(\rho_uw-p) + \rho_dW A^{-1}K^\top v - Gq` and
    :math:`W^\top\nu = A(Z^\top\nu)` need only DCTs and :math:`m\times m` products.
    """

    kind = "woodbury"

    def __init__(self, affine: AffineMap, reg: Regularizer, diag: _Diagonal, rho_u: float,
                 rho_d: float) -> None:
        super().__init__(affine, reg, rho_u, rho_d)
        W = affine.weight
        m, n = W.shape
        self.W, self.diag, self.m, self.n = W, diag, m, n
        eig = diag.eig
        null = eig == 0
        self.gamma = rho_d * float(eig.mean())
        self.a = torch.where(null, torch.full_like(eig, self.gamma), rho_d * eig)  # eigenvalues of A
        self.zt = self._a_inv(W.reshape(m, *diag.shape)).reshape(m, n)  # Z = W A⁻¹ (m, n)
        wawt = self.zt @ W.T
        self.wawt = 0.5 * (wawt + wawt.T)  # W A⁻¹ Wᵀ = S - I/ρ_u
        eye = torch.eye(m, dtype=W.dtype, device=W.device)
        self.s_chol = torch.linalg.cholesky(self.wawt + eye / rho_u)
        e = torch.zeros((int(null.sum()), *diag.shape), dtype=W.dtype, device=W.device)
        idx = null.nonzero()
        e[(torch.arange(idx.shape[0]), *idx.T)] = 1.0
        e = diag.inverse(e).reshape(-1, n)  # orthonormal null vectors (C, n)
        we = W @ e.T  # (m, C)
        keep = torch.linalg.vector_norm(we, dim=0) > 1e-12 * torch.linalg.matrix_norm(W)
        self.e = e[keep]
        self.g = we[:, keep] / self.gamma  # G (m, C')
        self.bordered = self.g.shape[1] > 0
        if self.bordered:
            self.h = torch.cholesky_solve(self.g, self.s_chol)  # S⁻¹G (m, C')
            sigma = self.g.T @ self.h
            self.sigma_chol = torch.linalg.cholesky(0.5 * (sigma + sigma.T))

    def _a_inv(self, v: Tensor) -> Tensor:
        return self.diag.inverse(self.diag.forward(v) / self.a)

    def _a(self, v: Tensor) -> Tensor:
        return self.diag.inverse(self.diag.forward(v) * self.a)

    def _rows(self, w: Tensor, akv: Tensor, wakv: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(ρ_u w - p, Wx⁺, q)`` in row layout, from ``w`` ``(B, m)``, A⁻¹Kᵀv and W A⁻¹Kᵀv."""
        a = self.rho_u * (w @ self.wawt) + self.rho_d * wakv  # W A⁻¹ r
        p = torch.cholesky_solve(a.T, self.s_chol).T  # (B, m)
        q = None
        if self.bordered:
            ktv_e = self.rho_d * (akv @ self.e.T)  # Eᵀ(ρ_d Kᵀv)/γ = ρ_d Eᵀ A⁻¹Kᵀv
            beta = self.rho_u * (w @ self.g) + ktv_e  # Eᵀ r / γ
            q = torch.cholesky_solve((p @ self.g - beta).T, self.sigma_chol).T  # (B, C')
            p = p - q @ self.h.T
        c = self.rho_u * w - p
        wx = c @ self.wawt + self.rho_d * wakv
        if q is not None:
            wx = wx - q @ self.g.T
        return c, wx, q

    def step(self, w: Tensor, v: Tensor, nu: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = w.shape[0]
        shape = self.diag.shape
        akv = self._a_inv(self.reg.K_adj(v)).reshape(batch, self.n)
        wakv = akv @ self.W.T  # pass 1
        c, wx, q = self._rows(w.reshape(batch, self.m), akv, wakv)
        both = torch.cat([c, nu.reshape(batch, self.m)]) @ self.zt  # pass 2
        x_new = both[:batch] + self.rho_d * akv
        if q is not None:
            x_new = x_new - (q @ self.e) / self.gamma
        wt_nu = self._a(both[batch:].reshape(batch, *shape))
        out = self.affine.out_shape
        return x_new.reshape(batch, *shape), wx.reshape(batch, *out), wt_nu

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        """:math:`M^{-1}r` for ``r`` ``(B, *in_shape)`` (used by tests; `step` is the fast path)."""
        batch = r.shape[0]
        ar = self._a_inv(r.reshape(batch, *self.diag.shape)).reshape(batch, self.n)
        a = r.reshape(batch, self.n) @ self.zt.T  # W A⁻¹ r
        p = torch.cholesky_solve(a.T, self.s_chol).T
        out = ar - p @ self.zt
        if self.bordered:
            beta = (r.reshape(batch, self.n) @ self.e.T) / self.gamma
            q = torch.cholesky_solve((p @ self.g - beta).T, self.sigma_chol).T
            out = out + (q @ self.h.T) @ self.zt - (q @ self.e) / self.gamma
        return out.reshape(r.shape)


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

