r"""Benchmark 4: MNIST CNN-encoder inversion by ``lifted_cd`` (PAPER_MATH §4.3), images per second.

The committed CNN autoencoder (``lbreg.models.pretrained("cnn")``), its three-layer encoder as
a ``LiftedNetwork``, the first images of the MNIST test split, :math:`y^\delta = E(x^\dagger)`,
:math:`\alpha = 9\cdot10^{-3}`, the paper's stopping rule (at most 1,500 sweeps of one PDHG
step (16) and the steps (17); a sample stops when every variable changes less than 1e-5), in
float64 and float32, at batch 1 and 64. Reports images per second, sweeps, the final
lifted energy :math:`J`, and the tensor operations of one sweep that run a kernel
(``common.kernels_per_step``; independent of the machine's speed: on a GPU each is a kernel
launch, and at these sizes the launches, not the arithmetic, set a sweep's time; in float32 on
the CPU the convolutions' adjoints take a route with four operations more per sweep). ``--device cuda`` times
the same on a GPU, and batch 1024 as well (goal there: ≥ 100 images/s; at batch 64 a sweep
costs what it costs at batch 1). Prints a table; writes ``benchmarks/results/mnist_cnn.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from lbreg.data import mnist_tensors  # noqa: E402
from lbreg.models import pretrained  # noqa: E402
from lbreg.network import LiftedNetwork  # noqa: E402
from lbreg.regularizers import TV  # noqa: E402
from lbreg.solvers import lifted_cd  # noqa: E402

ALPHA = 9e-3


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes (default 1 64, and 1024 on a GPU; 1 8 with --quick)")
    args = parser.parse_args()
    device = common.setup(args)
    env = common.environment(args, device)
    sweeps = 30 if args.quick else 1_500
    full = (1, 64) if device.type == "cpu" else (1, 64, 1024)
    batches = args.batches or ((1, 8) if args.quick else full)
    images, _ = mnist_tensors(False, n=max(batches), dtype=torch.float64)
    rows = []
    for dtype in (torch.float64, torch.float32):
        model = pretrained("cnn").to(dtype)
        network = LiftedNetwork.from_module(model.encoder, input_shape=(1, 28, 28)).to(device=device, dtype=dtype)
        for layer in network.layers:
            layer.affine.norm()  # cached spectral norms: a property of the network, not of a solve
        for batch in batches:
            x_true = images[:batch].to(device=device, dtype=dtype)
            with torch.no_grad():
                y = model.to(device).encoder(x_true)
            secs, res = common.timed(lambda: lifted_cd(network, y, ALPHA, max_iter=sweeps, tol=1e-5), device)
            energy = network.energy([res.x, *res.aux], y, ALPHA, TV(), check=False)
            ops = common.kernels_per_step(lambda its: lifted_cd(network, y, ALPHA, max_iter=its, tol=0.0))
            rows.append({"dtype": str(dtype).replace("torch.", ""), "batch": batch, "seconds": secs,
                         "images/s": batch / secs, "sweeps (max)": int(res.iterations.max()),
                         "converged": int(res.converged.sum()), "mean J": float(energy.mean()),
                         "tensor operations per sweep": ops})
    print(f"MNIST CNN encoder, alpha={ALPHA}, <= {sweeps} sweeps, tol 1e-5, device {device}")
    print(common.table(rows, list(rows[0].keys())))
    payload = {"benchmark": "mnist_cnn", "alpha": ALPHA, "max_sweeps": sweeps, "environment": env,
               "rows": rows}
    for path in common.write("mnist_cnn", payload, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
