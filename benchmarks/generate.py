"""Benchmark ``churn generate``: wall time and peak memory, and the difficulty of a base.

Timing runs ``pipeline.simulate.generate`` in a fresh subprocess per repetition and reads
the child's peak RSS from ``resource.getrusage(RUSAGE_CHILDREN)``; it prints one markdown
table row (median over the repetitions)::

    .venv/bin/python benchmarks/generate.py                       # 1,000,000 subscribers
    .venv/bin/python benchmarks/generate.py --subscribers 10000000 --repeat 1

``--difficulty`` instead generates a base in memory, builds a quick point-in-time feature
table (simple per-subscriber aggregates of records dated before the snapshot; not the
pipeline's feature module) and reports the hold-out ROC AUC and top-decile lift of a
histogram gradient-boosting model and a plain logistic regression on the label "left
within the horizon after the snapshot", plus the AUC of the true probabilities (the
ceiling no model can beat); the retention pilot's offer group is left out (the offer
changed their outcomes, not their records)::

    .venv/bin/python benchmarks/generate.py --difficulty --subscribers 100000

``--facts`` prints, per scenario, the churn figures that ``docs/simulator.md`` compares with
the public figures (monthly churn after the snapshot, the waiver window's outflow), outside
the retention pilot's offer group::

    .venv/bin/python benchmarks/generate.py --facts --subscribers 100000 --seed 7

``--pilot`` prints, per scenario, what the randomised retention pilot shows (group sizes,
churn of the offer and control groups, the observed uplift with its 95% interval) next to
the truth (the mean ``offer_response_uplift``, the share of backfire subscribers)::

    .venv/bin/python benchmarks/generate.py --pilot --subscribers 100000 --seed 42
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from pipeline import simulate
start = time.perf_counter()
manifest = simulate.generate({n}, seed={seed}, scenario={scenario!r}, out={out!r}, chunk_subscribers={chunk})
print(json.dumps({{"seconds": time.perf_counter() - start, "rows": manifest["rows"]}}))
"""


