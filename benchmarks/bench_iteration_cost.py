r"""Benchmark 2: the cost of one eq. (14) iteration against its two matrix products.

One PDHG iteration (14) needs :math:`Wx^k` and :math:`W^\top(\sigma(Wx^k+b)-y^\delta)`; all
else (gradient, divergence, projection, objective, stopping test) is :math:`O(n)`. This
measures, in one process and interleaved (so a changing machine load hits both alike), the
seconds per iteration of ``lbreg.solvers.pdhg`` (the whole loop: step, objective, per-sample
stopping test, history) and of the two products alone (``AffineMap.forward`` and ``adjoint``,
and raw ``torch`` matrix products), on the circle problem (PAPER_MATH §4.1), batch 1 and 64.
The calls take turns in ``ROUNDS`` rounds; a ratio is the median of the per-round ratios
(each round compares like with like), with the smallest and largest beside it: at batch 1 the
ratio moves by ±0.1 between runs on a shared machine, as much as its distance from the goal.
Goal: ratio ≤ 1.5. On a CPU the two products are also timed with idle gaps: each followed by
a busy-wait half as long as the rest of that round's pdhg iteration, the waits not counted.
On a machine whose cache is shared with other work (a virtual machine), the matrix leaves the
cache during any pause, so products inside a loop cost more than back to back; the ratio
against the gapped products is the part of the loop that the library's own operations take.
The library's operations are also timed alone: the same ``pdhg`` call on the same data with
:math:`W` cut to its first row (both products then nearly free), interleaved with the rest.
It also counts the tensor operations of one iteration that run a kernel (views, aliases and
allocations not counted; a machine-independent figure): on a GPU each is a kernel launch, and
at these sizes the launches, not the products, set the time of an iteration.
Prints a table; writes ``benchmarks/results/iteration_cost.json``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from lbreg.instances import circle_problem  # noqa: E402
from lbreg.network import AffineMap, Layer, LiftedNetwork  # noqa: E402
from lbreg.solvers import pdhg  # noqa: E402


def spin(seconds: float) -> None:
    """Busy-wait: keep the core running without touching memory."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


ROUNDS = 5  # interleaved timing rounds (``--quick``: 3); ratios are medians of per-round ratios


def ratio_columns(name: str, num: list[float], den: list[float]) -> dict[str, float]:
    """``ratio (name)``: the median over rounds of ``num/den`` of one round, and its range."""
    ratios = [a / b for a, b in zip(num, den)]
    return {f"ratio ({name})": statistics.median(ratios),
            f"ratio ({name}) (min)": min(ratios), f"ratio ({name}) (max)": max(ratios)}


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    env = common.environment(args, device)
    size, m = (32, 256) if args.quick else (64, 512)
    iters, rounds = (50, 3) if args.quick else (200, ROUNDS)
    p = circle_problem("uniform", seed=0, size=size, m=m)
    net = p.network.to(device=device, dtype=torch.float64)
    affine = net.layers[0].affine
    affine.norm()  # cache ‖W‖ so that it is not timed
    W = affine.weight
    # the same problem with W cut to one row: pdhg's own operations, the products nearly free
    one_row = LiftedNetwork.from_layers([Layer(AffineMap.from_matrix(
        W[:1].clone(), affine.bias[:1].clone(), in_shape=affine.in_shape), net.layers[0].activation)])
    one_row.layers[0].affine.norm()
    rows = []
    for batch in (1, 64):
        y = p.y_delta.to(device).expand(batch, -1).contiguous()
        x = torch.rand(batch, 1, size, size, dtype=torch.float64, device=device)
        u = torch.rand(batch, m, dtype=torch.float64, device=device)
        xf = x.reshape(batch, -1)

        def products():
            for _ in range(iters):
                affine.forward(x)
                affine.adjoint(u)

        def raw():
            for _ in range(iters):
                torch.addmm(affine.bias.reshape(1, -1), xf, W.T)
                u @ W

        def solver():
            pdhg(net, y, 0.015, max_iter=iters, tol=0.0, check_every=10)

        y_one = y[:, :1].contiguous()

        def library():
            pdhg(one_row, y_one, 0.015, max_iter=iters, tol=0.0, check_every=10)

        def gapped(gap: float) -> float:
            """Seconds of the products alone, each followed by an untimed busy-wait ``gap``."""
            total = 0.0
            for _ in range(iters):
                start = time.perf_counter()
                affine.forward(x)
                total += time.perf_counter() - start
                spin(gap)
                start = time.perf_counter()
                affine.adjoint(u)
                total += time.perf_counter() - start
                spin(gap)
            return total

        samples = {"pdhg": [], "products": [], "raw": [], "library": [], "gapped": []}
        for _ in range(rounds):  # interleaved
            for key, fn in (("pdhg", solver), ("products", products), ("raw", raw), ("library", library)):
                samples[key].append(common.timed(fn, device)[0] / iters)
            if device.type == "cpu":  # the rest of this round's iteration, split between two gaps
                rest = max(samples["pdhg"][-1] - samples["products"][-1], 0.0)
                samples["gapped"].append(gapped(rest / 2) / iters)
        med = {k: statistics.median(v) for k, v in samples.items() if v}
        idle = ratio_columns("idle gaps", samples["pdhg"], samples["gapped"]) if samples["gapped"] else {}
        rows.append({"batch": batch, "pdhg iteration [ms]": 1e3 * med["pdhg"],
                     "W x + Wᵀu (AffineMap) [ms]": 1e3 * med["products"],
                     "W x + Wᵀu (raw torch) [ms]": 1e3 * med["raw"],
                     **ratio_columns("AffineMap", samples["pdhg"], samples["products"]),
                     **ratio_columns("raw", samples["pdhg"], samples["raw"]),
                     "W x + Wᵀu with idle gaps [ms]": 1e3 * med["gapped"] if idle else None,
                     "ratio (idle gaps)": idle.get("ratio (idle gaps)"),
                     "pdhg iteration, W of one row [ms]": 1e3 * med["library"],
                     "tensor operations per iteration": common.kernels_per_step(
                         lambda its: pdhg(net, y, 0.015, max_iter=its, tol=0.0, check_every=10)),
                     "samples_ms": {k: [1e3 * s for s in v] for k, v in samples.items()}})
    columns = [c for c in rows[0] if c != "samples_ms"]
    print(f"circle {size}x{size}, W {m}x{size * size}, float64, {iters} iterations x {rounds} interleaved rounds "
          "(times: medians; ratios: medians of per-round ratios, with their range)")
    print(common.table(rows, columns))
    payload = {"benchmark": "iteration_cost", "shape": [m, size * size], "iterations": iters,
               "rounds": rounds, "environment": env, "rows": rows, "goal_ratio": 1.5}
    for path in common.write("iteration_cost", payload, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
