"""What the retention lists really earn, on the simulator's own truth (issue 11).

For each scenario: a base generated with ``--train-seed`` trains the churn and response
models exactly as ``churn train`` does (with light selection settings, ``LIGHT_TRAIN``, unless
``--config`` says otherwise); a second base, generated with ``--score-seed``, which the
models never saw, is scored as ``churn score --all`` does, once per ``--budgets`` amount and
``--capacities`` count, with the response model and without it (``--no-response``: targeting
by risk).  Every list is then judged on the truth of the scored base:

- each subscriber's true probability of leaving within 90 days without a contact ``p`` and
  the true effect of a contact ``u`` (``truth/``: ``true_churn_probability``,
  ``offer_response_uplift``);
- the true value of a save ``V``: the lifetime value at the subscriber's true churn once
  the breach has passed (``lifetime_monthly_churn``; 40% margin, 10% a year discount), less
  the termination fee their leaving would bring in (none when the fee waiver binds them);
- the offer ``d`` = half a monthly fee, taken by everyone targeted who stays, and the
  contact ``c`` = 0.05 of a monthly fee (the defaults of ``[campaign]``);

so targeting subscriber ``i`` truly earns ``u V - c - d (1 - p + u)`` and costs
``c + d (1 - p + u)``.  Beside the project's lists, at the same budget (true cost) or the
same number of calls: the **oracle**, who knows every ``p``, ``u`` and ``V`` (the best list
there is: greedy by true net value per cost, positive values only); the subscribers with the
highest **churn probability** (the project's own scores), and **random** lists (mean of
``--random-draws``).  The response model's ranking is also scored against the true
uplift: the area under the true-uplift gains curve, as a share of the oracle's, and its
rank correlation with ``u``.

    python benchmarks/retention_value.py                      # both breach scenarios, 100,000 subscribers
    python benchmarks/retention_value.py --subscribers 1000000 --scenario usim-whole-base
    python benchmarks/retention_value.py --config my.toml --tag my-config

Bases and MLflow stores go under ``benchmarks/results/`` (git-ignored, reused when present);
the table is printed as markdown and written to ``results/retention_value-<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results"
#: Light selection settings (those ``churn demo`` used until 2026-12-01: one random-search draw
#: per family, three folds, a 20,000-row selection sample, CatBoost up to 40,000 training rows):
#: the benchmark measures targeting, not selection, and its recorded figures were made with them.
LIGHT_TRAIN = {"search_iterations": 1, "cv_folds": 3, "selection_max_rows": 20_000, "catboost_max_rows": 40_000}


def truth_table(base: Path, campaign):
    """Per subscriber of a generated base: true p, u, value of a save, offer and contact cost, net and cost."""
    import numpy as np
    import pandas as pd

    from pipeline.targeting import clv

    truth = pd.read_parquet(base / "truth", columns=["subscriber_id", "true_churn_probability", "offer_response_uplift",
                                                     "lifetime_monthly_churn", "waiver_bound"])
    subs = pd.read_parquet(base / "subscribers", columns=["subscriber_id", "monthly_fee", "early_termination_fee"])
    frame = truth.merge(subs, on="subscriber_id", validate="one_to_one")
    fee = frame["monthly_fee"].to_numpy()
    p = frame["true_churn_probability"].to_numpy()
    u = frame["offer_response_uplift"].to_numpy()
    lifetime = clv(fee, campaign, monthly_churn=frame["lifetime_monthly_churn"].to_numpy())
    collected = np.where(frame["waiver_bound"].to_numpy(dtype=bool), 0.0, frame["early_termination_fee"].to_numpy())
    value = np.maximum(lifetime - collected, 0.0)
    offer, contact = campaign.offer_cost_months * fee, campaign.contact_cost_months * fee
    frame["value"] = value
    frame["true_cost"] = contact + offer * (1.0 - p + u)
    frame["true_net"] = u * value - frame["true_cost"]
    return frame.set_index("subscriber_id")


def greedy_within(order, cost, budget: float):
    """The longest prefix of ``order`` whose total cost stays within ``budget``."""
    import numpy as np

    return order[: int(np.searchsorted(np.cumsum(cost[order]), budget, side="right"))]


def reference_lists(truth, proba, *, budget=None, capacity=None, size=None, draws=200, seed=0) -> dict:
    """True net value of the oracle, top-probability and random lists at a budget, a capacity or a size."""
    import numpy as np

    net, cost = truth["true_net"].to_numpy(), truth["true_cost"].to_numpy()
    rng = np.random.default_rng(seed)

    def pick(order):
        if budget is not None:
            return greedy_within(order, cost, budget)
        return order[: capacity if capacity is not None else size]

    positive = np.flatnonzero(net > 0)
    if budget is not None:
        oracle_order = positive[np.argsort(-(net[positive] / cost[positive]), kind="stable")]
    else:
        oracle_order = positive[np.argsort(-net[positive], kind="stable")]
    oracle = pick(oracle_order)
    top = pick(np.argsort(-proba, kind="stable"))
    randoms = [pick(rng.permutation(len(net))) for _ in range(draws)]
    return {
        "oracle": (len(oracle), float(net[oracle].sum()), float(cost[oracle].sum())),
        "top probability": (len(top), float(net[top].sum()), float(cost[top].sum())),
        "random": (float(np.mean([len(r) for r in randoms])), float(np.mean([net[r].sum() for r in randoms])),
                   float(np.mean([cost[r].sum() for r in randoms]))),
    }


def ranking_quality(truth, uplift) -> dict:
    """How the response model ranks subscribers against their true uplift."""
    import numpy as np
    from scipy.stats import spearmanr

    u = truth["offer_response_uplift"].to_numpy()
    estimated = np.asarray(uplift, dtype="float64")

    def area(order):
        return float(np.cumsum(u[order]).sum() / len(u))

    model = area(np.lexsort((np.arange(len(u)), -estimated)))
    best = area(np.argsort(-u, kind="stable"))
    baseline = float(u.sum()) * (len(u) + 1) / 2 / len(u)  # a random order's expected area
    constant = np.ptp(estimated) == 0  # the average effect for everyone: no ranking at all
    return {"gains_share_of_oracle": 0.0 if constant else (model - baseline) / (best - baseline),
            "spearman_with_true_uplift": 0.0 if constant else float(spearmanr(estimated, u).statistic)}


def records_ceiling(train_base: Path, score_base: Path, truth, *, seed: int) -> dict:
    """The best a model of the records could do: the true uplift of the training base regressed on
    its point-in-time features (a gradient-boosted regressor given the answers a pilot can only
    estimate), applied to the scored base; a subscriber is called when that estimate, with the
    true probability and value, makes a contact pay.  Returns the list's size and true net value."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    from pipeline.dataset import records_dataset
    from pipeline.records import load_records

    def table(base):
        data = records_dataset(load_records(base), require_label=False)
        X = data.frame.drop(columns=["subscriber_id"])
        for column in X.columns:
            if X[column].dtype.kind not in "biuf":
                X[column] = X[column].astype("category")
        return data.ids, X

    train_ids, X_train = table(train_base)
    ids, X = table(score_base)
    for column in X.columns:
        if isinstance(X_train[column].dtype, pd.CategoricalDtype):
            X[column] = pd.Categorical(X[column].astype(str), categories=X_train[column].cat.categories)
    u_train = pd.read_parquet(train_base / "truth", columns=["subscriber_id", "offer_response_uplift"]).set_index(
        "subscriber_id").loc[train_ids, "offer_response_uplift"].to_numpy()
    model = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed).fit(X_train, u_train)
    estimate = model.predict(X)
    rows = truth.loc[ids]
    fee = rows["monthly_fee"].to_numpy()
    p = rows["true_churn_probability"].to_numpy()
    net = estimate * rows["value"].to_numpy() - 0.05 * fee - 0.5 * fee * (1 - p + estimate)
    chosen = net > 0
    u = rows["offer_response_uplift"].to_numpy()
    return {"targeted": int(chosen.sum()), "true_net_value": float(rows["true_net"].to_numpy()[chosen].sum()),
            "true_cost": float(rows["true_cost"].to_numpy()[chosen].sum()),
            "r2_with_true_uplift": float(1 - np.mean((estimate - u) ** 2) / np.var(u))}


