"""`churn generate`, `train`, `score` and `demo` end to end on a generated base of subscriber records."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.records import load_records, write_records_sql
from servers import run_churn, store_client

# Every test here runs `churn` end to end on a base the module generates and trains a model on
# (tens of seconds of CPU): all slow.
pytestmark = pytest.mark.slow

FAST = "[train]\nsearch_iterations = 1\ncv_folds = 3\nblend = false\n"
LIST_COLUMNS = ["rank", "subscriber_id", "churn_probability", "risk_tier", "expected_loss", "model_version"]


def churn(*args, cwd):
    return run_churn(args, cwd, timeout=900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("records")
    (work / "fast.toml").write_text(FAST)
    churn("generate", "--subscribers", "6000", "--seed", "7", "--out", "base", cwd=work)
    out = churn("train", "--data", "base", "--config", "fast.toml", cwd=work)
    return work, out


def test_generated_base_trains_registers_and_logs(trained):
    work, out = trained
    assert "version 1 is the first model: it is champion" in out.stdout
    client = store_client(work)
    version = client.get_model_version_by_alias("post-breach-churn", "champion")
    assert str(version.version) == "1"
    metrics = client.get_run(version.run_id).data.metrics
    assert 0.6 < metrics["roc_auc"] < 0.95
    assert {"empc", "brier", "top_decile_lift", "empc_optimal_fraction"} <= set(metrics)
    inputs = client.get_run(version.run_id).inputs.dataset_inputs
    assert len(inputs) == 1 and {t.key for t in inputs[0].tags} >= {"content_sha256", "rows", "label_rate"}


def test_at_risk_list_columns_order_and_rows(trained):
    work, _ = trained
    churn("score", "--data", "base", "--output", "at_risk.csv", cwd=work)
    churn("score", "--data", "base", "--output", "all.parquet", "--all", cwd=work)
    listed = pd.read_csv(work / "at_risk.csv", dtype={"subscriber_id": str})
    every = pd.read_parquet(work / "all.parquet")
    assert list(listed.columns[: len(LIST_COLUMNS)]) == LIST_COLUMNS or set(LIST_COLUMNS) <= set(listed.columns)
    manifest = json.loads((work / "base" / "manifest.json").read_text())
    records = load_records(work / "base")
    active = records.subscribers["activation_date"] < pd.Timestamp(manifest["snapshot_date"])
    left = records.outcomes.set_index("subscriber_id")["defection_date"] < pd.Timestamp(manifest["snapshot_date"])
    left_before = left.reindex(records.subscribers["subscriber_id"]).fillna(False).to_numpy()
    assert len(every) == int((active.to_numpy() & ~left_before).sum())
    assert every["subscriber_id"].is_unique
    assert listed["rank"].tolist() == list(range(1, len(listed) + 1))
    assert listed["expected_loss"].is_monotonic_decreasing
    assert (listed["risk_tier"].isin(["medium", "high"]) | listed["targeted"]).all()
    assert len(listed) == int((every["risk_tier"].isin(["medium", "high"]) | every["targeted"]).sum())
    assert listed["reason_1"].notna().all() and listed["action"].notna().all()
    # personal fields never reach the list
    text = (work / "at_risk.csv").read_text()
    assert "@example" not in text and "010-" not in text
    assert not {"name", "phone_number", "email"} & set(every.columns)


def test_same_data_and_seed_give_the_same_list(trained):
    work, _ = trained
    churn("score", "--data", "base", "--output", "again.csv", cwd=work)
    churn("score", "--data", "base", "--output", "again2.csv", cwd=work)
    assert (work / "again.csv").read_bytes() == (work / "again2.csv").read_bytes()


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = churn("demo", "--subscribers", "20000", "--workdir", str(tmp_path), cwd=tmp_path)
    assert "at risk:" in out.stdout and "top 10:" in out.stdout and "mlflow ui --backend-store-uri" in out.stdout
    listed = pd.read_csv(tmp_path / "outputs" / "at_risk.csv")
    assert len(listed) > 0 and listed["rank"].iloc[0] == 1
    # one set of defaults: the demo's model was selected with every `churn train` default
    client = store_client(tmp_path)
    params = client.get_run(client.get_model_version_by_alias("post-breach-churn", "champion").run_id).data.params
    defaults = {key: str(value) for key, value in Config().flat().items() if key.startswith("train.")}
    assert {key: params.get(key) for key in defaults} == defaults


def test_database_url_scores_like_the_folder(trained):
    work, _ = trained
    manifest = json.loads((work / "base" / "manifest.json").read_text())
    url = f"sqlite:///{work / 'records.db'}"
    write_records_sql(load_records(work / "base"), url)
    dates = ["--snapshot", manifest["snapshot_date"], "--disclosure", manifest["disclosure_date"]]
    churn("score", "--data", url, "--output", "from_db.parquet", "--all", *dates, cwd=work)
    churn("score", "--data", "base", "--output", "from_folder.parquet", "--all", cwd=work)
    from_db = pd.read_parquet(work / "from_db.parquet")
    from_folder = pd.read_parquet(work / "from_folder.parquet")
    pd.testing.assert_frame_equal(from_db, from_folder)
