"""The figures show the data they are given: each value at its place, on the stated scale."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from conftest import image_data, perceptron
from lbreg.activations import HardTanh, ReLU, Sigmoid, Tanh
from lbreg.operators import tv
from lbreg.plotting import (covering_range, plot_bound_ratios, plot_bregman_curves, plot_conjugates, plot_convergence,
                            plot_convergence_rate, plot_data, plot_gap_vs_time, plot_image_rows, plot_images, plot_noise_psnr,
                            plot_over_noise, plot_psi_brackets, plot_reconstructions, plot_residuals)
from lbreg.solvers import admm, pdhg

DT = torch.float64


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _grid_axes(fig, n):
    """The first n axes of a figure are plt.subplots' grid (colourbars are appended after)."""
    return fig.axes[:n]


@pytest.fixture(scope="module")
def runs():
    net = perceptron(24, (6, 6), ReLU(), seed=3)
    y = image_data(net, 2, seed=4).double()
    net = net.to(dtype=torch.float64)
    return (pdhg(net, y, alpha=0.05, max_iter=60, tol=0.0, check_every=7),
            admm(net, y, alpha=0.05, max_iter=60, tol=0.0, check_every=10))


def _curve(fig, panel: int, label: str):
    line = next(l for l in fig.axes[panel].get_lines() if l.get_label() == label)
    return line.get_xdata(), line.get_ydata()


def test_admm_values_sit_at_its_stopping_tests_and_pdhg_rows_at_their_iterates(runs):
    pd, ad = runs
    assert ad.history["iteration"].tolist() == [10, 20, 30, 40, 50, 60]
    fig = plot_convergence({"pdhg": pd, "admm": ad}, keys=("objective",), sample=1)
    x, y = _curve(fig, 0, "admm")
    np.testing.assert_array_equal(x, [10, 20, 30, 40, 50, 60])
    np.testing.assert_array_equal(y, ad.history["objective"][:, 1].numpy())
    x, y = _curve(fig, 0, "pdhg")  # row k is iterate k; iterate 0 has no place on a log axis
    np.testing.assert_array_equal(x, np.arange(1, 60))
    np.testing.assert_array_equal(y, pd.history["objective"][1:, 1].numpy())


def test_pdhg_gap_is_drawn_at_its_gap_iterations(runs):
    pd, _ = runs
    assert pd.history["gap_iteration"].tolist() == [0, 7, 14, 21, 28, 35, 42, 49, 56, 60]
    x, y = _curve(plot_convergence({"pdhg": pd}, keys=("gap",)), 0, "pdhg")
    np.testing.assert_array_equal(x, [7, 14, 21, 28, 35, 42, 49, 56, 60])
    np.testing.assert_array_equal(y, pd.history["gap"][1:, 0].numpy())


def test_an_iteration_index_of_the_wrong_length_is_refused(runs):
    _, ad = runs
    history = dict(ad.history, iteration=ad.history["iteration"][:-1])
    with pytest.raises(ValueError, match="6 rows but its iteration index has shape"):
        plot_convergence({"admm": history}, keys=("objective",))


def test_plot_convergence_objective_gap_subtracts_each_runs_reference_and_drops_non_positive():
    f = torch.tensor([[5.0], [3.0], [2.5], [2.0], [1.9]])
    hist_a, hist_b = {"objective": f}, {"objective": 2 * f}
    fig = plot_convergence({"a": hist_a, "b": hist_b}, keys=("objective",), objective_ref={"a": 2.0, "b": 1.0})
    ax = fig.axes[0]
    (la, lb) = ax.get_lines()
    np.testing.assert_array_equal(la.get_xdata(), [1, 2])           # gaps 1.0, 0.5; 0 and -0.1 dropped
    np.testing.assert_allclose(la.get_ydata(), [1.0, 0.5])
    np.testing.assert_allclose(lb.get_ydata(), (2 * f[1:, 0] - 1.0).numpy())
    assert "gap" in ax.get_ylabel()
    fig = plot_convergence({"a": hist_a}, keys=("objective",), objective_ref=1.0)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), (f[1:, 0] - 1.0).numpy())


# ---------------------------------------------------------------- 1. plot_reconstructions

