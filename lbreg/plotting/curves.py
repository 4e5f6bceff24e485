r"""Curve plots: $B_\Psi$ and $F^*$ curves, Burbea–Rao brackets, bound ratios, convergence rates,
and objective gap against time.

Every function draws one figure and returns the matplotlib ``Figure``; axes carry the
quantity they show (all quantities of the theory chapter are dimensionless; times are in
seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from lbreg._checks import check_series
from lbreg.activations import Activation
from lbreg.theory import conjugate_gradient

__all__ = [
    "plot_bregman_curves",
    "plot_conjugates",
    "plot_psi_brackets",
    "plot_bound_ratios",
    "plot_convergence_rate",
    "plot_gap_vs_time",
]

_DTYPE = torch.float64


def _np(t: Tensor | Sequence[float]):
    return torch.as_tensor(t, dtype=_DTYPE).detach().cpu().numpy()


def plot_bregman_curves(
    activations: Mapping[str, Activation],
    fixed_z: Mapping[str, Sequence[float]],
    fixed_y: Mapping[str, Sequence[float]],
    y_limits: Mapping[str, tuple[float, float]],
    z_limits: tuple[float, float] = (-3.0, 3.0),
    n_points: int = 401,
) -> Figure:
    r"""Sections of the Bregman penalty (4) with the lower bound of property 2.

    Row ``k`` shows activation ``k``: left, :math:`y\mapsto B_\Psi(y,z)` for each ``z`` of
    ``fixed_z[name]`` over ``y_limits[name]`` (inside dom Ψ), with a marker at its zero
    :math:`y=\sigma(z)` (eq. (5)); right, :math:`z\mapsto B_\Psi(y,z)` for each ``y`` of
    ``fixed_y[name]``, with a marker at the grid minimiser, or a bar over the grid points where
    :math:`B_\Psi(y,\cdot)` vanishes when these are more than one (the pre-activations that
    :math:`\sigma` maps to :math:`y`, an interval for ReLU or soft-shrink at :math:`y=0`).
    Dashed curves of the same colour are
    :math:`\tfrac12(y-\sigma(z))^2\le B_\Psi(y,z)`.

    Args:
        activations: name → activation, one row each.
        fixed_z, fixed_y: name → values held fixed in the left / right panel.
        y_limits: name → the y-interval (a subset of dom Ψ) of the left panel.
        z_limits: the z-interval of the right panel.
        n_points: grid size.

    Returns:
        The figure (``len(activations)`` rows, 2 columns).
    """
    names = list(check_series(activations, "activations"))
    for table, what in ((fixed_z, "fixed_z"), (fixed_y, "fixed_y"), (y_limits, "y_limits")):
        check_series(table, what, keys=names)
    fig, axes = plt.subplots(len(names), 2, figsize=(9.0, 2.6 * len(names)), squeeze=False)
    z_grid = torch.linspace(*z_limits, n_points, dtype=_DTYPE)
    for row, name in enumerate(names):
        act = activations[name]
        ax_y, ax_z = axes[row]
        y_grid = torch.linspace(*y_limits[name], n_points, dtype=_DTYPE)
        for k, z0 in enumerate(fixed_z[name]):
            z = torch.full_like(y_grid, float(z0))
            colour = f"C{k}"
            ax_y.plot(_np(y_grid), _np(act.bregman_elementwise(y_grid, z)), color=colour,
                      label=f"$z={float(z0):g}$")
            ax_y.plot(_np(y_grid), _np(0.5 * (y_grid - act(z)) ** 2), color=colour, ls="--", lw=1)
            s = act(torch.tensor([float(z0)], dtype=_DTYPE))
            ax_y.plot(_np(s), [0.0], "o", color=colour, ms=5)
        for k, y0 in enumerate(fixed_y[name]):
            y = torch.full_like(z_grid, float(y0))
            colour = f"C{k}"
            b = act.bregman_elementwise(y, z_grid)
            ax_z.plot(_np(z_grid), _np(b), color=colour, label=f"$y={float(y0):g}$")
            ax_z.plot(_np(z_grid), _np(0.5 * (y - act(z_grid)) ** 2), color=colour, ls="--", lw=1)
            zeros = b <= 1e-12 * (1.0 + float(b.max()))
            if int(zeros.sum()) > 1:  # B_Ψ(y, ·) vanishes on an interval (ReLU or soft-shrink, y = 0)
                ax_z.plot(_np(z_grid[zeros]), np.zeros(int(zeros.sum())), "-", color=colour, lw=5, alpha=0.5)
            else:
                i = int(torch.argmin(b))
                ax_z.plot([float(z_grid[i])], [float(b[i])], "o", color=colour, ms=5)
        ax_y.set_xlabel("$y$ (in dom $\\Psi$)")
        ax_y.set_ylabel(f"{name}: $B_\\Psi(y, z)$")
        ax_z.set_xlabel("pre-activation $z$")
        ax_z.set_ylabel(f"{name}: $B_\\Psi(y, z)$")
        for ax in (ax_y, ax_z):
            ax.set_ylim(bottom=-0.05 * max(ax.get_ylim()[1], 1e-12))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper center")
    axes[0, 0].set_title("$y \\mapsto B_\\Psi(y, z)$; dot: $y = \\sigma(z)$", fontsize=9)
    axes[0, 1].set_title("$z \\mapsto B_\\Psi(y, z)$; dot or bar: its zeros; dashed: $\\frac{1}{2}(y-\\sigma(z))^2$",
                         fontsize=9)
    fig.tight_layout()
    return fig


def plot_conjugates(
    activations: Mapping[str, Activation],
    z_limits: tuple[float, float] = (-3.0, 3.0),
    n_points: int = 301,
    marker_every: int = 20,
) -> Figure:
    r""":math:`F^*` beside :math:`\sigma`, with :math:`\nabla F^*` by autograd (property 3).

    One panel per activation: :math:`F^*(z)`, :math:`F=\tfrac12|\cdot|^2+\Psi`
    (:meth:`~lbreg.activations.Activation.conj`), :math:`\sigma(z)`, and markers at
    :math:`\nabla F^*(z)` computed by autograd (:func:`lbreg.theory.conjugate_gradient`),
    which lie on σ.

    Args:
        activations: name → activation.
        z_limits, n_points: the z-grid.
        marker_every: spacing of the autograd markers.

    Returns:
        The figure (one row).
    """
    names = list(activations)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.9), squeeze=False)
    z = torch.linspace(*z_limits, n_points, dtype=_DTYPE)
    for ax, name in zip(axes[0], names):
        act = activations[name]
        ax.plot(_np(z), _np(act.conj(z)), color="C0", label="$F^*(z)$")
        ax.plot(_np(z), _np(act(z)), color="C1", label="$\\sigma(z)$")
        grad = conjugate_gradient(act, z)
        ax.plot(_np(z[::marker_every]), _np(grad[::marker_every]), "x", color="k", ms=5,
                label="$\\nabla F^*(z)$ (autograd)")
        ax.set_title(name)
        ax.set_xlabel("pre-activation $z$")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("value")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_psi_brackets(
    alphas: Tensor | Sequence[float],
    brackets: Mapping[str, Tensor | Sequence[float]],
    reference: Mapping[str, Tensor | Sequence[float]] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Figure:
    r"""The Burbea–Rao bracket of eq. (9) against :math:`\alpha` (Remark 1), log–log.

    Args:
        alphas: the :math:`\alpha` grid.
        brackets: label → :math:`\Psi(y^\delta+\frac\alpha cv^\dagger)+\Psi(y^\delta-\frac\alpha c
            v^\dagger)-2\Psi(y^\delta)` on the grid (zeros and :math:`+\infty` are not drawn).
        reference: label → a reference curve on the grid (dashed), e.g. the bound
            :math:`\ell\alpha^2\|v^\dagger\|^2/c^2` of PAPER_MATH §2's corollary of Remark 1.
        thresholds: label → an :math:`\alpha` drawn as a dotted vertical line, e.g. the largest
            admissible :math:`\alpha` of Example 1.

    Returns:
        The figure.
    """
    a = _np(alphas).reshape(-1)
    for what, table in (("reference", reference), ("thresholds", thresholds)):
        if table is not None and not isinstance(table, Mapping):
            raise TypeError(f"{what} must be a mapping label -> data (e.g. a dict) or None, got {type(table).__name__}")
    for what, table in (("brackets", check_series(brackets, "brackets")), ("reference", reference or {})):
        for label, values in table.items():
            if _np(values).size != a.size:
                raise ValueError(f"{what}[{label!r}] must have one value per alpha ({a.size}), got {_np(values).size}")
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for k, (label, values) in enumerate(brackets.items()):
        v = _np(values)
        keep = (v > 0) & (v < float("inf"))
        ax.loglog(a[keep], v[keep], color=f"C{k}", label=label)
    for label, values in (reference or {}).items():
        ax.loglog(a, _np(values), color="0.3", ls="--", lw=1, label=label)
    for label, value in (thresholds or {}).items():
        ax.axvline(float(value), color="0.5", ls=":", lw=1.2, label=label)
    ax.set_xlabel("regularisation parameter $\\alpha$")
    ax.set_ylabel("bracket $\\Psi(y^\\delta\\!+\\!\\frac{\\alpha}{c}v^\\dagger)"
                  "+\\Psi(y^\\delta\\!-\\!\\frac{\\alpha}{c}v^\\dagger)-2\\Psi(y^\\delta)$")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bound_ratios(ratios: Mapping[str, Tensor | Sequence[float]], bins: int = 30) -> Figure:
    r"""Histograms of lhs/rhs of Theorem 2, eq. (9), one per :math:`c`; the bound holds left of 1.

    The bins cover :math:`[0, 1]`, widened to the largest ratio when one exceeds 1, so that a
    violation of the bound shows; NaN or infinite ratios (a failed solve, a zero right-hand
    side) cannot be drawn and are counted in the legend instead.

    Args:
        ratios: label (e.g. ``"c = 1/4"``) → ratios over all instances (``0`` where the
            bound is :math:`+\infty`).
        bins: number of histogram bins.

    Returns:
        The figure.
    """
    arrays = {label: _np(values).astype(float).ravel() for label, values in check_series(ratios, "ratios").items()}
    finite = {label: a[np.isfinite(a)] for label, a in arrays.items()}
    top = max([1.0, *(float(a.max()) for a in finite.values() if a.size)])
    fig, ax = plt.subplots(figsize=(6.0, 3.5))
    for k, (label, values) in enumerate(finite.items()):
        left_out = arrays[label].size - values.size
        ax.hist(values, bins=bins, range=(0.0, top), histtype="step", lw=1.5, color=f"C{k}",
                label=label + (f" ({left_out} NaN or infinite, not drawn)" if left_out else ""))
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel("lhs / rhs of eq. (9)")
    ax.set_ylabel("number of solved problems")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_convergence_rate(
    series: Mapping[str, tuple[Tensor | Sequence[float], Tensor | Sequence[float]]],
    bounds: Mapping[str, tuple[Tensor | Sequence[float], Tensor | Sequence[float]]],
    slopes: Mapping[str, float] | None = None,
) -> Figure:
    r""":math:`D^{\rm symm}_R(x_{\alpha(\delta)}, x^\dagger)` against :math:`\delta`, log–log.

    Args:
        series: label → ``(delta, d_symm)``, drawn as markers (several source elements may
            share a series).
        bounds: label → ``(delta, bound)`` (dashed, same colour order as ``series``; a single
            bound, which holds for every series, in black), e.g. Example 1's
            :math:`2\sqrt2\|v^\dagger\|\delta`.
        slopes: label of a series → fitted slope, appended to its legend entry.

    Returns:
        The figure.
    """
    check_series(series, "series")
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for k, (label, (delta, d)) in enumerate(series.items()):
        text = f"{label} (slope {slopes[label]:.2f})" if slopes and label in slopes else label
        ax.loglog(_np(delta), _np(d), "o", color=f"C{k}", ms=4, alpha=0.8, label=text)
    for k, (label, (delta, b)) in enumerate(bounds.items()):  # a single bound serves every series: black
        ax.loglog(_np(delta), _np(b), "--", color="k" if len(bounds) == 1 else f"C{k}", lw=1.2, label=label)
    ax.set_xlabel("noise level $\\delta = B_\\Psi(y^\\delta, Wx^\\dagger+b)^{1/2}$")
    ax.set_ylabel("$D^{\\rm symm}_R(x_{\\alpha(\\delta)}, x^\\dagger)"
                  " = \\|x_{\\alpha(\\delta)} - x^\\dagger\\|^2$")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gap_vs_time(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    targets: Sequence[float] = (),
    *,
    xlabel: str = "wall-clock time [s]",
    ylabel: str = r"relative objective gap $(f(x_k) - f^\star)/f^\star$",
    panel_size: tuple[float, float] = (5.5, 4.0),
) -> Figure:
    r"""Objective gap against wall-clock time, log–log, one panel per problem.

    Only points with a positive time and a positive gap have a place on the logarithmic axes:
    a run's start (time 0) and iterates at or below the reference optimum (a gap
    :math:`\le 0`, to rounding) are left out, not moved to the edge of the axes, where a
    straight segment would draw a fall of the gap that no iterate made.

    Args:
        panels: panel title → (run label → ``(seconds, gaps)``, one entry per recorded iterate).
        targets: gaps to mark with dotted horizontal lines (e.g. a benchmark's tolerances).
        xlabel, ylabel: axis labels (the y label on the first panel).
        panel_size: size of one panel in inches.

    Returns:
        The figure (one row, shared gap axis).
    """
    if not panels:
        raise ValueError("panels must contain at least one panel")
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]),
                             sharey=True, squeeze=False)
    runs_of_all = list(dict.fromkeys(label for runs in panels.values() for label in runs))
    for ax, (title, runs) in zip(axes[0], panels.items()):
        for label, (seconds, gaps) in runs.items():  # a run keeps its colour in every panel
            t, g = np.asarray(seconds, dtype=float), np.asarray(gaps, dtype=float)
            if t.shape != g.shape:
                raise ValueError(f"{label!r}: {t.size} times for {g.size} gaps")
            keep = (t > 0) & (g > 0)
            ax.loglog(t[keep], g[keep], color=f"C{runs_of_all.index(label)}", lw=1.2, label=label)
        for j, tol in enumerate(targets):
            ax.axhline(tol, color="grey", lw=0.8, ls=":",
                       label=("target gaps " + ", ".join(f"{v:g}" for v in targets)) if j == 0 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel(ylabel)
    legend = {}  # every run of every panel, once, in the last panel's legend
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    axes[0, -1].legend(legend.values(), legend.keys(), fontsize=8)
    fig.tight_layout()
    return fig
