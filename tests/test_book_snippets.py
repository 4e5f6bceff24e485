"""The code that the README and the book's prose pages show runs, and prints what they show.

The pages are read, not built: each ```python block runs in order in one namespace, as a reader
would paste them. Where a snippet uses the reader's own objects (their encoder, their images
``x_true``, their ``codes``), the test supplies small ones, and says which.
"""

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from lbreg.network import LiftedNetwork
from lbreg.solvers import lifted_cd

ROOT = Path(__file__).resolve().parents[1]
INVERT = ROOT / "book" / "invert_your_network.md"


def blocks(path: Path, language: str) -> list[str]:
    """The fenced ```language blocks of a Markdown file, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.S | re.M)


def run(code: str, namespace: dict) -> str:
    """Execute ``code`` in ``namespace``; what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<snippet>", "exec"), namespace)
    return out.getvalue()


def squash(text: str) -> str:
    """``text`` with every run of whitespace as one space (the pages wrap long messages)."""
    return " ".join(text.split())


@pytest.fixture
def seeded():
    """Torch's global generator seeded, and restored afterwards: the snippets build modules with
    torch's default initialisation, as a reader's code does."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.mark.usefixtures("one_thread", "seeded")
def test_invert_your_network_page_runs_and_prints_what_it_shows():
    code, shown = blocks(INVERT, "python"), blocks(INVERT, "text")
    assert len(code) == 6 and len(shown) == 2, "the page's blocks changed: update this test"
    ns = {}  # the page defines everything it uses, the reader's images x_true included
    assert run(code[0], ns) == shown[0]  # the lifted network, as printed on the page
    run(code[1], ns)
    assert ns["y_delta"].shape == (2, 300) and ns["delta"].shape == (2,)
    run(code[2], ns)
    res = ns["res"]
    assert res.x.shape == (2, 1, 28, 28) and res.x.dtype == ns["y_delta"].dtype
    assert len(res.aux) == 2 and res.aux[0].shape == (2, 8, 14, 14) and res.aux[1].shape == (2, 16, 7, 7)
    assert res.history["energy"].shape[1] == 2
    assert not res.converged.any() and "max_iter" in res.message  # as the page says
    run(code[3], ns)
    chosen = ns["choice"].alpha
    assert chosen.shape == (2,) and bool(((chosen >= 1e-4) & (chosen <= 1e-2)).all())
    cold_starts = []
    ns["lifted_cd"] = lambda net, y, alpha, x0, **kw: cold_starts.append(x0) or lifted_cd(net, y, alpha, x0=x0, **kw)
    run(code[4], ns)  # the rule with a callable solver, which replaces the cold start
    chosen = ns["choice"].alpha
    assert chosen.shape == (2,) and bool(((chosen >= 1e-4) & (chosen <= 1e-2)).all())
    assert torch.equal(cold_starts[0], torch.full((2, 1, 28, 28), 0.5, dtype=ns["y_delta"].dtype))
    ns["lifted_cd"] = lifted_cd
    run(code[5], ns)
    assert ns["res"].x.device == ns["y_delta"].device


def test_invert_your_network_page_shows_the_max_pooling_error():
    shown = blocks(INVERT, "text")[1]
    with pytest.raises(TypeError) as err:
        LiftedNetwork.from_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)),
                                  input_shape=(1, 8, 8))
    assert squash(shown) == squash(f"TypeError: {err.value}")


@pytest.mark.usefixtures("one_thread", "seeded")
@pytest.mark.parametrize("page", ["README.md", "book/installation.md"])
def test_quick_start_snippets_run(page):
    (code,) = blocks(ROOT / page, "python")
    # the reader's encoder and codes: the invert page's encoder (untrained) and one code
    encoder = nn.Sequential(nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(),
                            nn.Conv2d(8, 16, 4, stride=2, padding=1), nn.ReLU(),
                            nn.Flatten(), nn.Linear(16 * 7 * 7, 300))
    encoder = encoder.eval()
    with torch.no_grad():
        codes = encoder(torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    ns = {"encoder": encoder, "codes": codes, "code": codes}
    run(code, ns)
    result = ns.get("res", ns.get("result"))
    assert result.x.shape == (1, 1, 28, 28) and bool(torch.isfinite(result.x).all())
