"""Image-quality metrics, one value per sample."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr"]


def psnr(x: Tensor, x_ref: Tensor, peak: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, per sample.

    .. math:: \\mathrm{PSNR}(x, x^{\\rm ref}) = 10\\log_{10}\\frac{\\text{peak}^2}{\\mathrm{MSE}},
              \\qquad \\mathrm{MSE} = \\frac1n\\sum_i (x_i - x^{\\rm ref}_i)^2 .

    The images are compared as given: for MNIST, use [0, 1]-scaled images (add the mean
    back to centred ones) with ``peak=1`` (PAPER_MATH §4.4). Identical images give ``inf``.
    Integer images (say uint8 with ``peak=255``) are compared in float64, so that their
    differences do not wrap around.

    Args:
        x: images of shape (B, ...).
        x_ref: reference images, same shape as ``x``.
        peak: largest possible pixel value.

    Returns:
        Tensor of shape (B,), dtype of ``x`` (float64 for integer ``x``).
    """
    x, x_ref = (t if t.is_floating_point() else t.to(torch.float64) for t in (x, x_ref))
    if x.shape != x_ref.shape:
        raise ValueError(f"x and x_ref must have the same shape, got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    if x.ndim < 1:
        raise ValueError("x must have a leading batch dimension")
    if not peak > 0:
        raise ValueError(f"peak must be positive, got peak={peak}")
    mse = (x - x_ref).reshape(x.shape[0], -1).pow(2).mean(dim=1)
    return 10.0 * torch.log10(torch.as_tensor(peak, dtype=mse.dtype, device=mse.device) ** 2 / mse)
