"""The `churn` command end to end on single churn tables, with a real MLflow SQLite store.

These run the installed console script in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHURN = str(Path(sys.executable).with_name("churn"))
FAST = """
[train]
search_iterations = 1
cv_folds = 3
candidates = {candidates}
blend = false
"""


def run(args, cwd, env=None, check=True):
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": "", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI")
    full_env.update(env or {})
    result = subprocess.run([CHURN, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"churn {' '.join(args)} failed:\n{result.stderr}")
    return result


def churn_table(n=1200, seed=0):
    """A small churn table: churn rises with x squared (non-linear), a contract type and low tenure."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    tenure = rng.integers(0, 72, size=n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], size=n)
    logit = -2.0 + 1.6 * x**2 - 0.02 * tenure + np.where(contract == "Month-to-month", 0.8, 0.0)
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "customer": [f"C-{i:05d}" for i in range(n)],
            "x": x.round(4),
            "tenure": tenure,
            "contract": contract,
            "monthly": rng.uniform(20, 110, size=n).round(2),
            "customer_name": [f"Person {i}" for i in range(n)],
            "Churn": np.where(churn, "Yes", "No"),
        }
    )


@pytest.fixture()
def workdir(tmp_path):
    churn_table().to_csv(tmp_path / "table.csv", index=False)
    churn_table().drop(columns=["Churn"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    for name, candidates in (("logistic", '["logistic"]'), ("boosting", '["hist_gradient_boosting"]')):
        (tmp_path / f"{name}.toml").write_text(FAST.format(candidates=candidates))
    return tmp_path


TRAIN = ["train", "--data", "table.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
         "--value", "monthly"]


def _client(workdir):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def test_help_answers_at_once():
    started = time.perf_counter()
    result = subprocess.run([CHURN, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "score" in result.stdout
    assert time.perf_counter() - started < 2.0  # generous: the budget is "well under a second"


def test_train_registers_champion_logs_metrics_and_scores(workdir):
    out = run([*TRAIN, "--config", "boosting.toml"], workdir)
    assert "version 1 is the first model: it is champion" in out.stdout
    client = _client(workdir)
    assert str(client.get_model_version_by_alias("post-breach-churn", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("post-breach-churn", "challenger").version) == "1"
    run_id = client.get_model_version("post-breach-churn", "1").run_id
    logged = client.get_run(run_id)
    for metric in ("roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "empc", "lift_10", "gains_20"):
        assert metric in logged.data.metrics
    assert logged.data.metrics["roc_auc"] > 0.7
    assert logged.data.tags["seed"] == "42" and logged.data.tags["stage"] == "train"
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png", "plots/gains_lift.png"} <= artifacts
    # personal data stays out: the name column was never a model input and is in no parameter
    assert not any("Person" in str(v) for v in logged.data.params.values())

    scored = run(["score", "--data", "unlabelled.csv", "--output", "all.csv", "--all"], workdir)
    assert "wrote 1,200 rows" in scored.stdout
    every = pd.read_csv(workdir / "all.csv")
    assert len(every) == 1200 and every["subscriber_id"].is_unique
    assert every["rank"].tolist() == list(range(1, 1201))
    assert every["expected_loss"].is_monotonic_decreasing
    assert {"subscriber_id", "churn_probability", "expected_loss", "risk_tier", "rank", "model_version"} <= set(every)
    assert "customer_name" not in every.columns and set(every["model_version"].astype(str)) == {"1"}

    run(["score", "--data", "table.csv", "--output", "at_risk.parquet"], workdir)  # label present: fine
    listed = pd.read_parquet(workdir / "at_risk.parquet")
    assert 0 < len(listed) < 1200
    # the list: every subscriber at risk, plus any other worth a retention call, in the same order
    assert (listed["risk_tier"].isin(["medium", "high"]) | listed["targeted"]).all()
    keep = (every["risk_tier"] != "low") | every["targeted"]
    assert listed["subscriber_id"].tolist() == every.loc[keep, "subscriber_id"].tolist()
    assert listed["reason_1"].fillna("").str.len().gt(0).all()


def test_promotion_gate_and_manual_promote(workdir):
    run([*TRAIN, "--config", "logistic.toml"], workdir)  # v1: linear on a non-linear problem
    second = run([*TRAIN, "--config", "boosting.toml"], workdir)  # v2: boosting sees x squared
    assert "version 2 is champion" in second.stdout
    third = run([*TRAIN, "--config", "logistic.toml"], workdir)
    assert "version 3 stays challenger" in third.stdout
    client = _client(workdir)
    assert str(client.get_model_version_by_alias("post-breach-churn", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("post-breach-churn", "challenger").version) == "3"
    tags = client.get_model_version("post-breach-churn", "2").tags
    assert tags["replaced_version"] == "1" and "beat version 1" in tags["promotion_reason"]
    promoted = run(["promote", "3"], workdir)
    assert "version 3 is champion (replaced version 2)" in promoted.stdout
    assert str(client.get_model_version_by_alias("post-breach-churn", "champion").version) == "3"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "missing.csv", "--target", "Churn"], "error: missing.csv: file not found"),
        (["train", "--data", "table.csv", "--target", "Nope"], "error: table.csv: missing column(s) Nope"),
        (["train", "--data", "table.csv", "--target", "Churn", "--positive", "Gone"],
         "no row has the positive label 'Gone'"),
        (["train", "--data", "table.csv", "--target", "contract"], "which is not 1/0, true/false or yes/no"),
        (["score", "--data", "table.csv", "--output", "x.csv"], "error: cannot load model"),
        (["score", "--data", "table.csv", "--output", "x.xlsx"], "unsupported output type '.xlsx'"),
    ],
)
def test_errors_are_one_line_with_no_output_and_no_registration(workdir, args, message):
    result = run(args, workdir, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "x.csv").exists() and not (workdir / "x.xlsx").exists()
    if (workdir / "mlflow.db").exists():
        assert _client(workdir).search_registered_models() == []


def test_unreachable_tracking_server_fails_fast(workdir):
    started = time.perf_counter()
    result = run([*TRAIN, "--tracking-uri", "http://127.0.0.1:9"], workdir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: tracking server http://127.0.0.1:9 is unreachable (ConnectionError)"
    assert time.perf_counter() - started < 30
