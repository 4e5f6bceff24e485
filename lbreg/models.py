"""The paper's MNIST autoencoders, their training, and checksummed pretrained weights.

* :class:`DenseAutoencoder` — §4.2: :math:`E(x) = \\mathrm{ReLU}(W_1x + b_1)`, linear decoder.
* :class:`ConvAutoencoder` — §4.3: two strided convolutions with ReLU and an affine code
  layer; the decoder mirrors it with transposed convolutions and ReLU.
* :func:`train_autoencoder` — plain minibatch SGD on the mean-squared reconstruction error.
* :func:`pretrained` — the weights committed in ``lbreg/weights/`` (checked by sha256), or,
  if they are missing or do not verify, weights retrained from the recorded seed into a cache.

The encoders are plain ``nn.Sequential`` so that
``LiftedNetwork.from_module(model.encoder, input_shape=(1, 28, 28))`` can lift them.

Training hyper-parameters are not stated in the paper (PAPER_MATH §4.2, §4.3 [U]); ours are
in :data:`CONFIGS`, and the numbers each committed file was trained with (and reached) are in
its JSON record.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lbreg._checks import check_finite, check_float_tensor, check_int, check_positive, check_seed
from lbreg.data import ChecksumError, MNIST_MEAN, _hexdigest, mnist_root, mnist_tensors

__all__ = [
    "CONFIGS",
    "ConvAutoencoder",
    "DenseAutoencoder",
    "DivergenceError",
    "TrainConfig",
    "WEIGHTS_DIR",
    "build_weights",
    "evaluate_mse",
    "load_weights",
    "pretrained",
    "train_autoencoder",
]

WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"
"""Folder of the committed weights ``{name}.pt`` and their records ``{name}.json``."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss."""


@contextlib.contextmanager
def _seeded_rng(seed: int | None) -> Iterator[None]:
    """Run the block (PyTorch's default parameter initialisation) under ``seed``, if given.

    The global RNG state is saved and restored (``torch.random.fork_rng``), so a seeded
    construction leaves the global RNG exactly as it found it. With ``seed=None`` the block
    draws from the global RNG, as any ``nn.Module`` does.
    """
    if seed is None:
        yield
        return
    seed = check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class DenseAutoencoder(nn.Module):
    """Two-layer fully connected autoencoder of PAPER_MATH §4.2.

    .. math:: E(x) = \\mathrm{ReLU}(W_1 x + b_1),\\quad W_1 \\in \\mathbb R^{100\\times784};
              \\qquad D(y) = W_2 y + b_2 .

    Args:
        code_dim: dimension of the code (100 in the paper).
        seed: if given, the parameters are initialised (PyTorch defaults) under this seed
            without touching the global RNG.

    Shapes: ``encoder`` (B, 1, 28, 28) → (B, code_dim); ``decoder`` (B, code_dim) → (B, 1, 28, 28).
    """

    def __init__(self, code_dim: int = 100, seed: int | None = None) -> None:
        super().__init__()
        self.code_dim = check_int(code_dim, "code_dim", minimum=1)
        with _seeded_rng(seed):
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, code_dim), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(code_dim, 784), nn.Unflatten(1, (1, 28, 28)))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction :math:`D(E(x))`, shape (B, 1, 28, 28)."""
        return self.decoder(self.encoder(x))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder of PAPER_MATH §4.3 (six layers).

    Encoder: Conv(1→8, 4×4, stride 2, pad 1) + ReLU → Conv(8→16, 4×4, stride 2, pad 1) + ReLU
    → affine code layer 784 → ``code_dim`` (no activation); shapes 28² → 8×14² → 16×7² → code.
    Decoder: affine ``code_dim`` → 784 → ConvT(16→8) + ReLU → ConvT(8→1) + ReLU.

    Initialisation: PyTorch's defaults, except that the bias of the last transposed convolution
    starts at 0. Its default U(±1/4) draw (PyTorch's bound 1/√fan-in, with fan-in 1·4·4 for a
    transposed convolution's weight of shape (8, 1, 4, 4)) dominates the output of the freshly
    initialised network (whose other contributions have std ≈ 0.02): for 5 of the seeds 0–7 it
    is negative, the final ReLU then outputs 0 for every pixel and every image, no gradient flows,
    and SGD stays at the loss of the zero image (MSE 0.112) forever.

    Args:
        code_dim: dimension of the code (300, PAPER_MATH §4.3 [L]).
        seed: if given, the parameters are initialised (PyTorch defaults) under this seed
            without touching the global RNG.

    Shapes: ``encoder`` (B, 1, 28, 28) → (B, code_dim); ``decoder`` (B, code_dim) → (B, 1, 28, 28).
    """

    def __init__(self, code_dim: int = 300, seed: int | None = None) -> None:
        super().__init__()
        self.code_dim = check_int(code_dim, "code_dim", minimum=1)
        with _seeded_rng(seed):
            self.encoder = nn.Sequential(
                nn.Conv2d(1, 8, 4, 2, 1),
                nn.ReLU(),
                nn.Conv2d(8, 16, 4, 2, 1),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(784, code_dim),
            )
            self.decoder = nn.Sequential(
                nn.Linear(code_dim, 784),
                nn.Unflatten(1, (16, 7, 7)),
                nn.ConvTranspose2d(16, 8, 4, 2, 1),
                nn.ReLU(),
                nn.ConvTranspose2d(8, 1, 4, 2, 1),
                nn.ReLU(),
            )
        with torch.no_grad():
            self.decoder[-2].bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction :math:`D(E(x))`, shape (B, 1, 28, 28)."""
        return self.decoder(self.encoder(x))


def _check_images(model: nn.Module, images: Any) -> None:
    """Raise unless ``images`` is a finite ``(N, 1, 28, 28)`` batch, N >= 1, in the dtype of
    ``model``'s parameters."""
    check_float_tensor(images, "images", 0, "(N, 1, 28, 28)")
    param = next(model.parameters(), None)
    dtype = torch.get_default_dtype() if param is None else param.dtype
    if images.dtype != dtype:
        raise TypeError(f"images must have the model's dtype {dtype}, got {images.dtype}: convert one to the other "
                        f"(images.to({dtype}) or model.to({images.dtype}))")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28) or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, 1, 28, 28) with N >= 1, got shape {tuple(images.shape)}")
    check_finite(images, "images")