def test_plot_reconstructions_shows_images_errors_on_one_symmetric_scale_and_true_norms():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(1, 1, 7, 5, generator=g, dtype=DT)
    recs = {"a": truth + 0.1 * torch.randn(1, 1, 7, 5, generator=g, dtype=DT),
            "b": truth - 0.3 * torch.rand(1, 1, 7, 5, generator=g, dtype=DT)}
    fig = plot_reconstructions(truth, recs)
    ax = _grid_axes(fig, 6)  # 2 rows x 3 cols, row-major
    top, bottom = ax[:3], ax[3:]
    imgs = [truth, recs["a"], recs["b"]]
    for col in range(3):
        np.testing.assert_array_equal(top[col].images[0].get_array(), imgs[col][0, 0].numpy())
        t = top[col].get_title()
        assert f"{float(imgs[col].norm()):.2f}" in t
        assert f"TV$_{{iso}}$={float(tv(imgs[col])):.2f}" in t
        assert f"TV$_{{aniso}}$={float(tv(imgs[col], isotropic=False)):.2f}" in t
    assert not bottom[0].axison and not bottom[0].images  # no error image for the truth
    emax = max(float((r - truth).abs().max()) for r in recs.values())
    for col, key in ((1, "a"), (2, "b")):
        err = (recs[key] - truth)[0, 0].numpy()
        np.testing.assert_allclose(bottom[col].images[0].get_array(), err, rtol=0, atol=1e-15)
        assert bottom[col].images[0].get_clim() == pytest.approx((-emax, emax))
        assert f"{np.linalg.norm(err):.2f}" in bottom[col].get_title()


def test_plot_image_rows_clips_to_the_psnr_range_and_titles_each_panel_with_its_score():
    g = torch.Generator().manual_seed(1)
    truth = torch.rand(2, 1, 4, 4, generator=g, dtype=DT)
    noisy = truth + 0.5 * torch.randn(2, 1, 4, 4, generator=g, dtype=DT)  # leaves [0, 1]
    fig = plot_image_rows({"truth": (truth, None), "noisy": (noisy, [12.34, 8.0])}, ["#7", "#9"])
    axes = _grid_axes(fig, 4)
    assert [ax.get_title() for ax in axes] == ["truth #7", "truth #9", "noisy: 12.3 dB", "noisy: 8.0 dB"]
    np.testing.assert_array_equal(axes[3].images[0].get_array(), noisy[1, 0].clamp(0, 1).numpy())
    assert all(ax.images[0].get_clim() == (0.0, 1.0) for ax in axes)
    assert len(fig.axes) == 5 and fig.axes[4].get_ylabel() == "intensity"  # one colourbar for all
    assert [ax.get_ylabel() != "" for ax in axes] == [True, False, True, False]  # outer axes named
    assert [ax.get_xlabel() != "" for ax in axes] == [False, False, True, True]
    with pytest.raises(ValueError, match="one_colorbar needs one colour range"):
        plot_images([truth[0]], one_colorbar=True)
    with pytest.raises(ValueError, match="row 'noisy' has 2 images and 1 scores for 2 columns"):
        plot_image_rows({"noisy": (noisy, [1.0])}, ["#7", "#9"])


@pytest.mark.parametrize("n, ncols", [(3, 1), (4, 2), (7, 7)])
def test_one_colorbar_lies_inside_the_figure_and_spans_the_grid(n, ncols):
    images = [torch.rand(5, 5, generator=torch.Generator().manual_seed(k)) for k in range(n)]
    fig = plot_images(images, ncols=ncols, vmin=0.0, vmax=1.0, one_colorbar=True)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    cbar, grid = fig.axes[-1], fig.axes[:n]
    inside = fig.bbox
    box = cbar.get_tightbbox(renderer)  # with its ticks and label
    assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
    top = max(ax.get_position().y1 for ax in grid)
    bottom = min(ax.get_position().y0 for ax in grid)
    assert cbar.get_position().height >= 0.6 * (top - bottom)


def test_plot_reconstructions_truth_range_keeps_lost_contrast_grey_and_widens_only_where_needed():
    truth = torch.zeros(1, 1, 6, 6, dtype=DT)
    truth[..., 2:4, 2:4] = 1.0
    recs = {"dim": 0.8 * truth, "negative": truth - 0.5}
    top = _grid_axes(plot_reconstructions(truth, recs, truth_range=True), 6)[:3]
    assert [ax.images[0].get_clim() for ax in top] == [(0.0, 1.0), (0.0, 1.0), (-0.5, 1.0)]
    top = _grid_axes(plot_reconstructions(truth, recs), 6)[:3]
    assert top[1].images[0].get_clim() == pytest.approx((0.0, 0.8))  # own range: the dim disc looks white


