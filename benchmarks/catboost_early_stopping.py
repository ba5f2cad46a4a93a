"""From how many fit rows CatBoost should stop early: hold-out accuracy and CPU, side by side.

``pipeline.model.CATBOOST_LARGE_FIT_ROWS`` decides which CatBoost fits run at CatBoost's
defaults (1,000 trees on every row) and which hold 10% of their rows out and stop early, with at
most 300 trees.  For each generated base (``--subscribers``, each ``--scenario`` and ``--seed``)
this trains the churn model as ``churn train`` does (``pipeline.train.train``, default
``Config``) once per threshold in ``--thresholds``, on the same rows and hold-out, and reports
the chosen family, hold-out ROC AUC, PR AUC, Brier score and top-decile lift, the ceiling (the
AUC of the simulator's true probabilities on the same hold-out), and the process's CPU and wall
seconds for the training.  Bases are generated under ``benchmarks/results/`` (git-ignored) on
first use and reused.

    .venv/bin/python benchmarks/catboost_early_stopping.py --subscribers 20000 --thresholds 20000 10000

Prints one JSON line per training and a markdown table (``docs/BENCHMARKS.md``, Training speed,
item 18).  Run it from a scratch folder: CatBoost writes ``catboost_info/`` where it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--thresholds", type=int, nargs="+", default=[20_000, 10_000],
                        help="values of pipeline.model.CATBOOST_LARGE_FIT_ROWS to compare")
    parser.add_argument("--scenario", nargs="+", default=["usim-whole-base", "femtocell-waiver"])
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 7])
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    import pipeline.model
    from pipeline.config import Config
    from pipeline.dataset import records_dataset
    from pipeline.evaluate import top_decile_lift
    from pipeline.records import load_records
    from pipeline.train import train
    from simulated_accuracy import scenario_base

    rows = []
    for scenario in args.scenario:
        for seed in args.seed:
            base = scenario_base(scenario, args.subscribers, seed)
            dataset = records_dataset(load_records(base))
            truth = pd.read_parquet(base / "truth").set_index("subscriber_id")["true_churn_probability"]
            for threshold in args.thresholds:
                # make_candidate and the time budget's priors read the constant when they run
                pipeline.model.CATBOOST_LARGE_FIT_ROWS = threshold
                cpu, wall = _cpu_seconds(), time.perf_counter()
                result = train(dataset, Config())
                cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
                y = dataset.label.to_numpy()[result.holdout_index]
                proba = result.holdout_proba
                true_p = truth.reindex(dataset.ids.iloc[result.holdout_index]).to_numpy()
                row = {"scenario": scenario, "seed": seed, "rows": dataset.n_rows, "threshold": threshold,
                       "model": f"{result.family} ({result.calibration})",
                       "roc_auc": round(float(roc_auc_score(y, proba)), 4),
                       "pr_auc": round(float(average_precision_score(y, proba)), 4),
                       "brier": round(float(np.mean((proba - y) ** 2)), 5),
                       "lift": round(float(top_decile_lift(y, proba)), 2),
                       "ceiling": round(float(roc_auc_score(y, true_p)), 4),
                       "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
