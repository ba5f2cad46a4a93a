"""The response model end to end, through the `churn` command as a user runs it.

A generated base carries a randomised retention pilot (``campaigns``); `churn train` learns a
response model from it beside the churn model and registers it through the same gate;
`churn score` uses it (uplift columns, targeting by incremental value), or says what it does
without one; `churn measure` gives a campaign's realised uplift and logs it next to the
scoring run; a single table with a treatment column trains a response model the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servers import run_churn, store_client

pytestmark = pytest.mark.slow

FAST = '[train]\nsearch_iterations = 1\ncv_folds = 3\nblend = false\ncandidates = ["logistic"]\n'
RESPONSE = "post-breach-churn-response"


def churn(*args, cwd):
    return run_churn(args, cwd, timeout=900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("response")
    (work / "fast.toml").write_text(FAST)
    churn("generate", "--subscribers", "8000", "--seed", "11", "--out", "base", cwd=work)
    out = churn("train", "--data", "base", "--config", "fast.toml", cwd=work)
    return work, out


def test_training_registers_a_response_model_beside_the_churn_model(trained):
    work, out = trained
    assert "version 1 is the first model: it is champion" in out.stdout
    assert "rows left out of churn training: " in out.stdout and "(outcome reflects the offer)" in out.stdout
    assert "response model " in out.stdout and "campaign rows; hold-out: Qini coefficient" in out.stdout
    assert f"registered {RESPONSE} version 1; version 1 is the first model: it is champion" in out.stdout
    store = store_client(work)
    version = store.get_model_version_by_alias(RESPONSE, "champion")
    run = store.get_run(version.run_id)
    assert run.data.tags["stage"] == "train-response" and run.data.tags["model_sha256"]
    assert {"qini_coefficient", "auuc", "auuc_random", "qini_coefficient_risk", "ate", "ate_ci_low", "ate_ci_high",
            "blp_slope", "heterogeneity"} <= set(run.data.metrics)
    assert run.data.metrics["ate_ci_low"] <= run.data.metrics["ate"] <= run.data.metrics["ate_ci_high"]
    artifacts = {a.path for folder in ("plots", "evaluation", "selection")
                 for a in store.list_artifacts(version.run_id, folder)}
    assert {"plots/qini.png", "plots/uplift_deciles.png", "evaluation/uplift_by_decile.csv",
            "selection/candidates.csv"} <= artifacts
    from pipeline import tracking

    tracking.connect(f"sqlite:///{work / 'mlflow.db'}")
    loaded = tracking.load_model(f"models:/{RESPONSE}@champion")
    assert loaded.metadata["kind"] == "response" and loaded.metadata["input_columns"]
    # The churn model's run and the response model's run are separate runs of one experiment.
    churn_version = store.get_model_version_by_alias("post-breach-churn", "champion")
    assert churn_version.run_id != version.run_id


def test_scoring_targets_by_the_estimated_response(trained):
    work, _ = trained
    out = churn("score", "--data", "base", "--output", "all.parquet", "--all", "--budget", "5000000", cwd=work)
    assert "with model version 1 and response model version 1" in out.stdout
    assert "targeting by estimated response to the offer (budget 5,000,000)" in out.stdout
    every = pd.read_parquet(work / "all.parquet")
    assert every["estimated_uplift"].notna().all() and (every["response_model_version"] == "1").all()
    assert np.allclose(every["expected_incremental_value"], every["expected_net_value"])
    assert np.allclose(every["expected_save"], every["estimated_uplift"])
    # Everyone who stays takes the offer: cost = contact + offer x (1 - p + uplift).
    fee = every["monthly_value"]
    expected_cost = 0.05 * fee + 0.5 * fee * (1 - every["churn_probability"] + every["estimated_uplift"])
    assert np.allclose(every["expected_cost"], expected_cost)
    assert every["do_not_contact"].dtype == bool
    assert (every.loc[every["targeted"], "expected_net_value"] > 0).all()
    assert (every.loc[every["do_not_contact"], "action"].str.startswith("Do not contact")).all()
    # The scoring run logs the offer-size sweep.
    store = store_client(work)
    scoring = store.search_runs([store.get_experiment_by_name("post-breach-churn").experiment_id],
                                filter_string="tags.stage = 'score'")[0]
    names = {a.path for folder in ("plots", "score") for a in store.list_artifacts(scoring.info.run_id, folder)}
    assert {"plots/offer_sweep.png", "score/offer_sweep.csv"} <= names
    assert scoring.data.params["response_model_version"] == "1"


def test_without_a_response_model_targeting_falls_back_to_risk_and_says_so(trained):
    work, _ = trained
    out = churn("score", "--data", "base", "--output", "risk.csv", "--no-response", cwd=work)
    assert "targeting by churn risk (response assumed)" in out.stdout
    assert "warning: no response model: how subscribers respond to a retention offer is unknown, so targeting " \
           "assumes a contact saves 30% of would-be churners" in out.stderr
    assert "run a randomised pilot first: " in out.stderr and "subscribers offered and " in out.stderr
    listed = pd.read_csv(work / "risk.csv", keep_default_na=False)
    assert (listed["estimated_uplift"] == "").all() and (listed["response_model_version"] == "").all()


def test_measure_gives_each_campaigns_realised_uplift_and_logs_it_beside_the_scoring_run(trained):
    work, _ = trained
    # A scoring run that says it started the pilot (tag campaign_id), to receive the measurement.
    churn("score", "--data", "base", "--output", "ctl.csv", "--control-share", "0.1", "--campaign-id",
          "pilot-2025-05-01", cwd=work)
    out = churn("measure", "--data", "base", cwd=work)
    from pipeline.records import load_records

    records = load_records(work / "base")
    pilot = records.campaigns[records.campaigns["campaign_id"] == "pilot-2025-05-01"].set_index("subscriber_id")
    defection = records.outcomes.set_index("subscriber_id")["defection_date"].reindex(pilot.index)
    left = (defection < pd.Timestamp("2025-07-30")).to_numpy()  # within 90 days of 2025-05-01
    offer = (pilot["group"] == "offer").to_numpy()
    uplift = left[~offer].mean() - left[offer].mean()
    assert (f"campaign pilot-2025-05-01 (2025-05-01): {offer.sum():,} offered, {(~offer).sum():,} held out; churn "
            f"{left[offer].mean():.2%} offered vs {left[~offer].mean():.2%} held out: uplift {uplift * 100:.2f} points "
            "[95% CI ") in out.stdout
    assert "promo-" not in out.stdout  # the promotion had no control group: nothing to measure
    store = store_client(work)
    experiment = store.get_experiment_by_name("post-breach-churn").experiment_id
    scoring = store.search_runs([experiment], filter_string="tags.campaign_id = 'pilot-2025-05-01'")
    assert len(scoring) == 1 and scoring[0].info.run_id in out.stdout
    metrics = store.get_run(scoring[0].info.run_id).data.metrics
    assert metrics["realised_uplift"] == pytest.approx(uplift)
    assert metrics["realised_uplift_low"] < metrics["realised_uplift"] < metrics["realised_uplift_high"]
    measure = store.search_runs([experiment], filter_string="tags.stage = 'measure'")
    assert len(measure) == 1 and measure[0].data.metrics["campaign.pilot-2025-05-01.uplift"] == pytest.approx(uplift)


def test_a_table_with_a_treatment_column_trains_a_response_model(trained, tmp_path):
    work, _ = trained
    from pipeline.features import build_features, make_labels
    from pipeline.records import load_records

    records = load_records(work / "base")
    frame = build_features(records)
    frame["churned"] = make_labels(records).to_numpy()
    pilot = records.campaigns[records.campaigns["campaign_id"].str.startswith("pilot-")].set_index("subscriber_id")
    frame["group"] = frame["subscriber_id"].map(pilot["group"]).fillna("")
    frame.drop(columns=[c for c in frame.columns if c.startswith("retention_")]).to_csv(tmp_path / "table.csv",
                                                                                          index=False)
    (tmp_path / "fast.toml").write_text(FAST)
    out = churn("train", "--data", "table.csv", "--id", "subscriber_id", "--target", "churned", "--treatment", "group",
                "--value", "monthly_fee", "--config", "fast.toml", cwd=tmp_path)
    offered = int((frame["group"] == "offer").sum())
    assert f"rows left out of churn training: {offered:,} (in the offer group (treated)" in out.stdout
    assert "registered post-breach-churn-response version 1" in out.stdout
    rows = int((frame["group"] != "").sum())
    assert f"on {rows:,} campaign rows" in out.stdout


def test_too_few_campaign_rows_skip_the_response_model_and_say_how_many_are_needed(tmp_path):
    (tmp_path / "fast.toml").write_text(FAST)
    churn("generate", "--subscribers", "1500", "--seed", "4", "--out", "small", cwd=tmp_path)
    out = churn("train", "--data", "small", "--config", "fast.toml", cwd=tmp_path)
    assert "version 1 is the first model: it is champion" in out.stdout
    assert "no response model: too few campaign rows to learn a response from: " in out.stdout
    assert "a pilot of " in out.stdout and " subscribers per group" in out.stdout
    models = {m.name for m in store_client(tmp_path).search_registered_models()}
    assert models == {"post-breach-churn", "post-breach-churn-service"}  # no response model; the REST wrapper serves the churn model alone
