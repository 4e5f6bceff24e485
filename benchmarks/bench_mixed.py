r"""Benchmark 6: `admm` with a float32 x-update inside the float64 iteration (``x_update_dtype``).

The batched circle problems of ``bench_batch.py`` (PAPER_MATH §4.1, :math:`N(0,1)` weights,
one :math:`W`, noise seeds 1..64, :math:`\alpha` = 0.015), solved to the residual tolerance
``--tol`` (default 1e-5, as there) with the x-update in float64 and in float32: at batch 1 (the
first 8 problems, one call each) and 64, seconds, problems per second, the largest iteration
count and the largest relative objective gap against a tight float64 reference, and the speed-up
of the float32 x-update at each batch size. The four calls take turns in ``ROUNDS`` rounds as in
``bench_batch.py``: seconds are medians, speed-ups medians of per-round ratios (those over batch
1 with their smallest and largest).

Then why only the x-update: the first 8 problems with the *whole* iteration in float32 (data and
weights; the gap evaluated in float64), with either x-update, against the float64 iteration with
either x-update, at a fixed number of iterations (no stopping test), the largest gap after each
checkpoint. Prints two tables; writes ``benchmarks/results/mixed.json``.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_batch import ALPHA, ROUNDS, SINGLES, batch_data, calls_of, per_round_speed_ups  # noqa: E402

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

    def objective(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return layer.activation.bregman(y, layer.affine.forward(x)) + ALPHA * tv(x)

    f_ref = objective(ref.x, y_all)

    def gap(x: torch.Tensor, n: int) -> float:
        """Largest relative objective gap of the first ``n`` problems, in float64."""
        f = objective(x.to(torch.float64), y_all[:n])
        return float(((f - f_ref[:n]) / f_ref[:n]).max())

    rounds = 1 if args.quick else ROUNDS

    def solve(batch: int, dtype: torch.dtype | None):
        return [admm(net, y_all[lo:hi].contiguous(), ALPHA, tol=args.tol, x_update_dtype=dtype)
                for lo, hi in calls_of(batch)]

    for dtype in MODES.values():
        solve(1, dtype)  # warm-up
    keys = [(batch, mode) for batch in batches for mode in MODES]
    times, results = common.interleaved({key: lambda k=key: solve(k[0], MODES[k[1]]) for key in keys},
                                        device, rounds)
    rows = []
    for batch, mode in keys:
        res, n = results[(batch, mode)], calls_of(batch)[-1][1]
        secs = statistics.median(times[(batch, mode)])
        over_float64 = [t64 / t for t, t64 in zip(times[(batch, mode)], times[(batch, "float64")])]
        over_batch_1 = per_round_speed_ups(times[(batch, mode)], n, times[(1, mode)])
        rows.append({"batch": batch, "x-update": mode, "problems": n, "seconds": secs,
                     "problems/s": n / secs, "iterations (max)": max(int(r.iterations.max()) for r in res),
                     "max rel. gap": gap(torch.cat([r.x for r in res]), n),
                     "speed-up over float64 x-update": statistics.median(over_float64),
                     "speed-up over batch 1": statistics.median(over_batch_1),
                     "speed-up over batch 1 (min)": min(over_batch_1),
                     "speed-up over batch 1 (max)": max(over_batch_1)})

    # the whole iteration in float32 against the float64 iteration, no stopping test
    n = SINGLES
    runs = {"float64 iteration, float64 x-update": (net, y_all[:n], None),
            "float64 iteration, float32 x-update": (net, y_all[:n], torch.float32),
            "float32 iteration, float32 x-update": (net.to(dtype=torch.float32), y_all[:n].float(), None),
            "float32 iteration, float64 x-update": (net.to(dtype=torch.float32), y_all[:n].float(), torch.float64)}
    paths = []
    for name, (network, y, dtype) in runs.items():
        gaps: dict[int, float] = {}

        def record(info: dict) -> None:
            if info["iteration"] in checkpoints:
                gaps[info["iteration"]] = gap(info["x"], n)

        admm(network, y, ALPHA, tol=0.0, max_iter=max(checkpoints), x_update_dtype=dtype, callback=record)
        paths.append({"run": name, **{f"max rel. gap after {k}": gaps[k] for k in checkpoints}})

    print(f"circle (normal) {size}x{size}, W {m}x{size * size}, float64 data, alpha={ALPHA}, "
          f"admm tol={args.tol:g}; reference admm tol 1e-10 converged: {bool(ref.converged.all())}; "
          f"medians of {rounds} interleaved rounds")
    print(common.table(rows, list(rows[0].keys())))
    print(f"the first {n} problems at a fixed number of iterations (no stopping test):")
    print(common.table(paths, list(paths[0].keys())))
    payload = {"benchmark": "mixed", "law": "normal", "alpha": ALPHA, "admm_tol": args.tol,
               "reference_converged": bool(ref.converged.all()), "rounds": rounds, "environment": env, "rows": rows,
               "fixed_iterations": paths}
    for path in common.write("mixed", payload, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
