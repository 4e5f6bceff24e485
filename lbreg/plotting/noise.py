r"""Plots over noise levels: PSNR against :math:`\delta^2` (Figure 7), chosen :math:`\alpha`, distances.

Each function draws one figure and returns the matplotlib ``Figure``. Values come as a mapping
label -> tensor of shape ``(L, N)``: one row per noise level, one column per image; curves show
the mean over the images with a band of ± one standard deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from lbreg._checks import check_series

__all__ = ["plot_noise_psnr", "plot_over_noise"]


def _levels(values: Tensor | Sequence[float]) -> np.ndarray:
    return torch.as_tensor(values, dtype=torch.float64).detach().cpu().reshape(-1).numpy()


def _table(values: Tensor | Sequence[Sequence[float]], n_levels: int, label: str) -> np.ndarray:
    a = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if a.dim() == 1:
        a = a[:, None]
    if a.dim() != 2 or a.shape[0] != n_levels:
        raise ValueError(f"values of {label!r} must have shape (levels={n_levels}, images), got {tuple(a.shape)}")
    return a.numpy()


def _band(ax: Axes, x: np.ndarray, a: np.ndarray, label: str, marker: str) -> None:
    mean = np.nanmean(a, axis=1)
    line = ax.plot(x, mean, marker=marker, label=label)[0]
    if a.shape[1] > 1:
        sd = np.nanstd(a, axis=1)
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)


_STD_FONTSIZE = 7  # points, labels of the top axis


def _std_axis(ax: Axes, x: np.ndarray, stds: np.ndarray) -> None:
    """A top axis labelled with the noise std at the level positions ``x``.

    A label that would overlap the previous one is left out (its tick stays): labels need a
    distance of about their width (estimated from the longest label, the font size and the
    axes' width as drawn so far) plus a small margin.
    """
    top = ax.secondary_xaxis("top")
    order = np.argsort(-x)
    text = [f"{v:g}" for v in stds]
    width_in = max(ax.get_position().width * ax.figure.get_figwidth(), 1e-3)
    label_in = 0.6 * max(len(t) for t in text) * _STD_FONTSIZE / 72 + 0.06  # a digit is ~0.6 em
    gap = (np.ptp(x) or 1.0) * label_in / width_in
    labels, last = [""] * x.size, None
    for i in order:
        if last is None or abs(x[i] - last) >= gap:
            labels[i], last = text[i], x[i]
    top.set_xticks(x)
    top.set_xticklabels(labels, fontsize=_STD_FONTSIZE)
    top.set_xlabel("noise std on the code")


def plot_over_noise(
    stds: Tensor | Sequence[float],
    values: Mapping[str, Tensor | Sequence[Sequence[float]]],
    ylabel: str,
    *,
    x: Tensor | Sequence[float] | None = None,
    xlabel: str = "noise std on the code",
    logy: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    r"""Curves (mean ± std over images) of per-level values against the noise level.

    Args:
        stds: noise standard deviations, ``(L,)``.
        values: label -> ``(L, N)`` values (a ``(L,)`` tensor is one image).
        ylabel: the quantity and its unit.
        x: horizontal positions ``(L,)`` (default ``stds``); with ``x`` given, a top axis is
            labelled with ``stds``. The axis is inverted, so that the noise decreases to the
            right, as in the paper's Figure 7.
        xlabel: label of the horizontal axis.
        logy: logarithmic vertical axis.
        title: panel title.
        ax: draw into this axes (default: a new figure).

    Returns:
        The figure.
    """
    check_series(values, "values")
    s = _levels(stds)
    xs = s if x is None else _levels(x)
    if xs.shape != s.shape:
        raise ValueError(f"x must have one value per noise level ({s.size}), got {xs.size}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    else:
        fig = ax.figure
    for k, (label, v) in enumerate(values.items()):
        _band(ax, xs, _table(v, s.size, label), label, "osd^v<>"[k % 7])
    ax.set_xlim(xs.max() + 0.03 * (np.ptp(xs) or 1.0), xs.min() - 0.03 * (np.ptp(xs) or 1.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if x is not None:
        _std_axis(ax, xs, s)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_noise_psnr(
    stds: Tensor | Sequence[float],
    delta_sq: Tensor | Sequence[float],
    psnrs: Mapping[str, Tensor | Sequence[Sequence[float]]],
    *,
    first: int = 0,
    first_label: str = "first image",
) -> Figure:
    r"""Figure 7: PSNR of decoder and inversions against decreasing :math:`\delta^2`.

    Left: the image ``first`` alone; right: mean ± std over all images. The horizontal axis is
    the mean :math:`\delta^2` of each level (decreasing to the right), the top axis its noise std.

    Args:
        stds: noise standard deviations ``(L,)``.
        delta_sq: mean :math:`\delta^2` per level ``(L,)`` (the horizontal positions).
        psnrs: label -> PSNR in dB, ``(L, N)``.
        first: column of the image shown on the left.
        first_label: its name in the left title.

    Returns:
        The figure (two panels).
    """
    check_series(psnrs, "psnrs")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 3.9), sharey=True)
    xlabel = r"$\delta^2=\frac{1}{2}\|y^\delta-y\|^2$ (mean over images)"
    plot_over_noise(stds, {k: torch.as_tensor(v)[:, first] for k, v in psnrs.items()}, "PSNR [dB]",
                    x=delta_sq, xlabel=xlabel, title=first_label, ax=left)
    n = torch.as_tensor(next(iter(psnrs.values()))).shape[1]
    plot_over_noise(stds, psnrs, "PSNR [dB]", x=delta_sq, xlabel=xlabel,
                    title=f"mean ± std over {n} images", ax=right)
    fig.tight_layout()
    return fig
