"""Shared fixtures: run a notebook under papermill with small parameters."""

from pathlib import Path

import math

import nbformat
import pytest
import torch

from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.regularizers import TV

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, parameters: dict, out_dir: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with ``parameters`` injected into its ``parameters`` cell.

    Runs in the notebooks folder (as the book does) and returns the executed notebook, whose
    outputs the calling test inspects. A failing cell raises ``PapermillExecutionError``.
    """
    import papermill as pm

    out = out_dir / name
    pm.execute_notebook(
        str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3",
        cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
    )
    return nbformat.read(out, as_version=4)


def cell_text(nb: nbformat.NotebookNode, tag: str) -> str:
    """All text output of the code cells tagged ``tag``."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code" and tag in cell.get("metadata", {}).get("tags", []):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    texts.append(o.get("text", ""))
                elif "data" in o and "text/plain" in o["data"]:
                    texts.append(o["data"]["text/plain"])
    return "".join(texts)


@pytest.fixture
def notebook_runner(tmp_path):
    return lambda name, parameters: run_notebook(name, parameters, tmp_path)


def perceptron(m: int, shape: tuple[int, ...], activation, seed: int, scale: float = 1.0) -> LiftedNetwork:
    """A random single-layer network x -> σ(Wx + b) on inputs of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    W = scale * torch.randn(m, n, generator=g) / math.sqrt(n)
    b = 0.1 * torch.randn(m, generator=g)
    return LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(W, b, in_shape=shape), activation)])


def image_data(net: LiftedNetwork, batch: int, seed: int, noise: float = 0.01) -> torch.Tensor:
    """Noisy data of random binary images, clipped into dom Ψ."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *net.input_shape, generator=g).round()
    y = net.forward(x)
    return net.layers[-1].activation.project_domain(y + noise * torch.randn(y.shape, generator=g))


def objective(net: LiftedNetwork, y, x, alpha, reg=TV()) -> torch.Tensor:
    """The single-layer objective B_Ψ(y, Wx+b) + α R(x), per sample."""
    layer = net.layers[0]
    return layer.activation.bregman(y, layer.affine.forward(x)) + alpha * reg.value(x)
