"""The registered model served over REST with ``mlflow models serve``, on loopback.

A model is trained into a local SQLite store with the CLI and scored in batch
(``churn score --all`` to Parquet, full precision); ``mlflow models serve`` then serves
``models:/post-breach-churn@champion`` from that store, and raw subscriber rows posted to
``/invocations`` must get the batch probabilities.  The served model is the logged pyfunc,
whose ``predict`` is ``predict_proba``: each prediction is ``[P(stay), P(churn)]``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import requests

from servers import model_server_command, run_churn, running_server, server_env
from test_cli_table import FAST, churn_table

MODEL_URI = "models:/post-breach-churn@champion"
TIMEOUT = 60


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A folder with a trained champion in ``mlflow.db`` and its batch scores in ``all.parquet``."""
    folder = tmp_path_factory.mktemp("serving")
    churn_table().to_csv(folder / "table.csv", index=False)
    churn_table().drop(columns=["Churn"]).to_csv(folder / "unlabelled.csv", index=False)
    (folder / "boosting.toml").write_text(FAST.format(candidates='["hist_gradient_boosting"]'))
    run_churn(["train", "--data", "table.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
               "--value", "monthly", "--config", "boosting.toml"], folder)
    run_churn(["score", "--data", "unlabelled.csv", "--output", "all.parquet", "--all"], folder)
    return folder


@pytest.fixture(scope="module")
def model_server(store):
    env = server_env(MLFLOW_TRACKING_URI=f"sqlite:///{(store / 'mlflow.db').as_posix()}")
    with running_server(model_server_command(MODEL_URI), log_path=store / "serve.log", health="/ping",
                        env=env, cwd=store) as server:
        yield server


@pytest.fixture(scope="module")
def batch(store):
    """Batch probabilities by subscriber id."""
    return pd.read_parquet(store / "all.parquet").set_index("subscriber_id")["churn_probability"]


def _post(server, payload: dict) -> requests.Response:
    return requests.post(f"{server.url}/invocations", json=payload, timeout=TIMEOUT)


def _raw_rows(store) -> pd.DataFrame:
    """Rows as a CRM would send them: id, features and a personal column the model never uses."""
    return pd.read_csv(store / "unlabelled.csv")


@pytest.mark.slow
def test_served_probabilities_equal_batch_scores(model_server, store, batch):
    rows = _raw_rows(store)
    payload = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    response = _post(model_server, payload)
    assert response.status_code == 200, response.text
    predictions = np.asarray(response.json()["predictions"], dtype="float64")
    assert predictions.shape == (len(rows), 2)  # [P(stay), P(churn)] per subscriber
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    expected = batch.loc[rows["customer"]].to_numpy()
    np.testing.assert_allclose(predictions[:, 1], expected, rtol=0, atol=1e-9)
    assert len(np.unique(expected.round(9))) > 5  # not a constant model: the comparison can fail


@pytest.mark.slow
def test_one_subscriber_as_a_record(model_server, store, batch):
    row = _raw_rows(store).iloc[[17]]
    response = _post(model_server, {"dataframe_records": json.loads(row.to_json(orient="records"))})
    assert response.status_code == 200, response.text
    (stay, churn), = response.json()["predictions"]
    assert abs(churn - batch.loc["C-00017"]) <= 1e-9 and abs(stay + churn - 1) <= 1e-12


@pytest.mark.slow
def test_a_row_missing_a_model_column_is_refused_with_its_name(model_server, store):
    row = _raw_rows(store).iloc[[0]].drop(columns=["tenure"])
    response = _post(model_server, {"dataframe_records": json.loads(row.to_json(orient="records"))})
    assert response.status_code == 400
    assert "tenure" in response.json()["message"]
