r"""Benchmark 6: `admm` with a float32 x-update inside the float64 iteration (``x_update_dtype``).

The batched circle problems of ``bench_batch.py`` (PAPER_MATH §4.1, :math:`N(0,1)` weights,
one :math:`W`, noise seeds 1..64, :math:`\alpha` = 0.015), solved to the residual tolerance
``--tol`` (default 1e-5, as there) with the x-update in float64 and in float32: at batch 1 (the
first 8 problems, one call each) and 64, seconds, problems per second, the largest iteration
count and the largest relative objective gap against a tight float64 reference, and the speed-up
of the float32 x-update at each batch size.

Then why only the x-update: the first 8 problems with the *whole* iteration in float32 (data and
weights; the gap evaluated in float64), against the float64 iteration with either x-update, at a
fixed number of iterations (no stopping test), the largest gap after each checkpoint. Prints
two tables; writes ``benchmarks/results/mixed.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_batch import ALPHA, SINGLES, batch_data  # noqa: E402

from lbreg.instances import circle_problem  # noqa: E402
from lbreg.operators import tv  # noqa: E402
from lbreg.solvers import admm  # noqa: E402

MODES = {"float64": None, "float32": torch.float32}  # x-update dtype in the float64 iteration


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--tol", type=float, default=1e-5, help="admm residual tolerance (default 1e-5)")
    args = parser.parse_args()
    device = common.setup(args)
    env = common.environment(args, device)
    size, m = (32, 256) if args.quick else (64, 512)
    checkpoints = (50, 100) if args.quick else (250, 500, 1_000, 2_000)
    batches = (1, 64)
    p = circle_problem("normal", seed=0, size=size, m=m)
    net = p.network.to(device=device, dtype=torch.float64)
    layer = net.layers[0]
    y_all = batch_data(p, max(batches)).to(device)
    ref = admm(net, y_all, ALPHA, tol=1e-10, max_iter=300 if args.quick else 3_000)

    def gap(x: torch.Tensor, n: int) -> float:
        """Largest relative objective gap of the first ``n`` problems, in float64."""
        y, x = y_all[:n], x.to(torch.float64)
        f = layer.activation.bregman(y, layer.affine.forward(x)) + ALPHA * tv(x)
        f_ref = layer.activation.bregman(y, layer.affine.forward(ref.x[:n])) + ALPHA * tv(ref.x[:n])
        return float(((f - f_ref) / f_ref).max())

    rows = []
    for batch in batches:
        calls = [(i, i + 1) for i in range(SINGLES)] if batch == 1 else [(0, batch)]
        for mode, dtype in MODES.items():
            admm(net, y_all[:1].contiguous(), ALPHA, tol=args.tol, x_update_dtype=dtype)  # warm-up
            secs, xs, its = 0.0, [], []
            for lo, hi in calls:
                y = y_all[lo:hi].contiguous()
                t, res = common.timed(lambda: admm(net, y, ALPHA, tol=args.tol, x_update_dtype=dtype),
                                      device, repeat=1 if args.quick else 2)
                secs, xs, its = secs + t, xs + [res.x], its + [int(res.iterations.max())]
            n = calls[-1][1]
            rows.append({"batch": batch, "x-update": mode, "problems": n, "seconds": secs,
                         "problems/s": n / secs, "iterations (max)": max(its),
                         "max rel. gap": gap(torch.cat(xs), n)})
    for r in rows:
        same_batch = next(o for o in rows if o["batch"] == r["batch"] and o["x-update"] == "float64")
        single = next(o for o in rows if o["batch"] == 1 and o["x-update"] == r["x-update"])
        r["speed-up over float64 x-update"] = r["problems/s"] / same_batch["problems/s"]
        r["speed-up over batch 1"] = r["problems/s"] / single["problems/s"]

    # the whole iteration in float32 against the float64 iteration, no stopping test
    n = SINGLES
    runs = {"float64 iteration, float64 x-update": (net, y_all[:n], None),
            "float64 iteration, float32 x-update": (net, y_all[:n], torch.float32),
            "float32 iteration": (net.to(dtype=torch.float32), y_all[:n].float(), None)}
    paths = []
    for name, (network, y, dtype) in runs.items():
        gaps: dict[int, float] = {}

        def record(info: dict) -> None:
            if info["iteration"] in checkpoints:
                gaps[info["iteration"]] = gap(info["x"], n)

        admm(network, y, ALPHA, tol=0.0, max_iter=max(checkpoints), x_update_dtype=dtype, callback=record)
        paths.append({"run": name, **{f"max rel. gap after {k}": gaps[k] for k in checkpoints}})

    print(f"circle (normal) {size}x{size}, W {m}x{size * size}, float64 data, alpha={ALPHA}, "
          f"admm tol={args.tol:g}; reference admm tol 1e-10 converged: {bool(ref.converged.all())}")
    print(common.table(rows, list(rows[0].keys())))
    print(f"the first {n} problems at a fixed number of iterations (no stopping test):")
    print(common.table(paths, list(paths[0].keys())))
    payload = {"benchmark": "mixed", "law": "normal", "alpha": ALPHA, "admm_tol": args.tol,
               "environment": env, "rows": rows, "fixed_iterations": paths}
    for path in common.write("mixed", payload, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