def test_covering_range_holds_every_value_of_tensors_and_arrays_alike():
    truth = torch.tensor([[0.0, 1.0]], dtype=DT)
    assert covering_range(truth) == (0.0, 1.0)
    assert covering_range(truth, np.array([[-0.25, 0.5]])) == (-0.25, 1.0)  # widened below only
    assert covering_range(truth, 0.5 * truth) == (0.0, 1.0)  # a dimmer image keeps the truth's range
    with pytest.raises(ValueError, match="at least one image"):
        covering_range()


# ---------------------------------------------------------------- 2. plot_over_noise / plot_noise_psnr

def test_plot_over_noise_draws_mean_with_std_band_on_an_inverted_axis():
    stds = [0.3, 0.2, 0.1, 0.0]
    v = torch.tensor([[10., 12., 14.], [15., 15., 18.], [20., 21., 25.], [30., 30., 30.]])
    fig = plot_over_noise(stds, {"m": v}, "PSNR [dB]")
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), stds)
    np.testing.assert_allclose(line.get_ydata(), v.double().mean(1).numpy())
    # band: mean +- population std
    verts = ax.collections[0].get_paths()[0].vertices
    mean, sd = v.double().mean(1).numpy(), v.double().std(1, unbiased=False).numpy()
    for x, m, s in zip(stds, mean, sd):
        ys = verts[np.isclose(verts[:, 0], x), 1]
        assert ys.min() == pytest.approx(m - s) and ys.max() == pytest.approx(m + s)
    lo, hi = ax.get_xlim()
    assert lo > hi  # inverted: noise decreases to the right


def test_plot_noise_psnr_left_panel_is_the_chosen_image_and_right_panel_the_mean():
    stds = [0.3, 0.1, 0.0]
    dsq = [9.0, 1.0, 0.0]
    p = torch.tensor([[1., 2., 3.], [4., 5., 9.], [7., 8., 20.]])
    fig = plot_noise_psnr(stds, dsq, {"inv": p}, first=2)
    left, right = fig.axes[0], fig.axes[1]
    np.testing.assert_array_equal(left.get_lines()[0].get_xdata(), dsq)
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), p[:, 2].numpy())
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), p.double().mean(1).numpy())
    assert "3 images" in right.get_title()
    # top axis: std labels at the delta^2 positions
    top = [c for c in left.child_axes] or [a for a in fig.axes if a not in (left, right)]
    labels = {float(t.get_position()[0]): t.get_text() for t in top[0].get_xticklabels() if t.get_text()}
    assert labels[9.0] == "0.3" and labels[1.0] == "0.1"


# ---------------------------------------------------------------- 3. plot_data / plot_residuals

def test_plot_data_sorted_keeps_each_unit_paired_with_its_noisy_value():
    y = torch.tensor([[0.5, 0.0, 2.0, 0.0, 1.0]])
    yd = torch.tensor([[0.6, 0.1, 1.9, 0.0, 1.2]])
    fig = plot_data(y, yd, order="sorted")
    noisy, exact = fig.axes[0].get_lines()
    idx = np.argsort(y[0].numpy(), kind="stable")
    np.testing.assert_array_equal(exact.get_ydata(), y[0].numpy()[idx])
    np.testing.assert_array_equal(noisy.get_ydata(), yd[0].numpy()[idx])
    fig = plot_data(y, yd, order="index")
    noisy, exact = fig.axes[0].get_lines()
    np.testing.assert_array_equal(noisy.get_ydata(), yd[0].numpy())


def test_plot_residuals_colours_inactive_units_at_their_own_indices():
    r = torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5])
    inactive = torch.tensor([False, True, False, False, True])
    fig = plot_residuals({"m": r}, inactive=inactive)
    active_line, inactive_line = fig.axes[0].get_lines()[:2]
    np.testing.assert_array_equal(active_line.get_xdata(), [0, 2, 3])
    np.testing.assert_allclose(active_line.get_ydata(), r[[0, 2, 3]].numpy())
    np.testing.assert_array_equal(inactive_line.get_xdata(), [1, 4])
    np.testing.assert_allclose(inactive_line.get_ydata(), r[[1, 4]].numpy())
    assert f"{float(r.norm()):.3g}" in fig.axes[0].get_title()


# ---------------------------------------------------------------- 4. plot_images

