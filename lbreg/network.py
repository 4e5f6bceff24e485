r"""Networks as lists of affine maps and proximal activations (PAPER_MATH §1).

A feed-forward network, eq. (1),

.. math::
    \mathcal N(x) = \sigma_L(W_L\,\sigma_{L-1}(\cdots\sigma_1(W_1x+b_1)\cdots)+b_L),

is stored as a :class:`LiftedNetwork`: a list of :class:`Layer` objects, each an
:class:`AffineMap` :math:`x\mapsto W_lx+b_l` (dense, convolution, transposed convolution,
average pooling) with an exact adjoint :math:`W_l^\top` and a cached spectral norm, and a
proximal :class:`~lbreg.activations.Activation` :math:`\sigma_l=\operatorname{prox}_{\Psi_l}`.
:meth:`LiftedNetwork.energy` evaluates the lifted Bregman objective (3).
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbreg._checks import check_finite, check_float_tensor, check_not_meta, check_positive_values, check_real_tensor
from lbreg.activations import Activation, Identity, activation_of
from lbreg.operators import gram_norm_sq, power_norm
from lbreg.regularizers import Regularizer

__all__ = ["AffineMap", "Layer", "LiftedNetwork"]

# Power-iteration settings for AffineMap.norm(): tighter than power_norm's defaults, because
# the norm sets step sizes and is computed once per map.
_NORM_ITERS = 2000
_NORM_TOL = 1e-10
# A dense W with min(m, n) up to this size gets its norm exactly from the smaller Gram matrix
# (the circle's 512 x 4096, one thread: 0.05 s, against 0.9 s of power iteration that stops a
# relative 5e-9 below the norm).
_EXACT_NORM_MAX = 2048

_SKIPPED = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_RESHAPES = (nn.Flatten, nn.Unflatten)
# methods a subclass of a torch module may override without changing what forward computes
_UNUSED_BY_FORWARD = frozenset({"__init__", "reset_parameters", "extra_repr", "__repr__", "__str__"})
_AFFINE_MODULES = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.AvgPool2d)
_AFFINE_NAMES = ", ".join(f"nn.{c.__name__}" for c in _AFFINE_MODULES)  # for error messages


# --------------------------------------------------------------------------- helpers


def _as_shape(shape: object, name: str) -> tuple[int, ...]:
    """A shape as a tuple of ints >= 1 (an int ``n`` is ``(n,)``); TypeError for anything but
    integers (a float that int() would cut, a bool), ValueError for an empty shape or a size < 1."""
    if isinstance(shape, int):
        shape = (shape,)
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise TypeError(f"{name} must be a tuple of positive ints, got {shape!r}")
    if len(shape) == 0:
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
    out = []
    for i, n in enumerate(shape):
        try:
            if isinstance(n, (bool, np.bool_)) or (isinstance(n, Tensor) and n.dtype == torch.bool):
                raise TypeError
            size = operator.index(n)  # an int (NumPy's, a 0-d integer tensor), not a float int() would cut
        except TypeError:
            raise TypeError(f"{name} must be a tuple of positive ints, got {shape!r} ({name}[{i}] is a "
                            f"{type(n).__name__})") from None
        if size < 1:
            raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
        out.append(size)
    return tuple(out)


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


def _reshape_batch(
    x: object, shape: tuple[int, ...], target: tuple[int, ...], name: str, *alt: tuple[int, ...]
) -> Tensor:
    """Reshape ``x`` of shape ``(B, *shape)``, ``(B, prod(shape))`` or ``(B, *alt)``.

    Returns ``x`` reshaped to ``(B, *target)``; raises a ValueError naming ``name`` otherwise.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, *{shape}), got {type(x).__name__}"
        )
    n = math.prod(shape)
    if x.dim() >= 1:
        rest = tuple(x.shape[1:])
        if rest == shape or rest == (n,) or rest in alt:
            return x.reshape(x.shape[0], *target)
    raise ValueError(
        f"{name} must have shape (B, *{shape}) or (B, {n}) with a leading batch axis, "
        f"got shape {tuple(x.shape)}"
    )


def _meta_shape(fn, in_shape: tuple[int, ...], dtype: torch.dtype, name: str) -> tuple[int, ...]:
    """Output shape (without batch axis) of ``fn`` on a meta tensor of shape ``(2, *in_shape)``."""
    x = torch.empty((2, *in_shape), device="meta", dtype=dtype)
    try:
        out = fn(x)
    except RuntimeError as err:
        raise ValueError(f"{name} {in_shape} does not fit the module: {err}") from None
    if out.dim() == 0 or out.shape[0] != 2:
        raise ValueError(f"{name} {in_shape}: the module must keep the leading batch axis")
    shape = tuple(out.shape[1:])
    if any(n < 1 for n in shape):
        raise ValueError(f"{name} {in_shape} gives an empty output of shape {shape}")
    return shape


def _check_data(x: object, shape: tuple[int, ...], name: str) -> Tensor:
    check_float_tensor(x, name, 0, f"(B, *{shape})")
    check_not_meta(x, name)
    x = _reshape_batch(x, shape, shape, name)
    check_finite(x, name)
    return x


# --------------------------------------------------------------------------- affine maps