def run(args) -> list[dict]:
    import pandas as pd

    from pipeline.config import load_config, with_overrides
    from pipeline.jobs import score_job, train_job
    from pipeline.simulate import GENERATOR_VERSION, generate

    config = load_config(args.config)
    if args.config is None:
        config = with_overrides(config, train=LIGHT_TRAIN)
    rows = []
    for scenario in args.scenario:
        bases = {}
        for role, seed in (("train", args.train_seed), ("score", args.score_seed)):
            base = RESULTS / f"rv-{scenario}-{args.subscribers}-seed{seed}-v{GENERATOR_VERSION}"
            if not (base / "manifest.json").exists():
                generate(args.subscribers, seed=seed, scenario=scenario, out=base, overwrite=True)
            bases[role] = base
        store = RESULTS / f"rv-store-{args.tag}-{scenario}-{args.subscribers}"
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        started = time.perf_counter()
        trained = train_job(str(bases["train"]), config=config, uri=uri, progress=lambda m: None)
        train_seconds = time.perf_counter() - started
        response = trained.response
        print(f"{scenario}: churn model {trained.family}, hold-out AUC {trained.metrics['roc_auc']:.3f}; response "
              + (f"{response.learner}, hold-out Qini {response.metrics.get('qini_coefficient', float('nan')):.4f}, "
                 f"heterogeneity {'yes' if response.heterogeneous else 'no'}" if not response.skipped
                 else f"skipped ({response.skipped})")
              + f"; {train_seconds:.0f}s", flush=True)
        truth = truth_table(bases["score"], config.campaign)
        ceiling = records_ceiling(bases["train"], bases["score"], truth, seed=args.train_seed)
        print(f"{scenario}: records ceiling: a model of the features fit to the true uplift explains "
              f"{ceiling['r2_with_true_uplift']:.1%} of its variance on the scored base and calls "
              f"{ceiling['targeted']:,} subscribers for a true net value of {ceiling['true_net_value']:,.0f}", flush=True)
        rows.append({"scenario": scenario, "limit": "no limit", "list": "records ceiling (a model fit to the true uplift)",
                     "targeted": ceiling["targeted"], "true_net_value": ceiling["true_net_value"],
                     "true_cost": ceiling["true_cost"]})
        limits = [("budget", b) for b in args.budgets] + [("capacity", c) for c in args.capacities]
        for kind, limit in limits:
            for use_response in (True, False):
                out = store / f"list-{kind}-{limit:.0f}-{'response' if use_response else 'risk'}.parquet"
                scored = score_job(str(bases["score"]), str(out), config=config, uri=uri, write_all=True,
                                   use_response=use_response, progress=lambda m: None,
                                   **{kind: (float(limit) if kind == "budget" else int(limit))})
                listed = pd.read_parquet(out, columns=["subscriber_id", "targeted", "churn_probability",
                                                       "estimated_uplift", "expected_net_value"])
                listed = listed.set_index("subscriber_id").reindex(truth.index)
                chosen = listed["targeted"].to_numpy(dtype=bool)
                net, cost = truth["true_net"].to_numpy(), truth["true_cost"].to_numpy()
                name = "project, response model" if use_response else "project, by risk (no response model)"
                row = {"scenario": scenario, "limit": f"{kind} {limit:,.0f}", "list": name, "targeted": int(chosen.sum()),
                       "true_net_value": float(net[chosen].sum()), "true_cost": float(cost[chosen].sum()),
                       "expected_net_value": scored.targeting.expected_net_value}
                if use_response and not response.skipped and response.heterogeneous:
                    row.update(ranking_quality(truth, listed["estimated_uplift"].to_numpy()))
                rows.append(row)
                if use_response:
                    proba = listed["churn_probability"].to_numpy()
                    refs = reference_lists(truth, proba, draws=args.random_draws, seed=args.score_seed,
                                           **({"budget": float(limit)} if kind == "budget" else {"capacity": int(limit)}))
                    same = reference_lists(truth, proba, size=int(chosen.sum()), draws=args.random_draws,
                                           seed=args.score_seed)
                    for label, (count, value, spent) in refs.items():
                        rows.append({"scenario": scenario, "limit": f"{kind} {limit:,.0f}", "list": label,
                                     "targeted": count, "true_net_value": value, "true_cost": spent})
                    for label in ("top probability", "random"):
                        count, value, spent = same[label]
                        rows.append({"scenario": scenario, "limit": f"{kind} {limit:,.0f}",
                                     "list": f"{label}, same size as the project's", "targeted": count,
                                     "true_net_value": value, "true_cost": spent})
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table: each list's true net value, and the project's share of the oracle's."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    oracle = frame[frame["list"] == "oracle"].set_index(["scenario", "limit"])["true_net_value"]
    unlimited = frame[frame["list"] == "oracle"].groupby("scenario")["true_net_value"].max()
    frame["share_of_oracle"] = [value / oracle.get((s, lim), unlimited.get(s, float("nan")))
                                for s, lim, value in zip(frame["scenario"], frame["limit"], frame["true_net_value"])]
    lines = ["| scenario | limit | list | targeted | true net value (KRW) | share of the oracle's | true cost (KRW) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in frame.itertuples(index=False):
        lines.append(f"| {row.scenario} | {row.limit} | {row.list} | {row.targeted:,.0f} | {row.true_net_value:,.0f} | "
                     f"{row.share_of_oracle:.0%} | {row.true_cost:,.0f} |")
    quality = frame.dropna(subset=["gains_share_of_oracle"]) if "gains_share_of_oracle" in frame else frame.iloc[:0]
    if len(quality):
        lines += ["", "| scenario | response model ranking: area above random, share of the oracle's | Spearman with true uplift |",
                  "|---|---:|---:|"]
        for scenario, group in quality.groupby("scenario"):
            first = group.iloc[0]
            lines.append(f"| {scenario} | {first.gains_share_of_oracle:.1%} | {first.spearman_with_true_uplift:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--scenario", nargs="+", default=["usim-whole-base", "femtocell-waiver"])
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--score-seed", type=int, default=2)
    parser.add_argument("--budgets", type=float, nargs="*", default=[150_000_000, 30_000_000])
    parser.add_argument("--capacities", type=int, nargs="*", default=[1_000, 5_000])
    parser.add_argument("--random-draws", type=int, default=200)
    parser.add_argument("--config", help="a churn config TOML (default: LIGHT_TRAIN's light selection settings)")
    parser.add_argument("--tag", default="default")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    rows = run(args)
    text = table(rows)
    print(text)
    out = RESULTS / f"retention_value-{args.tag}-{args.subscribers}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "seconds": time.perf_counter() - started}, indent=2))
    print(f"\nwritten to {out} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