def test_plot_images_shares_the_joint_range_and_keeps_row_major_orientation():
    a = torch.arange(6, dtype=DT).reshape(1, 1, 2, 3)
    b = 10 + torch.arange(6, dtype=DT).reshape(2, 3)
    fig = plot_images({"a": a, "b": b, "c": -b}, share_scale=True, ncols=2)
    ax = _grid_axes(fig, 4)
    np.testing.assert_array_equal(ax[0].images[0].get_array(), a[0, 0].numpy())
    assert ax[0].images[0].get_array().shape == (2, 3)  # rows down, columns right
    for k in range(3):
        assert ax[k].images[0].get_clim() == (-15.0, 15.0)
    assert [ax[k].get_title() for k in range(3)] == ["a", "b", "c"]
    assert not ax[3].axison
    with pytest.raises(ValueError, match="shape"):
        plot_images([torch.zeros(3, 4, 4)])


# ---------------------------------------------------------------- 5. theory curves show the theory

def test_plot_bregman_curves_marks_the_zero_at_sigma_z_above_the_quadratic_bound():
    acts = {"ReLU": ReLU(), "Sigmoid": Sigmoid()}
    fig = plot_bregman_curves(acts, {"ReLU": [-1.0, 0.5], "Sigmoid": [0.0, 1.0]},
                              {"ReLU": [0.5, 1.0], "Sigmoid": [0.3, 0.7]},
                              {"ReLU": (0.0, 3.0), "Sigmoid": (1e-6, 1 - 1e-6)})
    for row, (name, act) in enumerate(acts.items()):
        ax_y, ax_z = fig.axes[2 * row], fig.axes[2 * row + 1]
        lines = ax_y.get_lines()
        for k, z0 in enumerate({"ReLU": [-1.0, 0.5], "Sigmoid": [0.0, 1.0]}[name]):
            solid, dashed, dot = lines[3 * k: 3 * k + 3]
            ygrid = torch.as_tensor(solid.get_xdata())
            expect = act.bregman_elementwise(ygrid, torch.full_like(ygrid, z0))
            np.testing.assert_allclose(solid.get_ydata(), expect.numpy(), rtol=1e-12, atol=1e-12)
            assert np.all(dashed.get_ydata() <= solid.get_ydata() + 1e-12)  # property 2
            s = float(act(torch.tensor([z0], dtype=DT)))
            assert dot.get_xdata()[0] == pytest.approx(s) and dot.get_ydata()[0] == 0.0
        zl = ax_z.get_lines()
        for k, y0 in enumerate({"ReLU": [0.5, 1.0], "Sigmoid": [0.3, 0.7]}[name]):
            solid, dashed, dot = zl[3 * k: 3 * k + 3]
            # grid minimiser of z -> B(y0, z) is sigma^{-1}(y0) up to the grid step
            zmin = dot.get_xdata()[0]
            assert float(act(torch.tensor([zmin], dtype=DT))) == pytest.approx(y0, abs=0.02)


def test_plot_bregman_curves_marks_a_zero_set_that_is_an_interval_by_a_bar_over_it():
    fig = plot_bregman_curves({"ReLU": ReLU()}, {"ReLU": [0.5]}, {"ReLU": [0.0, 1.0]}, {"ReLU": (0.0, 2.0)},
                              z_limits=(-3.0, 3.0), n_points=601)
    solid0, dashed0, bar, solid1, dashed1, dot = fig.axes[1].get_lines()
    z = bar.get_xdata()  # B(0, z) = max(z, 0)^2 / 2 vanishes for every z <= 0
    assert z.min() == pytest.approx(-3.0) and z.max() == pytest.approx(0.0) and np.all(bar.get_ydata() == 0)
    assert dot.get_xdata()[0] == pytest.approx(1.0)  # y = 1: the single zero z = 1


def test_plot_conjugates_autograd_markers_lie_on_sigma():
    acts = {"Tanh": Tanh(), "HardTanh": HardTanh()}
    fig = plot_conjugates(acts)
    for ax, act in zip(fig.axes, acts.values()):
        conj, sigma, marks = ax.get_lines()
        np.testing.assert_allclose(sigma.get_ydata(), act(torch.as_tensor(sigma.get_xdata())).numpy())
        on_sigma = act(torch.as_tensor(marks.get_xdata())).numpy()
        np.testing.assert_allclose(marks.get_ydata(), on_sigma, atol=1e-8)