class AffineMap:
    r"""Affine map :math:`x\mapsto Wx+b` with exact adjoint :math:`u\mapsto W^\top u`.

    Build with :meth:`from_module` (``nn.Linear``, ``nn.Conv2d``, ``nn.ConvTranspose2d``,
    ``nn.AvgPool2d``) or :meth:`from_matrix`. Inputs are ``(B, *in_shape)`` (or flattened
    ``(B, prod(in_shape))``), outputs ``(B, *out_shape)``: a flatten/unflatten around the
    operator is folded into these reshapes.

    Attributes:
        in_shape: input shape without the batch axis.
        out_shape: output shape without the batch axis.
        weight: the weight tensor (matrix or convolution kernel), ``None`` for pooling.
        bias: ``None`` or the bias in the operator's native layout (``(m,)`` for dense
            maps, ``(C_out, 1, 1)`` for convolutions).
    """

    weight: Tensor | None
    bias: Tensor | None
    # native shapes of the underlying operator (without batch axis)
    _op_in: tuple[int, ...]
    _op_out: tuple[int, ...]

    def __init__(self) -> None:  # pragma: no cover - use the constructors
        raise TypeError("use AffineMap.from_module or AffineMap.from_matrix")

    def _init(
        self,
        op_in: tuple[int, ...],
        op_out: tuple[int, ...],
        weight: Tensor | None,
        bias: Tensor | None,
    ) -> None:
        self._op_in = op_in
        self._op_out = op_out
        self.in_shape = op_in
        self.out_shape = op_out
        self.weight = weight
        self.bias = bias
        self._norm: float | None = None

    # ---- subclass hooks
    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _apply_adjoint(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def _kind(self) -> str:
        raise NotImplementedError

    def _exact_norm(self) -> float | None:
        r""":math:`\|W\|_2` where it is cheap to compute exactly, else ``None``."""
        return None

    # ---- public API
    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the weights (``None`` for a weightless map such as pooling)."""
        return None if self.weight is None else self.weight.dtype

    @property
    def device(self) -> torch.device | None:
        """Device of the weights (``None`` for a weightless map such as pooling)."""
        return None if self.weight is None else self.weight.device

    @property
    def matrix(self) -> Tensor | None:
        r"""The matrix :math:`W` ``(prod(out_shape), prod(in_shape))`` of a dense map;
        ``None`` for maps without one (convolutions, pooling)."""
        return None

    def linear(self, x: Tensor) -> Tensor:
        r""":math:`Wx`: ``(B, *in_shape)`` or ``(B, prod(in_shape))`` -> ``(B, *out_shape)``."""
        x = self._operand(_reshape_batch(x, self.in_shape, self._op_in, "x", self._op_in), "x")
        return self._apply(x, None).reshape(x.shape[0], *self.out_shape)

    def forward(self, x: Tensor) -> Tensor:
        r""":math:`Wx+b`: ``(B, *in_shape)`` or ``(B, prod(in_shape))`` -> ``(B, *out_shape)``."""
        x = self._operand(_reshape_batch(x, self.in_shape, self._op_in, "x", self._op_in), "x")
        return self._apply(x, self.bias).reshape(x.shape[0], *self.out_shape)

    __call__ = forward

    def adjoint(self, u: Tensor) -> Tensor:
        r""":math:`W^\top u` (exact): ``(B, *out_shape)`` or flat -> ``(B, *in_shape)``."""
        u = self._operand(_reshape_batch(u, self.out_shape, self._op_out, "u", self._op_out), "u")
        return self._apply_adjoint(u).reshape(u.shape[0], *self.in_shape)

    def _operand(self, x: Tensor, name: str) -> Tensor:
        """``x`` if it is floating and has the weights' dtype and device; TypeError otherwise."""
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
        w = self.weight
        if w is not None and (x.dtype != w.dtype or x.device != w.device):
            raise TypeError(
                f"{name} is {x.dtype} on {x.device} but the weights are {w.dtype} on {w.device}; "
                "convert one to the other (e.g. network.to(device=..., dtype=...))"
            )
        return x

    def norm(self) -> float:
        r"""Spectral norm :math:`\|W\|_2` in float64 (cached).

        A dense :math:`W \in \mathbb R^{m\times n}` with :math:`\min(m, n) \le 2048`: exactly,
        the square root of the largest eigenvalue of the smaller Gram matrix (:math:`WW^\top`
        or :math:`W^\top W`). Otherwise (convolutions, pooling, larger matrices):
        :func:`~lbreg.operators.power_norm` on :math:`W^\top W` with a fixed seed, so the value
        is deterministic; it is then a lower bound of :math:`\|W\|_2`, which can stop short
        where the top singular values nearly coincide (the iteration stops once the estimate
        changes by less than :math:`10^{-10}` relative per step: for one random 3×3
        convolution with 3 output channels on 8×8 inputs it is :math:`3\cdot10^{-4}` low; the
        step sizes of `pdhg` tolerate that, see `lbreg.solvers.pdhg.default_steps`).
        """
        if self._norm is None:
            norm = self._exact_norm()
            if norm is None:
                a = self.to(dtype=torch.float64)
                norm = power_norm(
                    a.linear,
                    a.adjoint,
                    (1, *self.in_shape),
                    n_iter=_NORM_ITERS,
                    tol=_NORM_TOL,
                    device=a.device,
                )
            self._norm = norm
        return self._norm

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AffineMap:
        """A copy on ``device`` with floating ``dtype``; ``self`` if nothing changes.

        As with ``torch.nn.Module.to``, a dtype may come first: ``to(torch.float64)``.
        """
        if isinstance(device, torch.dtype):
            if dtype is not None:
                raise TypeError(f"to() takes a device and a dtype, or a dtype alone, got {device} and {dtype}")
            device, dtype = None, device
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        if self.weight is None:
            return self
        dev = torch.device(device) if device is not None else self.weight.device
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        new_dtype = dtype if dtype is not None else self.weight.dtype
        if self.weight.device == dev and self.weight.dtype == new_dtype:
            return self
        out = copy.copy(self)
        out.weight = self.weight.to(device=dev, dtype=new_dtype, copy=True)
        out.bias = None if self.bias is None else self.bias.to(dev, new_dtype, copy=True)
        return out

    def _with_shapes(
        self, in_shape: tuple[int, ...] | None = None, out_shape: tuple[int, ...] | None = None
    ) -> AffineMap:
        """A copy whose external in/out shapes are reshapes of the native ones."""
        out = copy.copy(self)
        if in_shape is not None:
            if math.prod(in_shape) != math.prod(self._op_in):
                raise ValueError(
                    f"in_shape {in_shape} has {math.prod(in_shape)} entries, the operator "
                    f"takes {self._op_in} ({math.prod(self._op_in)} entries)"
                )
            out.in_shape = tuple(in_shape)
        if out_shape is not None:
            if math.prod(out_shape) != math.prod(self._op_out):
                raise ValueError(
                    f"out_shape {out_shape} has {math.prod(out_shape)} entries, the operator "
                    f"returns {self._op_out} ({math.prod(self._op_out)} entries)"
                )
            out.out_shape = tuple(out_shape)
        return out

    def __repr__(self) -> str:
        return f"AffineMap({self._kind()}, in_shape={self.in_shape}, out_shape={self.out_shape})"

    # ---- constructors
    @classmethod
    def from_matrix(
        cls,
        W: Tensor,
        b: Tensor | None = None,
        in_shape: Sequence[int] | None = None,
        out_shape: Sequence[int] | None = None,
    ) -> AffineMap:
        """Dense map from a matrix ``W`` of shape ``(m, n)`` and an optional bias ``b`` of ``m`` entries.

        ``in_shape`` (default ``(n,)``, e.g. ``(1, 64, 64)`` for an image) and ``out_shape``
        (default ``(m,)``) only fix how inputs and outputs are reshaped (row-major).
        """
        try:
            W = torch.as_tensor(W)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"W must be a matrix (a tensor, or nested lists of numbers), got {type(W).__name__}") from None
        if W.dim() != 2:
            raise ValueError(f"W must be a matrix of shape (m, n), got shape {tuple(W.shape)}")
        if not W.is_floating_point():
            raise TypeError(f"W must have a real floating dtype, got {W.dtype}")
        if W.numel() == 0:
            raise ValueError(f"W must have at least one row and one column, got shape {tuple(W.shape)}")
        m, n = W.shape
        bias = None
        if b is not None:
            b = check_real_tensor(b, "b", like=W)
            if b.numel() != m:
                raise ValueError(f"b must have m={m} entries, got shape {tuple(b.shape)}")
            bias = b.detach().reshape(m).clone()
        dense = _DenseMap.__new__(_DenseMap)
        dense._init((n,), (m,), W.detach().clone(), bias)
        ins = _as_shape(in_shape, "in_shape") if in_shape is not None else None
        outs = _as_shape(out_shape, "out_shape") if out_shape is not None else None
        return dense._with_shapes(ins, outs)

    @classmethod
    def from_module(cls, module: nn.Module, input_shape: Sequence[int]) -> AffineMap:
        """Affine map of a ``torch.nn`` module acting on inputs of shape ``(B, *input_shape)``.

        Supported: ``nn.Linear`` (``prod(input_shape) == in_features``; a preceding flatten is
        folded in; on an input ``(1, .., 1, in_features)`` the output keeps the leading axes, as
        in torch), ``nn.Conv2d`` and ``nn.ConvTranspose2d`` (any stride, padding, dilation,
        output padding, groups; with or without bias; ``padding_mode='zeros'`` only),
        ``nn.AvgPool2d`` (the paper's linear replacement for pooling). The weights are
        detached copies.

        Raises:
            TypeError: for any other module, and for one with forward hooks or whose
                ``forward``, or a method it calls (``Conv2d._conv_forward``), is replaced by a
                subclass or on the instance (lifting reads the type and weights only).
            ValueError: if ``input_shape`` does not fit the module, or for a padding mode
                other than ``'zeros'``.
        """
        _check_plain(module, "")
        _check_weights(module, "")
        return _affine_of(module, _as_shape(input_shape, "input_shape"))


