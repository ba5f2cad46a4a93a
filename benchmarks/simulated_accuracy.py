"""How hard the simulated base is, and what the record features add (issues 3 and 4).

On a generated post-breach base (default 100,000 subscribers, seed 42, each scenario given):
1. the pipeline's own selection and calibration (``pipeline.train.train``) on all point-in-time
   features, against a plain logistic regression (one-hot + scaling, default C) on the same
   features and the same hold-out;
2. the same pipeline on the subscriber table alone (the columns a CRM extract gives:
   tenure, contract, fee, instalment, bundles, plan, age band, region, channel), to show
   what usage, contacts and breach exposure add;
3. the ceiling: the AUC of the simulator's true probabilities on the same hold-out.

    python benchmarks/simulated_accuracy.py [--subscribers 100000] [--scenario usim-whole-base ...]

Prints a markdown table; the figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results"
SUBSCRIBER_ONLY = [
    "subscriber_id", "tenure_months", "contract_type", "months_left_on_contract", "early_termination_fee",
    "etf_to_monthly_fee", "device_instalment_balance", "instalment_to_monthly_fee", "family_bundle",
    "fixed_line_bundle", "plan", "monthly_fee", "age_band", "region", "channel",
]


def scenario_base(scenario: str, subscribers: int, seed: int) -> Path:
    """The generated base of ``scenario`` under ``benchmarks/results/``, generated on first use."""
    from pipeline.simulate import generate

    base = RESULTS / f"sim-{scenario}-{subscribers}-{seed}"
    if not (base / "manifest.json").exists():
        generate(subscribers, seed=seed, scenario=scenario, out=base, overwrite=True)
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scenario", nargs="+", default=["usim-whole-base", "femtocell-waiver"])
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from pipeline.config import Config
    from pipeline.dataset import records_dataset
    from pipeline.evaluate import top_decile_lift
    from pipeline.model import make_candidate
    from pipeline.records import load_records
    from pipeline.train import train

    rows = []
    for scenario in args.scenario:
        base = scenario_base(scenario, args.subscribers, args.seed)
        dataset = records_dataset(load_records(base))
        truth = pd.read_parquet(base / "truth")[["subscriber_id", "true_churn_probability"]]
        config = Config()
        started = time.perf_counter()
        full = train(dataset, config)
        seconds = time.perf_counter() - started
        holdout = full.holdout_index
        y = dataset.label.to_numpy()[holdout]
        ids = dataset.ids.iloc[holdout]
        true_p = truth.set_index("subscriber_id")["true_churn_probability"].reindex(ids).to_numpy()

        train_idx = np.setdiff1d(np.arange(dataset.n_rows), holdout)
        X_all = dataset.frame
        plain = make_candidate("logistic", drop_columns=("subscriber_id",), seed=config.train.seed)
        plain.fit(X_all.iloc[train_idx], dataset.label.to_numpy()[train_idx])
        plain_p = plain.predict_proba(X_all.iloc[holdout])[:, 1]

        subscriber_only = type(dataset)(**{**dataset.__dict__, "frame": X_all[SUBSCRIBER_ONLY]})
        narrow = train(subscriber_only, config)
        assert np.array_equal(narrow.holdout_index, holdout)

        for name, proba in (
            ("pipeline, all record features", full.holdout_proba),
            ("plain logistic regression, all record features", plain_p),
            ("pipeline, subscriber table only", narrow.holdout_proba),
            ("true probabilities (ceiling)", true_p),
        ):
            rows.append({"scenario": scenario, "model": name, "roc_auc": roc_auc_score(y, proba),
                         "top_decile_lift": top_decile_lift(y, proba),
                         "brier": float(np.mean((proba - y) ** 2))})
        rows[-4]["fit_seconds"] = seconds
        print(f"{scenario}: churn rate {dataset.label.mean():.2%}, selected {full.family} "
              f"({full.calibration}), {seconds:.0f}s", flush=True)
    table = pd.DataFrame(rows)
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    lines = ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
             for row in table.itertuples(index=False)]
    print("\n".join([header, *lines]))


if __name__ == "__main__":
    main()
