"""Image-quality metrics, one value per sample."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lbreg._checks import check_finite, check_positive

__all__ = ["psnr"]


def psnr(x: Tensor, x_ref: Tensor, peak: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, per sample.

    .. math:: \\mathrm{PSNR}(x, x^{\\rm ref}) = 10\\log_{10}\\frac{\\text{peak}^2}{\\mathrm{MSE}},
              \\qquad \\mathrm{MSE} = \\frac1n\\sum_i (x_i - x^{\\rm ref}_i)^2 .

    The images are compared as given: for MNIST, use [0, 1]-scaled images (add the mean
    back to centred ones) with ``peak=1`` (PAPER_MATH §4.4). Identical images give ``inf``.
    Integer images (say uint8 with ``peak=255``) are compared in float64, so that their
    differences do not wrap around, and half-precision ones in float32, whose range holds
    their squared differences.

    Args:
        x: images of shape (B, ...).
        x_ref: reference images, same shape as ``x``.
        peak: largest possible pixel value.

    Returns:
        Tensor of shape (B,): float64 for integer images, else the dtype of ``x`` and
        ``x_ref`` promoted together, and at least float32. Differentiable: with inputs that
        require grad it keeps their autograd history (a PSNR can serve as a loss).

    Raises:
        TypeError: ``x`` or ``x_ref`` is not a tensor, or is complex.
        ValueError: shapes that differ, no samples, NaN or infinite pixels (a NaN PSNR would
            poison any mean taken over it), or ``peak`` not finite and > 0.
    """
    _check_images(x, "x")
    _check_images(x_ref, "x_ref")
    if x.shape != x_ref.shape:
        raise ValueError(f"x and x_ref must have the same shape, got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must have a leading batch dimension with at least one sample, got shape {tuple(x.shape)}")
    peak = check_positive(peak, "peak")
    if x.is_floating_point() and x_ref.is_floating_point():
        dtype = torch.promote_types(torch.promote_types(x.dtype, x_ref.dtype), torch.float32)
    else:
        dtype = torch.float64
    mse = (x.to(dtype) - x_ref.to(dtype)).reshape(x.shape[0], -1).pow(2).mean(dim=1)
    return 20.0 * math.log10(peak) - 10.0 * torch.log10(mse)


def _check_images(x: object, name: str) -> None:
    """Raise unless ``x`` is a real tensor without NaN or infinite entries."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name} must be real, got dtype {x.dtype}: PSNR compares real pixel values")
    check_finite(x, name)
