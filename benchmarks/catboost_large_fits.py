"""CatBoost on large fits: category combinations (CatBoost's default) against each category on its own.

``pipeline.model.make_candidate("catboost")`` sets ``max_ctr_complexity=1``: no combinations
of categorical columns on the fits that stop early (``pipeline.model.CATBOOST_LARGE_FIT_ROWS``:
20,000 rows or more when this was measured, 10,000 since), and on smaller fits with two or more
categorical columns (measured by ``benchmarks/accuracy.py``).
This benchmark fits the project's CatBoost candidate both ways on the same rows of generated
breach bases, on all point-in-time features and on the subscriber table alone (where
categories are most of the columns, so combinations would matter most), with several seeds,
and reports hold-out ROC AUC, PR AUC, CPU seconds and trees side by side::

    .venv/bin/python benchmarks/catboost_large_fits.py                      # two scenarios, seeds 1-3
    .venv/bin/python benchmarks/catboost_large_fits.py --scenario usim-whole-base --seeds 1 2 3 4 5

Bases are generated once under ``benchmarks/results/`` (git-ignored; the same bases as
``benchmarks/simulated_accuracy.py``).  Each fit uses 80% of the rows (stratified split, seed 0)
and is scored on the other 20%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated bases")
    parser.add_argument("--scenario", nargs="+", default=["usim-whole-base", "femtocell-waiver"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="CatBoost seeds")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from pipeline.dataset import records_dataset
    from pipeline.model import make_candidate
    from pipeline.records import load_records

    sys.path.insert(0, str(HERE))
    from simulated_accuracy import SUBSCRIBER_ONLY, scenario_base

    rows = []
    for scenario in args.scenario:
        dataset = records_dataset(load_records(scenario_base(scenario, args.subscribers, args.seed)))
        y = dataset.label.to_numpy()
        fit, scored = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
        for columns, name in ((list(dataset.frame.columns), "all features"), (SUBSCRIBER_ONLY, "subscriber table")):
            X = dataset.frame[columns]
            for seed in args.seeds:
                for ctr in (None, 1):
                    model = make_candidate("catboost", drop_columns=("subscriber_id",), seed=seed, n_threads=2)
                    model.set_params(classifier__max_ctr_complexity=ctr)
                    cpu = time.process_time()
                    model.fit(X.iloc[fit], y[fit])
                    cpu = time.process_time() - cpu
                    proba = model.predict_proba(X.iloc[scored])[:, 1]
                    rows.append({"scenario": scenario, "columns": name, "seed": seed,
                                 "combinations": "CatBoost default" if ctr is None else "none (1)",
                                 "roc_auc": roc_auc_score(y[scored], proba),
                                 "pr_auc": average_precision_score(y[scored], proba),
                                 "cpu_s": cpu, "trees": model[-1].tree_count_})
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    means = table.groupby(["scenario", "columns", "combinations"], sort=False)[["roc_auc", "pr_auc", "cpu_s", "trees"]].mean()
    print(f"\nmeans over seeds {args.seeds}, fit on {len(fit):,} rows, scored on {len(scored):,}:")
    print("| scenario | columns | category combinations | ROC AUC | PR AUC | CPU s | trees |\n|---|---|---|---:|---:|---:|---:|")
    for (scenario, columns, combos), row in means.iterrows():
        print(f"| {scenario} | {columns} | {combos} | {row.roc_auc:.4f} | {row.pr_auc:.4f} | {row.cpu_s:.1f} | {row.trees:.0f} |")


if __name__ == "__main__":
    main()
