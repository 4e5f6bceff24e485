"""Run every benchmark in turn (``make bench``); extra arguments are passed to each script.

``python benchmarks/run_all.py --quick`` is a smoke run; ``--publish`` also refreshes the JSON
the book's Performance page reads (``book/performance/*.json``). On a CPU with more than one
core, the iteration-cost, batch and mixed-precision benchmarks run a second time on all cores; with
``--device cuda`` the CPU-only ones (``CPU_ONLY``) are skipped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_iteration_cost.py", "bench_batch.py", "bench_mixed.py", "bench_mnist_cnn.py",
           "bench_circle.py", "bench_conv_routes.py"]
# on a CPU, also on all its cores (JSON ``<name>_threads<N>.json``) unless --threads is given
ALL_CORES = ["bench_iteration_cost.py", "bench_batch.py", "bench_mixed.py"]
# about the CPU only: skipped with --device cuda
CPU_ONLY = ["bench_conv_routes.py"]


def main() -> int:
    args = sys.argv[1:]
    given = argparse.ArgumentParser(add_help=False)
    given.add_argument("--device", default="cpu")
    given.add_argument("--threads", type=int)
    known, _ = given.parse_known_args(args)
    runs = [(script, args) for script in SCRIPTS if known.device == "cpu" or script not in CPU_ONLY]
    cores = os.cpu_count() or 1
    if known.device == "cpu" and known.threads is None and cores > 1:
        runs += [(script, [*args, "--threads", str(cores)]) for script in ALL_CORES]
    status = 0
    for script, script_args in runs:
        print(f"\n=== {script} {' '.join(script_args)}", flush=True)
        status |= subprocess.call([sys.executable, str(HERE / script), *script_args])
    return status


if __name__ == "__main__":
    sys.exit(main())
