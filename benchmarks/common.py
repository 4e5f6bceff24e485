"""Shared plumbing of the benchmarks: arguments, environment record, tables and JSON output.

Every benchmark script takes ``--device`` (``cpu`` or ``cuda``), ``--threads`` (intra-op
threads, default 1), ``--quick`` (a smoke run in seconds) and ``--publish`` (also write the
JSON the book's Performance page reads, ``book/performance/<name>.json``). Results always go
to ``benchmarks/results/<name>.json`` (git-ignored). Timings are wall-clock seconds measured in
one process; compare ratios, not absolute numbers, across machines and loads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PUBLISHED = ROOT / "book" / "performance"


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line of every benchmark."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--quick", action="store_true", help="small sizes and budgets: a smoke run")
    p.add_argument("--publish", action="store_true",
                   help="also write book/performance/<name>.json for the book's Performance page")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the device (raises if CUDA is asked for but absent)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch.cuda.is_available() is False")
    return device


def sync(device: torch.device) -> None:
    """Wait for the device (timings on a GPU need it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1) -> tuple[float, Any]:
    """Best wall-clock seconds of ``repeat`` calls of ``fn`` and its last return value."""
    best, out = float("inf"), None
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def interleaved(calls: dict[Any, Callable[[], Any]], device: torch.device,
                rounds: int) -> tuple[dict[Any, list[float]], dict[Any, Any]]:
    """Wall-clock seconds of each of ``calls`` in each of ``rounds`` rounds, and each call's last
    return value. The calls take turns within a round, so that a change of the machine's load
    during the run reaches all of them alike: a ratio of two times of one round compares like
    with like (take the median over the rounds)."""
    times: dict[Any, list[float]] = {key: [] for key in calls}
    out: dict[Any, Any] = {}
    for _ in range(rounds):
        for key, fn in calls.items():
            t, out[key] = timed(fn, device)
            times[key].append(t)
    return times, out


class KernelCounter(TorchDispatchMode):
    """Counts the tensor operations dispatched inside the ``with`` block that run a kernel:
    views, aliases and allocations without a fill are not counted."""

    FREE = {torch.ops.aten.detach, torch.ops.aten.lift_fresh, torch.ops.aten.empty,
            torch.ops.aten.new_empty, torch.ops.aten.empty_like}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket not in self.FREE:
            self.count += 1
        return func(*args, **(kwargs or {}))


def kernels_per_step(run: Callable[[int], Any], short: int = 20, long: int = 40) -> float:
    """Kernel-running tensor operations per iteration of ``run(iterations)``: the difference of
    two runs of ``short`` and ``long`` iterations over their difference (set-up and finish
    cancel; periodic work such as stopping tests every 10th iteration is averaged in). It does
    not depend on the machine's speed, only on the code path (float32 convolutions on the CPU
    take another route for their adjoint than on a GPU); on a GPU each operation is a kernel
    launch."""
    counts = []
    for iters in (short, long):
        with KernelCounter() as counter:
            run(iters)
        counts.append(counter.count)
    return (counts[1] - counts[0]) / (long - short)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS does not report them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: versions, device, its vector instructions, threads, CPU
    count, load."""
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        # the widest vector instructions torch's CPU kernels use here (e.g. AVX2, AVX512): the
        # ratio of a matrix-matrix product's speed to a matrix-vector product's depends on it
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        # bounds the peers' NumPy/BLAS threads too, which torch.set_num_threads does not
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "quick": bool(args.quick),
        "load_before": load_average(),
    }
    return env


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of ``rows`` (dicts) in the order of ``columns``."""
    def fmt(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write(name: str, payload: dict[str, Any], args: argparse.Namespace) -> list[Path]:
    """Write ``payload`` (with the load after the run added) to results/, and to book/ with --publish."""
    env = payload["environment"]
    env["load_after"] = load_average()
    if env["device"] != "cpu":  # GPU numbers sit beside the CPU ones
        name = f"{name}_{env['device'].split(':')[0]}"
    elif env["threads"] != 1:  # so do CPU numbers on more than one thread
        name = f"{name}_threads{env['threads']}"
    paths = [RESULTS / f"{name}.json"]
    if args.publish:
        paths.append(PUBLISHED / f"{name}.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    return paths
