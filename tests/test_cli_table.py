"""The `churn` command end to end on single churn tables, with a real MLflow SQLite store.

These run the installed console script in a subprocess, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servers import server_env, store_client

CHURN = str(Path(sys.executable).with_name("churn"))
FAST = """
[train]
search_iterations = 1
cv_folds = 3
candidates = {candidates}
blend = false
"""


def run(args, cwd, env=None, check=True):
    result = subprocess.run([CHURN, *args], cwd=cwd, capture_output=True, text=True, env=server_env(**(env or {})),
                            timeout=600)
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


def test_help_answers_at_once():
    started = time.perf_counter()
    result = subprocess.run([CHURN, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "score" in result.stdout
    assert time.perf_counter() - started < 2.0  # generous: the budget is "well under a second"


@pytest.mark.slow  # trains a model through `churn`
def test_train_registers_champion_logs_metrics_and_scores(workdir):
    out = run([*TRAIN, "--config", "boosting.toml"], workdir)
    assert "version 1 is the first model: it is champion" in out.stdout
    client = store_client(workdir)
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
    assert "customer_name (personal data (column name))" in out.stdout
    columns = pd.read_csv(client.download_artifacts(run_id, "data/columns.csv"))
    assert columns.set_index("column").loc["customer_name", "reason"] == "personal data (column name)"
    assert columns.set_index("column").loc["customer", "reason"].startswith("excluded by configuration")

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
    # every subscriber at risk has a reason; a low-risk one listed only for their value may have none
    at_risk = listed["risk_tier"].isin(["medium", "high"])
    assert listed.loc[at_risk, "reason_1"].fillna("").str.len().gt(0).all()


@pytest.mark.slow  # trains a model through `churn`
def test_promotion_gate_and_manual_promote(workdir):
    run([*TRAIN, "--config", "logistic.toml"], workdir)  # v1: linear on a non-linear problem
    second = run([*TRAIN, "--config", "boosting.toml"], workdir)  # v2: boosting sees x squared
    assert "version 2 is champion" in second.stdout
    third = run([*TRAIN, "--config", "logistic.toml"], workdir)
    assert "version 3 stays challenger" in third.stdout
    client = store_client(workdir)
    assert str(client.get_model_version_by_alias("post-breach-churn", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("post-breach-churn", "challenger").version) == "3"
    tags = client.get_model_version("post-breach-churn", "2").tags
    assert tags["replaced_version"] == "1" and "beat version 1" in tags["promotion_reason"]
    # v2 was refit on every row of this same table, so it has seen v3's hold-out: the gate
    # compares v2's own hold-out metric (same rows, model fit without them) instead
    v2_run = client.get_run(client.get_model_version("post-breach-churn", "2").run_id)
    v3_run = client.get_run(client.get_model_version("post-breach-churn", "3").run_id)
    assert v2_run.data.metrics["fit_rows"] == 1200 and v2_run.data.metrics["train_rows"] == 960
    assert v3_run.data.metrics["champion_empc"] == pytest.approx(v2_run.data.metrics["empc"], rel=1e-9)
    promoted = run(["promote", "3"], workdir)
    assert "version 3 is champion (replaced version 2)" in promoted.stdout
    assert str(client.get_model_version_by_alias("post-breach-churn", "champion").version) == "3"


@pytest.mark.parametrize(
    "args, message",
    [
        # slow: these load the training or scoring stack and open an MLflow store before they fail
        pytest.param(["train", "--data", "missing.csv", "--target", "Churn"], "error: missing.csv: not found (expected a record folder, a database URL or a CSV or Parquet table)", marks=pytest.mark.slow),
        pytest.param(["train", "--data", "table.csv", "--target", "Nope"], "error: table.csv: missing column(s) Nope", marks=pytest.mark.slow),
        pytest.param(["train", "--data", "table.csv", "--target", "Churn", "--positive", "Gone"],
                     "no row has the positive label 'Gone'", marks=pytest.mark.slow),
        pytest.param(["train", "--data", "table.csv", "--target", "contract"], "which is not 1/0, true/false or yes/no",
                     marks=pytest.mark.slow),
        pytest.param(["score", "--data", "table.csv", "--output", "x.csv"], "error: cannot load model", marks=pytest.mark.slow),
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
        assert store_client(workdir).search_registered_models() == []


@pytest.mark.slow  # loads the training stack first (seconds); tests/test_tracking_server.py checks the same line fast
def test_unreachable_tracking_server_fails_fast(workdir):
    started = time.perf_counter()
    result = run([*TRAIN, "--tracking-uri", "http://127.0.0.1:9"], workdir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: tracking server http://127.0.0.1:9 is unreachable (ConnectionError)"
    assert time.perf_counter() - started < 30


@pytest.fixture(scope="module")
def scored_model(tmp_path_factory):
    """One trained model on the small table, shared by the scoring tests below."""
    work = tmp_path_factory.mktemp("scoring")
    churn_table().to_csv(work / "table.csv", index=False)
    (work / "boosting.toml").write_text(FAST.format(candidates='["hist_gradient_boosting"]'))
    run([*TRAIN, "--config", "boosting.toml"], work)
    return work


@pytest.mark.slow  # trains a model through `churn`
def test_chunked_and_one_shot_scoring_agree_exactly(scored_model):
    work = scored_model
    (work / "small_chunks.toml").write_text("[scoring]\nchunk_rows = 97\n")
    (work / "one_chunk.toml").write_text("[scoring]\nchunk_rows = 100000\n")
    run(["score", "--data", "table.csv", "--output", "chunked.csv", "--all", "--config", "small_chunks.toml"], work)
    run(["score", "--data", "table.csv", "--output", "whole.csv", "--all", "--config", "one_chunk.toml"], work)
    assert (work / "chunked.csv").read_bytes() == (work / "whole.csv").read_bytes()


@pytest.mark.slow  # trains a model through `churn`
def test_drift_is_logged_and_warned(scored_model):
    work = scored_model
    shifted = churn_table().assign(x=lambda t: t["x"] + 3.0, tenure=lambda t: t["tenure"] * 3)
    shifted.to_csv(work / "shifted.csv", index=False)
    result = run(["score", "--data", "shifted.csv", "--output", "shifted_out.csv"], work)
    assert "warning: input drift: x has population stability index" in result.stderr
    quiet = run(["score", "--data", "table.csv", "--output", "same_out.csv"], work)
    assert "input drift" not in quiet.stderr
    client = store_client(work)
    runs = client.search_runs([client.get_experiment_by_name("post-breach-churn").experiment_id],
                              filter_string="tags.stage = 'score'", order_by=["attributes.start_time DESC"])
    assert runs[1].data.metrics["psi_max"] > 0.2 and runs[0].data.metrics["psi_max"] < 0.1
    assert runs[0].data.tags["model_version"] == "1" and runs[0].data.metrics["rows_scored"] == 1200
    assert len(runs[0].data.params["input_sha256"]) == 64


@pytest.mark.slow  # trains a model through `churn`
def test_signature_check_names_every_missing_and_mistyped_column(scored_model):
    work = scored_model
    broken = churn_table().drop(columns=["tenure", "contract"]).assign(x="high")
    broken.to_csv(work / "broken.csv", index=False)
    result = run(["score", "--data", "broken.csv", "--output", "broken_out.csv"], work, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: broken.csv: missing column(s) the model needs: tenure, contract; "
        "mistyped column(s): x (text, expected number)"
    )
    assert not (work / "broken_out.csv").exists()


@pytest.mark.slow  # trains a model through `churn`
def test_budget_and_capacity_targeting(scored_model):
    work = scored_model
    out = run(["score", "--data", "table.csv", "--output", "cap.csv", "--all", "--capacity", "25"], work)
    assert "targeting by churn risk (response assumed) (capacity 25 calls): 25 subscribers" in out.stdout
    listed = pd.read_csv(work / "cap.csv")
    assert int(listed["targeted"].sum()) == 25
    best = listed.sort_values("expected_net_value", ascending=False).head(25)
    assert set(best["subscriber_id"]) == set(listed.loc[listed["targeted"], "subscriber_id"])
    out = run(["score", "--data", "table.csv", "--output", "budget.parquet", "--all", "--budget", "500"], work)
    listed = pd.read_parquet(work / "budget.parquet")
    assert listed.loc[listed["targeted"], "expected_cost"].sum() <= 500 + 1e-6
    assert "targeting by churn risk (response assumed) (budget 500)" in out.stdout


@pytest.mark.slow  # trains a model through `churn`
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupted_scoring_leaves_no_output(scored_model, signal_name):
    import signal

    work = scored_model
    pd.concat([churn_table(seed=s).assign(customer=lambda t, s=s: t["customer"] + f"-{s}") for s in range(40)]
              ).to_csv(work / "big.csv", index=False)
    (work / "tiny_chunks.toml").write_text("[scoring]\nchunk_rows = 500\n")
    env = server_env(CHURN_PROGRESS="1")  # no MLflow store variable an earlier test left in this process
    process = subprocess.Popen([CHURN, "score", "--data", "big.csv", "--output", "big_out.csv", "--all", "--config",
                                "tiny_chunks.toml"], cwd=work, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env)
    for line in process.stderr:
        if "scored" in line:
            process.send_signal(getattr(signal, signal_name))
            break
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "error: interrupted; no output was written" in err
    assert not (work / "big_out.csv").exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".big_out.csv")]


@pytest.mark.slow  # trains a model through `churn`
def test_a_table_of_several_snapshots_trains_with_folds_by_time(workdir):
    months = [churn_table(600, seed=m).assign(month=f"2025-0{m + 1}-01") for m in range(4)]
    pd.concat(months, ignore_index=True).to_csv(workdir / "stacked.csv", index=False)
    out = run(["train", "--data", "stacked.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
               "--time-column", "month", "--config", "logistic.toml"], workdir)
    assert "month (snapshot date of the row (folds by time))" in out.stdout
    client = store_client(workdir)
    logged = client.get_run(client.get_model_version("post-breach-churn", "1").run_id)
    assert logged.data.tags["folds"] == "time" and logged.data.metrics["n_rows"] == 600  # the latest month
    failed = run(["train", "--data", "stacked.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
                  "--config", "logistic.toml"], workdir, check=False)
    assert failed.returncode == 1
    assert "expected one row per subscriber" in failed.stderr and failed.stderr.count("\n") == 1