def test_plot_convergence_rate_pairs_series_with_bounds_and_reports_slopes():
    d = np.array([1e-3, 1e-2, 1e-1])
    fig = plot_convergence_rate({"A": (d, d), "B": (d, d**2)}, {"bound A": (d, 3 * d), "bound B": (d, 3 * d**2)},
                                slopes={"B": 2.0})
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == ["A", "B (slope 2.00)", "bound A", "bound B"]
    np.testing.assert_array_equal(lines[1].get_ydata(), d**2)
    assert lines[2].get_color() == lines[0].get_color() and lines[3].get_color() == lines[1].get_color()
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"


def test_plot_convergence_rate_draws_a_single_bound_for_all_series_in_black():
    d = np.array([1e-3, 1e-2, 1e-1])
    fig = plot_convergence_rate({"A": (d, d), "B": (d, d**2)}, {"bound": (d, 3 * d)})
    a, b, bound = fig.axes[0].get_lines()
    assert bound.get_color() == "k" and bound.get_color() not in (a.get_color(), b.get_color())


def test_plot_gap_vs_time_leaves_out_the_start_and_non_positive_gaps_and_labels_the_targets():
    t, g = [0.0, 0.1, 0.2, 0.4, 0.8], [1.0, 1e-2, 1e-4, 0.0, -1e-15]
    fig = plot_gap_vs_time({"law a": {"run": (t, g)}, "law b": {"run": (t[:3], g[:3])}}, targets=(1e-3, 1e-4))
    left, right = fig.axes
    line = left.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [0.1, 0.2])  # no point moved to the axes' edge
    np.testing.assert_array_equal(line.get_ydata(), [1e-2, 1e-4])
    assert [tuple(l.get_ydata()) for l in left.get_lines()[1:]] == [(1e-3, 1e-3), (1e-4, 1e-4)]
    assert right.get_legend() is not None
    labels = [text.get_text() for text in right.get_legend().get_texts()]
    assert labels == ["run", "target gaps 0.001, 0.0001"]
    assert left.get_xscale() == left.get_yscale() == "log" and left.get_title() == "law a"
    with pytest.raises(ValueError, match="'run': 2 times for 3 gaps"):
        plot_gap_vs_time({"p": {"run": ([0.1, 0.2], [1.0, 0.5, 0.1])}})


def test_plot_gap_vs_time_keeps_a_runs_colour_across_panels_and_lists_every_run():
    fig = plot_gap_vs_time({"a": {"x": ([1, 2], [1, 0.1]), "y": ([1, 2], [1, 0.2])},
                            "b": {"y": ([1, 2], [1, 0.3])}})
    left, right = fig.axes
    assert right.get_lines()[0].get_color() == left.get_lines()[1].get_color()  # "y" in both
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["x", "y"]


def test_plot_convergence_labels_its_axis_and_minor_ticks_of_a_short_log_range():
    # drawn from iteration 1: 8 down to 0.5, 1.2 decades, where matplotlib's default labels
    # no minor tick and only one power of ten (1) falls inside
    hist = {"energy": torch.tensor([[100.0], [8.0], [4.0], [2.0], [1.0], [0.7], [0.5]])}
    fig = plot_convergence({"cd": hist}, keys=("energy",), xlabel="sweep $k$")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "sweep $k$"
    fig.canvas.draw()
    low, high = ax.get_ylim()
    minor = [t for t in ax.yaxis.get_minorticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    assert len(minor) >= 3


def test_plot_psi_brackets_leaves_out_zero_and_infinite_values_only():
    a = np.array([0.1, 0.2, 0.4, 0.8])
    v = np.array([0.0, 1e-3, 2e-3, np.inf])
    fig = plot_psi_brackets(a, {"br": v}, thresholds={"amax": 0.5})
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [0.2, 0.4])
    np.testing.assert_array_equal(line.get_ydata(), [1e-3, 2e-3])


def test_plot_bound_ratios_counts_every_ratio_including_violations():
    """A ratio above 1 would be a violation of Theorem 2; the figure must not hide it."""
    ratios = torch.tensor([0.2, 0.5, 0.9, 1.3])
    fig = plot_bound_ratios({"c = 1": ratios})
    verts = fig.axes[0].patches[0].get_path().vertices  # step outline: (x_i, h_i), (x_i+1, h_i)
    drawn = int(round(verts[1:-1:2, 1].sum()))
    assert drawn == ratios.numel(), f"figure shows {drawn} of {ratios.numel()} ratios (x-range {fig.axes[0].get_xlim()})"
    fig = plot_bound_ratios({"c = 1": torch.tensor([0.2, float("nan"), float("inf"), 0.4])})
    verts = fig.axes[0].patches[0].get_path().vertices
    assert int(round(verts[1:-1:2, 1].sum())) == 2
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "c = 1 (2 NaN or infinite, not drawn)"