def _affine_of(module: nn.Module, shape: tuple[int, ...]) -> AffineMap:
    """`AffineMap.from_module` for a module already checked (`_check_plain`, `_check_weights`)."""
    if isinstance(module, nn.Linear):
        n = math.prod(shape)
        if n != module.in_features:
            per_row = len(shape) > 1 and shape[-1] == module.in_features
            raise ValueError(
                f"input_shape {shape} has {n} entries but Linear expects "
                f"in_features={module.in_features} (lbreg applies it to the flattened input"
                + (", while torch applies it to each row along the last axis, which lbreg "
                   "does not lift; flatten first if the Linear should see the whole input)"
                   if per_row else ")")
            )
        w = module.weight.detach().clone()
        b = None if module.bias is None else module.bias.detach().clone()
        dense = _DenseMap.__new__(_DenseMap)
        dense._init((n,), (module.out_features,), w, b)
        # torch keeps the leading axes of the input (all of size 1 here): (1, .., 1, out)
        out = (*shape[:-1], module.out_features) if shape[-1] == n else (module.out_features,)
        return dense._with_shapes(in_shape=shape, out_shape=out)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        cname = type(module).__name__
        if module.padding_mode != "zeros":
            raise ValueError(
                f"{cname} with padding_mode={module.padding_mode!r} is not supported: "
                f"padding_mode must be 'zeros'"
            )
        if len(shape) != 3 or shape[0] != module.in_channels:
            raise ValueError(
                f"input_shape must be (C, H, W) with C = in_channels = "
                f"{module.in_channels} for {cname}, got {shape}"
            )
        if isinstance(module, nn.ConvTranspose2d):
            return _ConvTransposeMap.build(module, shape)
        return _ConvMap.build(module, shape)
    if isinstance(module, nn.AvgPool2d):
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W) for AvgPool2d, got {shape}")
        return _AvgPoolMap.build(module, shape)
    raise TypeError(
        f"{type(module).__name__} is not an affine module; supported: {_AFFINE_NAMES}"
    )


