"""Benchmark `churn train`'s wall time, CPU time and peak memory, against a baseline commit in the same run.

Each case runs the real command (`python -m pipeline.cli train ...`) in a fresh folder with its own
MLflow store, once with this checkout's code and once with the code of ``--baseline`` (a git ref,
checked out with ``git worktree`` into a temporary folder and put first on ``PYTHONPATH``), in
alternation, ``--repeats`` times each; the table gives the medians and the ratios.  CPU time and
peak resident memory are the child process's (``resource.getrusage(RUSAGE_CHILDREN)``).  The
tables:

- ``telco``: IBM's Telco Customer Churn (7,043 rows), ``--id customerID --target Churn --positive Yes``;
- ``bigml``: the Orange/BigML table (80% and 20% parts joined into one CSV in the run's folder);
- ``generated``: a record base from ``churn generate --subscribers N --seed 1`` (``--subscribers``).

Hold-out metrics are read from each run's output (the line ``hold-out: ROC AUC ...``), so speed is
never reported without the accuracy it bought.  Usage::

    .venv/bin/python benchmarks/training_speed.py --baseline 698a892 --tables telco bigml
    .venv/bin/python benchmarks/training_speed.py --baseline 698a892 --tables generated --subscribers 100000

The datasets are read from ``../shared/datasets`` beside the repository (``--datasets DIR``
elsewhere); nothing is downloaded.  Results: ``benchmarks/results/training_speed.json`` and a
markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
HOLDOUT = re.compile(r"hold-out: ROC AUC ([0-9.]+), PR AUC ([0-9.]+), Brier ([0-9.]+)")


def run(code: Path, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None, *,
        keep_stdout: bool = False) -> dict:
    """Run ``churn`` from ``code`` in ``cwd``; wall, CPU and peak memory of that one process
    (and its standard output, with ``keep_stdout``).

    Each measurement runs in its own intermediate Python process, so that the peak memory of
    ``RUSAGE_CHILDREN`` is that run's alone (it is a maximum over every child ever waited for)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"PYTHONPATH": str(code), "CHURN_PROGRESS": "0", **(extra_env or {})})
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - start\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'wall': wall, 'cpu': u.ru_utime + u.ru_stime, 'rss_kib': u.ru_maxrss,\n"
        "                  'code': done.returncode, 'stdout': done.stdout, 'stderr': done.stderr[-2000:]}))\n"
    )
    command = [sys.executable, "-c", probe, sys.executable, "-m", "pipeline.cli", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise SystemExit(f"error: churn {' '.join(args)} failed with code {result['code']}: {result['stderr']}")
    found = HOLDOUT.search(result["stdout"])
    return {"wall": result["wall"], "cpu": result["cpu"], "peak_mib": result["rss_kib"] / 1024,
            "roc_auc": float(found.group(1)) if found else None, "pr_auc": float(found.group(2)) if found else None,
            "brier": float(found.group(3)) if found else None, **({"stdout": result["stdout"]} if keep_stdout else {})}


def prepare_tables(names: list[str], datasets: Path, work: Path, subscribers: int) -> dict[str, list[str]]:
    """The ``churn train`` arguments of each table (files made in ``work``)."""
    cases = {}
    if "telco" in names:
        path = datasets / "telco_customer_churn.csv"
        if path.exists():
            cases["telco"] = ["--data", str(path), "--id", "customerID", "--target", "Churn", "--positive", "Yes",
                              "--value", "MonthlyCharges"]
        else:
            print(f"skipping telco: {path} not found")
    if "bigml" in names:
        parts = [datasets / "churn-bigml-80.csv", datasets / "churn-bigml-20.csv"]
        if all(p.exists() for p in parts):
            joined = work / "bigml.csv"
            with open(joined, "w") as out:
                for number, part in enumerate(parts):
                    lines = part.read_text().splitlines(keepends=True)
                    out.writelines(lines if number == 0 else lines[1:])
            cases["bigml"] = ["--data", str(joined), "--target", "Churn", "--positive", "true"]
        else:
            print(f"skipping bigml: {', '.join(map(str, parts))} not found")
    if "generated" in names:
        folder = work / f"generated-{subscribers}"
        subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--subscribers", str(subscribers),
                        "--seed", "1", "--out", str(folder)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        cases[f"generated-{subscribers:,}"] = ["--data", str(folder)]
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REF", help="git ref of the baseline code")
    parser.add_argument("--tables", nargs="+", default=["telco", "bigml"], choices=("telco", "bigml", "generated"))
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--extra", nargs="*", default=[], metavar="ARG", help="more churn train arguments for both")
    parser.add_argument("--tag", default="training_speed")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="churn-speed-") as tmp:
        work = Path(tmp)
        baseline = work / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            cases = prepare_tables(args.tables, args.datasets, work, args.subscribers)
            for name, train_args in cases.items():
                for repeat in range(args.repeats):
                    for label, code in (("baseline", baseline), ("this", ROOT)):
                        folder = work / f"{name}-{label}-{repeat}"
                        folder.mkdir()
                        measured = run(code, ["train", *train_args, *args.extra], folder)
                        shutil.rmtree(folder)
                        records.append({"table": name, "code": label, "repeat": repeat, **measured})
                        print(f"{name} {label} #{repeat + 1}: wall {measured['wall']:.1f}s, CPU {measured['cpu']:.1f}s, "
                              f"peak {measured['peak_mib']:.0f} MiB, hold-out ROC AUC {measured['roc_auc']}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], capture_output=True)
    out = RESULTS / f"{args.tag}.json"
    out.write_text(json.dumps({"baseline": args.baseline, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "load_average": os.getloadavg(), "records": records}, indent=1))
    print("\n| table | code | wall s | CPU s | peak MiB | hold-out ROC AUC / PR AUC / Brier |\n|---|---|---:|---:|---:|---|")
    for name in dict.fromkeys(r["table"] for r in records):
        medians = {}
        for label in ("baseline", "this"):
            rows = [r for r in records if r["table"] == name and r["code"] == label]
            medians[label] = {k: statistics.median(r[k] for r in rows) for k in ("wall", "cpu", "peak_mib")}
            first = rows[0]
            print(f"| {name} | {label} ({args.baseline if label == 'baseline' else 'HEAD'}) | "
                  f"{medians[label]['wall']:.1f} | {medians[label]['cpu']:.1f} | {medians[label]['peak_mib']:.0f} | "
                  f"{first['roc_auc']} / {first['pr_auc']} / {first['brier']} |")
        print(f"| {name} | ratio this/baseline | {medians['this']['wall'] / medians['baseline']['wall']:.2f} | "
              f"{medians['this']['cpu'] / medians['baseline']['cpu']:.2f} | "
              f"{medians['this']['peak_mib'] / medians['baseline']['peak_mib']:.2f} | |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
