"""A/B timing of response-model training (``pipeline.response.train_response``) from two source trees.

``churn train`` trains a response model on the campaign rows of a record base after the churn
model; its cost hides in the whole command's noise.  This times that step alone: the campaign
rows of a generated base (``churn generate --seed 1``, as ``benchmarks/training_speed.py``
makes it), read as ``churn train`` reads them, then ``train_response`` with the default
configuration, from tree A and from tree B alternately, each run in a fresh process.  It prints
CPU seconds (user + system, all threads) and wall seconds with their medians and B's ratio to
A, and a fingerprint of each result (chosen learner, hold-out Qini coefficient, sum of the
out-of-fold uplift) so that a change meant to keep the model can be seen to::

    git worktree add /tmp/ref HEAD
    .venv/bin/python benchmarks/response_speed.py /tmp/ref . --subscribers 100000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pipeline.config import load_config
from pipeline.inputs import load_dataset
from pipeline.response import train_response

config = load_config(None)
data = load_dataset(sys.argv[1], config=config, response=True)[1]
X = data.frame.reset_index(drop=True)
cpu, wall = time.process_time(), time.perf_counter()
result = train_response(X, data.treatment.to_numpy(), data.label.to_numpy(), config=config.response,
                        seed=config.train.seed, n_threads=config.train.n_threads, drop_columns=(data.id_column,))
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
import pipeline
print(json.dumps({"code": pipeline.__file__, "cpu": cpu, "wall": wall, "rows": len(X), "learner": f"{result.learner}/{result.family}",
                  "qini": float(result.metrics["qini_coefficient"]), "oof_sum": float(abs(result.oof_uplift).sum())}))
"""


def run(tree: Path, base: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # Run from the base's folder: ``python -c`` puts the working directory first on sys.path.
    out = subprocess.run([sys.executable, "-c", CHILD, str(base)], env=env, capture_output=True, text=True, check=True,
                         cwd=base.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="source tree A (the reference)")
    parser.add_argument("b", type=Path, help="source tree B (the change)")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="response-speed-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--subscribers", str(args.subscribers),
                        "--seed", "1", "--out", str(base)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        runs: dict[str, list[dict]] = {"A": [], "B": []}
        for repeat in range(args.repeat):
            for key, tree in (("A", args.a.resolve()), ("B", args.b.resolve())):
                measured = run(tree, base)
                runs[key].append(measured)
                print(f"{key} #{repeat + 1} ({measured['code']}): CPU {measured['cpu']:.2f} s, wall {measured['wall']:.2f} s, "
                      f"{measured['rows']:,} campaign rows, {measured['learner']}, hold-out Qini "
                      f"{measured['qini']:.6f}, sum |oof uplift| {measured['oof_sum']:.9f}", flush=True)
    cpu = {k: statistics.median(r["cpu"] for r in v) for k, v in runs.items()}
    wall = {k: statistics.median(r["wall"] for r in v) for k, v in runs.items()}
    print("\n| tree | CPU s | wall s |\n|---|---:|---:|")
    for key in ("A", "B"):
        print(f"| {key} | {cpu[key]:.2f} | {wall[key]:.2f} |")
    print(f"| B/A | {cpu['B'] / cpu['A']:.2f} | {wall['B'] / wall['A']:.2f} |")
    same = {(r["learner"], r["qini"], r["oof_sum"]) for v in runs.values() for r in v}
    print(f"medians of {args.repeat}; results {'identical' if len(same) == 1 else 'DIFFERENT'} across trees and runs; "
          f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
