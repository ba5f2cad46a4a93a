"""What the response (uplift) learners achieve on the simulator, judged by its ground truth.

Test bed (no new pilot needed): ``pipeline.simulate.simulate(N, seed=1)`` gives a base and its
truth (``true_churn_probability`` p, ``offer_response_uplift`` u).  A randomised pilot takes
``share`` of the base's active subscribers, half offered; its outcomes are drawn from the truth:
offered ~ Bernoulli(p - u), control ~ Bernoulli(p), independently (seeded).  Every learner x
base family is fit on the pilot as a :class:`pipeline.response.ResponseModel` (5-fold
out-of-fold calibration by the best linear predictor, then a fit on the whole pilot), and
:func:`pipeline.response.train_response` selects among them (hold-out 25%, cross-validated
Qini, one-SE rule).  The calibration slope must be positive at ``--significance`` (by default
``ResponseConfig``'s, 0.01; selection divides it by the number of candidates).  Each model is
then judged on a fresh base (seed 2) against its truth:

* ``corr``: Spearman correlation of the raw predicted uplift with the true u;
* ``AUUC``: area under the cumulative true-u curve of the raw ranking, normalised as
  (model - random) / (oracle - random), so 0 is a random ranking and 1 ranks by the true u;
* ``slope``/``het``: the calibration slope learnt on the pilot, and whether heterogeneity was
  detected (else the model predicts the average effect for everyone);
* the list: subscribers whose estimated net value is positive,
  ``net = u_hat * V - c - d * (1 - p + u_hat)`` with ``V = CLV + ETF waived``
  (``CLV = 0.4 * fee * 0.99 / (1 + i - 0.99)``, ``i`` the monthly rate of 10% a year;
  ETF waived = the feature ``etf_waivable_amount``), ``d = 0.5 * fee``, ``c = 0.05 * fee``, and
  ``p`` the true churn probability (``net (model p)``: p from a logistic churn model trained
  on the seed-1 base's own outcomes); its TRUE net value uses the true u and p.
* baselines: the oracle (true net > 0), the riskiest by true p and a random list (its expected
  value), each of the model list's size and of the oracle's; ``top K by estimate``: the K
  subscribers (K = the oracle's list size) with the highest estimated net value, whatever its sign;
* the ceiling: a regressor of the TRUE u on the features of the whole seed-1 base (no outcome
  noise), the best any model of these features could rank.

    .venv/bin/python benchmarks/uplift_learners.py                  # 100k, shares 0.1 0.2 0.3, 1 draw
    .venv/bin/python benchmarks/uplift_learners.py --draws 3        # 3 pilot draws per share
    .venv/bin/python benchmarks/uplift_learners.py --shares 0.2 --learners two_model --families logistic

Prints a markdown table (figures in KRW million for the base of N); writes raw rows to
``benchmarks/results/uplift_learners.csv``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results"


def base_of(n_subscribers: int, seed: int):
    """Features, labels, true p and u, and per-subscriber value and costs of a simulated base."""
    import pandas as pd

    from pipeline import simulate
    from pipeline.dataset import records_dataset
    from pipeline.records import Records, validate_records

    frames = simulate.simulate(n_subscribers, seed=seed)
    manifest = frames["manifest"]
    tables = {name: frames[name] for name in ("subscribers", "usage_monthly", "contacts", "breach_exposure", "outcomes")}
    records = validate_records(Records(**tables, snapshot_date=pd.Timestamp(manifest["snapshot_date"]),
                                       disclosure_date=pd.Timestamp(manifest["disclosure_date"]),
                                       source=f"simulated seed {seed}"))
    dataset = records_dataset(records)
    truth = frames["truth"].set_index("subscriber_id").reindex(dataset.ids)
    fee = dataset.frame["monthly_fee"].to_numpy(dtype=float)
    monthly_rate = 1.1 ** (1 / 12) - 1
    clv = 0.4 * fee * 0.99 / (1 + monthly_rate - 0.99)
    return {
        "X": dataset.frame,
        "label": dataset.label.to_numpy().astype(int),
        "p": truth["true_churn_probability"].to_numpy(dtype=float),
        "u": truth["offer_response_uplift"].to_numpy(dtype=float),
        "value": clv + dataset.frame["etf_waivable_amount"].to_numpy(dtype=float),
        "offer_cost": 0.5 * fee,
        "contact_cost": 0.05 * fee,
    }


def net_value(uplift, p, base):
    """Net value of calling each subscriber: ``u V - c - d (1 - p + u)``."""
    return uplift * base["value"] - base["contact_cost"] - base["offer_cost"] * (1 - p + uplift)


def truth_auuc(true_uplift, score):
    """Normalised area under the cumulative true-uplift curve of ``score``'s ranking (ties one cut)."""
    import numpy as np

    def area(values, scores):
        order = np.argsort(-scores, kind="stable")
        sorted_scores = scores[order]
        ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
        x = np.r_[0, ends + 1] / scores.size
        y = np.r_[0, np.cumsum(values[order])[ends]]
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))

    random = true_uplift.sum() / 2
    oracle = area(true_uplift, true_uplift)
    return (area(true_uplift, np.asarray(score, dtype=float)) - random) / (oracle - random)


