r"""Image plots: image grids with colourbars, reconstructions beside the ground truth, data
residuals per unit, and solver convergence histories.

Every function draws one figure and returns the matplotlib ``Figure``. Images are shown with
pixel row :math:`i` downwards and column :math:`j` to the right (``imshow`` convention, the
row-major layout of :func:`lbreg.data.disc`); every image carries a colourbar.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import LogFormatterSciNotation
from torch import Tensor

from lbreg._checks import check_int, check_series
from lbreg.operators import tv

__all__ = [
    "covering_range",
    "plot_images",
    "plot_image_rows",
    "plot_reconstructions",
    "plot_data",
    "plot_residuals",
    "plot_convergence",
]

IMAGE_CMAP = "gray"
"""Colour map of images (intensities)."""
SIGNED_CMAP = "RdBu_r"
"""Colour map of signed quantities (errors), centred at zero."""


def _image(x: Tensor | np.ndarray) -> np.ndarray:
    """A 2-D float array from an image of shape ``(H, W)`` or ``(1, ..., 1, H, W)``."""
    a = torch.as_tensor(x).detach().cpu().to(torch.float64)
    while a.dim() > 2 and a.shape[0] == 1:
        a = a[0]
    if a.dim() != 2:
        raise ValueError(
            f"an image must have shape (H, W) or (1, ..., 1, H, W), got shape {tuple(torch.as_tensor(x).shape)}"
        )
    if not bool(torch.isfinite(a).all()):
        raise ValueError("an image holds NaN or Inf values (from a diverged solve?), which would show as "
                         "blank pixels; plot finite images")
    return a.numpy()


def _vector(v: Tensor | np.ndarray) -> np.ndarray:
    """A 1-D float array from a vector of shape ``(m,)`` or ``(1, m)``."""
    a = torch.as_tensor(v).detach().cpu().to(torch.float64)
    if a.dim() == 2 and a.shape[0] == 1:
        a = a[0]
    if a.dim() != 1:
        raise ValueError(f"a vector must have shape (m,) or (1, m), got shape {tuple(a.shape)}")
    return a.numpy()


def covering_range(*images: Tensor | np.ndarray) -> tuple[float, float]:
    """The smallest colour range ``(vmin, vmax)`` that holds every value of ``images``: with the
    ground truth among them, its range widened only where another image leaves it."""
    if not images:
        raise ValueError("covering_range needs at least one image")
    arrays = [torch.as_tensor(im).detach().cpu().to(torch.float64) for im in images]
    return min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)


def _show(ax: Axes, img: np.ndarray, title: str, cmap: str, vmin: float | None,
          vmax: float | None, cbar_label: str | None, colorbar: bool = True) -> AxesImage:
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if colorbar:
        cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if cbar_label:
            cbar.set_label(cbar_label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("pixel column $j$")
    ax.set_ylabel("pixel row $i$")
    return im


def plot_images(
    images: Sequence[Tensor | np.ndarray] | Mapping[str, Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    cmap: str = IMAGE_CMAP,
    share_scale: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    cbar_label: str | None = "intensity",
    one_colorbar: bool = False,
    panel_size: float = 3.0,
    suptitle: str | None = None,
) -> Figure:
    """A grid of images, each with its own colourbar (or one for all).

    Args:
        images: images of shape ``(H, W)`` (or with leading singleton axes, e.g.
            ``(1, 1, H, W)``); a mapping gives title → image.
        titles: one title per image (ignored for a mapping).
        ncols: number of columns (default: all in one row, at most 4).
        cmap: colour map (default grey).
        share_scale: one colour range (the joint min/max) for all panels.
        vmin, vmax: explicit colour range (overrides ``share_scale``).
        cbar_label: label of each colourbar.
        one_colorbar: one colourbar beside the grid instead of one per panel, and the pixel
            axes labelled on the outer panels only; needs one colour range for all panels
            (``vmin`` and ``vmax``, or ``share_scale``).
        panel_size: width of one panel in inches.
        suptitle: optional figure title.

    Returns:
        The figure.
    """
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"the colour range needs vmin < vmax, got vmin={vmin}, vmax={vmax}")
    if isinstance(images, Mapping):
        titles = list(images)
        images = list(images.values())
    arrays = [_image(im) for im in images]
    if not arrays:
        raise ValueError("images must contain at least one image")
    titles = list(titles) if titles is not None else [""] * len(arrays)
    if len(titles) != len(arrays):
        raise ValueError(f"got {len(titles)} titles for {len(arrays)} images")
    ncols = ncols or min(len(arrays), 4)
    nrows = math.ceil(len(arrays) / ncols)
    if share_scale and vmin is None and vmax is None:
        vmin, vmax = covering_range(*arrays)
    if one_colorbar and (vmin is None or vmax is None):
        raise ValueError("one_colorbar needs one colour range: pass vmin and vmax, or share_scale=True")
    # one colourbar for several axes: constrained layout makes room for it inside the figure, and
    # takes the room of the x-labels and titles from the panels unless the figure adds it (0.8 in)
    height = panel_size * nrows + (0.8 if one_colorbar else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols * 1.15, height),
                             squeeze=False, layout="constrained" if one_colorbar else None)
    im = None
    for k, ax in enumerate(axes.flat):
        if k < len(arrays):
            im = _show(ax, arrays[k], titles[k], cmap, vmin, vmax, cbar_label, colorbar=not one_colorbar)
            if one_colorbar:  # pixel axes named once per row and column
                if k % ncols:
                    ax.set_ylabel("")
                if k + ncols < len(arrays):
                    ax.set_xlabel("")
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    if one_colorbar:  # as long as the grid, whatever its number of rows
        cbar = fig.colorbar(im, ax=axes, shrink=0.9, aspect=12 * nrows)
        if cbar_label:
            cbar.set_label(cbar_label)
    else:
        fig.tight_layout()
    return fig


def plot_image_rows(
    rows: Mapping[str, tuple[Tensor | Sequence[Tensor], Tensor | Sequence[float] | None]],
    columns: Sequence[str],
    *,
    panel_size: float = 2.1,
    suptitle: str | None = None,
) -> Figure:
    r"""Images of intensities in :math:`[0,1]`, one row per method and one column per sample,
    each titled with its PSNR: e.g. ground truth, decoder output and inversion of a few MNIST
    images (chapters 3 and 4).

    Every image is shown clipped to the intensity range :math:`[0,1]`, with one grey scale and
    one colourbar for all panels; the scores are printed as given (for images that leave
    :math:`[0,1]`, a PSNR of the unclipped image differs from one of the image shown).

    Args:
        rows: row label → ``(images, scores)``: ``images`` ``(N, ...)`` (one image per column,
            each ``(H, W)`` or with leading singleton axes), ``scores`` the PSNR in dB of each
            (``None`` for a row without scores, such as the ground truth).
        columns: the name of each column (e.g. ``"#3"``, the sample's index).
        panel_size: width of one panel in inches.
        suptitle: optional figure title.

    Returns:
        The figure: titles ``"{row}: {score:.1f} dB"``, or ``"{row} {column}"`` without scores.
    """
    images, titles = [], []
    for label, (imgs, scores) in rows.items():
        if len(imgs) != len(columns) or (scores is not None and len(scores) != len(columns)):
            raise ValueError(f"row {label!r} has {len(imgs)} images and "
                             f"{'no' if scores is None else len(scores)} scores for {len(columns)} columns")
        for k, name in enumerate(columns):
            images.append(torch.as_tensor(imgs[k]).clamp(0.0, 1.0))
            titles.append(f"{label} {name}" if scores is None else f"{label}: {float(scores[k]):.1f} dB")
    return plot_images(images, titles, ncols=len(columns), vmin=0.0, vmax=1.0, one_colorbar=True,
                       panel_size=panel_size, suptitle=suptitle)


def plot_reconstructions(
    x_true: Tensor,
    reconstructions: Mapping[str, Tensor],
    *,
    show_error: bool = True,
    annotate: bool = True,
    share_scale: bool = False,
    truth_range: bool = False,
    panel_size: float = 3.0,
    suptitle: str | None = None,
) -> Figure:
    r"""Ground truth beside reconstructions, with error images :math:`x - x^\dagger` below.

    Top row: :math:`x^\dagger` and each reconstruction (grey, own colour range unless
    ``share_scale`` or ``truth_range``); titles give :math:`\|x\|_2` and the isotropic and anisotropic TV
    (:func:`lbreg.operators.tv`) when ``annotate``. Bottom row (``show_error``): the error
    :math:`x - x^\dagger` on one symmetric diverging scale shared by all panels, titled with
    :math:`\|x - x^\dagger\|_2`.

    Args:
        x_true: ground truth, shape ``(H, W)`` or ``(1, ..., 1, H, W)``.
        reconstructions: label → reconstruction of the same shape.
        show_error: add the row of error images.
        annotate: put the norms in the titles.
        share_scale: one grey range for the whole top row.
        truth_range: each panel's grey range is the ground truth's, widened only where the
            panel's own values leave it: a loss of contrast then shows as grey, where a range
            of its own would stretch it back to white (``share_scale`` takes precedence).
        panel_size: width of one panel in inches.
        suptitle: optional figure title.

    Returns:
        The figure (2 rows if ``show_error``, else 1).
    """
    items = {"ground truth $x^\\dagger$": x_true, **dict(reconstructions)}
    arrays = {k: _image(v) for k, v in items.items()}
    truth = arrays["ground truth $x^\\dagger$"]
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"all images must have one shape, got {sorted(shapes)}")
    ncols = len(arrays)
    nrows = 2 if show_error else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols * 1.15, panel_size * nrows * 1.05),
                             squeeze=False)
    vmin = vmax = None
    if share_scale:
        vmin, vmax = covering_range(*arrays.values())
    errors = {k: a - truth for k, a in arrays.items()}
    emax = max(float(np.abs(e).max()) for e in errors.values()) or 1.0
    for col, (label, img) in enumerate(arrays.items()):
        title = label
        if annotate:
            t = torch.from_numpy(img)[None, None]
            title += (f"\n$\\|x\\|_2$={np.linalg.norm(img):.2f}, TV$_{{iso}}$={float(tv(t)):.2f},"
                      f"\nTV$_{{aniso}}$={float(tv(t, isotropic=False)):.2f}")
        lo, hi = vmin, vmax
        if truth_range and not share_scale:
            lo, hi = covering_range(truth, img)
        _show(axes[0, col], img, title, IMAGE_CMAP, lo, hi, "intensity")
        if show_error:
            if col == 0:
                axes[1, 0].axis("off")
                continue
            err = errors[label]
            _show(axes[1, col], err, f"error $x - x^\\dagger$\n$\\|x - x^\\dagger\\|_2$={np.linalg.norm(err):.2f}",
                  SIGNED_CMAP, -emax, emax, "error")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_data(
    y: Tensor,
    y_delta: Tensor,
    *,
    order: str = "sorted",
    figsize: tuple[float, float] = (7.0, 3.0),
) -> Figure:
    r"""Exact data :math:`y` and noisy data :math:`y^\delta` per output unit.

    Args:
        y, y_delta: vectors of shape ``(m,)`` or ``(1, m)``.
        order: ``"sorted"`` (units in increasing order of :math:`y`, which separates the
            inactive units :math:`y_i = 0` on the left) or ``"index"``.
        figsize: figure size in inches.

    Returns:
        The figure.
    """
    yv, yd = _vector(y), _vector(y_delta)
    if yv.shape != yd.shape:
        raise ValueError(f"y and y_delta must have one shape, got {yv.shape} and {yd.shape}")
    if order not in ("sorted", "index"):
        raise ValueError(f"order must be 'sorted' or 'index', got {order!r}")
    idx = np.argsort(yv, kind="stable") if order == "sorted" else np.arange(yv.size)
    fig, ax = plt.subplots(figsize=figsize)
    ax.plot(yd[idx], ".", ms=3, color="C1", label="noisy $y^\\delta$")
    ax.plot(yv[idx], "-", lw=1.2, color="C0", label="exact $y = \\sigma(Wx^\\dagger + b)$")
    ax.set_xlabel("output unit (sorted by $y_i$)" if order == "sorted" else "output unit $i$")
    ax.set_ylabel("activation value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_residuals(
    residuals: Mapping[str, Tensor],
    *,
    inactive: Tensor | None = None,
    figsize_per_panel: tuple[float, float] = (3.4, 2.8),
    sharey: bool = False,
) -> Figure:
    r"""Data residuals :math:`\sigma(Wx+b) - y^\delta` per output unit, one panel per method.

    Args:
        residuals: label → residual vector of shape ``(m,)`` or ``(1, m)``.
        inactive: optional boolean mask ``(m,)`` of the units inactive at the ground truth
            (:math:`Wx^\dagger+b<0`); they are drawn in a second colour.
        figsize_per_panel: size of one panel in inches.
        sharey: one vertical range for all panels.

    Returns:
        The figure (one row); titles give :math:`\|\sigma(Wx+b)-y^\delta\|_2`.
    """
    if not residuals:
        raise ValueError("residuals must contain at least one vector")
    n = len(residuals)
    fig, axes = plt.subplots(1, n, figsize=(figsize_per_panel[0] * n, figsize_per_panel[1]),
                             squeeze=False, sharey=sharey)
    mask = None if inactive is None else _vector(torch.as_tensor(inactive).to(torch.float64)) > 0.5
    for ax, (label, r) in zip(axes[0], residuals.items()):
        rv = _vector(r)
        units = np.arange(rv.size)
        if mask is None:
            ax.plot(units, rv, ".", ms=3, color="C0")
        else:
            ax.plot(units[~mask], rv[~mask], ".", ms=3, color="C0", label="active at $x^\\dagger$")
            ax.plot(units[mask], rv[mask], ".", ms=3, color="C3", label="inactive at $x^\\dagger$")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(f"{label}\n$\\|\\sigma(Wx+b)-y^\\delta\\|_2$={np.linalg.norm(rv):.3g}", fontsize=9)
        ax.set_xlabel("output unit $i$")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("residual $\\sigma(Wx+b)_i - y^\\delta_i$")
    if mask is not None:
        axes[0, 0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig


def _history(result: Any, key: str, sample: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(iterations, values) of history entry ``key`` for one sample, or None if it is missing.

    Row ``k`` is iterate ``k`` unless the history says otherwise: ``{key}_iteration`` (`pdhg`'s
    ``gap``) or ``iteration`` (`admm`, which records only at its stopping tests).
    """
    hist = result.history if hasattr(result, "history") else result
    if key not in hist:
        return None
    h = torch.as_tensor(hist[key]).detach().cpu().to(torch.float64)
    if h.dim() == 2:
        h = h[:, sample]
    index = hist.get(f"{key}_iteration", hist.get("iteration"))
    if index is None:
        its = np.arange(h.shape[0])
    else:
        its = torch.as_tensor(index).cpu().numpy()
        if its.shape != (h.shape[0],):
            raise ValueError(f"history[{key!r}] has {h.shape[0]} rows but its iteration index has "
                             f"shape {tuple(its.shape)}")
    return its, h.numpy()


def plot_convergence(
    results: Mapping[str, Any],
    keys: Sequence[str] = ("objective", "change_x", "change_z"),
    *,
    objective_ref: float | Mapping[str, float] | None = None,
    sample: int = 0,
    labels: Mapping[str, str] | None = None,
    xlabel: str = "iteration $k$",
    figsize_per_panel: tuple[float, float] = (3.8, 3.0),
) -> Figure:
    r"""Convergence histories of solvers against the iteration index, on log scales.

    One panel per history key; one curve per solver run, each value drawn at the iteration of
    its iterate: row ``k`` at :math:`k`, or at the iterations the history lists for records
    kept only at some iterations (`admm`'s ``iteration``, `pdhg`'s ``gap_iteration``). The
    start (iteration 0) has no place on the logarithmic axis and is left out. With ``objective_ref`` (the
    objective value :math:`f^\star` of a reference minimiser, one for all runs or one per run)
    the objective panel shows the gap :math:`f(x^k) - f^\star` instead (non-positive values,
    i.e. iterates below the reference to rounding, are not drawn).

    Args:
        results: label → a :class:`~lbreg.solvers.Result` (or its ``history`` dict), whose
            histories are ``(K, B)`` tensors.
        keys: history keys, one panel each (missing keys leave a run out of that panel; a run
            with none of them gets a warning).
        objective_ref: reference objective value(s) :math:`f^\star`, see above.
        sample: which batch sample to draw (``0 <= sample < B``).
        labels: key → y-axis label (defaults are provided for the usual keys).
        xlabel: label of the iteration axis (e.g. ``"sweep $k$"`` for `lifted_cd`).
        figsize_per_panel: size of one panel in inches.

    Returns:
        The figure (one row).
    """
    default_labels = {
        "objective": "objective $B_\\Psi(y^\\delta, Wx^k+b) + \\alpha\\,TV(x^k)$",
        "change_x": "$\\|x^{k+1} - x^k\\|_2$",
        "change_z": "$\\|z^{k+1} - z^k\\|_2$",
        "residual": "$\\|W^\\top(\\sigma(Wx^k+b)-y^\\delta) - \\alpha\\,\\mathrm{div}\\,z^k\\|_2$",
        "primal_residual": "primal residual",
        "dual_residual": "dual residual",
        "discrepancy": "$\\|\\sigma(Wx^k+b) - y^\\delta\\|_2$",
        "change": "$\\|x^{k+1} - x^k\\|_2$",
    }
    default_labels.update(labels or {})
    check_series(results, "results")
    sample = check_int(sample, "sample", minimum=0)
    keys = list(keys)
    for name, res in results.items():
        hist = res.history if hasattr(res, "history") else res
        for key in keys:
            if key in hist and torch.as_tensor(hist[key]).dim() == 2 and sample >= hist[key].shape[1]:
                raise ValueError(f"sample must lie in [0, {hist[key].shape[1]}) (the batch of "
                                 f"{name}'s history[{key!r}]), got {sample}")
    found_in = set()  # runs with at least one of the keys
    fig, axes = plt.subplots(1, len(keys), figsize=(figsize_per_panel[0] * len(keys), figsize_per_panel[1]),
                             squeeze=False)
    for ax, key in zip(axes[0], keys):
        gap = key == "objective" and objective_ref is not None
        for k, (name, res) in enumerate(results.items()):
            found = _history(res, key, sample)
            if found is None:
                continue
            found_in.add(name)
            its, h = found
            if gap:
                ref = objective_ref[name] if isinstance(objective_ref, Mapping) else objective_ref
                if ref is None:
                    continue
                h = h - float(ref)
            keep = (h > 0) & (its > 0)
            ax.loglog(its[keep], h[keep], color=f"C{k}", lw=1.2, label=name)
        label = default_labels.get(key, key)
        if gap:
            label = "objective gap $f(x^k) - f^\\star$"
        ax.set_ylabel(label, fontsize=9)
        ax.set_xlabel(xlabel)
        # a range of one or two decades has one or two labelled powers of ten: label some of
        # the minor ticks too, so that values can be read off
        ax.yaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    left_out = [name for name in results if name not in found_in]
    if left_out:
        warnings.warn(f"{left_out} record none of the history keys {keys}, so no panel shows them "
                      "(lifted_cd records 'energy' and 'change': pass keys=...)", stacklevel=2)
    fig.tight_layout()
    return fig
