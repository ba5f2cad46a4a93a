"""CPU seconds of one selection fold's fit per candidate family, and their ratios to logistic regression's.

The time budget (``churn train --time-budget``, ``pipeline.train.SelectionClock``) has to guess
what a family not fit yet will cost from the families already fit; this measures the ratios it
guesses with.  For each table the rows are prepared as ``churn train`` prepares them (the same
hold-out, column screen, selection subsample and first selection fold, default ``Config``), and
each family's candidate at its defaults (``pipeline.model.make_candidate``, the project's own
settings, ``train.n_threads`` threads) is fit on that fold's fit rows, one family after the other
on the same rows.  It reports process CPU seconds (``time.process_time``: every thread of this
process, CatBoost's and OpenMP's included), wall seconds, and both as ratios to logistic
regression's on the same fold; with ``--repeats`` the medians.

Tables (nothing is downloaded; the files are read in place):

- ``telco``: IBM's Telco Customer Churn CSV (``--telco PATH``);
- ``bigml``: the Orange/BigML table's 80% part (``--bigml PATH``);
- ``generated-N``: a record base from the project's simulator (``pipeline.simulate.generate``,
  seed 1) of 20,000 subscribers and, with ``--large``, 100,000 (``--subscribers`` to change the
  sizes), written under ``--bases`` (git-ignored ``benchmarks/results/`` by default) and reused.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/family_costs.py
    PYTHONPATH=. .venv/bin/python benchmarks/family_costs.py --large --repeats 3
    PYTHONPATH=. .venv/bin/python benchmarks/family_costs.py --tables telco bigml --families logistic catboost

Prints a markdown table (and writes ``benchmarks/results/family_costs.json``, ``--tag`` to rename it).  On a shared
machine read the CPU ratios: wall seconds grow with the load, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = Path("/work/shared/datasets")
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_tables(args: argparse.Namespace) -> dict:
    """The ``Dataset`` of each table asked for, read as ``churn train`` reads it."""
    from pipeline.config import Config
    from pipeline.inputs import load_dataset
    from pipeline.simulate import generate

    config = Config()
    tables = {}
    if "telco" in args.tables:
        if args.telco.exists():
            tables["telco"] = load_dataset(str(args.telco), config=config, id_column="customerID", target="Churn",
                                           positive="Yes", value_column="MonthlyCharges")
        else:
            print(f"skipping telco: {args.telco} not found")
    if "bigml" in args.tables:
        if args.bigml.exists():
            tables["bigml"] = load_dataset(str(args.bigml), config=config, target="Churn", positive="true")
        else:
            print(f"skipping bigml: {args.bigml} not found")
    if "generated" in args.tables:
        sizes = list(args.subscribers) + ([args.large_subscribers] if args.large else [])
        for size in sizes:
            base = args.bases / f"family-costs-base-{size}-seed1"
            if not (base / "manifest.json").exists():
                print(f"generating {size:,} subscribers into {base}", flush=True)
                generate(size, seed=1, out=base, overwrite=True)
            tables[f"generated-{size:,}"] = load_dataset(str(base), config=config)
    return tables


def selection_fold(dataset, config):
    """The fit rows (features, labels) of the first selection fold, as ``pipeline.train._train`` makes them.

    Stratified hold-out, column screen on the training part, ``train.selection_max_rows``
    subsample, first of the selection folds (stratified; folds by time when the rows come
    from several snapshots, as in ``train``)."""
    from pipeline.train import selection_folds, selection_rows, training_split

    split = training_split(dataset, config)
    X_sel, y_sel, periods_sel = selection_rows(split.X_train, split.y_train, split.periods_train, config)
    fit, _ = selection_folds(X_sel, y_sel, config, periods_sel)[0]
    return X_sel.iloc[fit], y_sel[fit], split.drop


def measure(dataset, families: list[str], repeats: int) -> list[dict]:
    """Each family's CPU and wall seconds for one fit on the first selection fold (``repeats`` times)."""
    from threadpoolctl import threadpool_limits

    from pipeline.config import Config
    from pipeline.model import make_candidate

    config = Config()
    X, y, drop = selection_fold(dataset, config)
    records = []
    with threadpool_limits(limits=config.train.n_threads):
        for repeat in range(repeats):
            for family in families:
                estimator = make_candidate(family, drop_columns=drop, seed=config.train.seed,
                                           n_threads=config.train.n_threads)
                wall, cpu = time.perf_counter(), time.process_time()
                estimator.fit(X, y)
                records.append({"family": family, "repeat": repeat, "fit_rows": len(y),
                                "cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall})
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["telco", "bigml", "generated"],
                        choices=("telco", "bigml", "generated"))
    parser.add_argument("--telco", type=Path, default=DEFAULT_DATASETS / "telco_customer_churn.csv",
                        help="IBM Telco Customer Churn CSV (read in place)")
    parser.add_argument("--bigml", type=Path, default=DEFAULT_DATASETS / "churn-bigml-80.csv",
                        help="the Orange/BigML table's 80%% part (read in place)")
    parser.add_argument("--subscribers", type=int, nargs="*", default=[20_000],
                        help="sizes of the generated bases always measured")
    parser.add_argument("--large", action="store_true", help="also measure a generated base of --large-subscribers")
    parser.add_argument("--large-subscribers", type=int, default=100_000)
    parser.add_argument("--bases", type=Path, default=RESULTS, help="folder of the generated bases (reused)")
    parser.add_argument("--families", nargs="+", default=["logistic", "hist_gradient_boosting", "catboost"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tag", default="family_costs", help="name of the results file")
    args = parser.parse_args()
    if args.families[0] != "logistic":
        parser.error("--families must start with logistic: the ratios are to its cost")

    RESULTS.mkdir(parents=True, exist_ok=True)
    tables = load_tables(args)
    rows = []
    for name, dataset in tables.items():
        records = measure(dataset, args.families, args.repeats)
        medians = {f: {k: statistics.median(r[k] for r in records if r["family"] == f) for k in ("cpu", "wall")}
                   for f in args.families}
        for family in args.families:
            row = {"table": name, "family": family, "fit_rows": records[0]["fit_rows"], **medians[family],
                   "cpu_ratio": medians[family]["cpu"] / medians["logistic"]["cpu"],
                   "wall_ratio": medians[family]["wall"] / medians["logistic"]["wall"]}
            rows.append(row)
            print(f"{name} {family}: {row['cpu']:.2f} CPU s, {row['wall']:.2f} s wall on {row['fit_rows']:,} rows "
                  f"(x{row['cpu_ratio']:.1f} CPU, x{row['wall_ratio']:.1f} wall of logistic)", flush=True)
    load = os.getloadavg()
    out = RESULTS / f"{args.tag}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": load,
                               "repeats": args.repeats, "rows": rows}, indent=1))
    print(f"\nload average {load[0]:.1f}, {args.repeats} repetition(s), medians\n")
    print("| table | fit rows | family | CPU s per fold | wall s | CPU / logistic | wall / logistic |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['table']} | {row['fit_rows']:,} | {row['family']} | {row['cpu']:.2f} | {row['wall']:.2f} | "
              f"{row['cpu_ratio']:.1f} | {row['wall_ratio']:.1f} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
