r"""The exact x-update of ADMM (`lbreg.solvers.admm`): a linear solve with :math:`\rho_uW^\top W + \rho_dK^\top K`.

Three solvers of :math:`(\rho_uW^\top W + \rho_dK^\top K)\,x = r`, chosen by `x_solver`:
Woodbury around the DCT-diagonalised Neumann Laplacian (dense :math:`W`, :math:`m<n`),
a Cholesky factor of the assembled matrix (dense :math:`W`, small :math:`n`), and
warm-started conjugate gradients (maps without a matrix, e.g. convolutions); any of them
may compute in another precision than the iteration around it (`_MixedPrecision`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..network import AffineMap
from ..operators import gram
from ..regularizers import TV, Regularizer, SquaredNorm
from .result import bview, sample_norm

__all__ = ["XStep", "x_solver", "DENSE_MAX_N", "CG_ITERS", "NULL_RTOL"]

# Largest input dimension n for which a dense n×n system is assembled and factorised
# (Cholesky path for m >= n or a regulariser without a known diagonalisation of KᵀK).
DENSE_MAX_N = 5000
# Largest number of images (samples × channels) for which `_Diagonal` applies QKᵀ and KQᵀ as
# fused small products rather than composing the DCT with grad2d / div2d (see `_Diagonal`).
FUSED_MAX_IMAGES = 4
# A direction e of the null space of KᵀK (constant images) counts as one that W does not see,
# and stays out of the x-system (the Woodbury border; the Cholesky factor regularised along
# it), when ||We|| <= NULL_RTOL·sqrt(eps)·||W||_F with eps of float64, the precision of every
# solver's set-up whatever the working dtype: then the curvature of the x-system along e,
# ρ_u||We||², is below NULL_RTOL²·eps times ρ_u||W||_F², i.e. M is singular along e in float64.
# Deciding at float32's eps instead (for a float32 iteration) left directions that W sees
# with ||We|| up to 3.5e-3·||W||_F out of the x-system, and admm stalled 0.3-15% above the
# minimum, or stopped there (the 12×12 perceptrons of `tests/test_admm.py`).
NULL_RTOL = 10.0
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


def _difference_matrix(size: int) -> Tensor:
    r"""Forward differences with a zero last row, :math:`(Dx)_i = x_{i+1}-x_i` (float64):
    `lbreg.operators.grad2d` is :math:`(D_H x,\ xD_W^\top)` on an :math:`H\times W` image."""
    d = torch.diag(torch.ones(size - 1, dtype=torch.float64), 1) - torch.eye(size, dtype=torch.float64)
    d[-1, -1] = 0.0
    return d


class _Diagonal:
    r"""An orthonormal transform :math:`Q` with :math:`K^\top K = Q^\top\operatorname{diag}(\lambda)Q`.

    TV (Neumann forward differences): the 2-D DCT-II along the last two axes,
    :math:`Qx = C_HxC_W^\top`, with :math:`\lambda_{kl} = 4\sin^2(\pi k/2H) + 4\sin^2(\pi l/2W)`;
    its null space is spanned by the constant image of each channel. `SquaredNorm`
    (:math:`K=I`): :math:`Q=I`, :math:`\lambda=1`.

    Besides :math:`Q` and :math:`Q^\top`, it applies :math:`QK^\top` and :math:`KQ^\top` as two
    small matrix products each: with :math:`K x = (D_Hx,\ xD_W^\top)`,

    .. math::
        QK^\top p = \big[C_HD_H^\top \,\big|\, C_H\big]
            \begin{bmatrix} p_0C_W^\top \\ p_1D_WC_W^\top\end{bmatrix},\qquad
        KQ^\top c = \Big(\big[D_HC_H^\top\big]cC_W,\ \big[C_H^\top\big]c\,C_WD_W^\top\Big),

    the matrices formed once, so that the x-update of ADMM neither forms :math:`x` nor
    runs `grad2d` / `div2d` per iteration (the boundary rows of :math:`Kx` are exact zeros, as
    the last rows of :math:`D_H, D_W` are). That pays where the loop is bound by the number of
    tensor operations, i.e. for up to ``FUSED_MAX_IMAGES`` images; for more, the products
    broadcast over the batch cost more than they save, and :math:`Q` composes with
    `grad2d` / `div2d` instead (circle, two threads, alternating runs, medians: a batch-1
    `admm` call takes 0.25 s fused against 0.27 s composed, a batch-64 call 2.7 s composed
    against 3.2 s fused).
    """

    def __init__(self, reg: Regularizer, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device) -> None:
        self.reg, self.shape, self.n = reg, shape, math.prod(shape)
        if isinstance(reg, TV):
            h, w = shape[-2], shape[-1]
            ch, cw = _dct_matrix(h, torch.float64, device), _dct_matrix(w, torch.float64, device)
            dh, dw = _difference_matrix(h).to(device), _difference_matrix(w).to(device)
            self.ch, self.cw = ch.to(dtype), cw.to(dtype)
            self.kt_left = torch.cat([ch @ dh.T, ch], dim=1).to(dtype)  # (H, 2H)
            self.kt_right = torch.stack([cw.T, dw @ cw.T]).to(dtype)  # (2, W, W)
            self.k_left = torch.cat([dh @ ch.T, ch.T], dim=0).to(dtype)  # (2H, H)
            self.k_right = torch.stack([cw, cw @ dw.T]).to(dtype)  # (2, W, W)
            lh = 4 * torch.sin(math.pi * torch.arange(h, dtype=torch.float64) / (2 * h)) ** 2
            lw = 4 * torch.sin(math.pi * torch.arange(w, dtype=torch.float64) / (2 * w)) ** 2
            lam = (lh[:, None] + lw[None, :]).expand(shape).clone()
            lam[..., 0, 0] = 0.0  # exactly zero: the constant image of each channel
        else:
            self.ch = None
            lam = torch.ones(shape, dtype=torch.float64)
        self.eig = lam.to(device=device, dtype=dtype)

    def in_float64(self) -> _Diagonal:
        """This diagonalisation in float64 (itself if it is one), for the solvers' set-up."""
        if self.eig.dtype == torch.float64:
            return self
        return _Diagonal(self.reg, self.shape, torch.float64, self.eig.device)

    def coefficients(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """:math:`Qx` flattened, ``(B, n)``, for an image ``x`` ``(B, *shape)``; written into
        ``out`` (contiguous ``(B, n)``) when given."""
        batch = x.shape[0]
        x = x.reshape(batch, *self.shape)
        if out is None:
            return (x if self.ch is None else self.ch @ x @ self.cw.T).reshape(batch, self.n)
        if self.ch is None:
            return out.copy_(x.reshape(batch, self.n))
        torch.matmul(self.ch, x @ self.cw.T, out=out.view(batch, *self.shape))
        return out

    def image(self, c: Tensor) -> Tensor:
        r""":math:`Q^\top c`, ``(B, *shape)``, for coefficients ``c`` ``(B, n)``."""
        c = c.reshape(c.shape[0], *self.shape)
        return c if self.ch is None else self.ch.T @ c @ self.cw

    def _few(self, batch: int) -> bool:
        """Whether ``batch`` samples hold few enough images for the fused products."""
        return batch * self.n // (self.shape[-2] * self.shape[-1]) <= FUSED_MAX_IMAGES

    def kt(self, p: Tensor) -> Tensor:
        r""":math:`QK^\top p`, ``(B, n)``, for ``p`` ``(B, *dual_shape)``."""
        if self.ch is None:
            return p.reshape(p.shape[0], self.n)
        if not self._few(p.shape[0]):
            return self.coefficients(self.reg.K_adj(p))
        t = (p @ self.kt_right).reshape(*p.shape[:-3], 2 * p.shape[-2], p.shape[-1])
        return (self.kt_left @ t).reshape(p.shape[0], self.n)

    def k(self, c: Tensor) -> Tensor:
        r""":math:`KQ^\top c`, ``(B, *dual_shape)``, for coefficients ``c`` ``(B, n)``."""
        if self.ch is None:
            return c.reshape(c.shape[0], *self.shape)
        if not self._few(c.shape[0]):
            return self.reg.K(self.image(c))
        t = self.k_left @ c.reshape(c.shape[0], *self.shape)
        return t.reshape(*t.shape[:-2], 2, *self.shape[-2:]) @ self.k_right


def _diagonalise(reg: Regularizer, shape: tuple[int, ...], like: Tensor) -> _Diagonal | None:
    """The diagonalisation of KᵀK for TV (on ``(..., H, W)`` inputs) and SquaredNorm, else None."""
    if type(reg) is TV and len(shape) >= 2:
        return _Diagonal(reg, shape, like.dtype, like.device)
    if type(reg) is SquaredNorm:
        return _Diagonal(reg, shape, like.dtype, like.device)
    return None


class XStep:
    r"""The exact x-update of ADMM, with :math:`Wx^+`, :math:`Kx^+` and :math:`W^\top\nu`.

    ``step(w, v, nu, x)`` returns :math:`x^+ = M^{-1}r` with
    :math:`M = \rho_uW^\top W + \rho_dK^\top K` and
    :math:`r = \rho_uW^\top w + \rho_dK^\top v`, the products :math:`Wx^+` and :math:`Kx^+`, and
    :math:`W^\top\nu` (None for ``nu=None``). A solver may carry :math:`x` in its own
    representation, its *state* (the Woodbury solver: coefficients in a transformed basis):
    ``x`` and :math:`x^+` are states, `image` and `state` convert (the identity here).
    """

    kind = ""

    def __init__(self, affine: AffineMap, reg: Regularizer, rho_u: float, rho_d: float) -> None:
        self.affine, self.reg, self.rho_u, self.rho_d = affine, reg, rho_u, rho_d

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``(x_new, W x_new, K x_new, Wᵀ nu)`` for ``w, nu`` ``(B, *out_shape)``, ``v``
        ``(B, *dual_shape)`` and the current state ``x`` (the warm start of CG)."""
        raise NotImplementedError

    def image(self, state: Tensor) -> Tensor:
        """The iterate :math:`x`, ``(B, *in_shape)``, of a state."""
        return state

    def state(self, x: Tensor) -> Tensor:
        """The state of an iterate ``x`` ``(B, *in_shape)``."""
        return x


class _SolveStep(XStep):
    r"""A step through ``solve(r, x)`` :math:`= M^{-1}r`: one pass over :math:`W^\top` (of the
    stacked ``[w, nu]``) and one over :math:`W` (for :math:`Wx^+`), besides the solve."""

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        batch = w.shape[0]
        both = self.affine.adjoint(w if nu is None else torch.cat([w, nu]))
        r = self.rho_u * both[:batch] + self.rho_d * self.reg.K_adj(v)
        x_new = self.solve(r, x)
        return (x_new, self.affine.linear(x_new), self.reg.K(x_new),
                None if nu is None else both[batch:])


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
    inverse of the small Schur complement :math:`\Sigma = G^\top H`, :math:`H = S^{-1}G`, both
    formed once from Cholesky factors (the whole set-up in float64, whatever the working
    dtype). The identity is exact, so the x-update is exact to rounding. A combination
    :math:`e` of null vectors with :math:`We = 0` (then :math:`M` is singular; in float64, see
    `_seen_null_space`) is left in :math:`A` only: :math:`E` in :math:`U` is
    replaced by an orthonormal basis of the combinations that :math:`W` sees, which for
    right-hand sides in :math:`\operatorname{range}(W^\top)+\operatorname{range}(K^\top)`
    returns the solution orthogonal to the others, again an exact minimiser of the
    x-subproblem.

    **A step** with :math:`r = \rho_uW^\top w + \rho_dK^\top v`: since
    :math:`\rho_u WA^{-1}W^\top = \rho_u S - I`, Woodbury's correction reduces to the
    multiplier :math:`c = \rho_u(w - Wx^+)` and the border :math:`q`,

    .. math::
        (c,\ q) = \big(w - \rho_d\,WA^{-1}K^\top v\big)
            \begin{pmatrix} S^{-1} - H\Sigma^{-1}H^\top & -H\Sigma^{-1}\end{pmatrix},\qquad
        x^+ = A^{-1}\big(W^\top c + \rho_dK^\top v\big) - Eq/\gamma,\qquad
        Wx^+ = w - c/\rho_u

    (row vectors; the block row is formed once; the border's own right-hand side
    :math:`E^\top A^{-1}K^\top v = (KE)^\top v/\gamma` vanishes, as :math:`KE = 0`). The
    state is :math:`\hat x = Qx` and the whole step runs in the :math:`Q` basis, where
    :math:`A` is diagonal and the null vectors are unit vectors: with
    :math:`\tilde V = WQ^\top A^{-1}` stored (once, instead of :math:`W`) and bordered below
    by the rows of :math:`-E^\top/\gamma` (in the :math:`Q` basis), it makes two passes over
    that :math:`m\times n` matrix (:math:`\tilde V` applied to :math:`QK^\top v`, and the
    bordered :math:`\tilde V^\top` to :math:`(c, q)`, stacked with :math:`(\nu, 0)` for
    :math:`W^\top\nu`), one :math:`m\times(m+C')` product, and :math:`QK^\top v`,
    :math:`KQ^\top\hat x^+` as two small products each (`_Diagonal`): for a single image,
    nine tensor operations in all. Their number matters: at batch 1 each operation of this
    memory-bound loop costs tens of microseconds, as the passes over :math:`\tilde V` evict
    everything else from the caches.

    **Layout.** :math:`\tilde V` is stored once, row by row: at batch 1 the two passes are
    matrix-vector products, fastest on rows. For larger batches a second, column-major copy
    for pass 2 is faster in isolation (MKL, batch 64: 74 against 67 GFLOP/s on two threads) but
    not within `admm`, where two copies crowd the rest of the iteration out of the cache
    (circle, alternating runs, medians, two copies against one: 2.76 against 2.79 s at batch
    64 on two threads, 4.84 against 4.82 s on one; at batch 4, 0.60 against 0.55 s on two
    threads and 0.96 against 0.87 s on one).
    """

    kind = "woodbury"

    def __init__(self, affine: AffineMap, reg: Regularizer, diag: _Diagonal, rho_u: float,
                 rho_d: float) -> None:
        super().__init__(affine, reg, rho_u, rho_d)
        W = affine.matrix
        m, n = W.shape
        self.diag, self.m = diag, m
        eig = diag.eig.reshape(n)
        null = eig == 0
        self.gamma = rho_d * float(eig.mean())
        self.a = torch.where(null, torch.full_like(eig, self.gamma), rho_d * eig)  # eigenvalues of A
        # Set-up in float64 whatever the working dtype (the small matrices below can be far worse
        # conditioned than the x-update itself); the null vectors E are unit vectors in the Q
        # basis, so WE = V[:, null] and Eᵀ = coefficients.
        idx = null.nonzero().reshape(-1)
        buffer = W.new_empty(m + idx.numel(), n)  # becomes Ṽ = V A⁻¹, bordered below by -E'ᵀ/γ
        in_place = W.dtype == torch.float64
        a64 = self.a.to(torch.float64)
        # V = W Qᵀ, W in the Q basis
        v = diag.in_float64().coefficients(W.to(torch.float64), out=buffer[:m] if in_place else None)
        we = v[:, idx]  # WE (indexing by a tensor copies, before V is scaled in place)
        basis, _ = _seen_null_space(we, torch.linalg.matrix_norm(v))  # ||V||_F = ||W||_F
        root = a64.rsqrt()
        half = v.mul_(root)  # V A^{-1/2}, in place
        wawt = gram(half)  # W A⁻¹ Wᵀ
        half.mul_(root)  # Ṽ = V A⁻¹, in place
        if not in_place:
            buffer[:m] = half
        # the border: E' = EB for the combinations B of null vectors that W sees; the others stay
        # in A only
        border = basis.shape[1]
        g = we @ basis / self.gamma  # G = WE'/γ (m, C')
        self.v_tilde = buffer[: m + border]
        self.v_tilde[m:] = 0.0
        self.v_tilde[m:, idx] = (-basis.T / self.gamma).to(W.dtype)
        self.v_inner = buffer[:m]  # Ṽ without its border, for pass 1
        eye = torch.eye(m, dtype=torch.float64, device=W.device)
        s_inv = _spd_inverse(0.5 * (wawt + wawt.T) + eye / rho_u)  # S⁻¹
        if border:
            h = s_inv @ g  # H = S⁻¹G
            hs = h @ _spd_inverse(g.T @ h)  # H Σ⁻¹
            border_matrix = torch.cat([s_inv - hs @ h.T, -hs], dim=1)
        else:
            border_matrix = s_inv
        self.border_matrix = border_matrix.to(W.dtype)  # (m, m + C')

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The step above; ``x`` (the state) is not needed by an exact update."""
        m, batch = self.m, w.shape[0]
        w = w.reshape(batch, m)
        kv = self.diag.kt(v)  # Q Kᵀv
        akv = kv / self.a  # Q A⁻¹Kᵀv
        rhs = torch.addmm(w, kv, self.v_inner.T, alpha=-self.rho_d)  # pass 1: w - ρ_d W A⁻¹Kᵀv
        cq = rhs @ self.border_matrix  # (c, q)
        if nu is None:
            x_new, wt_nu = torch.addmm(akv, cq, self.v_tilde, beta=self.rho_d), None  # pass 2
        else:
            nu = torch.nn.functional.pad(nu.reshape(batch, m), (0, cq.shape[1] - m))
            both = torch.cat([cq, nu]) @ self.v_tilde  # pass 2, with Q A⁻¹Wᵀν
            x_new = both[:batch].add_(akv, alpha=self.rho_d)
            wt_nu = self.diag.image(both[batch:] * self.a)
        wx = torch.add(w, cq[:, :m], alpha=-1.0 / self.rho_u).reshape(batch, *self.affine.out_shape)
        return x_new, wx, self.diag.k(x_new), wt_nu

    def image(self, state: Tensor) -> Tensor:
        return self.diag.image(state)

    def state(self, x: Tensor) -> Tensor:
        return self.diag.coefficients(x)


def _seen_null_space(we: Tensor, norm_w: Tensor) -> tuple[Tensor, Tensor]:
    r"""Orthonormal bases ``(seen, blind)``, ``(C, C')`` and ``(C, C - C')``, of the combinations
    :math:`c` of the null vectors :math:`E` of :math:`K^\top K` (``we`` :math:`= WE`, ``(m, C)``,
    float64) that :math:`W` sees and does not see in float64: blind where
    :math:`\|WEc\| \le` ``NULL_RTOL`` :math:`\sqrt{\epsilon_{64}}\,\|W\|_F` (``norm_w``)."""
    _, sv, vh = torch.linalg.svd(we, full_matrices=True)  # singular values in descending order
    rank = int((sv > NULL_RTOL * math.sqrt(torch.finfo(torch.float64).eps) * norm_w).sum())
    return vh[:rank].T, vh[rank:].T


def _spd_inverse(mat: Tensor) -> Tensor:
    """The inverse of a symmetric positive definite matrix through its Cholesky factor (symmetrised)."""
    inv = torch.cholesky_inverse(torch.linalg.cholesky(mat))
    return 0.5 * (inv + inv.T)


class _CholeskySolver(_SolveStep):
    r"""Exact x-update through the Cholesky factor of the assembled :math:`n\times n` :math:`M`.

    Used for dense :math:`W` with :math:`m\ge n` (or a regulariser without a known
    diagonalisation of :math:`K^\top K`); assembled and factorised in float64. If :math:`M` is
    singular because :math:`W` does not see some combinations :math:`e` of the null vectors of
    :math:`K^\top K` (`_seen_null_space`), :math:`\rho_d ee^\top` is added for each, which
    returns the solution orthogonal to them (exact for the consistent right-hand sides of ADMM).
    """

    kind = "cholesky"

    def __init__(self, affine: AffineMap, reg: Regularizer, diag: _Diagonal | None, rho_u: float,
                 rho_d: float) -> None:
        super().__init__(affine, reg, rho_u, rho_d)
        W, shape = affine.matrix.to(torch.float64), affine.in_shape
        n = W.shape[1]
        eye = torch.eye(n, dtype=torch.float64, device=W.device)
        ktk = torch.cat([reg.K_adj(reg.K(eye[i : i + 256].reshape(-1, *shape))).reshape(-1, n)
                         for i in range(0, n, 256)])  # KᵀK column block by column block
        mat = rho_u * (W.T @ W) + rho_d * 0.5 * (ktk + ktk.T)
        if diag is not None and bool((diag.eig == 0).any()):
            idx = (diag.eig == 0).nonzero()
            e = torch.zeros((idx.shape[0], *shape), dtype=torch.float64, device=W.device)
            e[(torch.arange(idx.shape[0]), *idx.T)] = 1.0
            e = diag.in_float64().image(e).reshape(-1, n)
            _, blind = _seen_null_space(W @ e.T, torch.linalg.matrix_norm(W))
            e_blind = blind.T @ e
            mat = mat + rho_d * (e_blind.T @ e_blind)
        chol, info = torch.linalg.cholesky_ex(mat)
        if int(info) != 0:
            raise ValueError(
                "the x-update matrix ρ_u WᵀW + ρ_d KᵀK is singular (W and the regulariser's K "
                "share a null vector), so the minimiser is not unique; use a regulariser whose "
                "K has a trivial null space on it (e.g. SquaredNorm)"
            )
        self.chol, self.n = chol.to(affine.matrix.dtype), n

    def solve(self, r: Tensor, x: Tensor) -> Tensor:
        """:math:`M^{-1}r` for ``r`` ``(B, *in_shape)``; ``x`` is unused."""
        flat = r.reshape(r.shape[0], self.n)
        return torch.cholesky_solve(flat.T, self.chol).T.reshape(r.shape)


class _CGSolver(_SolveStep):
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


class _MixedPrecision(XStep):
    r"""An x-update computed in another precision than the iteration around it
    (`lbreg.solvers.admm`, "Precision of the x-update").

    ``inner`` is the x-update of the same problem built in ``inner_dtype`` (its :math:`W`
    rounded to it); `step` casts its inputs to ``inner_dtype`` and its four outputs back to the
    iteration's ``dtype``, and the state is the inner solver's, held in ``dtype``.
    """

    def __init__(self, inner: XStep, inner_dtype: torch.dtype, dtype: torch.dtype) -> None:
        super().__init__(inner.affine, inner.reg, inner.rho_u, inner.rho_d)
        self.inner, self.inner_dtype, self.dtype, self.kind = inner, inner_dtype, dtype, inner.kind

    def step(self, w: Tensor, v: Tensor, nu: Tensor | None,
             x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        to = self.inner_dtype
        out = self.inner.step(w.to(to), v.to(to), None if nu is None else nu.to(to), x.to(to))
        return tuple(None if t is None else t.to(self.dtype) for t in out)  # type: ignore[return-value]

    def image(self, state: Tensor) -> Tensor:
        return self.inner.image(state.to(self.inner_dtype)).to(self.dtype)

    def state(self, x: Tensor) -> Tensor:
        return self.inner.state(x.to(self.inner_dtype)).to(self.dtype)


def x_solver(affine: AffineMap, reg: Regularizer, rho_u: float, rho_d: float,
             like: Tensor, dtype: torch.dtype | None = None) -> XStep:
    """The x-update: Woodbury (dense, m < n, KᵀK diagonalised), Cholesky (dense, n small), else CG.

    ``like`` gives the dtype and device of the iteration; ``dtype`` (default: ``like``'s) the
    precision in which the x-update computes (`_MixedPrecision` when they differ). Which
    constant images :math:`W` sees (`_seen_null_space`) is decided in float64, the precision of
    the set-up, whatever the working dtype: a direction that float64 resolves stays in the
    x-system of a float32 iteration or x-update."""
    if dtype is not None and dtype != like.dtype:
        inner = _solver(affine.to(dtype=dtype), reg, rho_u, rho_d, like.new_empty(0, dtype=dtype))
        return _MixedPrecision(inner, dtype, like.dtype)
    return _solver(affine, reg, rho_u, rho_d, like)


def _solver(affine: AffineMap, reg: Regularizer, rho_u: float, rho_d: float, like: Tensor) -> XStep:
    """`x_solver` in the dtype of ``like``."""
    shape = affine.in_shape
    n, m = math.prod(shape), math.prod(affine.out_shape)
    dense = affine.matrix is not None
    diag = _diagonalise(reg, shape, like)
    if dense and m < n and diag is not None:
        return _WoodburySolver(affine, reg, diag, rho_u, rho_d)
    if dense and n <= DENSE_MAX_N:
        return _CholeskySolver(affine, reg, diag, rho_u, rho_d)
    return _CGSolver(affine, reg, rho_u, rho_d)

