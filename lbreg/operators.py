"""Discrete image operators and spectral norms (PAPER_MATH §3).

Forward differences with Neumann boundary, the divergence as the negative adjoint of the
gradient, total variation, the pixelwise projection onto the dual unit ball used by the
PDHG iteration (14), Gram matrices, and spectral norms ``‖A‖₂`` (power iteration, or exactly
through the Gram matrix).

Shapes: images carry their spatial axes last, ``(..., H, W)``; gradient fields carry the
component axis third from last, ``(..., 2, H, W)``, component 0 along ``H`` (rows, ``i``)
and component 1 along ``W`` (columns, ``j``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from lbreg._checks import check_bool, check_float_tensor, check_finite, check_int, check_positive, check_seed

__all__ = ["grad2d", "div2d", "add_div_", "tv", "mixed_norm", "project_dual_ball", "power_norm", "gram",
           "gram_norm_sq"]

# Row blocks of `gram` for matrices of at least GRAM_MIN_ROWS rows (smaller ones: one product).
GRAM_BLOCKS = 4
GRAM_MIN_ROWS = 256


def _check_field(p: object, min_dim: int, layout: str) -> Tensor:
    """A floating gradient field ``p``: at least ``min_dim`` axes, 2 components on axis -3."""
    check_float_tensor(p, "p", min_dim, layout)
    if p.shape[-3] != 2:
        raise ValueError(
            f"p must have shape {layout} with 2 gradient components on axis -3, "
            f"got shape {tuple(p.shape)}"
        )
    return p


def grad2d(x: Tensor) -> Tensor:
    r"""Discrete gradient: forward differences, Neumann boundary (PAPER_MATH §3).

    .. math::
        (\nabla x)_{i,j,0} = x_{i+1,j} - x_{i,j}\ (i<H),\qquad
        (\nabla x)_{i,j,1} = x_{i,j+1} - x_{i,j}\ (j<W),

    and zero in the last row (component 0) and the last column (component 1).

    Args:
        x: real floating tensor of shape ``(..., H, W)``.

    Returns:
        Tensor of shape ``(..., 2, H, W)``; component 0 along ``H``, component 1 along ``W``.
    """
    check_float_tensor(x, "x", 2, "(..., H, W)")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have images of at least one pixel (..., H, W), got shape {tuple(x.shape)}")
    if x.requires_grad and torch.is_grad_enabled():  # out= does not record autograd
        g = x.new_zeros(*x.shape[:-2], 2, *x.shape[-2:])
        g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
        g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        return g
    # the differences written straight into the result: no zero fill, no temporaries
    g = x.new_empty(*x.shape[:-2], 2, *x.shape[-2:])
    torch.sub(x[..., 1:, :], x[..., :-1, :], out=g[..., 0, :-1, :])
    torch.sub(x[..., :, 1:], x[..., :, :-1], out=g[..., 1, :, :-1])
    g[..., 0, -1, :] = 0.0
    g[..., 1, :, -1] = 0.0
    return g


def div2d(p: Tensor) -> Tensor:
    r"""Discrete divergence, :math:`\operatorname{div} = -\nabla^\top` (PAPER_MATH §3).

    .. math::
        (\operatorname{div} p)_{i,j} = p_{i,j,0} - p_{i-1,j,0} + p_{i,j,1} - p_{i,j-1,1},

    with :math:`p_{0,j,0}=p_{H,j,0}=p_{i,0,1}=p_{i,W,1}:=0` (1-based indices as in the
    formula), so that :math:`\langle\nabla x, p\rangle = -\langle x, \operatorname{div} p\rangle`
    exactly for the Neumann gradient :func:`grad2d`.

    Args:
        p: real floating tensor of shape ``(..., 2, H, W)``.

    Returns:
        Tensor of shape ``(..., H, W)``.
    """
    _check_field(p, 3, "(..., 2, H, W)")
    return add_div_(torch.zeros_like(p[..., 0, :, :]), p, 1.0)


def add_div_(out: Tensor, p: Tensor, scale: float | Tensor, value: float = 1.0) -> Tensor:
    r"""``out`` :math:`\mathrel{+}= v\,s\operatorname{div}p` in place (and returned), ``s`` = ``scale``, ``v`` = ``value``.

    The sums of :func:`div2d` applied to ``out`` entry by entry, without forming
    :math:`\operatorname{div}p` (the gradient of the PDHG step (14a) gets its term
    :math:`-\alpha\operatorname{div}z` this way).

    Args:
        out: real floating tensor of shape ``(..., H, W)``, updated in place.
        p: real floating tensor of shape ``(..., 2, H, W)``.
        scale: a number or a tensor broadcastable to ``out`` (per-sample ``(B, 1, ..., 1)``);
            a number is passed to the kernels as it is (no copy to a GPU).
        value: a number; ``value=-1`` subtracts (:math:`K^\top p = -\operatorname{div}p`)
            without negating ``scale``.

    Returns:
        ``out``.
    """
    def acc(dst: Tensor, src: Tensor, sign: float) -> None:
        if isinstance(scale, Tensor):
            dst.addcmul_(src, scale, value=sign * value)
        else:
            dst.add_(src, alpha=sign * value * scale)

    # component 0 (rows): p_{i,0} - p_{i-1,0}, with p_{-1,0} = 0 and p_{H-1,0} treated as 0
    p0 = p[..., 0, :-1, :]
    acc(out[..., :-1, :], p0, 1.0)
    acc(out[..., 1:, :], p0, -1.0)
    # component 1 (columns)
    p1 = p[..., 1, :, :-1]
    acc(out[..., :, :-1], p1, 1.0)
    acc(out[..., :, 1:], p1, -1.0)
    return out


def tv(x: Tensor, isotropic: bool = True) -> Tensor:
    r"""Total variation per sample (PAPER_MATH §3, the regulariser of eq. (11)).

    .. math::
        \mathrm{TV}_2(x) = \sum_{i,j}\|(\nabla x)_{i,j}\|_2 \quad(\text{isotropic}),\qquad
        \mathrm{TV}_1(x) = \sum_{i,j}\|(\nabla x)_{i,j}\|_1 \quad(\text{anisotropic}),

    with :func:`grad2d` (forward differences, Neumann boundary), summed over every
    non-batch axis (channels included): :func:`mixed_norm` of the gradient.

    Args:
        x: real floating tensor of shape ``(B, ..., H, W)`` (at least 3 dimensions).
        isotropic: pixelwise Euclidean norm of the gradient if ``True``, else the 1-norm.

    Returns:
        Tensor of shape ``(B,)``.
    """
    check_float_tensor(x, "x", 3, "(B, ..., H, W)")
    return mixed_norm(grad2d(x), isotropic)


def mixed_norm(p: Tensor, isotropic: bool = True) -> Tensor:
    r"""The mixed norm :math:`\|p\|_{2,1}` (or :math:`\|p\|_{1,1}`) of a gradient field, per sample.

    :math:`\sum_{i,j}\|p_{i,j}\|_2` over the pixels, the norm taken over the two components
    (isotropic), or :math:`\sum_{i,j}\|p_{i,j}\|_1` (anisotropic); so
    :math:`\mathrm{TV}(x) = \|\nabla x\|_{2,1}` (:func:`tv`), the function :math:`R` of eq. (11).

    Args:
        p: real floating tensor of shape ``(B, ..., 2, H, W)``.
        isotropic: which norm (see above).

    Returns:
        Tensor of shape ``(B,)``.
    """
    _check_field(p, 4, "(B, ..., 2, H, W)")
    p0, p1 = p[..., 0, :, :], p[..., 1, :, :]
    # hypot of the two components, not vector_norm(dim=-3): a strided reduction over a
    # length-2 axis is 20-30x slower on CPU (measured in float64 on 64x64 fields, batch 1 and 64)
    pix = torch.hypot(p0, p1) if check_bool(isotropic, "isotropic") else p0.abs() + p1.abs()
    return pix.flatten(1).sum(dim=1)  # flatten, not reshape(B, -1): an empty batch gives (0,)


def project_dual_ball(p: Tensor, isotropic: bool = True, radius: float | Tensor = 1.0,
                      out: Tensor | None = None) -> Tensor:
    r"""Pixelwise projection onto the dual ball of TV of radius :math:`r` (PAPER_MATH eq. (14b)).

    Isotropic: :math:`p_{i,j} / \max(1, \|p_{i,j}\|_2/r)`, the projection onto
    :math:`rC`, :math:`C = \{p : \|p_{i,j}\|_2 \le 1\}`. Anisotropic: componentwise clamp to
    :math:`[-r, r]`, the projection onto :math:`\{p : \|p\|_\infty \le r\}`. The unit ball
    (:math:`r = 1`, the default) is eq. (14b); a radius :math:`s` gives
    :math:`\operatorname{prox}_{(s\,\mathrm{TV})^*}` (`lbreg.regularizers.TV.prox_conj_scaled`).

    Args:
        p: real floating tensor of shape ``(..., 2, H, W)``.
        isotropic: which ball (see above).
        radius: :math:`r > 0`, a number or a tensor broadcastable to ``p`` with size 1 on
            its last three axes (per-sample radii come as ``(B, 1, ..., 1)``); a tensor's
            values are not checked, which would synchronise the host.
        out: where to write the result (``p`` itself projects in place); default a new tensor.

    Returns:
        Tensor of the shape of ``p`` (``out`` if given).
    """
    if not isinstance(radius, Tensor):  # a tensor (the solvers' per-sample radius) is not checked: no host sync
        radius = check_positive(radius, "radius")
    _check_field(p, 3, "(..., 2, H, W)")
    if not check_bool(isotropic, "isotropic"):
        return torch.clamp(p, -radius, radius, out=out)
    norm = torch.hypot(p[..., 0, :, :], p[..., 1, :, :]).unsqueeze(-3)
    if isinstance(radius, Tensor) or radius != 1.0:
        norm = norm.div_(radius)
    return torch.div(p, norm.clamp_(min=1.0), out=out)


def _random_start(
    shape: tuple[int, ...],
    generator: torch.Generator | int | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> Tensor:
    if isinstance(generator, torch.Generator):
        gen = generator
    else:
        seed = check_seed(0 if generator is None else generator, "generator",
                          "None, an int seed or a torch.Generator")
        gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(shape, generator=gen, dtype=torch.float64, device=gen.device)
    return v.to(device=device, dtype=dtype)


def power_norm(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    shape: Sequence[int],
    *,
    n_iter: int = 100,
    tol: float = 1e-7,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> float:
    r"""Spectral norm :math:`\|A\|_2` by power iteration on :math:`A^\top A` (PAPER_MATH §3).

    Starting from a seeded Gaussian vector :math:`v_0`, iterates
    :math:`v_{k+1} = A^\top A v_k / \|A^\top A v_k\|` and the Rayleigh quotient
    :math:`\lambda_k = \langle v_k, A^\top A v_k\rangle = \|A v_k\|^2`, stopping when
    :math:`|\lambda_k - \lambda_{k-1}| \le \mathrm{tol}\,\lambda_k` or after ``n_iter``
    iterations. Returns :math:`\sqrt{\lambda_k}`, a lower bound of :math:`\|A\|_2` that is
    deterministic for a fixed seed.

    Args:
        forward: the linear map :math:`A`, taking a tensor of shape ``shape``.
        adjoint: its adjoint :math:`A^\top`, returning a tensor of shape ``shape``.
        shape: shape of the input of ``forward`` (including a batch axis if ``forward``
            needs one); inner products run over the whole tensor.
        n_iter: maximal number of iterations (at least 1).
        tol: relative change of :math:`\lambda_k` below which the iteration stops (finite, >= 0).
        generator: ``None`` (seed 0), an int seed, or a ``torch.Generator`` for the start.
        dtype: floating dtype of the iteration.
        device: device of the iteration.

    Returns:
        The estimate of :math:`\|A\|_2` as a Python float.
    """
    if not callable(forward) or not callable(adjoint):
        raise TypeError("forward and adjoint must be callables mapping tensors to tensors")
    if not isinstance(shape, Iterable) or isinstance(shape, str):
        raise TypeError(f"shape must be a tuple of ints (the input shape of forward), got {type(shape).__name__}")
    shape = tuple(check_int(s, f"shape[{i}]", minimum=1) for i, s in enumerate(shape))
    n_iter = check_int(n_iter, "n_iter", minimum=1)
    tol = check_positive(tol, "tol", allow_zero=True)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    v = _random_start(shape, generator, dtype, device)
    v = v / torch.linalg.vector_norm(v)
    lam_prev = None
    lam = 0.0
    for k in range(n_iter):
        try:
            w = adjoint(forward(v))
        except RuntimeError as err:  # torch's dtype or device mismatch, not its subclasses (out of memory, ...)
            if k or type(err) is not RuntimeError or not any(
                    word in str(err).lower() for word in ("dtype", "scalar type", "device", "double", "float", "half")):
                raise
            raise RuntimeError(f"adjoint(forward(v)) failed on the start v, {dtype} of shape {shape} on "
                               f"{v.device}: pass the operator's dtype and device as dtype=, device= ({err})") from err
        if tuple(w.shape) != shape:
            raise ValueError(
                f"adjoint(forward(v)) must have the shape of v {shape}, got {tuple(w.shape)}"
            )
        lam, w_norm = torch.stack([torch.sum(v * w), torch.linalg.vector_norm(w)]).tolist()
        if not (math.isfinite(w_norm) and math.isfinite(lam)):
            raise ValueError("adjoint(forward(v)) has NaN or infinite entries: the operator holds "
                             "NaN or Inf, or its values overflow the dtype (iterate in float64)")
        if w_norm == 0.0:
            break
        v = w / w_norm
        if lam_prev is not None and abs(lam - lam_prev) <= tol * abs(lam):
            break
        lam_prev = lam
    return math.sqrt(max(lam, 0.0))


def gram(A: Tensor) -> Tensor:
    r"""The Gram matrix :math:`AA^\top` of a matrix ``A`` ``(m, n)``, from its lower block triangle.

    With :math:`A` split into :math:`b` = ``GRAM_BLOCKS`` row blocks :math:`A_i`, the block row
    :math:`A_i[A_1;\dots;A_i]^\top` is one matrix product and the blocks above the diagonal are
    transposed copies, so about :math:`(b+1)/2b` of the products of :math:`AA^\top` (5/8 for
    :math:`b=4`) are computed. Measured (AVX2 CPU, one thread, :math:`512\times4096`, the circle's
    :math:`W`): 34 ms instead of 50 ms in float64, 15 instead of 23 ms in float32 (2 and 8 blocks:
    39 and 33 ms in float64, so more blocks gain little). Matrices of fewer than
    ``GRAM_MIN_ROWS`` rows take the plain product. The diagonal blocks are computed as products like any other, so the result is
    symmetric up to rounding.

    Args:
        A: real floating matrix ``(m, n)`` (a view, e.g. a transpose, is fine).

    Returns:
        ``(m, m)`` tensor, dtype and device of ``A``.
    """
    check_float_tensor(A, "A", 2, "(m, n)")
    if A.dim() != 2:
        raise ValueError(f"A must be a matrix (m, n), got shape {tuple(A.shape)}")
    m = A.shape[0]
    if m < GRAM_MIN_ROWS:
        return A @ A.T
    edges = [m * i // GRAM_BLOCKS for i in range(GRAM_BLOCKS + 1)]
    out = A.new_empty(m, m)
    for lo, hi in zip(edges[:-1], edges[1:]):
        row = A[lo:hi] @ A[:hi].T
        out[lo:hi, :hi] = row
        out[:lo, lo:hi] = row[:, :lo].T
    return out


def gram_norm_sq(W: Tensor) -> float:
    r""":math:`\|W\|_2^2` of a matrix: the largest eigenvalue of the smaller Gram matrix.

    :math:`WW^\top` if :math:`W` has no more rows than columns, else :math:`W^\top W`, formed
    (`gram`) and decomposed in the dtype of ``W`` (exact up to rounding; :math:`O(k^2\max(m, n) + k^3)`
    with :math:`k = \min(m, n)`).

    Args:
        W: real floating matrix ``(m, n)``.

    Returns:
        The eigenvalue as a Python float.
    """
    check_float_tensor(W, "W", 2, "(m, n)")
    if W.dim() != 2 or W.numel() == 0:
        raise ValueError(f"W must be a matrix (m, n) with m, n >= 1, got shape {tuple(W.shape)}")
    check_finite(W, "W")
    return float(torch.linalg.eigvalsh(gram(W if W.shape[0] <= W.shape[1] else W.T))[-1])
