"""Run every benchmark in turn (``make bench``); extra arguments are passed to each script.

``python benchmarks/run_all.py --quick`` is a smoke run; ``--publish`` also refreshes the JSON
the book's Performance page reads (``book/performance/*.json``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_iteration_cost.py", "bench_batch.py", "bench_mnist_cnn.py", "bench_circle.py"]


def main() -> int:
    status = 0
    for script in SCRIPTS:
        print(f"\n=== {script} {' '.join(sys.argv[1:])}", flush=True)
        status |= subprocess.call([sys.executable, str(HERE / script), *sys.argv[1:]])
    return status


if __name__ == "__main__":
    sys.exit(main())