def train_autoencoder(
    model: nn.Module,
    images: Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float,
    seed: int,
    progress: bool = True,
    momentum: float = 0.0,
) -> dict[str, list[float]]:
    """Train ``model`` in place to reconstruct ``images`` by minibatch SGD.

    Minimises the mean-reduced squared error
    :math:`\\frac{1}{|B|\\,n}\\sum_{b\\in B}\\|D(E(x_b)) - x_b\\|^2` over minibatches ``B`` drawn
    by a fresh permutation every epoch (last batch may be smaller), with
    ``torch.optim.SGD(lr, momentum)``. The permutation comes from a ``torch.Generator`` seeded
    with ``seed``; the global RNG is not used, so on a given machine and thread count the
    result depends only on the model's initial parameters and ``seed``.

    Args:
        model: module mapping (B, 1, 28, 28) → (B, 1, 28, 28); trained in place.
        images: training images (N, 1, 28, 28), already scaled/centred as wanted.
        epochs: number of passes over ``images``.
        batch_size: minibatch size.
        lr: SGD step size.
        seed: seed of the shuffling generator.
        progress: show a ``tqdm`` bar over epochs.
        momentum: SGD momentum (0 = the paper's vanilla stochastic gradient method).

    Returns:
        History dict: ``"loss"`` — mean training loss per epoch (during the epoch);
        ``"seconds"`` — wall time per epoch.

    Raises:
        DivergenceError: a minibatch loss is NaN or infinite (try a smaller ``lr``).
        TypeError: ``images`` is not a tensor of the model's dtype; ``epochs``, ``batch_size`` or
            ``seed`` is not an int; ``lr`` or ``momentum`` is not a real number.
        ValueError: ``images`` is not a finite (N, 1, 28, 28) batch with N >= 1; ``epochs < 0``,
            ``batch_size < 1``, ``lr <= 0`` or ``momentum < 0``.
    """
    _check_images(model, images)
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    lr = check_positive(lr, "lr")
    momentum = check_positive(momentum, "momentum", allow_zero=True)
    generator = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.MSELoss()
    n = images.shape[0]
    history: dict[str, list[float]] = {"loss": [], "seconds": []}
    model.train()
    bar = tqdm(range(epochs), desc=f"training {type(model).__name__}", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(images.device)
        total = torch.zeros((), dtype=torch.float64, device=images.device)
        for first in range(0, n, batch_size):
            batch = images[order[first : first + batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch), batch)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * batch.shape[0]
        epoch_loss = float(total) / n
        if not math.isfinite(epoch_loss):
            raise DivergenceError(
                f"training diverged in epoch {epoch + 1}: mean loss {epoch_loss} with lr={lr}, "
                f"momentum={momentum}; try a smaller lr (e.g. lr={lr / 2})"
            )
        history["loss"].append(epoch_loss)
        bar.set_postfix(loss=f"{epoch_loss:.5f}")
        history["seconds"].append(time.perf_counter() - start)
    model.eval()
    return history


@torch.no_grad()
def evaluate_mse(model: nn.Module, images: Tensor, batch_size: int = 1000) -> float:
    """Mean squared reconstruction error :math:`\\frac1{Nn}\\sum_b\\|D(E(x_b)) - x_b\\|^2` (float64 sum).

    Args:
        model: the autoencoder (evaluated in eval mode; its mode is restored afterwards).
        images: ``(N, 1, 28, 28)``, N >= 1, finite, on the model's device and in its dtype.
        batch_size: images per forward pass.

    Raises:
        TypeError: ``images`` is not a tensor of the model's dtype, or ``batch_size`` is not an int.
        ValueError: ``images`` is not a finite (N, 1, 28, 28) batch with N >= 1, or ``batch_size < 1``.
    """
    _check_images(model, images)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    was_training = model.training
    model.eval()
    total = 0.0
    for first in range(0, images.shape[0], batch_size):
        batch = images[first : first + batch_size]
        total += float((model(batch) - batch).double().pow(2).sum())
    model.train(was_training)
    return total / images.numel()


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to retrain a model from scratch (recorded in each weights JSON)."""

    name: str
    code_dim: int
    seed: int
    epochs: int
    lr: float
    batch_size: int = 64
    momentum: float = 0.0
    center: bool = False


CONFIGS: dict[str, TrainConfig] = {
    "dense": TrainConfig(name="dense", code_dim=100, seed=0, epochs=30, lr=1.0, center=True),
    "cnn": TrainConfig(name="cnn", code_dim=300, seed=0, epochs=20, lr=1.0, center=False),
}
"""Default training configurations. The paper states none (PAPER_MATH §4.2/§4.3 [U]).

Both use the paper's "vanilla stochastic gradient method": SGD without momentum, batch 64,
lr 1.0 on the mean-reduced MSE, seed 0 (initialisation and shuffling).

* ``dense``: 30 epochs on centred images (x − :data:`~lbreg.data.MNIST_MEAN`). Reached train
  MSE 0.00827, test MSE 0.00807 (still slowly decreasing); 85 s.
* ``cnn``: 20 epochs on [0, 1] images (the final ReLU cannot output a centred background).
  Reached train MSE 0.00254, test MSE 0.00251; 369 s. A 30-epoch sweep
  (GPU, same code) gave test MSE 0.0031 / 0.0021 for lr 0.5 / 1.0, a dead output ReLU
  (constant MSE 0.114, the zero image) for lr 2.0, and 0.0029 / 0.0021 for SGD with momentum 0.9
  at lr 0.05 / 0.1 — momentum buys nothing over vanilla SGD at the same effective step, so it
  is not used. 20 rather than 30 epochs keep training both models under 10 minutes on a
  2-core CPU (30 epochs would give ≈ 0.0022).

Times: one thread (``--threads 1``) on a 2-core CPU shared with other jobs. On that busy
machine two threads were far slower (a CNN step took 727 ms against 25 ms with one thread).
The exact values each committed file was trained with and reached are in its JSON record.
"""

_MODEL_CLASSES: dict[str, type[nn.Module]] = {"dense": DenseAutoencoder, "cnn": ConvAutoencoder}
_REQUIRED_KEYS = ("name", "file", "sha256", "config", "torch_version", "train_mse", "test_mse")


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {sorted(_MODEL_CLASSES)}, got {type(name).__name__}")
    if name not in _MODEL_CLASSES:
        raise ValueError(f"name must be one of {sorted(_MODEL_CLASSES)}, got {name!r}")


def build_weights(
    name: str,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train model ``name`` from its seed and write ``{name}.pt`` and ``{name}.json`` to ``out_dir``.

    If training diverges, the step size is halved and training restarts from the same seed
    (the lr actually used is recorded).

    Args:
        name: ``"dense"`` or ``"cnn"``.
        out_dir: destination folder (created if needed).
        config: training configuration; defaults to ``CONFIGS[name]``.
        progress: show progress bars.

    Returns:
        The JSON record that was written.
    """
    _check_name(name)
    config = config or CONFIGS[name]
    if config.name != name:
        raise ValueError(f"config is for {config.name!r}, not {name!r}")
    train_images, _ = mnist_tensors(True, center=config.center)
    test_images, _ = mnist_tensors(False, center=config.center)
    lr = config.lr
    while True:
        model = _MODEL_CLASSES[name](code_dim=config.code_dim, seed=config.seed)
        start = time.perf_counter()
        try:
            history = train_autoencoder(
                model, train_images, epochs=config.epochs, batch_size=config.batch_size,
                lr=lr, seed=config.seed, progress=progress, momentum=config.momentum,
            )
            break
        except DivergenceError:
            if lr < config.lr / 64:
                raise
            lr /= 2
    seconds = time.perf_counter() - start
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pt_path = out_dir / f"{name}.pt"
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    torch.save(state, pt_path)
    record = {
        "name": name,
        "file": pt_path.name,
        "sha256": _hexdigest(pt_path, "sha256"),
        "config": asdict(config) | {"lr": lr, "requested_lr": config.lr},
        "mnist_mean": MNIST_MEAN if config.center else None,
        "torch_version": torch.__version__,
        "device": str(train_images.device),
        "num_threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 1),
        "loss_history": history["loss"],
        "train_mse": evaluate_mse(model, train_images),
        "test_mse": evaluate_mse(model, test_images),
        "test_mse_first1000": evaluate_mse(model, test_images[:1000]),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_weights(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> tuple[nn.Module, dict[str, Any]]:
    """Load and verify ``{name}.pt`` against ``{name}.json`` in ``weights_dir``.

    Returns:
        ``(model, record)``: the model in eval mode and the JSON record.

    Raises:
        FileNotFoundError: a file is missing.
        ChecksumError: the sha256 of the ``.pt`` file differs from the record.
        ValueError: the record lacks a key, or the state dict does not fit the model, or
            ``name`` is not a known model.
        TypeError: ``name`` is not a string.
    """
    _check_name(name)
    weights_dir = Path(weights_dir)
    json_path = weights_dir / f"{name}.json"
    record = json.loads(json_path.read_text())
    missing = [key for key in _REQUIRED_KEYS if key not in record]
    if missing:
        raise ValueError(f"weights record {json_path} lacks the keys {missing}")
    pt_path = weights_dir / record["file"]
    actual = _hexdigest(pt_path, "sha256")
    if actual != record["sha256"]:
        raise ChecksumError(
            f"weights file {pt_path} has sha256 {actual}, but {json_path} records {record['sha256']}"
        )
    try:
        model = _MODEL_CLASSES[name](code_dim=int(record["config"]["code_dim"]))
        model.load_state_dict(torch.load(pt_path, weights_only=True, map_location="cpu"))
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"weights {pt_path} do not fit the {name!r} model: {err}") from err
    return model.eval(), record


def _record_config(name: str, weights_dir: Path) -> TrainConfig:
    """The training configuration recorded in ``weights_dir/{name}.json``, else the default."""
    try:
        recorded = json.loads((weights_dir / f"{name}.json").read_text())["config"]
        fields = set(TrainConfig.__dataclass_fields__)
        config = dict(recorded)
        config["lr"] = recorded.get("requested_lr", recorded["lr"])
        return TrainConfig(**{key: value for key, value in config.items() if key in fields})
    except (OSError, ValueError, KeyError, TypeError):
        return CONFIGS[name]


def pretrained(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = False,
) -> nn.Module:
    """The trained ``"dense"`` or ``"cnn"`` autoencoder, in eval mode.

    Order: (1) the committed ``lbreg/weights/{name}.pt``, verified against the sha256, keys
    and shapes in ``{name}.json``; (2) a verified copy in ``cache_dir``; (3) otherwise train
    from the recorded seed and configuration into ``cache_dir`` (a few minutes on a CPU) and
    load that. Weights that fail verification are never used; a warning says why.

    Args:
        name: ``"dense"`` or ``"cnn"``.
        cache_dir: folder for retrained weights; defaults to ``mnist_root()/"weights"``.
        retrain: skip (1) and (2) and train into ``cache_dir`` now.
        progress: show progress bars while training.

    Returns:
        The model (float32, CPU); its parameters have ``requires_grad=False`` (a fixed
        forward operator; call ``.double()`` / ``.to(device)`` as needed).
        Use ``images - MNIST_MEAN`` as input to the dense model (it was trained centred).
    """
    _check_name(name)
    cache = Path(cache_dir) if cache_dir is not None else mnist_root() / "weights"
    if not retrain:
        for folder in (WEIGHTS_DIR, cache):
            try:
                model, _ = load_weights(name, folder)
                return model.requires_grad_(False)
            except FileNotFoundError:
                continue
            except (ChecksumError, ValueError) as err:
                warnings.warn(f"ignoring weights in {folder}: {err}", stacklevel=2)
    build_weights(name, cache, config=_record_config(name, WEIGHTS_DIR), progress=progress)
    model, _ = load_weights(name, cache)
    return model.requires_grad_(False)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m lbreg.models --build dense cnn --out lbreg/weights``."""
    parser = argparse.ArgumentParser(prog="python -m lbreg.models", description=main.__doc__)
    parser.add_argument("--build", nargs="+", choices=sorted(_MODEL_CLASSES), required=True)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for this run")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in args.build:
        record = build_weights(name, args.out, progress=not args.quiet)
        summary = {key: record[key] for key in ("train_mse", "test_mse", "train_seconds")}
        print(f"{name}: wrote {args.out / record['file']} {summary}")


if __name__ == "__main__":
    main()