def pilot_of(base, share: float, seed: int):
    """Rows, treatment and outcomes of a randomised pilot on ``share`` of the base, half offered."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = base["p"].size
    rows = np.sort(rng.choice(n, size=round(share * n), replace=False))
    treatment = np.zeros(rows.size, dtype=int)
    treatment[rng.choice(rows.size, size=rows.size // 2, replace=False)] = 1
    p, u = base["p"][rows], base["u"][rows]
    churned = (rng.random(rows.size) < np.where(treatment == 1, p - u, p)).astype(int)
    return base["X"].iloc[rows].reset_index(drop=True), treatment, churned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--draws", type=int, default=1, help="pilot draws per share (seeds 1000 + draw)")
    parser.add_argument("--learners", nargs="+", default=["two_model", "class_transformation", "x_learner"])
    parser.add_argument("--families", nargs="+", default=["logistic", "hist_gradient_boosting"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--significance", type=float, default=None,
                        help="one-sided level of the calibration slope test (default: ResponseConfig's)")
    parser.add_argument("--no-selection", action="store_true", help="skip train_response's selection")
    args = parser.parse_args()
    if args.significance is None:
        from pipeline.config import ResponseConfig

        args.significance = ResponseConfig().significance

    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr
    from threadpoolctl import threadpool_limits

    import sklearn.ensemble  # noqa: F401  (loads OpenMP so that the limit applies)
    from pipeline.model import make_candidate
    from pipeline.config import ResponseConfig
    from pipeline.response import ResponseModel, make_learner, make_regressor, train_response

    started = time.perf_counter()
    train_base, test_base = base_of(args.subscribers, 1), base_of(args.subscribers, 2)
    print(f"bases built in {time.perf_counter() - started:.0f}s: {train_base['p'].size:,} and {test_base['p'].size:,} "
          f"active subscribers; true mean uplift {test_base['u'].mean():.4f} (sd {test_base['u'].std():.4f})", flush=True)
    drop = ("subscriber_id",)
    rows = []
    with threadpool_limits(limits=args.threads):
        churn_model = make_candidate("logistic", drop_columns=drop, seed=0).fit(train_base["X"], train_base["label"])
        model_p = churn_model.predict_proba(test_base["X"])[:, 1]
        u, p = test_base["u"], test_base["p"]
        true_net = net_value(u, p, test_base)
        oracle = true_net > 0
        by_risk = np.argsort(-p, kind="stable")
        mean_net = float(true_net.mean())

        oracle_size = int(oracle.sum())

        def judge(name, share, draw, raw, uplift, calibration, extra):
            chosen = net_value(uplift, p, test_base) > 0
            chosen_model_p = net_value(uplift, model_p, test_base) > 0
            forced = np.argsort(-net_value(uplift, p, test_base), kind="stable")[:oracle_size]
            size = int(chosen.sum())
            row = {
                "candidate": name, "share": share, "draw": draw,
                "corr": float(spearmanr(raw, u).statistic) if np.ptp(raw) > 0 else float("nan"),
                "auuc_truth": truth_auuc(u, raw),
                "auuc_truth_calibrated": truth_auuc(u, uplift),
                **calibration,
                "list_size": size,
                "true_net": float(true_net[chosen].sum()),
                "true_net_model_p": float(true_net[chosen_model_p].sum()),
                "list_size_model_p": int(chosen_model_p.sum()),
                "top_p_same_size": float(true_net[by_risk[:size]].sum()),
                "random_same_size": mean_net * size,
                "forced_oracle_size": float(true_net[forced].sum()),
                **extra,
            }
            rows.append(row)
            print(f"  {name:<44} corr {row['corr']:+.3f}  AUUC {row['auuc_truth']:+.3f}  "
                  f"slope {row['raw_slope']:+.2f}{'*' if row['heterogeneity'] else ' '}  list {size:>6,}  "
                  f"net {row['true_net'] / 1e6:+8.2f}M  top-{oracle_size} by estimate {row['forced_oracle_size'] / 1e6:+7.2f}M",
                  flush=True)

        def judge_model(name, share, draw, model, extra):
            raw = model.predict_raw(test_base["X"])
            calibration = {"slope": model.slope_, "raw_slope": model.raw_slope_, "slope_se": model.slope_se_,
                           "heterogeneity": model.heterogeneity_, "intercept": model.intercept_}
            judge(name, share, draw, raw, model.calibrate(raw), calibration, extra)

        # The ceiling: regressors of the TRUE uplift on the features of the whole seed-1 base (no
        # outcome noise at all): the best any model of these features could do.
        for family in args.families:
            t0 = time.perf_counter()
            params = {"regressor__alpha": 1.0} if family == "logistic" else {
                "regressor__min_samples_leaf": 50, "regressor__max_leaf_nodes": 31, "regressor__learning_rate": 0.1}
            ceiling = make_regressor(family, drop_columns=drop, params=params).fit(train_base["X"], train_base["u"])
            predicted = ceiling.predict(test_base["X"])
            judge(f"ceiling: true u regressed on features/{family}", 1.0, 0, predicted, predicted,
                  {"slope": 1.0, "raw_slope": 1.0, "slope_se": 0.0, "heterogeneity": True, "intercept": float("nan")},
                  {"seconds": time.perf_counter() - t0})

        for share in args.shares:
            for draw in range(args.draws):
                X, t, y = pilot_of(train_base, share, 1000 + draw)
                print(f"pilot {share:.0%} draw {draw}: {len(X):,} rows, ATE {y[t == 0].mean() - y[t == 1].mean():+.4f}",
                      flush=True)
                for family in args.families:
                    for learner in args.learners:
                        t0 = time.perf_counter()
                        model = ResponseModel(make_learner(learner, family, drop_columns=drop, seed=draw), cv=5,
                                              significance=args.significance, random_state=draw).fit(X, t, y)
                        judge_model(f"{learner}/{family}", share, draw, model, {"seconds": time.perf_counter() - t0})
                if not args.no_selection:
                    # train_response over every candidate above, then at ResponseConfig's defaults.
                    configs = {"all": ResponseConfig(learners=tuple(args.learners), families=tuple(args.families),
                                                     significance=args.significance),
                               "defaults": ResponseConfig(significance=args.significance)}
                    for label, config in configs.items():
                        t0 = time.perf_counter()
                        result = train_response(X, t, y, config=config, seed=draw, n_threads=args.threads,
                                                progress=lambda message: None, drop_columns=drop)
                        judge_model(f"selected, {label} ({result.learner}/{result.family})", share, draw, result.model,
                                    {"seconds": time.perf_counter() - t0,
                                     "holdout_qini": result.metrics["qini_coefficient_raw"],
                                     "holdout_raw_slope": result.metrics["holdout_raw_slope"]})

    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "uplift_learners.csv", index=False)
    oracle_net = float(true_net[oracle].sum())
    print()
    print(f"Test base (seed 2): oracle list {oracle_size:,} subscribers, true net {oracle_net / 1e6:+.2f}M KRW; "
          f"same size by true p {true_net[by_risk[:oracle_size]].sum() / 1e6:+.2f}M, random {mean_net * oracle_size / 1e6:+.2f}M; "
          f"calling everyone {true_net.sum() / 1e6:+.1f}M")
    print()
    print(f"| learner/base | pilot | corr | AUUC | slope (het) | list | true net M | % oracle | net, model p | "
          f"top-p same size | random same size | top {oracle_size} by estimate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    table["heterogeneity"] = table["heterogeneity"].astype(float)
    summary = table.groupby(["candidate", "share"], sort=False).mean(numeric_only=True).reset_index()
    for _, row in summary.iterrows():
        print(f"| {row['candidate']} | {row['share']:.0%} | {row['corr']:+.3f} | {row['auuc_truth']:+.3f} | "
              f"{row['raw_slope']:+.2f} ({row['heterogeneity']:.0%}) | {row['list_size']:,.0f} | {row['true_net'] / 1e6:+.2f} | "
              f"{row['true_net'] / oracle_net:+.0%} | {row['true_net_model_p'] / 1e6:+.2f} | "
              f"{row['top_p_same_size'] / 1e6:+.2f} | {row['random_same_size'] / 1e6:+.2f} | "
              f"{row['forced_oracle_size'] / 1e6:+.2f} |")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
