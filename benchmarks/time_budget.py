"""Is ``churn train --time-budget SECONDS`` honoured on real tables, and what does a budget cost in accuracy?

For each table, ``churn train`` runs once without a budget, then with budgets of ``--fractions`` of
that run's own training step (``timing.total_seconds``: model selection and the model's fits, what
the budget covers; reading the data, the response model and logging are not counted), each in a
fresh folder with its own MLflow store.  It reports, per run: the training step's seconds and their
ratio to the budget (the goal: at most 1.10), the whole command's wall and CPU seconds, the
hold-out ROC AUC / PR AUC / Brier, and what was skipped or stopped to stay within the budget.

Tables, as in ``benchmarks/training_speed.py`` (nothing is downloaded; the files are read in place):
``telco`` (IBM Telco, 7,043 rows), ``bigml`` (the Orange/BigML table, both parts joined),
``generated`` (``churn generate --subscribers N --seed 1``).  Usage::

    .venv/bin/python benchmarks/time_budget.py --tables telco bigml
    .venv/bin/python benchmarks/time_budget.py --tables generated --subscribers 100000 --fractions 0.5

Results: ``benchmarks/results/<tag>.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from training_speed import DEFAULT_DATASETS, RESULTS, ROOT, prepare_tables, run

SKIPPED = re.compile(r"candidate\(s\) skipped to stay within the time budget: (.*)")


def training_step_seconds(folder: Path) -> float:
    """``timing.total_seconds`` of the churn model's training run in the folder's embedded store."""
    with sqlite3.connect(folder / "mlflow.db") as db:
        found = db.execute(
            "SELECT m.value FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
            "WHERE t.key = 'stage' AND t.value = 'train' AND m.key = 'timing.total_seconds'").fetchall()
    if len(found) != 1:
        raise SystemExit(f"error: {folder}: expected one training run's timing.total_seconds, found {len(found)}")
    return float(found[0][0])


def measure(name: str, train_args: list[str], budget: float | None, work: Path, label: str) -> dict:
    """One ``churn train`` (with ``--time-budget`` when ``budget``), measured in a fresh folder."""
    folder = work / f"{name}-{label}"
    folder.mkdir()
    extra = ["--time-budget", f"{budget:.2f}"] if budget is not None else []
    measured = run(ROOT, ["train", *train_args, *extra], folder, keep_stdout=True)
    stdout = measured.pop("stdout")
    step = training_step_seconds(folder)
    shutil.rmtree(folder)
    skipped = SKIPPED.search(stdout)
    record = {"table": name, "budget": budget, "step_seconds": step,
              "step_to_budget": step / budget if budget else None,
              "skipped": skipped.group(1) if skipped else "", **measured}
    shown = f"{record['step_to_budget']:.2f} of the budget" if budget else "no budget"
    print(f"{name} {label}: training step {step:.1f} s ({shown}), command {measured['wall']:.1f} s wall, "
          f"{measured['cpu']:.1f} CPU s, hold-out ROC AUC {measured['roc_auc']}; skipped: {record['skipped'] or '-'}",
          flush=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["telco", "bigml"], choices=("telco", "bigml", "generated"))
    parser.add_argument("--subscribers", type=int, default=100_000, help="size of the generated base")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5],
                        help="budgets as fractions of the unlimited run's training step")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--tag", default="time_budget", help="name of the results file")
    args = parser.parse_args()
    if not all(0 < f for f in args.fractions):
        parser.error("--fractions must be positive")
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="churn-budget-") as tmp:
        work = Path(tmp)
        for name, train_args in prepare_tables(args.tables, args.datasets, work, args.subscribers).items():
            unlimited = measure(name, train_args, None, work, "unlimited")
            records.append(unlimited)
            for fraction in args.fractions:
                budget = fraction * unlimited["step_seconds"]
                records.append({**measure(name, train_args, budget, work, f"budget-{fraction:g}"), "fraction": fraction})
    out = RESULTS / f"{args.tag}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "load_average": os.getloadavg(), "records": records}, indent=1))
    print("\n| table | budget s | training step s | step / budget | command wall s | CPU s | "
          "hold-out ROC AUC / PR AUC / Brier | skipped or stopped |\n|---|---:|---:|---:|---:|---:|---|---|")
    for r in records:
        budget = f"{r['budget']:.1f}" if r["budget"] else "none"
        ratio = f"{r['step_to_budget']:.2f}" if r["budget"] else ""
        print(f"| {r['table']} | {budget} | {r['step_seconds']:.1f} | {ratio} | {r['wall']:.1f} | {r['cpu']:.1f} | "
              f"{r['roc_auc']} / {r['pr_auc']} / {r['brier']} | {r['skipped'] or '-'} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
