r"""Seeded problem instances of the paper's experiments (PAPER_MATH §4.1).

The circle experiment (§5.1.1 of Wang & Benning 2023) inverts a random single-layer ReLU
perceptron :math:`x\mapsto\max(Wx+b, 0)`, :math:`W\in\mathbb R^{512\times4096}`, applied to the
vectorised (row-major) :math:`64\times64` disc image, from data with clipped Gaussian noise:

.. math::
    y = \sigma(Wx^\dagger+b),\qquad y^\delta = \max(y+\varepsilon, 0),\quad
    \varepsilon\sim N(0, 0.005^2 I),\qquad \delta = \|y^\delta-y\|.

The paper only says "random" for :math:`W, b`. :func:`random_perceptron` offers the two laws
of PAPER_MATH §5 item 1: ``"uniform"``, PyTorch's default ``nn.Linear`` initialisation
:math:`U(\pm1/\sqrt n)` for weight and bias (which reproduces the paper's numbers), and
``"normal"``, i.i.d. :math:`N(0,1)` entries (the lecture material's reading). Every draw comes
from an explicit, seeded ``torch.Generator``; the global RNG is never used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lbreg._checks import check_exact_tensor, check_int, check_positive, check_seed
from lbreg.activations import Activation, ReLU
from lbreg.data import add_noise, as_generator, disc
from lbreg.network import AffineMap, Layer, LiftedNetwork, _as_shape
from lbreg.operators import div2d, grad2d, tv
from lbreg.regularizers import TV
from lbreg.solvers.result import check_alpha

__all__ = ["LAWS", "random_perceptron", "CircleProblem", "circle_problem"]

LAWS = ("uniform", "normal")
"""The laws of :math:`(W, b)` accepted by :func:`random_perceptron`."""

Law = Literal["uniform", "normal"]


def random_perceptron(
    input_shape: Sequence[int],
    m: int,
    law: Law = "uniform",
    generator: torch.Generator | int = 0,
    activation: Activation | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> LiftedNetwork:
    r"""A random single-layer network :math:`x\mapsto\sigma(Wx+b)`, :math:`W\in\mathbb R^{m\times n}`.

    With :math:`n = \prod(\text{input\_shape})`:

    - ``law="uniform"``: :math:`W_{ij}, b_i \sim U(-1/\sqrt n, 1/\sqrt n)` i.i.d., the default
      initialisation of PyTorch's ``nn.Linear(n, m)`` (its Kaiming-uniform bound with
      :math:`a=\sqrt5` is exactly :math:`1/\sqrt n`); :math:`U(\pm1/64)` for the circle's
      :math:`n = 4096`. PAPER_MATH §4.1 and §5 item 1: this law reproduces the paper's rows.
    - ``law="normal"``: :math:`W_{ij}, b_i \sim N(0, 1)` i.i.d. (the alternative of §5 item 1).

    ``W`` is drawn first (row-major, ``m`` rows of ``n`` entries), then ``b``, both from
    ``generator`` in the requested dtype; the same generator state gives the same network.

    Args:
        input_shape: shape of one input without the batch axis, e.g. ``(1, 64, 64)``; inputs are
            vectorised row-major.
        m: number of output units.
        law: ``"uniform"`` or ``"normal"``, see above.
        generator: a ``torch.Generator`` (CPU; advanced by the draw) or an int seed.
        activation: the activation σ; default :class:`~lbreg.activations.ReLU`.
        dtype: floating dtype of ``W`` and ``b`` (float64 by default, as in PAPER_MATH §6).

    Returns:
        A depth-1 :class:`~lbreg.network.LiftedNetwork` with input shape ``input_shape`` and
        output shape ``(m,)``.

    Raises:
        ValueError: an unknown ``law``, ``m < 1`` or an empty ``input_shape``.
        TypeError: ``m`` not an integer, ``generator`` neither a ``torch.Generator`` nor an
            int, an ``input_shape`` of non-integers, or a non-floating ``dtype``.
    """
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS}, got {law!r}")
    m = check_int(m, "m", minimum=1)
    shape = _as_shape(input_shape, "input_shape")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    gen = as_generator(generator)
    n = math.prod(shape)
    if law == "uniform":
        bound = 1.0 / math.sqrt(n)
        W = (2.0 * torch.rand(m, n, generator=gen, dtype=dtype) - 1.0) * bound
        b = (2.0 * torch.rand(m, generator=gen, dtype=dtype) - 1.0) * bound
    else:
        W = torch.randn(m, n, generator=gen, dtype=dtype)
        b = torch.randn(m, generator=gen, dtype=dtype)
    act = ReLU() if activation is None else activation
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b, in_shape=shape), act)])


@dataclass
class CircleProblem:
    r"""One seeded instance of the circle experiment (PAPER_MATH §4.1).

    Attributes:
        network: the ReLU perceptron :math:`x\mapsto\max(Wx+b,0)` on ``(1, size, size)`` images.
        x_true: the disc :math:`x^\dagger`, shape ``(1, 1, size, size)``.
        y: exact data :math:`y=\sigma(Wx^\dagger+b)`, shape ``(1, m)``.
        y_delta: noisy data :math:`y^\delta=\max(y+\varepsilon,0)`, shape ``(1, m)``.
        delta: the noise level :math:`\delta=\|y^\delta-y\|` (after clipping), a float.
        law: the law of :math:`(W, b)`, ``"uniform"`` or ``"normal"``.
        seed: the seed of the draw.
        noise_std: the standard deviation of :math:`\varepsilon`.
    """

    network: LiftedNetwork
    x_true: Tensor
    y: Tensor
    y_delta: Tensor
    delta: float
    law: str
    seed: int
    noise_std: float

    def objective(self, x: Tensor, alpha: float) -> Tensor:
        r"""The objective of eq. (11): :math:`B_\Psi(y^\delta, Wx+b) + \alpha\,\mathrm{TV}_{\rm iso}(x)`.

        Args:
            x: images ``(B, 1, size, size)``.
            alpha: regularisation parameter :math:`\alpha>0`, a number or ``(B,)``.

        Returns:
            Tensor ``(B,)``.
        """
        layer = self.network.layers[0]
        z = layer.affine.forward(x)  # checks x
        alpha_t = check_alpha(alpha, x.shape[0], x)
        y = self.y_delta.expand(x.shape[0], -1)
        return layer.activation.bregman(y, z) + alpha_t * tv(x)

    def kkt(self, x: Tensor, z: Tensor, alpha: float) -> dict[str, float]:
        r"""Optimality certificate of :math:`x` for eq. (11), with a dual field :math:`z` (one sample).

        :math:`x` minimises :math:`f = B_\Psi(y^\delta, W\cdot+b) + \alpha\,\mathrm{TV}_{\rm iso}`
        iff some :math:`z` satisfies (PAPER_MATH §6 item 9)

        .. math::
            W^\top(\sigma(Wx+b)-y^\delta) - \alpha\operatorname{div}z = 0,\qquad
            \max_{i,j}\|z_{i,j}\|_2\le1,\qquad \langle z,\nabla x\rangle = \mathrm{TV}_{\rm iso}(x).

        For :math:`z` in the unit ball the residuals bound the objective gap: with
        :math:`r` the first residual, :math:`f(x) - \min f \le
        \alpha(\mathrm{TV}(x) - \langle z,\nabla x\rangle) + \|r\|\,\|x - x^\star\|`
        (convexity of the data term and :math:`\mathrm{TV}(x')\ge\langle z,\nabla x'\rangle`).

        Args:
            x: image ``(1, 1, size, size)``.
            z: dual field ``(1, 1, 2, size, size)`` (a solver's ``Result.dual``).
            alpha: regularisation parameter :math:`\alpha>0`.

        Returns:
            ``stationarity`` :math:`\|r\|`, ``gradient`` :math:`\|W^\top(\sigma(Wx+b)-y^\delta)\|`
            (the scale of :math:`r`), ``dual_max`` :math:`\max\|z_{i,j}\|`, ``tv``
            :math:`\mathrm{TV}_{\rm iso}(x)` and ``pairing`` :math:`\langle z,\nabla x\rangle`, as floats.

        Raises:
            ValueError: ``x`` or ``z`` not of one sample's shape (a batch: certify each sample
                on its own), non-finite entries, or ``alpha <= 0``.
        """
        for t, name, shape in ((x, "x", self.network.input_shape), (z, "z", TV().dual_shape(self.network.input_shape))):
            check_exact_tensor(t, name, (1, *shape), context="kkt certifies one sample: ",
                               hint=" (for a batch, pass one sample at a time: x[i:i+1], z[i:i+1])")
        alpha = check_positive(alpha, "alpha")
        layer = self.network.layers[0]
        affine, act = layer.affine, layer.activation
        g = affine.adjoint(act(affine.forward(x)) - self.y_delta)
        r = g - alpha * div2d(z)
        return {
            "stationarity": float(torch.linalg.vector_norm(r)),
            "gradient": float(torch.linalg.vector_norm(g)),
            "dual_max": float(torch.linalg.vector_norm(z, dim=-3).max()),
            "tv": float(tv(x)[0]),
            "pairing": float((z * grad2d(x)).sum()),
        }


def circle_problem(
    law: Law = "uniform",
    seed: int = 0,
    noise_std: float = 0.005,
    size: int = 64,
    m: int = 512,
) -> CircleProblem:
    r"""The circle experiment of the paper's §5.1.1 (PAPER_MATH §4.1), seeded.

    Ground truth :func:`~lbreg.data.disc` (``size``×``size``, radius 0.5: 788 pixels,
    :math:`\|x^\dagger\|=28.07`, anisotropic TV 128.0 at size 64); network
    :func:`random_perceptron` with ``m`` ReLU units and the given ``law``; data
    :math:`y^\delta=\max(y+\varepsilon,0)`, :math:`\varepsilon\sim N(0,\text{noise\_std}^2I)`,
    via :func:`~lbreg.data.add_noise`. One ``torch.Generator`` seeded with ``seed`` draws
    :math:`W`, then :math:`b`, then :math:`\varepsilon`. Everything is float64.

    Args:
        law: ``"uniform"`` (:math:`U(\pm1/\sqrt n)`, the default that reproduces the paper) or
            ``"normal"`` (:math:`N(0,1)`).
        seed: seed of the draw (int).
        noise_std: standard deviation of the Gaussian noise (paper: 0.005).
        size: image side (paper: 64).
        m: number of ReLU units (paper: 512).

    Returns:
        A :class:`CircleProblem`.
    """
    seed = check_seed(seed)
    size = check_int(size, "size", minimum=1)
    noise_std = check_positive(noise_std, "noise_std", allow_zero=True)
    gen = torch.Generator().manual_seed(seed)
    shape = (1, size, size)
    network = random_perceptron(shape, m, law, gen)
    x_true = disc(size).reshape(1, *shape)
    y = network.forward(x_true)
    relu = network.layers[0].activation
    y_delta, delta = add_noise(y, noise_std, gen, relu)
    return CircleProblem(
        network=network, x_true=x_true, y=y, y_delta=y_delta, delta=float(delta[0]),
        law=law, seed=seed, noise_std=float(noise_std),
    )
