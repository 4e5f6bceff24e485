"""`plot_convergence` draws each recorded value at the iteration of its iterate."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from lbreg.activations import ReLU
from lbreg.plotting import plot_convergence
from lbreg.solvers import admm, pdhg

from conftest import image_data, perceptron


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
