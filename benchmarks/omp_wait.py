"""What OpenMP's wait policy costs a fit: HistGradientBoosting on Telco, spinning threads against sleeping ones.

Runs the same fits (the pipeline's ``hist_gradient_boosting`` candidate at its defaults, fit
``--fits`` times on IBM's Telco table) in two fresh processes side by side, one with
``OMP_WAIT_POLICY=ACTIVE`` (threads spin while they wait for work: what libgomp does by
default) and one with ``PASSIVE`` (they sleep: what ``pipeline`` sets when imported), each with
1 and with 2 threads, and prints CPU and wall seconds.  On a machine shared with other work,
a spinning pool burns CPU that the other jobs needed and waits for them in turn::

    .venv/bin/python benchmarks/omp_wait.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"

FIT = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from threadpoolctl import threadpool_limits
from pipeline.dataset import read_table
from pipeline.model import make_candidate
frame = read_table({path!r})
y = (frame["Churn"] == "Yes").to_numpy().astype(int)
X = frame.drop(columns=["Churn"])
out = {{}}
for threads in (1, 2):
    with threadpool_limits(limits=threads):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range({fits}):
            make_candidate("hist_gradient_boosting", drop_columns=("customerID",), seed=42, n_threads=threads).fit(X, y)
        out[threads] = [time.process_time() - cpu, time.perf_counter() - wall]
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--fits", type=int, default=5)
    args = parser.parse_args()
    path = args.datasets / "telco_customer_churn.csv"
    if not path.exists():
        print(f"error: {path}: not found", file=sys.stderr)
        return 1
    code = FIT.format(root=str(ROOT), path=str(path), fits=args.fits)
    print(f"| OMP_WAIT_POLICY | threads | CPU s ({args.fits} fits) | wall s |\n|---|---:|---:|---:|")
    for policy in ("ACTIVE", "PASSIVE"):
        env = {**os.environ, "OMP_WAIT_POLICY": policy}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        for threads, (cpu, wall) in json.loads(done.stdout.strip().splitlines()[-1]).items():
            print(f"| {policy} | {threads} | {cpu:.1f} | {wall:.1f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
