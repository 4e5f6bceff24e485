r"""The two routes of a convolution's adjoint :math:`W^\top u` in float32 on the CPU.

``lbreg`` computes the adjoint of an ``nn.Conv2d`` (and the forward of an
``nn.ConvTranspose2d``, the adjoint of its dual convolution) either as PyTorch's transposed
convolution, which on the CPU runs float32 through oneDNN, or as products with
:math:`W_g^\top` summed into the image by ``F.fold``; ``_ConvMap._fold_adjoint`` picks the
route from the number of input channels and the stride. This times both routes, alternating,
for the paper's CNN encoder layers and a set of common convolutions at batch 1, 8 and 64, and
reports for each whether the rule picked the faster one. CPU only (other devices and float64
always take the transposed convolution). Prints a table; writes
``benchmarks/results/conv_routes.json``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from lbreg.network import AffineMap  # noqa: E402

# (in_channels, out_channels, kernel, stride, padding, image side)
CONVS = [
    (1, 8, 4, 2, 1, 28),  # the paper's CNN encoder, layer 1
    (8, 16, 4, 2, 1, 14),  # layer 2
    (1, 16, 3, 1, 1, 28),
    (1, 32, 5, 1, 2, 28),
    (3, 16, 4, 2, 1, 28),
    (3, 32, 3, 1, 1, 32),
    (3, 64, 7, 2, 3, 32),
    (4, 8, 4, 2, 1, 32),
    (4, 16, 3, 1, 1, 16),
    (8, 8, 3, 1, 1, 16),
    (8, 8, 5, 1, 2, 28),
    (16, 16, 3, 1, 1, 16),
    (16, 32, 3, 2, 1, 16),
    (16, 32, 4, 2, 1, 8),
    (32, 64, 4, 2, 1, 16),
    (64, 64, 3, 1, 1, 8),
]


def per_call(fn, budget: float) -> float:
    """Seconds per call of ``fn``: the median of five rounds of about ``budget`` seconds each."""
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < budget / 5:
        fn()
        calls += 1
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    device = common.setup(args)
    if device.type != "cpu":
        raise SystemExit("bench_conv_routes measures the CPU's float32 routes: run it with --device cpu")
    env = common.environment(args, device)
    convs = CONVS[:4] if args.quick else CONVS
    batches = (1, 8) if args.quick else (1, 8, 64)
    budget = 0.05 if args.quick else 0.5
    gen = torch.Generator().manual_seed(0)
    rows = []
    for cin, cout, k, s, p, side in convs:
        conv = nn.Conv2d(cin, cout, k, s, p)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        A = AffineMap.from_module(conv, (cin, side, side))
        size = A.in_shape[1:]
        for batch in batches:
            u = torch.randn(batch, *A.out_shape, generator=gen)
            fold = per_call(lambda: A._adjoint_fold(u, size), budget)
            onednn = per_call(lambda: A._adjoint_transposed(u, size), budget)
            picked = "fold" if A._fold_adjoint else "transposed"
            faster = "fold" if fold < onednn else "transposed"
            rows.append({"conv": f"{cin}->{cout} {k}x{k} s{s} on {side}x{side}", "batch": batch,
                         "fold (ms)": 1e3 * fold, "transposed (ms)": 1e3 * onednn,
                         "transposed/fold": onednn / fold, "picked": picked,
                         "picked faster": picked == faster,
                         "picked/best": (fold if picked == "fold" else onednn) / min(fold, onednn)})
    print(f"adjoint of a convolution, float32, {torch.get_num_threads()} thread(s)")
    print(common.table(rows, list(rows[0].keys())))
    hits = sum(r["picked faster"] for r in rows)
    worst = max(rows, key=lambda r: r["picked/best"])
    print(f"picked the faster route in {hits} of {len(rows)} cases; worst pick "
          f"{worst['picked/best']:.2f}x the faster ({worst['conv']}, batch {worst['batch']})")
    payload = {"benchmark": "conv_routes", "environment": env, "rows": rows}
    for path in common.write("conv_routes", payload, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
