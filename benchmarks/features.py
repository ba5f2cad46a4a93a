"""Benchmark point-in-time feature extraction: wall time and peak memory on a generated base.

Generates a base once with ``pipeline.simulate.generate`` (1,000,000 subscribers with 12
months of usage by default) into a cache folder under ``benchmarks/results/`` (git-ignored;
reused while the manifest matches), then, in a fresh subprocess per repetition, reads it
chunk by chunk with ``pipeline.records.iter_record_chunks`` and runs
``pipeline.features.build_features`` on every chunk.  It prints one markdown table row: the
median over the repetitions of the time spent in ``build_features`` (the goal: under 60 s
on 2 cores), of the time spent reading the chunks, and the largest peak RSS of a run::

    .venv/bin/python benchmarks/features.py                          # 1,000,000 subscribers
    .venv/bin/python benchmarks/features.py --subscribers 100000 --repeat 1
    .venv/bin/python benchmarks/features.py --validate               # also validate each chunk
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

_GENERATE = """
import sys
sys.path.insert(0, {root!r})
from pipeline import simulate
simulate.generate({n}, seed={seed}, scenario={scenario!r}, out={out!r}, chunk_subscribers={chunk}, overwrite=True)
"""

_MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pipeline.features import build_features
from pipeline.records import iter_record_chunks

baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
read = features = 0.0
rows = chunks = 0
start = time.perf_counter()
parts = iter_record_chunks({folder!r}, chunk_subscribers={chunk}, validate={validate})
while True:
    before_read = time.perf_counter()
    records = next(parts, None)
    before_features = time.perf_counter()
    read += before_features - before_read
    if records is None:
        break
    frame = build_features(records)
    features += time.perf_counter() - before_features
    rows += len(frame)
    chunks += 1
    del frame, records
print(json.dumps({{
    "features_seconds": features, "read_seconds": read, "total_seconds": time.perf_counter() - start,
    "rows": rows, "chunks": chunks, "columns": {columns},
    "baseline_mib": baseline_mib, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}}))
"""


def ensure_base(n: int, seed: int, scenario: str | None, chunk: int) -> Path:
    """The cached generated base for these arguments, generating it (in a subprocess) if needed."""
    sys.path.insert(0, str(ROOT))
    from pipeline import simulate

    scenario = scenario or simulate.DEFAULT_SCENARIO
    folder = RESULTS / f"features-base-{scenario}-{n}-seed{seed}-chunk{chunk}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        found = json.loads(manifest.read_text(encoding="utf-8"))
        if found.get("generator_version") == simulate.GENERATOR_VERSION and found.get("subscribers") == n:
            return folder
    RESULTS.mkdir(parents=True, exist_ok=True)
    code = _GENERATE.format(root=str(ROOT), n=n, seed=seed, scenario=scenario, out=str(folder), chunk=chunk)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    print(f"generated {n:,} subscribers into {folder} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return folder


def time_features(folder: Path, chunk: int, repeat: int, validate: bool) -> list[dict]:
    """Run the measurement ``repeat`` times, each in a fresh subprocess; return each run's figures."""
    sys.path.insert(0, str(ROOT))
    from pipeline.features import FEATURE_COLUMNS

    code = _MEASURE.format(root=str(ROOT), folder=str(folder), chunk=chunk, validate=validate,
                           columns=len(FEATURE_COLUMNS))
    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scenario", default=None, help="scenario name (default: the simulator's default)")
    parser.add_argument("--chunk-subscribers", type=int, default=250_000, help="subscribers per chunk")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--validate", action="store_true", help="validate each chunk while reading it")
    args = parser.parse_args(argv)

    folder = ensure_base(args.subscribers, args.seed, args.scenario, args.chunk_subscribers)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    runs = time_features(folder, args.chunk_subscribers, args.repeat, args.validate)
    features = statistics.median(run["features_seconds"] for run in runs)
    read = statistics.median(run["read_seconds"] for run in runs)
    peak = max(run["peak_mib"] for run in runs)
    rows = runs[0]["rows"]
    usage_rows = manifest.get("rows", {}).get("usage_monthly", 0)
    contact_rows = manifest.get("rows", {}).get("contacts", 0)
    all_runs = ", ".join(f"{run['features_seconds']:.1f}" for run in runs)
    print("| subscribers | usage rows | contact rows | chunk | build_features (median) | runs (s) "
          "| reading chunks (median) | feature rows/s | peak RSS | machine |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    print(f"| {args.subscribers:,} | {usage_rows:,} | {contact_rows:,} | {args.chunk_subscribers:,} "
          f"| {features:.1f} s | {all_runs} | {read:.1f} s{' (validated)' if args.validate else ''} "
          f"| {rows / features:,.0f} | {peak:.0f} MiB | {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
