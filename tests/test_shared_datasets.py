"""The public churn tables beside the checkout (../shared/datasets), when present: the spine's acceptance run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from test_cli_table import run

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TELCO = DATASETS / "telco_customer_churn.csv"


@pytest.mark.slow
@pytest.mark.skipif(not TELCO.exists(), reason=f"{TELCO} is not here (the shared data sets live beside the checkout)")
def test_telco_train_then_score_every_row_including_blank_total_charges(tmp_path):
    (tmp_path / "fast.toml").write_text("[train]\nsearch_iterations = 1\n")
    out = run(["train", "--data", str(TELCO), "--id", "customerID", "--target", "Churn", "--positive", "Yes",
               "--value", "MonthlyCharges", "--config", "fast.toml"], tmp_path)
    assert "version 1 is the first model: it is champion" in out.stdout
    unlabelled = pd.read_csv(TELCO).drop(columns=["Churn"])
    assert (unlabelled["TotalCharges"].str.strip() == "").sum() == 11
    unlabelled.to_csv(tmp_path / "telco.csv", index=False)
    run(["score", "--data", "telco.csv", "--output", "scores.csv", "--all"], tmp_path)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 7043 and scores["subscriber_id"].is_unique
    blank = unlabelled.loc[unlabelled["TotalCharges"].str.strip() == "", "customerID"]
    assert set(blank) <= set(scores["subscriber_id"])
    assert scores["churn_probability"].between(0, 1).all()
