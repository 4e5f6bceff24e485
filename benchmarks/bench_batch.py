r"""Benchmark 3: batched solves, problems per second to a relative objective gap of 1e-4.

``B`` circle problems (PAPER_MATH §4.1, one :math:`W`, ``B`` noise draws) solved in one call,
for ``B`` = 1 (the first 8 problems, one call each), 16, 64: ``lbreg.solvers.admm`` (the fast
solver, stopped by its residual test at ``tol``, default 1e-5: the loosest power of ten at which
every problem lies within the goal's relative objective gap of 1e-4; at 1e-4 the worst of 16
problems is 3.8e-4) with the largest relative gap in the batch against a tight reference
(``admm``, ``tol=1e-10``), and eq. (14) (``pdhg``) at a fixed 1,000 iterations (it does not reach 1e-4;
its throughput is reported in problem-iterations per second). Goal: batch 64 throughput
≥ 8× batch 1.

Timing: the ``admm`` calls of the three batch sizes take turns in ``ROUNDS`` rounds, so that a
change of the machine's load reaches them alike; "admm [s]" is the median of a batch size's
rounds, "admm speed-up" the median of the per-round ratios to batch 1, with their smallest and
largest. On a shared machine the time of batch 1, whose matrix-vector products stream the whole
matrix from memory every iteration, varies the most from round to round.

What bounds the speed-up: every `admm` iteration makes its exact x-update
(`lbreg.solvers.xupdate`: two passes over an :math:`(m+1)\times n` matrix and the DCT
products). That update alone is timed per problem at each batch size (the solver that `admm`
builds, with its penalties); times the problem-iterations the batch ran, it bounds
the batch's time from below, so "admm speed-up bound" bounds its speed-up from above (as long
as a shrinking working batch costs no less per problem than the full one). Where the batch-1
products are bound by memory and the batch-64 products by arithmetic, the bound can fall below
the goal. "admm speed-up at DGEMM peak" is a looser bound that no implementation of the
iteration can beat: the floating-point operations of the x-update's matrix products (counted
from the solver's shapes), times the problem-iterations, at the rate of a large square float64
matrix product measured in the same run (the device's practical peak), with nothing else
costing any time. Prints a table; writes ``benchmarks/results/batch.json``.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from lbreg.data import add_noise  # noqa: E402
from lbreg.instances import circle_problem  # noqa: E402
from lbreg.operators import tv  # noqa: E402
from lbreg.regularizers import TV  # noqa: E402
from lbreg.solvers import admm, pdhg  # noqa: E402
from lbreg.solvers.xupdate import x_solver  # noqa: E402

ALPHA = 0.015
SINGLES = 8  # batch 1: this many problems solved one at a time
ROUNDS = 5  # interleaved timing rounds (``--quick``: 1); speed-ups are medians of per-round ratios


def calls_of(batch: int) -> list[tuple[int, int]]:
    """The problems ``[lo, hi)`` of each call at ``batch``: for batch 1 the first ``SINGLES``
    problems one after another (one problem's iteration count is not representative of the
    batch's), else the first ``batch`` problems in one call."""
    return [(i, i + 1) for i in range(SINGLES)] if batch == 1 else [(0, batch)]


def per_round_speed_ups(times: list[float], problems: int, base: list[float]) -> list[float]:
    """Problems per second over the base's (``SINGLES`` problems in ``base`` seconds), round by
    round."""
    return [(problems / t) / (SINGLES / t0) for t, t0 in zip(times, base)]


def batch_data(p, batch: int) -> torch.Tensor:
    """``batch`` noisy copies of the circle's exact data, noise seeds 1..batch."""
    relu = p.network.layers[0].activation
    ys = [add_noise(p.y, p.noise_std, torch.Generator().manual_seed(s), relu)[0] for s in range(1, batch + 1)]
    return torch.cat(ys)


def x_update_seconds(solver, batch: int, device: torch.device, rounds: int = 3) -> float:
    """Seconds per problem of `admm`'s exact x-update ``solver`` at ``batch`` (best of
    ``rounds``)."""
    affine = solver.affine
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(batch, *affine.out_shape, generator=gen, dtype=torch.float64).to(device)
    v = torch.rand(batch, *TV().dual_shape(affine.in_shape), generator=gen, dtype=torch.float64).to(device)
    x = solver.state(torch.zeros(batch, *affine.in_shape, dtype=torch.float64, device=device))
    steps = max(5, 200 // batch)

    def run() -> None:
        for _ in range(steps):
            solver.step(w, v, None, x)

    return min(common.timed(run, device)[0] for _ in range(rounds)) / (steps * batch)


def peak_flops(device: torch.device, size: int = 2048, rounds: int = 3) -> float:
    """Floating-point operations per second of a ``size``² float64 matrix product (best of
    ``rounds``): the practical peak of the device's matrix products."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(size, size, generator=gen, dtype=torch.float64).to(device) for _ in range(2))
    a @ b  # warm-up
    return 2 * size**3 / min(common.timed(lambda: a @ b, device)[0] for _ in range(rounds))


def x_update_flops(solver, batch: int) -> float:
    """Floating-point operations of the matrix products of one x-update per problem at ``batch``
    (`lbreg.solvers.xupdate._WoodburySolver.step` with TV): pass 1 over the m×n matrix Ṽ, the
    (m+C')² border product, pass 2 over the bordered Ṽ, and the two 2-D DCTs (QKᵀv and Qᵀx̂) as
    products with the H×H and W×W DCT matrices, or, for the few images for which `_Diagonal`
    uses its fused products, twice that."""
    rows, n = solver.v_tilde.shape
    *channels, h, w = solver.diag.shape
    dct = 2 * 2 * h * w * (h + w) * math.prod(channels)
    return 2 * solver.m * n + 2 * rows * rows + 2 * rows * n + (2 if solver.diag._few(batch) else 1) * dct


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--law", default="normal", choices=("uniform", "normal"))
    parser.add_argument("--tol", type=float, default=1e-5, help="admm residual tolerance (default 1e-5)")
    args = parser.parse_args()
    device = common.setup(args)
    env = common.environment(args, device)
    size, m = (32, 256) if args.quick else (64, 512)
    pdhg_iters = 100 if args.quick else 1_000
    batches = (1, 16, 64)
    p = circle_problem(args.law, seed=0, size=size, m=m)
    net = p.network.to(device=device, dtype=torch.float64)
    y_all = batch_data(p, max(batches)).to(device)
    ref = admm(net, y_all, ALPHA, tol=1e-10, max_iter=300 if args.quick else 3_000)
    layer = net.layers[0]
    layer.affine.norm()  # cache ‖W‖ (eq. 14's step size) so that no row times its computation

    def objective(x, y):
        return layer.activation.bregman(y, layer.affine.forward(x)) + ALPHA * tv(x)

    f_ref = objective(ref.x, y_all)
    peak = peak_flops(device)
    rows = []
    rounds = 1 if args.quick else ROUNDS

    def solve(batch: int):
        return [admm(net, y_all[lo:hi].contiguous(), ALPHA, tol=args.tol) for lo, hi in calls_of(batch)]

    times, results = common.interleaved({batch: lambda b=batch: solve(b) for batch in batches}, device, rounds)
    for batch in batches:
        res, n = results[batch], calls_of(batch)[-1][1]
        secs = statistics.median(times[batch])
        rho_u, rho_d = float(res[-1].params["rho_u"][0]), float(res[-1].params["rho_d"][0])
        solver = x_solver(layer.affine, TV(), rho_u, rho_d, y_all)  # as admm builds it
        x_update = x_update_seconds(solver, batch, device)
        flops = x_update_flops(solver, batch)
        x = torch.cat([r.x for r in res])
        gap = float(((objective(x, y_all[:n]) - f_ref[:n]) / f_ref[:n]).max())
        ups = per_round_speed_ups(times[batch], n, times[batches[0]])
        y = y_all[:batch].contiguous()
        secs_p, _ = common.timed(lambda: pdhg(net, y, ALPHA, max_iter=pdhg_iters, tol=0.0), device)
        rows.append({"batch": batch, "problems": n, "admm [s]": secs, "admm problems/s": n / secs,
                     "admm iterations (max)": max(int(r.iterations.max()) for r in res),
                     "admm problem-iterations": sum(int(r.iterations.sum()) for r in res),
                     "x-update per problem [ms]": 1e3 * x_update, "x-update MFLOP": flops / 1e6,
                     "max rel. gap": gap, "admm speed-up": statistics.median(ups),
                     "admm speed-up (min)": min(ups), "admm speed-up (max)": max(ups),
                     "eq. 14 [s]": secs_p, "eq. 14 problem-iterations/s": batch * pdhg_iters / secs_p})
    base = rows[0]
    for r in rows:
        # the batch's time is at least its problem-iterations times the x-update per problem
        fastest = r["problems"] / (r["admm problem-iterations"] * r["x-update per problem [ms]"] / 1e3)
        r["admm speed-up bound"] = None if r is base else fastest / base["admm problems/s"]
        at_peak = r["problems"] / (r["admm problem-iterations"] * r["x-update MFLOP"] * 1e6 / peak)
        r["admm speed-up at DGEMM peak"] = None if r is base else at_peak / base["admm problems/s"]
        r["eq. 14 speed-up"] = r["eq. 14 problem-iterations/s"] / base["eq. 14 problem-iterations/s"]
    print(f"circle ({args.law}) {size}x{size}, W {m}x{size * size}, float64, alpha={ALPHA}, admm tol={args.tol:g}, "
          f"eq. 14 {pdhg_iters} iterations; reference admm tol 1e-10 converged: {bool(ref.converged.all())}; "
          f"admm: medians of {rounds} interleaved rounds")
    print(f"float64 matrix product (2048 x 2048) on this device: {peak / 1e9:.1f} GFLOP/s")
    print(common.table(rows, list(rows[0].keys())))
    payload = {"benchmark": "batch", "law": args.law, "alpha": ALPHA, "admm_tol": args.tol,
               "pdhg_iterations": pdhg_iters, "rounds": rounds, "environment": env, "rows": rows, "goal_speedup_64": 8.0,
               "dgemm_gflops": peak / 1e9}
    for path in common.write("batch", payload, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
