"""Training and scoring against a real team tracking server (``mlflow server`` on loopback).

The server keeps runs and the registry in SQLite and stores artifacts itself
(``--serve-artifacts``): the client uploads the model over HTTP and later downloads it from
the registry, with no access to the server's folders.  Also here: an unreachable or
non-MLflow server fails fast with one line, and the server helper stops whole process groups.
"""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servers import (
    HOST,
    MLFLOW_SERVER_ENV,
    ServerFailed,
    free_port,
    group_members,
    mlflow_server_command,
    run_churn,
    running_server,
    server_env,
)
from test_cli_table import FAST, churn_table

MODEL = "post-breach-churn"
TRAIN = ["train", "--data", "table.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
         "--value", "monthly", "--config", "boosting.toml"]


def _write_inputs(folder: Path) -> None:
    churn_table().to_csv(folder / "table.csv", index=False)
    churn_table().drop(columns=["Churn"]).to_csv(folder / "unlabelled.csv", index=False)
    (folder / "boosting.toml").write_text(FAST.format(candidates='["hist_gradient_boosting"]'))


@pytest.fixture(scope="module")
def server_store(tmp_path_factory):
    """The tracking server's own folder: ``mlflow.db``, ``artifacts/`` and its log."""
    return tmp_path_factory.mktemp("server-store")


@pytest.fixture(scope="module")
def tracking_server(server_store):
    """One ``mlflow server`` for the module: SQLite backend, artifacts proxied into ``server_store``."""
    with running_server(mlflow_server_command(server_store), log_path=server_store / "server.log",
                        env=server_env(**MLFLOW_SERVER_ENV), cwd=server_store) as server:
        yield server
    assert group_members(server.process.pid) == [], "the tracking server left processes behind"


@pytest.mark.slow
def test_train_and_score_through_the_tracking_server(tracking_server, server_store, tmp_path):
    _write_inputs(tmp_path)
    uri = ["--tracking-uri", tracking_server.url]

    trained = run_churn([*TRAIN, *uri], tmp_path)
    assert "version 1 is the first model: it is champion" in trained.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_server.url, registry_uri=tracking_server.url)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "1"
    run = client.get_run(client.get_model_version(MODEL, "1").run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # uploaded through the server
    assert run.data.tags["stage"] == "train" and run.data.metrics["roc_auc"] > 0.7
    assert {"plots/roc.png", "plots/calibration.png"} <= {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    stored = {p.name for p in (server_store / "artifacts").rglob("*")}
    assert {"MLmodel", "roc.png"} <= stored  # on the server's disk, in --artifacts-destination
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()  # nothing local

    scored = run_churn(["score", "--data", "unlabelled.csv", "--output", "all.parquet", "--all", *uri], tmp_path)
    assert "with model version 1" in scored.stdout and "wrote 1,200 rows" in scored.stdout
    every = pd.read_parquet(tmp_path / "all.parquet")
    assert len(every) == 1200 and every["subscriber_id"].is_unique
    assert set(every["model_version"]) == {"1"}
    assert every["rank"].tolist() == list(range(1, 1201))
    score_runs = client.search_runs([run.info.experiment_id], "tags.stage = 'score'")
    assert [r.data.tags["model_version"] for r in score_runs] == ["1"]

    # The scores are the registered champion's, downloaded from the server by this client too.
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    proba = _champion_probabilities(tracking_server.url, pd.read_csv(tmp_path / "unlabelled.csv"), downloaded)
    by_id = every.set_index("subscriber_id")["churn_probability"]
    np.testing.assert_allclose(by_id.loc[[f"C-{i:05d}" for i in range(1200)]].to_numpy(), proba, rtol=0, atol=1e-9)


def _champion_probabilities(server_url: str, rows: pd.DataFrame, folder: Path) -> np.ndarray:
    """The champion's probabilities, the model downloaded from the server (no global MLflow state)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import signature_frame

    client = MlflowClient(tracking_uri=server_url, registry_uri=server_url)
    version = client.get_model_version_by_alias(MODEL, "champion").version
    source = client.get_model_version_download_uri(MODEL, version)
    assert source.startswith("mlflow-artifacts:/")
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=server_url, dst_path=str(folder))
    model = mlflow.pyfunc.load_model(local)
    # The signature takes integers as doubles, and pyfunc refuses int64 for a double column.
    return np.asarray(model.predict(signature_frame(rows.drop(columns=["customer_name"]))))[:, 1]


@pytest.mark.slow  # `churn` in a subprocess loads MLflow before it fails (seconds each)
@pytest.mark.parametrize("command", [TRAIN, ["score", "--data", "unlabelled.csv", "--output", "out.csv"]])
def test_unreachable_server_fails_fast_before_any_work(tmp_path, command):
    _write_inputs(tmp_path)
    url = f"http://{HOST}:{free_port()}"  # nothing listens there
    started = time.perf_counter()
    result = run_churn([*command, "--tracking-uri", url], tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: tracking server {url} is unreachable (ConnectionError)"
    assert time.perf_counter() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boosting.toml", "table.csv", "unlabelled.csv"]


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server API)
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.mark.slow  # `churn` in a subprocess loads MLflow before it fails (seconds)
def test_a_server_that_is_not_mlflow_fails_fast_with_its_status(tmp_path):
    _write_inputs(tmp_path)
    httpd = http.server.HTTPServer((HOST, 0), _NotMlflow)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://{HOST}:{httpd.server_address[1]}"
    try:
        result = run_churn([*TRAIN, "--tracking-uri", url], tmp_path, check=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: tracking server {url} answered HTTP 404 on /health"
    assert not (tmp_path / "mlflow.db").exists()


# --- the server helper itself (tests/servers.py) ---------------------------------------------

_PARENT_AND_CHILD = (
    'import subprocess, sys, time; '
    'subprocess.Popen([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]); '
    'time.sleep(300)'
)


def test_running_server_stops_its_whole_process_group(tmp_path):
    import sys

    with running_server([sys.executable, "-c", _PARENT_AND_CHILD], log_path=tmp_path / "log", health="/") as server:
        members = group_members(server.process.pid)
        assert len(members) == 2  # the parent and the child serving HTTP
    assert group_members(server.process.pid) == []
    assert server.process.returncode is not None


def test_a_server_that_exits_fails_with_its_log(tmp_path):
    import sys

    command = [sys.executable, "-c", "import sys; print('cannot open the store'); sys.exit(3)"]
    with pytest.raises(ServerFailed, match=r"(?s)exited with code 3 before answering /health.*cannot open the store"):
        with running_server(command, log_path=tmp_path / "log"):
            pass


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    import sys

    command = [sys.executable, "-c", "import time; print('starting', flush=True); time.sleep(300)"]
    started = time.perf_counter()
    with pytest.raises(ServerFailed, match=r"(?s)did not answer /health within 1 s.*starting"):
        with running_server(command, log_path=tmp_path / "log", timeout=1):
            pass
    assert time.perf_counter() - started < 20