def test_the_noise_std_labels_of_the_top_axis_do_not_overlap():
    stds = [0.33, 0.27, 0.21, 0.15, 0.09, 0.06, 0.03, 0.0]
    delta_sq = [16.29 * (s / 0.33) ** 2 for s in stds]  # crowded at the low end, as in chapter 5
    psnr = torch.arange(16.0).reshape(8, 2)
    fig = plot_noise_psnr(stds, delta_sq, {"m": psnr})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    tops = [child for ax in fig.axes for child in ax.child_axes]  # the secondary (top) axes
    assert len(tops) == 2
    for ax in tops:
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()),
                       key=lambda b: b.x0)
        assert len(boxes) >= 3
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))


def test_plot_images_refuses_non_finite_images_and_an_empty_colour_range():
    """A NaN image (a diverged solve) would show as blank pixels, and vmin >= vmax as one flat
    colour: both are errors."""
    with pytest.raises(ValueError, match="NaN or Inf values"):
        plot_images({"diverged": torch.full((4, 4), float("nan"))})
    with pytest.raises(ValueError, match="vmin < vmax, got vmin=1, vmax=0"):
        plot_images({"a": torch.rand(4, 4, generator=torch.Generator().manual_seed(0))}, vmin=1, vmax=0)


def test_plots_refuse_nothing_to_draw_a_missing_label_and_a_sample_outside_the_batch(runs):
    """Each once failed inside with StopIteration, KeyError or IndexError, or drew a blank figure."""
    stds, levels = [0.3, 0.0], torch.ones(2, 3)
    for call in (lambda: plot_noise_psnr(stds, [1.0, 0.0], {}), lambda: plot_over_noise(stds, {}, "PSNR [dB]"),
                 lambda: plot_bound_ratios({}), lambda: plot_convergence_rate({}, {}), lambda: plot_convergence({})):
        with pytest.raises(ValueError, match="is empty: nothing to plot"):
            call()
    with pytest.raises(ValueError, match=r"fixed_y has no entry for \['ReLU'\]"):
        plot_bregman_curves({"ReLU": ReLU()}, {"ReLU": [1.0]}, {}, {"ReLU": (0.0, 2.0)})
    alphas = torch.logspace(-3, 0, 6)
    with pytest.raises(ValueError, match=r"brackets\['r'\] must have one value per alpha \(6\), got 5"):
        plot_psi_brackets(alphas, {"r": alphas[:5]})
    with pytest.raises(TypeError, match="reference must be a mapping label -> data"):
        plot_psi_brackets(alphas, {"r": alphas}, reference=alphas)
    with pytest.raises(ValueError, match=r"sample must lie in \[0, 2\)"):
        plot_convergence({"pdhg": runs[0]}, sample=5)
    with pytest.raises(ValueError, match="sample must be >= 0"):
        plot_convergence({"pdhg": runs[0]}, sample=-1)
    assert not plt.get_fignums()  # no figure left open by the refusals
    assert plot_noise_psnr(stds, [1.0, 0.0], {"x": levels}) is not None  # the same calls with data draw


def test_plot_convergence_warns_about_a_run_with_none_of_its_keys(runs):
    with pytest.warns(UserWarning, match=r"\['admm'\] record none of the history keys \['change_x'\]"):
        plot_convergence({"pdhg": runs[0], "admm": runs[1]}, keys=("change_x",))


def test_plots_refuse_what_they_cannot_draw():
    """Named errors, not an AttributeError, an empty figure or an IndexError: a list where a
    label -> values mapping is needed, no brackets at all, a sample outside the batch."""
    with pytest.raises(TypeError, match="mapping"):
        plot_over_noise([0.1, 0.0], [[1.0, 2.0]], "PSNR [dB]")
    with pytest.raises(ValueError, match="brackets is empty"):
        plot_psi_brackets([1e-3, 1e-2], {})
    net = perceptron(12, (1, 4, 4), ReLU(), seed=3)
    res = pdhg(net, image_data(net, 2, seed=4), 0.05, max_iter=5)
    with pytest.raises(ValueError, match=r"sample must lie in \[0, 2\)"):
        plot_convergence({"pdhg": res}, sample=2)
    plt.close("all")
