"""A/B timing of ``churn score`` from two source trees, interleaved run by run on one base and one model.

For refactorings that must not slow scoring down: the same command runs from tree A (e.g.
a checkout of the reference commit) and from tree B (the working copy), alternately, in
fresh processes, and the medians of CPU seconds (user + system, all threads) and wall
seconds are printed with B's ratio to A.  The base and the model are made once (the
simulator and ``churn train`` with a fast config, from tree A) unless given::

    git worktree add /tmp/ref <commit>
    .venv/bin/python benchmarks/score_ab.py /tmp/ref . --subscribers 300000 --repeat 3

Both trees must be importable with this interpreter (``PYTHONPATH`` is set to each in turn).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAST = "[train]\nsearch_iterations = 1\ncv_folds = 3\nblend = false\ncandidates = [\"hist_gradient_boosting\"]\n"
CODE = "import sys; from pipeline.cli import main; sys.argv[0] = 'churn'; sys.exit(main())"


def run(tree: Path, args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``churn ARGS`` run from ``tree``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["PYTHONPATH"] = str(tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CODE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"churn {' '.join(args)} from {tree} failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path, help="source tree A (the reference)")
    parser.add_argument("b", type=Path, help="source tree B (the change)")
    parser.add_argument("--subscribers", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="folder for the base, the store and the lists (default: temporary)")
    args = parser.parse_args()
    a, b = args.a.resolve(), args.b.resolve()
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="score-ab-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    if not (work / "base").exists():
        print(f"generating {args.subscribers:,} subscribers and training (tree A)", flush=True)
        run(a, ["generate", "--subscribers", str(args.subscribers), "--seed", "11", "--out", "base"], work)
        (work / "fast.toml").write_text(FAST)
        run(a, ["train", "--data", "base", "--config", "fast.toml", "--no-response", *uri], work)
    cases = {"--all (Parquet)": ["--output", "all.parquet", "--all"], "at-risk CSV": ["--output", "list.csv"]}
    print("| case | A wall s | B wall s | B/A wall | A CPU s | B CPU s | B/A CPU |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, extra in cases.items():
        times: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
        for _ in range(args.repeat):
            for key, tree in (("a", a), ("b", b)):
                times[key].append(run(tree, ["score", "--data", "base", *extra, "--no-report", *uri], work))
        wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
        print(f"| {name} | {wall['a']:.1f} | {wall['b']:.1f} | {wall['b'] / wall['a']:.2f} | {cpu['a']:.1f} | "
              f"{cpu['b']:.1f} | {cpu['b'] / cpu['a']:.2f} |", flush=True)
    print(f"medians of {args.repeat} interleaved runs; load average now {os.getloadavg()[0]:.1f}; work folder {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