def time_generate(n: int, seed: int, scenario: str, chunk: int, repeat: int) -> dict:
    """Run ``generate`` ``repeat`` times in subprocesses; return median seconds and peak RSS."""
    seconds, peaks, rows = [], [], {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(dir=ROOT / "data" if (ROOT / "data").is_dir() else None) as tmp:
            out = str(Path(tmp) / "base")
            code = _CHILD.format(root=str(ROOT), n=n, seed=seed, scenario=scenario, out=out, chunk=chunk)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            result = json.loads(done.stdout.strip().splitlines()[-1])
            seconds.append(wall)
            # ru_maxrss is the largest child so far (KiB on Linux): a later, smaller child
            # does not raise it, so report the maximum over the runs.
            peaks.append(max(before, after) / 1024)
            rows = result["rows"]
    return {"seconds": statistics.median(seconds), "all_seconds": seconds, "peak_mib": max(peaks), "rows": rows}


# ------------------------------------------------------------------------------------------
# difficulty: a quick feature table and two models
# ------------------------------------------------------------------------------------------


def quick_features(frames: dict, snapshot: str, horizon_days: int):
    """One row per subscriber from records dated before ``snapshot``; and the label."""
    import numpy as np
    import pandas as pd

    snap = pd.Timestamp(snapshot)
    subs = frames["subscribers"].set_index("subscriber_id")
    x = pd.DataFrame(index=subs.index)
    x["tenure_days"] = (snap - subs["activation_date"]).dt.days
    x["monthly_fee"] = subs["monthly_fee"]
    x["days_to_contract_end"] = (subs["contract_end"] - snap).dt.days
    x["in_contract"] = (x["days_to_contract_end"] > 0).astype(float)
    x["etf"] = subs["early_termination_fee"]
    x["etf_to_fee"] = subs["early_termination_fee"] / subs["monthly_fee"]
    x["instalment_balance"] = subs["device_instalment_balance"]
    x["family_bundle"] = subs["family_bundle"].astype(float)
    x["fixed_line_bundle"] = subs["fixed_line_bundle"].astype(float)
    categorical = ["plan", "contract_type", "age_band", "region", "channel"]
    for column in categorical:
        x[column] = subs[column].astype("category")

    usage = frames["usage_monthly"]
    usage = usage[usage["month"] < snap].copy()
    usage["age"] = ((snap.year - usage["month"].dt.year) * 12 + snap.month - usage["month"].dt.month)
    grouped = usage.groupby("subscriber_id")
    for column in ("voice_minutes", "data_gb", "sms_count", "bill_amount"):
        last3 = usage[usage["age"] <= 3].groupby("subscriber_id")[column].mean()
        prev3 = usage[(usage["age"] > 3) & (usage["age"] <= 6)].groupby("subscriber_id")[column].mean()
        year = grouped[column].mean()
        x[f"{column}_last3"] = last3
        x[f"{column}_change"] = np.log1p(last3) - np.log1p(prev3)
        x[f"{column}_year"] = year
        x[f"{column}_trend"] = np.log1p(last3) - np.log1p(year)
    x["data_to_fee"] = x["data_gb_year"] / x["monthly_fee"]
    x["months_of_usage"] = grouped.size()
    x["payment_delay_days"] = grouped["payment_delay_days"].sum()
    x["late_payments"] = grouped["payment_delay_days"].apply(lambda s: (s > 0).sum())

    contacts = frames["contacts"]
    contacts = contacts[contacts["contact_time"] < snap]
    counts = contacts.groupby(["subscriber_id", "reason"]).size().unstack(fill_value=0)
    for reason in counts.columns:
        x[f"contacts_{reason}"] = counts[reason]
    recent = contacts[contacts["contact_time"] >= snap - pd.Timedelta(days=60)].groupby("subscriber_id").size()
    x["contacts_last_60d"] = recent
    x["days_since_contact"] = (snap - contacts.groupby("subscriber_id")["contact_time"].max()).dt.days
    count_columns = [c for c in x.columns if c.startswith("contacts_")]
    x[count_columns] = x[count_columns].fillna(0)

    exposure = frames["breach_exposure"].set_index("subscriber_id")
    notified = exposure["notification_date"] < snap
    x["exposed"] = x.index.isin(exposure.index).astype(float)
    x["notified"] = notified.reindex(x.index, fill_value=False).astype(float)
    x["directly_harmed"] = (exposure["fraud_loss_amount"] > 0).reindex(x.index, fill_value=False).astype(float)
    x["fraud_loss"] = exposure["fraud_loss_amount"].reindex(x.index).fillna(0)
    x["compensation"] = exposure["compensation_amount"].reindex(x.index).fillna(0)
    x["waiver_eligible"] = exposure["waiver_eligible"].reindex(x.index, fill_value=False).astype(float)
    x["days_to_waiver"] = (exposure["waiver_start"] - snap).dt.days.reindex(x.index)

    constant = [c for c in x.columns if c not in categorical and x[c].nunique(dropna=True) <= 1]
    x = x.drop(columns=constant)

    outcomes = frames["outcomes"].set_index("subscriber_id")["defection_date"].reindex(x.index)
    label = (outcomes.notna() & (outcomes < snap + pd.Timedelta(days=horizon_days))).astype(int)
    return x, label, categorical


def _lift(y, score, share=0.1):
    import numpy as np

    top = np.argsort(-score)[: max(1, int(len(score) * share))]
    return float(np.mean(np.asarray(y)[top]) / np.mean(y))


def difficulty(n: int, seed: int, scenario: str) -> dict:
    """Hold-out AUC and top-decile lift of two models on a quick feature table."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    sys.path.insert(0, str(ROOT))
    from pipeline import simulate

    start = time.perf_counter()
    frames = simulate.simulate(n, seed=seed, scenario=scenario)
    manifest = frames["manifest"]
    x, y, categorical = quick_features(frames, manifest["snapshot_date"], manifest["horizon_days"])
    truth = frames["truth"].set_index("subscriber_id").reindex(x.index)
    not_offered = (truth["pilot_group"] != "offer").to_numpy()
    x, y, truth = x[not_offered], y[not_offered], truth.loc[not_offered, "true_churn_probability"]
    x_train, x_test, y_train, y_test, _, truth_test = train_test_split(
        x, y, truth, test_size=0.3, random_state=seed, stratify=y)
    numeric = [c for c in x.columns if c not in categorical]

    boosted = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=300, learning_rate=0.05,
                                             early_stopping=True, random_state=seed)
    boosted.fit(x_train, y_train)
    p_boosted = boosted.predict_proba(x_test)[:, 1]
    logistic = make_pipeline(
        ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="ignore")), categorical),
        ]),
        LogisticRegression(max_iter=2000),
    )
    logistic.fit(x_train, y_train)
    p_logistic = logistic.predict_proba(x_test)[:, 1]
    return {
        "scenario": scenario, "subscribers": n, "seed": seed, "churn_rate": float(y.mean()),
        "auc_hist_gradient_boosting": float(roc_auc_score(y_test, p_boosted)),
        "auc_logistic": float(roc_auc_score(y_test, p_logistic)),
        "auc_true_probability": float(roc_auc_score(y_test, truth_test)),
        "lift10_hist_gradient_boosting": _lift(y_test, p_boosted),
        "lift10_logistic": _lift(y_test, p_logistic),
        "lift10_true_probability": _lift(y_test, truth_test.to_numpy()),
        "seconds": time.perf_counter() - start,
    }


def fact_figures(n: int, seed: int, scenario: str) -> dict:
    """Churn figures of a generated base that the facts also report."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from pipeline import simulate

    sc = simulate.SCENARIOS[scenario]
    frames = simulate.simulate(n, seed=seed, scenario=scenario)
    snapshot = pd.Timestamp(sc.snapshot_date)
    day = (frames["outcomes"]["defection_date"] - snapshot).dt.days.to_numpy(dtype=float)
    not_offered = (frames["truth"]["pilot_group"] != "offer").to_numpy()  # the offer changed their hazard
    day = np.where(np.isnan(day), np.inf, day)[not_offered]
    figures = {
        "scenario": scenario,
        "left_within_90_days": float(np.mean(day < 90)),
        "monthly_churn": [float(np.mean((day >= a) & (day < a + 30)) / np.mean(day >= a)) for a in (0, 30, 60)],
        "mean_true_probability": float(frames["truth"]["true_churn_probability"][not_offered].mean()),
    }
    if sc.waiver_start:
        first = (pd.Timestamp(sc.waiver_start) - snapshot).days
        stop = first + sc.waiver_days
        window = (day >= first) & (day < stop)
        daily_before = np.mean((day >= first - 30) & (day < first)) / np.mean(day >= first - 30) / 30
        outflow = float(window.sum() / np.sum(day >= first))
        figures["waiver_outflow_share_of_base"] = outflow
        figures["waiver_daily_multiple_of_month_before"] = outflow / sc.waiver_days / daily_before
        last_days = window & (day >= stop - sc.waiver_deadline_days)
        figures["waiver_last_days_share"] = float(last_days.sum() / window.sum())
    return figures


def pilot_figures(n: int, seed: int, scenario: str) -> dict:
    """The retention pilot of a generated base: what its records show and what the truth says."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from pipeline import simulate

    sc = simulate.SCENARIOS[scenario]
    with tempfile.TemporaryDirectory() as tmp:  # written, then only three tables read: any size fits
        simulate.generate(n, seed=seed, scenario=scenario, out=Path(tmp) / "base")
        campaigns = pd.read_parquet(Path(tmp) / "base" / "campaigns")
        outcomes = pd.read_parquet(Path(tmp) / "base" / "outcomes")
        truth = pd.read_parquet(Path(tmp) / "base" / simulate.TRUTH, columns=[
            "subscriber_id", "true_churn_probability", "offer_response_uplift", "contact_backfire"])
    defection = outcomes.set_index("subscriber_id")["defection_date"].reindex(campaigns["subscriber_id"])
    left = ((defection - pd.Timestamp(sc.snapshot_date)).dt.days < sc.horizon_days).to_numpy()
    offer = (campaigns["group"] == "offer").to_numpy()
    control = ~offer
    pilot_truth = truth.set_index("subscriber_id").reindex(campaigns["subscriber_id"])
    uplift = pilot_truth["offer_response_uplift"].to_numpy()
    p = pilot_truth["true_churn_probability"].to_numpy()
    observed = left[control].mean() - left[offer].mean()
    se = np.sqrt(left[control].var() / control.sum() + left[offer].var() / offer.sum())
    return {
        "scenario": scenario, "subscribers": n, "pilot": len(campaigns), "offer": int(offer.sum()),
        "control": int(control.sum()), "churn_offer": float(left[offer].mean()),
        "churn_control": float(left[control].mean()), "observed_uplift": float(observed),
        "ci95": (float(observed - 1.96 * se), float(observed + 1.96 * se)),
        "true_p_offer": float(p[offer].mean()), "true_p_minus_u_offer": float((p - uplift)[offer].mean()),
        "true_p_control": float(p[control].mean()), "true_uplift_offer": float(uplift[offer].mean()),
        "backfire_share_offer": float(pilot_truth["contact_backfire"].to_numpy()[offer].mean()),
        "accepted_share": float(campaigns.loc[offer, "accepted"].astype(bool).mean()),
        "mean_offer_cost": float(campaigns.loc[offer, "offer_cost"].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=None,
                        help="base size (1,000,000; 100,000 with --difficulty or --facts)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scenario", default=None,
                        help="scenario name, or 'all' (default: the simulator's default; all with --facts)")
    parser.add_argument("--chunk-subscribers", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--difficulty", action="store_true", help="report model AUCs instead of timing")
    parser.add_argument("--facts", action="store_true", help="report churn figures to compare with the facts")
    parser.add_argument("--pilot", action="store_true", help="report the retention pilot against the truth")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipeline import simulate

    scenario = args.scenario or simulate.DEFAULT_SCENARIO
    every = scenario == "all" or ((args.facts or args.pilot) and not args.scenario)
    scenarios = list(simulate.SCENARIOS) if every else [scenario]
    if args.pilot:
        print("| scenario | pilot (offer / control) | 90-day churn offer / control | observed uplift (95% CI) "
              "| truth: mean u (offer) | truth: p - u / p | backfire (offer) | accepted | mean credit |")
        print("|---|---|---|---|---:|---|---:|---:|---:|")
        for name in scenarios:
            r = pilot_figures(args.subscribers or 100_000, args.seed, name)
            low, high = r["ci95"]
            print(f"| {name} | {r['pilot']:,} ({r['offer']:,} / {r['control']:,}) "
                  f"| {r['churn_offer']:.2%} / {r['churn_control']:.2%} "
                  f"| {r['observed_uplift']:+.2%} ({low:+.2%} to {high:+.2%}) | {r['true_uplift_offer']:+.2%} "
                  f"| {r['true_p_minus_u_offer']:.2%} / {r['true_p_control']:.2%} | {r['backfire_share_offer']:.1%} "
                  f"| {r['accepted_share']:.1%} | KRW {r['mean_offer_cost']:,.0f} |", flush=True)
        return 0
    if args.facts:
        print("| scenario | left within 90 days | monthly churn, months 1-3 | waiver outflow (share of base) "
              "| x the month before | last-days share |")
        print("|---|---:|---|---:|---:|---:|")
        for name in scenarios:
            r = fact_figures(args.subscribers or 100_000, args.seed, name)
            months = ", ".join(f"{m:.2%}" for m in r["monthly_churn"])
            waiver = (f"{r['waiver_outflow_share_of_base']:.2%} | {r['waiver_daily_multiple_of_month_before']:.1f} "
                      f"| {r['waiver_last_days_share']:.0%}") if "waiver_last_days_share" in r else "- | - | -"
            print(f"| {name} | {r['left_within_90_days']:.2%} | {months} | {waiver} |", flush=True)
        return 0
    if args.difficulty:
        print("| scenario | subscribers | 90-day churn | AUC HGB | AUC logistic | AUC truth | lift@10% HGB "
              "| lift@10% logistic | lift@10% truth |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in scenarios:
            r = difficulty(args.subscribers or 100_000, args.seed, name)
            print(f"| {name} | {r['subscribers']:,} | {r['churn_rate']:.2%} | {r['auc_hist_gradient_boosting']:.3f} "
                  f"| {r['auc_logistic']:.3f} | {r['auc_true_probability']:.3f} "
                  f"| {r['lift10_hist_gradient_boosting']:.2f} | {r['lift10_logistic']:.2f} "
                  f"| {r['lift10_true_probability']:.2f} |", flush=True)
        return 0
    n = args.subscribers or 1_000_000
    r = time_generate(n, args.seed, scenario, args.chunk_subscribers, args.repeat)
    runs = ", ".join(f"{s:.1f}" for s in r["all_seconds"])
    rows = sum(v for k, v in r["rows"].items() if k != simulate.TRUTH)
    print("| subscribers | scenario | record rows | wall time (median) | runs (s) | peak RSS | machine |")
    print("|---:|---|---:|---:|---|---:|---|")
    print(f"| {n:,} | {scenario} | {rows:,} | {r['seconds']:.1f} s | {runs} | {r['peak_mib']:.0f} MiB "
          f"| {platform.machine()}, Python {platform.python_version()} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