class _DenseMap(AffineMap):
    @property
    def matrix(self) -> Tensor:
        return self.weight

    def _kind(self) -> str:
        return f"dense {tuple(self.weight.shape)}"

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, self.weight, bias)

    def _apply_adjoint(self, u: Tensor) -> Tensor:
        return u @ self.weight

    def _exact_norm(self) -> float | None:
        if min(self.weight.shape) > _EXACT_NORM_MAX:
            return None
        return math.sqrt(max(gram_norm_sq(self.weight.to(torch.float64)), 0.0))


class _ConvMap(AffineMap):
    """``nn.Conv2d``; asymmetric ('same') padding is applied explicitly (adjoint: crop)."""

    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    pads: tuple[int, int, int, int]  # top, bottom, left, right

    @classmethod
    def build(cls, module: nn.Conv2d, shape: tuple[int, ...]) -> _ConvMap:
        self = cls.__new__(cls)
        self.stride = _pair(module.stride, "stride")
        self.dilation = _pair(module.dilation, "dilation")
        self.groups = int(module.groups)
        kh, kw = module.kernel_size
        if isinstance(module.padding, str):
            if module.padding == "valid":
                pads = (0, 0, 0, 0)
            else:  # 'same' (stride 1): total d(k-1), the extra one at the end, as in torch
                th, tw = self.dilation[0] * (kh - 1), self.dilation[1] * (kw - 1)
                pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            ph, pw = _pair(module.padding, "padding")
            pads = (ph, ph, pw, pw)
        self.pads = pads
        w = module.weight.detach().clone()
        b = None if module.bias is None else module.bias.detach().clone().reshape(-1, 1, 1)
        out = _meta_shape(
            lambda x: self._conv(x, w.to("meta"), None), shape, w.dtype, "input_shape"
        )
        self._init(shape, out, w, b)
        return self

    @property
    def _symmetric(self) -> bool:
        t, b, left, r = self.pads
        return t == b and left == r

    def _conv(self, x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
        t, b, left, r = self.pads
        if self._symmetric:  # padding and bias inside the convolution
            bvec = None if bias is None else bias.reshape(-1)
            return F.conv2d(x, w, bvec, self.stride, (t, left), self.dilation, self.groups)
        x = F.pad(x, (left, r, t, b))
        return F.conv2d(x, w, None, self.stride, 0, self.dilation, self.groups) + (
            0 if bias is None else bias
        )

    _name = "conv2d"

    def _kind(self) -> str:
        return f"{self._name} kernel {tuple(self.weight.shape)}, stride {self.stride}{self._options()}"

    def _options(self) -> str:
        """Padding, dilation and groups where they differ from torch's defaults."""
        t, b, left, r = self.pads
        parts = []
        if any(self.pads):
            parts.append(f"padding {(t, left)}" if self._symmetric
                         else f"padding (top, bottom, left, right) {self.pads}")
        if self.dilation != (1, 1):
            parts.append(f"dilation {self.dilation}")
        if self.groups != 1:
            parts.append(f"groups {self.groups}")
        return "".join(f", {p}" for p in parts)

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv(x, self.weight, bias)

    def _apply_adjoint(self, u: Tensor) -> Tensor:
        return self._conv_adjoint(u, self._op_in[1:])

    @property
    def _fold_adjoint(self) -> bool:
        """Whether the adjoint in float32 on the CPU takes `_adjoint_fold`: for at most three
        input channels, or at most eight with a stride (see `_conv_adjoint`)."""
        channels = self.weight.shape[1] * self.groups
        return channels <= 3 or (max(self.stride) > 1 and channels <= 8)

    def _conv_adjoint(self, u: Tensor, size: tuple[int, int]) -> Tensor:
        r""":math:`W^\top u` on an input grid of ``size`` (H, W): `_adjoint_fold` in float32
        on the CPU where `_fold_adjoint` holds, else `_adjoint_transposed`.

        On the CPU, PyTorch runs a float32 transposed convolution through oneDNN, which is slow
        where the convolution has few input channels (the output channels of the transposed
        one), the more so with a stride; with more channels it is the faster route, for some
        shapes by more than an order of magnitude. ``benchmarks/bench_conv_routes.py`` times both routes for sixteen
        convolutions at batch 1, 8 and 64 and counts how often `_fold_adjoint` picks the faster;
        the Performance page shows its table. For the paper's CNN encoder (one thread), layer
        1 (one input channel) takes 0.03 against 0.11 ms at batch 1 and 0.40 against 1.9 ms at
        batch 64 by folding; layer 2 (eight input channels, stride 2) 0.04 against 0.10 ms at
        batch 1, and at batch 64 0.88 ms against 0.88 ms (timed alone, the fold takes 1.9 ms
        in about half of the processes tried; a float32 `lifted_cd` sweep of the encoder at
        batch 64 takes 4.8 ms with either route for layer 2, and 1.18 against 1.25 ms at batch
        1, in alternating processes). Float64 does not go through oneDNN, and other devices
        have their own libraries (cuDNN on a GPU): both keep the transposed convolution.
        """
        if u.device.type == "cpu" and u.dtype == torch.float32 and self._fold_adjoint:
            return self._adjoint_fold(u, size)
        return self._adjoint_transposed(u, size)

    def _adjoint_fold(self, u: Tensor, size: tuple[int, int]) -> Tensor:
        r""":math:`W^\top u` as the columns :math:`W_g^\top u_g` of each group, summed into the
        image by `F.fold` (col2im, the adjoint of the `F.unfold` that a convolution is)."""
        t, b, left, r = self.pads
        h, w = size
        groups, (out_ch, _, kh, kw) = self.groups, self.weight.shape
        wt = self.weight.reshape(groups, out_ch // groups, -1).transpose(1, 2)
        cols = (wt @ u.reshape(u.shape[0], groups, out_ch // groups, -1)).flatten(1, 2)
        if self._symmetric:
            return F.fold(cols, (h, w), (kh, kw), self.dilation, (t, left), self.stride)
        x = F.fold(cols, (h + t + b, w + left + r), (kh, kw), self.dilation, 0, self.stride)
        return x[..., t : t + h, left : left + w]

    def _adjoint_transposed(self, u: Tensor, size: tuple[int, int]) -> Tensor:
        r""":math:`W^\top u` as a transposed convolution, cropped for asymmetric padding."""
        t, b, left, r = self.pads
        h, w = size
        if self._symmetric:
            pad, th, tw = (t, left), h, w
        else:
            pad, th, tw = (0, 0), h + t + b, w + left + r
        ho, wo = u.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        # output_padding so that the transposed convolution returns exactly the input size
        oph = th + 2 * pad[0] - dh * (kh - 1) - 1 - (ho - 1) * sh
        opw = tw + 2 * pad[1] - dw * (kw - 1) - 1 - (wo - 1) * sw
        x = F.conv_transpose2d(
            u, self.weight, None, self.stride, pad, (oph, opw), self.groups, self.dilation
        )
        if not self._symmetric:
            x = x[..., t : t + h, left : left + w]
        return x


class _ConvTransposeMap(_ConvMap):
    """``nn.ConvTranspose2d``: the adjoint of the convolution with the same weight, stride,
    padding, dilation and groups from its output grid to its input grid (the *dual*
    convolution, a `_ConvMap`), so the forward is the dual's adjoint and the adjoint the dual's
    forward. Output padding only lengthens the output grid; where it reaches the stride
    (allowed with dilation), the dual convolution of the output grid has more rows or columns
    than the input: the forward pads the input with zeros there, the adjoint crops them.
    """

    _dual_out: tuple[int, int]  # the dual convolution's output size on the output grid
    output_padding: tuple[int, int]

    @classmethod
    def build(cls, module: nn.ConvTranspose2d, shape: tuple[int, ...]) -> _ConvTransposeMap:
        self = cls.__new__(cls)
        self.stride = _pair(module.stride, "stride")
        self.dilation = _pair(module.dilation, "dilation")
        self.groups = int(module.groups)
        ph, pw = _pair(module.padding, "padding")
        self.pads = (ph, ph, pw, pw)
        output_padding = self.output_padding = _pair(module.output_padding, "output_padding")
        w = module.weight.detach().clone()
        b = None if module.bias is None else module.bias.detach().clone().reshape(-1, 1, 1)
        out = _meta_shape(
            lambda x: F.conv_transpose2d(x, w.to("meta"), None, self.stride, (ph, pw),
                                         output_padding, self.groups, self.dilation),
            shape, w.dtype, "input_shape",
        )
        self._dual_out = _meta_shape(
            lambda u: self._conv(u, w.to("meta"), None), out, w.dtype, "output_shape"
        )[1:]
        self._init(shape, out, w, b)
        return self

    _name = "conv_transpose2d"

    def _options(self) -> str:
        extra = f", output_padding {self.output_padding}" if any(self.output_padding) else ""
        return super()._options() + extra

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        (h, w), (dh, dw) = x.shape[-2:], self._dual_out
        if (dh, dw) != (h, w):
            x = F.pad(x, (0, dw - w, 0, dh - h))
        y = self._conv_adjoint(x, self._op_out[1:])
        return y if bias is None else y + bias

    def _apply_adjoint(self, u: Tensor) -> Tensor:
        _, h, w = self._op_in
        return self._conv(u, self.weight, None)[..., :h, :w]


class _AvgPoolMap(AffineMap):
    """``nn.AvgPool2d`` (linear, no weights); adjoint by the exact pooling backward."""

    @classmethod
    def build(cls, module: nn.AvgPool2d, shape: tuple[int, ...]) -> _AvgPoolMap:
        self = cls.__new__(cls)
        self.kernel_size = _pair(module.kernel_size, "kernel_size")
        stride = module.stride if module.stride not in (None, (), []) else module.kernel_size
        self.stride = _pair(stride, "stride")
        self.padding = _pair(module.padding, "padding")
        self.ceil_mode = bool(module.ceil_mode)
        self.count_include_pad = bool(module.count_include_pad)
        self.divisor_override = module.divisor_override
        out = _meta_shape(lambda x: self._pool(x), shape, torch.float32, "input_shape")
        self._init(shape, out, None, None)
        return self

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def _kind(self) -> str:
        return f"avg_pool2d kernel {self.kernel_size}, stride {self.stride}"

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        return self._pool(x)

    def _apply_adjoint(self, u: Tensor) -> Tensor:
        like = u.new_empty((u.shape[0], *self._op_in))
        return torch.ops.aten.avg_pool2d_backward(
            u.contiguous(),
            like,
            list(self.kernel_size),
            list(self.stride),
            list(self.padding),
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


# --------------------------------------------------------------------------- networks


@dataclass
class Layer:
    r"""One layer :math:`x_l=\sigma_l(W_lx_{l-1}+b_l)`: an affine map and a proximal activation.

    ``activation`` may also be given as a ``torch.nn`` activation module; it is converted
    with :func:`~lbreg.activations.activation_of`.
    """

    affine: AffineMap
    activation: Activation

    def __post_init__(self) -> None:
        if not isinstance(self.affine, AffineMap):
            raise TypeError(f"affine must be an AffineMap, got {type(self.affine).__name__}")
        if not isinstance(self.activation, Activation):
            self.activation = activation_of(self.activation)


def _check_weights(module: nn.Module, index: str) -> None:
    """Refuse weights that are not real floating point: complex ones would lose their imaginary
    part (`LiftedNetwork` refuses NaN and Inf)."""
    for name, weight in module.named_parameters(recurse=False):
        if not weight.is_floating_point():
            raise TypeError(f"{_describe(index, module)}: {name} must have a real floating dtype, "
                            f"got {weight.dtype}")


def _check_plain(module: nn.Module, index: str) -> None:
    """Refuse a module whose output is not what its type and weights say: lifting reads those,
    never runs ``forward``, so hooks, a subclass's own ``forward`` or a replaced method it calls would
    be lost silently."""
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        raise TypeError(f"{_describe(index, module)} is a lazy module with uninitialised weights; "
                        "run one forward pass before lifting it")
    if module._forward_hooks or module._forward_pre_hooks:
        raise TypeError(
            f"{_describe(index, module)} has forward hooks, which lbreg cannot lift (they change "
            "what it computes; for spectral or weight normalisation use torch.nn.utils."
            "parametrizations, or remove the hooks)"
        )
    mro = type(module).__mro__
    base = next(c for c in mro if c.__module__.startswith("torch.nn."))
    if base is nn.Module:
        return
    # methods of the torch class replaced by a subclass (forward, or a helper it calls such as
    # Conv2d._conv_forward) or on the instance itself
    replaced = {name for cls in mro[:mro.index(base)] for name in vars(cls)
                if name not in _UNUSED_BY_FORWARD and callable(getattr(base, name, None))}
    replaced |= {name for name, value in vars(module).items()
                 if callable(value) and callable(getattr(base, name, None))}
    if replaced:
        raise TypeError(
            f"{_describe(index, module)} overrides {', '.join(sorted(replaced))} of {base.__name__}; "
            "lbreg lifts a module from its type and weights, so it cannot lift a changed forward"
        )


def _flatten_sequential(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf modules of nested ``nn.Sequential`` in the order ``forward`` applies them, a
    module used twice listed twice (``named_children`` would list it once)."""
    _check_plain(module, prefix.rstrip("."))
    if isinstance(module, nn.Sequential):
        items: list[tuple[str, nn.Module]] = []
        for name, child in module._modules.items():
            items.extend(_flatten_sequential(child, f"{prefix}{name}."))
        return items
    return [(prefix.rstrip("."), module)]


def _describe(index: str, module: nn.Module) -> str:
    return f"module {type(module).__name__}" + (f" at index {index}" if index else "")


class LiftedNetwork:
    r"""A network (1) as layers :math:`(W_l, b_l, \sigma_l)`, :math:`l=1,\dots,L`.

    Attributes:
        layers: the :class:`Layer` list.
        input_shape: shape of :math:`x_0` without the batch axis.
        output_shape: shape of :math:`x_L` without the batch axis.
        depth: the number of layers :math:`L`.
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        if not isinstance(layers, Iterable) or isinstance(layers, str):
            raise TypeError(f"layers must be a list of Layer, got {type(layers).__name__}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers must contain at least one Layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a Layer, got {type(layer).__name__}")
            for name in ("weight", "bias"):
                t = getattr(layer.affine, name)
                if t is None:
                    continue
                check_finite(t, f"layers[{i}] ({layer.affine._kind()}): its {name}")  # meta refused too
        weights = [(i, layer.affine.weight) for i, layer in enumerate(layers) if layer.affine.weight is not None]
        for i, w in weights[1:]:
            j, first = weights[0]  # the first layer with weights sets the dtype and device
            if (w.dtype, w.device) != (first.dtype, first.device):
                raise TypeError(f"layers[{i}] is {w.dtype} on {w.device} but layers[{j}] is {first.dtype} on "
                                f"{first.device}: one network computes in one dtype on one device (convert the "
                                "layers' maps with .to(device=..., dtype=...))")
        for i in range(1, len(layers)):
            prev, cur = layers[i - 1].affine.out_shape, layers[i].affine.in_shape
            if prev != cur:
                raise ValueError(
                    f"layers[{i}] expects inputs of shape {cur} but layers[{i - 1}] returns "
                    f"{prev}; give the maps matching in_shape/out_shape"
                )
        self.layers = layers

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].affine.in_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].affine.out_shape

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the first layer with weights (``None`` if there is none)."""
        for layer in self.layers:
            if layer.affine.dtype is not None:
                return layer.affine.dtype
        return None

    @property
    def device(self) -> torch.device | None:
        """Device of the first layer with weights (``None`` if there is none)."""
        for layer in self.layers:
            if layer.affine.device is not None:
                return layer.affine.device
        return None

    def __repr__(self) -> str:
        body = "".join(
            f"\n  ({i + 1}) {layer.affine!r} -> {type(layer.activation).__name__}"
            for i, layer in enumerate(self.layers)
        )
        return (
            f"LiftedNetwork(depth={self.depth}, input_shape={self.input_shape}, "
            f"output_shape={self.output_shape}){body}"
        )

    # ---- constructors
    @classmethod
    def from_layers(cls, layers: Sequence[Layer]) -> LiftedNetwork:
        """Network from a list of layers; consecutive shapes must match."""
        return cls(layers)

    @classmethod
    def from_module(cls, module: nn.Module, input_shape: Sequence[int]) -> LiftedNetwork:
        """Lift a ``torch.nn`` network acting on inputs ``(B, *input_shape)``.

        ``module`` is an ``nn.Sequential`` (nested ones are flattened) or a single affine
        module. A module used several times (a shared activation, a repeated block) becomes a
        layer at each use, as ``forward`` applies it. Each affine module (see
        :meth:`AffineMap.from_module`) followed by an activation forms a :class:`Layer`; one not
        followed by an activation gets :class:`~lbreg.activations.Identity`.
        ``nn.Flatten``/``nn.Unflatten`` are folded into the reshapes of the next affine map
        (trailing ones into the last map's output shape), so the states keep the shapes the
        module produces before each reshape.
        ``nn.Identity`` and dropout modules are skipped (the network is the eval-mode map; a
        dropout module left in training mode gets a warning).

        Raises:
            ValueError: an activation with no preceding affine map, or an ``input_shape``
                that does not fit.
            TypeError: a module that is neither affine nor a proximal activation
                (``MaxPool2d``, ``BatchNorm2d``, ``GELU``, ...), or one with forward hooks or
                a replaced ``forward`` or method that it calls (a residual block written as a
                ``Sequential`` subclass, a weight-standardised convolution overriding
                ``_conv_forward``): lifting reads types and weights, never runs ``forward``.
        """
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        shape = _as_shape(input_shape, "input_shape")
        layers: list[Layer] = []
        pending: AffineMap | None = None  # affine map still waiting for its activation
        state = shape  # shape of the last state x_l (before reshapes)
        cur = shape  # shape of the data after reshapes
        for index, m in _flatten_sequential(module):
            if isinstance(m, _SKIPPED):
                if m.training and getattr(m, "p", 0.0) > 0.0:
                    warnings.warn(
                        f"{_describe(index, m)} is in training mode; it is lifted as its eval-mode "
                        "map, the identity, so the lifted network is module.eval()'s: call "
                        "module.eval() before computing the data to invert",
                        stacklevel=2,
                    )
                continue
            if isinstance(m, _RESHAPES):
                try:
                    cur = _meta_shape(m, cur, torch.float32, "input shape")
                except ValueError as err:
                    raise ValueError(f"{_describe(index, m)}: {err}") from None
                continue
            if isinstance(m, _AFFINE_MODULES):
                if pending is not None:
                    layers.append(Layer(pending, Identity()))
                _check_weights(m, index)  # _flatten_sequential ran _check_plain
                try:
                    a = _affine_of(m, cur)
                except ValueError as err:
                    raise ValueError(
                        f"{_describe(index, m)} does not fit its input of shape {cur} "
                        f"(from input_shape {shape}): {err}"
                    ) from None
                pending = a._with_shapes(in_shape=state)
                state = cur = pending.out_shape
                continue
            try:
                act = activation_of(m)
            except TypeError as err:
                raise TypeError(
                    f"{_describe(index, m)} is not supported: only affine modules ({_AFFINE_NAMES}), "
                    f"proximal activations, nn.Flatten, nn.Unflatten, nn.Identity and dropout can be lifted "
                    f"({err})"
                ) from None
            except ValueError as err:
                raise ValueError(f"{_describe(index, m)}: {err}") from None
            if pending is None:
                raise ValueError(
                    f"{_describe(index, m)} is an activation with no preceding affine map"
                )
            layers.append(Layer(pending, act))
            pending = None
        if pending is not None:
            layers.append(Layer(pending, Identity()))
        if not layers:
            raise ValueError(f"module {type(module).__name__} contains no affine map")
        if cur != state:  # trailing reshape: fold into the last map (σ is elementwise)
            last = layers[-1]
            layers[-1] = Layer(last.affine._with_shapes(out_shape=cur), last.activation)
        return cls(layers)

    # ---- evaluation
    def forward(self, x: Tensor) -> Tensor:
        r""":math:`\mathcal N(x)`, eq. (1): ``(B, *input_shape)`` -> ``(B, *output_shape)``."""
        x = _reshape_batch(x, self.input_shape, self.input_shape, "x")
        for layer in self.layers:
            x = layer.activation(layer.affine(x))
        return x

    __call__ = forward

    def states(self, x: Tensor) -> list[Tensor]:
        r"""All states :math:`[x_0=x, x_1,\dots,x_L]`, :math:`x_l=\sigma_l(W_lx_{l-1}+b_l)`."""
        xs = [_reshape_batch(x, self.input_shape, self.input_shape, "x")]
        for layer in self.layers:
            xs.append(layer.activation(layer.affine(xs[-1])))
        return xs

    def energy(
        self,
        xs: Sequence[Tensor],
        y: Tensor,
        alpha: float | Tensor,
        reg: object | None = None,
        *,
        check: bool = True,
    ) -> Tensor:
        r"""Lifted Bregman objective (3) per sample.

        .. math::
            J(x_0,\dots,x_{L-1}) = \sum_{l=1}^{L} B_{\Psi_l}(x_l, W_lx_{l-1}+b_l)
            + \alpha R(x_0),\qquad x_L := y.

        Args:
            xs: ``[x_0, ..., x_{L-1}]``, each ``(B, *shape_l)``.
            y: data ``(B, *output_shape)``.
            alpha: regularisation weight, a float or a ``(B,)`` tensor.
            reg: a :class:`~lbreg.regularizers.Regularizer` (its ``value``), or ``None`` for
                :math:`R=0`.
            check: if ``True``, raise a ValueError naming ``xs[l]`` or ``y`` when it leaves
                :math:`\operatorname{dom}\Psi_l` or is not finite, or ``alpha`` when it is
                negative or not finite (one host synchronisation per layer); if ``False``, such
                samples get :math:`B_{\Psi_l}=+\infty` (property 1) without any check.

        Returns:
            Tensor of shape ``(B,)``.
        """
        xs = list(xs)
        if len(xs) != self.depth:
            raise ValueError(
                f"xs must hold the {self.depth} states [x_0, ..., x_{self.depth - 1}], "
                f"got {len(xs)}"
            )
        shapes = [layer.affine.in_shape for layer in self.layers]
        xs = [_reshape_batch(x, s, s, f"xs[{i}]") for i, (x, s) in enumerate(zip(xs, shapes))]
        targets = [*xs[1:], _reshape_batch(y, self.output_shape, self.output_shape, "y")]
        names = [f"xs[{i}]" for i in range(1, self.depth)] + ["y"]
        sizes = [t.shape[0] for t in (xs[0], *targets)]
        if len(set(sizes)) > 1:
            raise ValueError(f"xs and y must hold the same number of samples, got {sizes} for "
                             f"{['xs[0]', *names]}")
        if check:
            _check_data(xs[0], shapes[0], "xs[0]")
        total = None
        for layer, x_prev, x_next, name in zip(self.layers, xs, targets, names):
            layer.affine._operand(x_next, name)  # the weights' dtype and device
            if check:
                layer.activation.check_domain(x_next, name)
            term = layer.activation.bregman(x_next, layer.affine(x_prev), check=check)
            total = term if total is None else total + term
        if reg is not None:
            if not isinstance(reg, Regularizer):
                raise TypeError(f"reg must be a lbreg.regularizers.Regularizer (or None), got {type(reg).__name__}")
            a = check_real_tensor(alpha, "alpha", "a real number or one per sample", like=total)
            if a.dim() > 1 or a.numel() not in (1, total.shape[0]):
                raise ValueError(
                    f"alpha must be a number or hold one value per sample ({total.shape[0]}), "
                    f"got shape {tuple(a.shape)}"
                )
            if check:
                check_positive_values(a, "alpha", allow_zero=True)
            total = total + a * reg.value(xs[0])
        return total

    # ---- conversion and checks
    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> LiftedNetwork:
        """A copy with every affine map on ``device``/``dtype``; ``self`` if nothing changes.

        As with ``torch.nn.Module.to``, a dtype may come first: ``net.to(torch.float64)``.
        """
        maps = [layer.affine.to(device=device, dtype=dtype) for layer in self.layers]
        if all(a is layer.affine for a, layer in zip(maps, self.layers)):
            return self
        return LiftedNetwork([Layer(a, layer.activation) for a, layer in zip(maps, self.layers)])

    def check_input(self, x: Tensor, name: str = "x") -> Tensor:
        """Check an input batch; returns it reshaped to ``(B, *input_shape)``.

        Raises:
            TypeError: not a tensor, or not a real floating dtype.
            ValueError: shape not ``(B, *input_shape)``/``(B, prod(input_shape))``, or
                non-finite entries.
        """
        return _check_data(x, self.input_shape, name)

    def check_output(self, y: Tensor, name: str = "y") -> Tensor:
        """Check a data batch; returns it reshaped to ``(B, *output_shape)``.

        Raises as :meth:`check_input`.
        """
        return _check_data(y, self.output_shape, name)
