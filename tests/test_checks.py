"""lbreg._checks: one wording per scalar error, and the functions that rely on it.

A wrong type is a TypeError, a wrong value a ValueError, and both name the argument, whichever
module the argument belongs to.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lbreg._checks import (
    check_batch,
    check_bool,
    check_exact_tensor,
    check_finite,
    check_int,
    check_positive,
    check_positive_values,
    check_real,
    check_seed,
)
from lbreg.data import as_generator, mnist_tensors
from lbreg.instances import random_perceptron
from lbreg.operators import power_norm
from lbreg.solvers import admm


@pytest.mark.parametrize("value", [0.25, 1, np.float32(0.25), np.int64(3), -2.0])
def test_check_real_returns_the_value_as_a_python_float(value):
    out = check_real(value, "v")
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value, error, message", [
    (True, TypeError, "v must be a real number, got bool"),
    ("1", TypeError, "v must be a real number, got str"),
    (1j, TypeError, "v must be a real number, got complex"),
    (torch.tensor(0.5), TypeError, "v must be a real number, got Tensor"),  # tensors only with tensor=True
    (math.nan, ValueError, "v must be finite, got nan"),
    (-math.inf, ValueError, "v must be finite, got -inf"),
])
def test_check_real_refuses_what_is_not_one_finite_real_number(value, error, message):
    with pytest.raises(error, match=message):
        check_real(value, "v")


def test_check_real_takes_a_one_element_real_tensor_only_when_asked():
    assert check_real(torch.tensor([0.5]), "v", tensor=True) == 0.5
    assert check_real(torch.tensor(3), "v", tensor=True) == 3.0
    with pytest.raises(ValueError, match=r"v must be one number, got a tensor of shape \(2,\)"):
        check_real(torch.ones(2), "v", tensor=True)
    for bad in (torch.tensor(True), torch.tensor(1j)):
        with pytest.raises(TypeError, match=f"v must be a real number, got a tensor of dtype {bad.dtype}"):
            check_real(bad, "v", tensor=True)


def test_check_real_bounds_are_strict_or_not_as_asked():
    assert check_real(0.0, "v", minimum=0.0) == 0.0
    with pytest.raises(ValueError, match="v must be finite and > 0, got 0.0"):
        check_real(0.0, "v", minimum=0.0, strict=True)
    with pytest.raises(ValueError, match="v must be finite and >= 1, got 0.5"):
        check_real(0.5, "v", minimum=1.0)
    assert check_positive(0.0, "v", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="v must be finite and > 0, got -1.0"):
        check_positive(-1, "v")


def test_check_int_and_check_seed_take_integers_numpy_included_but_not_bools():
    assert check_int(np.int32(4), "n", minimum=1) == 4
    assert check_seed(np.int64(7)) == 7
    with pytest.raises(TypeError, match="n must be an integer, got float"):
        check_int(2.0, "n")
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int(0, "n", minimum=1)
    with pytest.raises(TypeError, match="seed must be an int, got bool"):
        check_seed(True)


def test_a_numpy_seed_draws_the_same_numbers_as_the_python_int():
    a = torch.randn(5, generator=as_generator(np.int64(3)))
    b = torch.randn(5, generator=as_generator(3))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or an int seed, got float"):
        as_generator(3.0)


def test_the_library_reports_wrong_types_as_type_errors_by_name():
    """Arguments that once reported a wrong type as a ValueError, or not at all."""
    with pytest.raises(TypeError, match="m must be an integer, got bool"):
        random_perceptron((1, 4, 4), True)
    with pytest.raises(ValueError, match="m must be >= 1, got 0"):
        random_perceptron((1, 4, 4), 0)
    with pytest.raises(TypeError, match="generator must be None, an int seed or a torch.Generator, got str"):
        power_norm(lambda x: x, lambda x: x, (3,), generator="0")
    net = random_perceptron((1, 4, 4), 8, generator=0)
    y = net(torch.zeros(1, 1, 4, 4, dtype=torch.float64)).relu()
    with pytest.raises(TypeError, match="relax must be a real number, got str"):
        admm(net, y, 0.1, relax="1.5")
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        mnist_tensors(False, n=-1)


@pytest.mark.parametrize("value, message", [
    ("no", r"flag must be a bool, got 'no' \(str\)"),
    (0, r"flag must be a bool, got 0 \(int\)"),
    (torch.tensor(True), r"flag must be a bool, got tensor\(True\) \(Tensor\)"),
])
def test_check_bool_takes_python_and_numpy_bools_only(value, message):
    assert check_bool(np.True_, "flag") is True and check_bool(False, "flag") is False
    with pytest.raises(TypeError, match=message):
        check_bool(value, "flag")


@pytest.mark.parametrize("value, error, message", [
    ([1.0], TypeError, r"y must be a torch.Tensor of shape \(B, ...\), got list"),
    (torch.zeros(2, 3, dtype=torch.int64), TypeError, "y must have a real floating dtype, got torch.int64"),
    (torch.zeros(3), ValueError, r"y must have at least 2 dimensions \(B, ...\), got shape \(3,\)"),
    (torch.zeros(0, 3), ValueError, r"y holds no samples \(batch size 0\), got shape \(0, 3\)"),
    (torch.zeros(2, 3, device="meta"), ValueError, "y is on the 'meta' device"),
    (torch.tensor([[0.0, math.inf]]), ValueError, "y contains NaN or infinite entries"),
])
def test_check_batch_names_what_is_wrong_with_a_batch(value, error, message):
    with pytest.raises(error, match=message):
        check_batch(value, "y", min_dim=2)


def test_check_exact_tensor_checks_dtype_shape_and_values():
    t = torch.zeros(2, 3)
    assert check_exact_tensor(t, "t", (2, 3)) is t
    with pytest.raises(TypeError, match="t must have dtype torch.float64, got torch.float32"):
        check_exact_tensor(t, "t", (2, 3), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"layer 1: t must have shape \(3, 2\), got \(2, 3\); transpose it"):
        check_exact_tensor(t, "t", (3, 2), context="layer 1: ", hint="; transpose it")
    with pytest.raises(ValueError, match="t contains NaN or infinite entries"):
        check_exact_tensor(torch.full((2, 3), math.nan), "t", (2, 3))


def test_the_baselines_and_the_noise_refuse_a_bad_batch_alike():
    """decoder and add_noise once worded these errors each their own way."""
    from lbreg.baselines import decoder
    from lbreg.data import add_noise

    bad = torch.tensor([[0.0, math.nan]])
    for call in (lambda: decoder(lambda v: v, bad), lambda: add_noise(bad, 0.1, 0)):
        with pytest.raises(ValueError, match="y contains NaN or infinite entries"):
            call()


@pytest.mark.parametrize("delta, error, message", [
    (torch.tensor([math.nan, 0.1]), ValueError, r"delta must be finite and >= 0, got \[nan\]"),
    (-0.1, ValueError, "delta must be finite and >= 0, got -0.1"),
    (torch.tensor([1, 2]), TypeError, "delta must be a floating tensor, got torch.int64"),
    (torch.ones(2, 2), ValueError, r"delta must be a number or hold one value per sample \(2\), got shape \(2, 2\)"),
])
def test_landweber_and_the_deep_image_prior_check_the_noise_level_alike(delta, error, message):
    """Both stop by the discrepancy principle and read delta as alpha is read (check_alpha)."""
    from lbreg.baselines import deep_image_prior
    from lbreg.solvers import landweber

    net = random_perceptron((1, 4, 4), 8, generator=0)
    y = net(torch.rand(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).relu()
    for solve in (landweber, lambda n, v, d: deep_image_prior(n, v, d, width=4, input_dim=2, max_iter=1)):
        with pytest.raises(error, match=message):
            solve(net, y, delta)


def test_check_positive_values_lists_the_entries_at_fault():
    t = torch.tensor([0.5, 0.0, -1.0, math.inf])
    with pytest.raises(ValueError, match=r"a must be finite and > 0, got \[0.0, -1.0, inf\]"):
        check_positive_values(t, "a")
    with pytest.raises(ValueError, match=r"a must be finite and >= 0, got \[-1.0, inf\]"):
        check_positive_values(t, "a", allow_zero=True)
    head = t[:2]
    assert check_positive_values(head, "a", allow_zero=True) is head


def test_a_keepdim_noise_level_is_one_per_sample_and_is_detached():
    """delta of shape (B, 1) (a norm with keepdim) reads as (B,); a delta that requires grad
    is a constant to the solvers (the deep image prior optimises with autograd)."""
    from lbreg.baselines import deep_image_prior
    from lbreg.solvers import landweber

    net = random_perceptron((1, 4, 4), 8, generator=0)
    y = net(torch.rand(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).relu()
    delta = torch.tensor([[0.1], [0.2]], dtype=torch.float64, requires_grad=True)
    a = landweber(net, y, delta, max_iter=3)
    b = deep_image_prior(net, y, delta, width=4, input_dim=2, max_iter=3)
    for result in (a, b):
        assert result.params["delta"].tolist() == [0.1, 0.2]
        assert not result.params["delta"].requires_grad


def test_numbers_given_as_numpy_scalars_work_and_bools_are_refused():
    """prox's step, psnr's peak, project_dual_ball's radius and Theorem 2's c: a NumPy scalar
    is a number; True, once read as 1 (or refused by a bare comparison), is a TypeError."""
    from lbreg.activations import Sigmoid
    from lbreg.metrics import psnr
    from lbreg.operators import project_dual_ball
    from lbreg.theory import example1_alpha

    v = torch.linspace(-2, 2, 5, dtype=torch.float64)
    assert torch.equal(Sigmoid().prox(v, np.float32(0.5)), Sigmoid().prox(v, 0.5))
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(psnr(x, x.flip(0), peak=np.float64(2.0)), psnr(x, x.flip(0), peak=2.0))
    p = torch.randn(1, 1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(project_dual_ball(p, radius=np.float64(0.5)), project_dual_ball(p, radius=0.5))
    for call, name in ((lambda: Sigmoid().prox(v, True), "t"), (lambda: psnr(x, x, peak=True), "peak"),
                       (lambda: project_dual_ball(p, radius=True), "radius"),
                       (lambda: example1_alpha(0.1, 1.0, c=True), "c")):
        with pytest.raises(TypeError, match=f"{name} must be a real number, got bool"):
            call()


def test_check_real_tensor_reads_nested_lists_numpy_and_tensors_but_no_bools():
    from lbreg._checks import check_real_tensor

    assert check_real_tensor([[1.0], [2]], "b").tolist() == [[1.0], [2.0]]
    assert check_real_tensor([torch.tensor(0.5), np.float32(0.25)], "a").tolist() == [0.5, 0.25]
    assert check_real_tensor(np.arange(3), "a").dtype == torch.float64
    for bad in ([True, 0.1], [[0.1], [False]], [np.True_], [torch.tensor(True)], "0.1", [1j]):
        with pytest.raises(TypeError, match="a must be real numbers"):
            check_real_tensor(bad, "a")


def test_check_real_tensor_like_converts_once_and_keeps_a_matching_tensor():
    from lbreg._checks import check_real_tensor

    like = torch.zeros(2, dtype=torch.float32)
    alpha = torch.tensor([0.1, 0.2], dtype=torch.float32)
    assert check_real_tensor(alpha, "alpha", like=like) is alpha  # no float64 round trip
    assert check_real_tensor([1, 2], "alpha", like=like).dtype == torch.float32


def test_shapes_take_numpy_and_0d_integer_tensors_and_layer_lists_any_iterable():
    from lbreg.network import LiftedNetwork, _as_shape

    assert _as_shape((torch.tensor(4), np.int64(3)), "s") == (4, 3)
    assert power_norm(lambda v: 2 * v, lambda v: 2 * v, np.array([1, 16])) == pytest.approx(2.0)  # ||2 I||
    net = random_perceptron((1, 4, 4), 8, generator=0)
    rebuilt = LiftedNetwork(layer for layer in net.layers)
    assert rebuilt.depth == 1 and rebuilt.layers[0] is net.layers[0]


@pytest.mark.parametrize("fn", ["numerical_bregman_conjugate", "bregman_prox"])
def test_more_helpers_lift_a_torch_activation(fn):
    from lbreg.activations import Sigmoid
    from lbreg.solvers import bregman_prox
    from lbreg.theory import numerical_bregman_conjugate

    y = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 0.8 + 0.1
    w = 0.1 * y
    call = {"numerical_bregman_conjugate": lambda act: numerical_bregman_conjugate(act, y, w),
            "bregman_prox": lambda act: bregman_prox(act, y, w, 1.0)}[fn]
    assert torch.equal(call(torch.nn.Sigmoid()), call(Sigmoid()))


def test_check_finite_counts_the_bad_entries():
    """The message names the tensor and how many of its entries are NaN or infinite."""
    t = torch.tensor([[0.0, math.nan, math.inf, 1.0]])
    with pytest.raises(ValueError, match=r"^t contains NaN or infinite entries \(2 of 4\)$"):
        check_finite(t, "t")
