"""The REST wrapper for call-centre tools, served for real: ``docs/scaling.md``'s commands, as written.

A folder is laid out as ``make demo`` leaves it (``data/demo``, ``outputs/``, ``mlflow.db``,
``.venv``), with a small generated base trained by ``churn train`` (which registers
``post-breach-churn-service``).  The shell blocks of the REST section (start, ask, stop) are
read from the document and run with ``bash`` unchanged but for the port; the answer must be
what ``churn score --all`` says for the same subscriber, and stopping must leave no process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from servers import _group_alive, _signal_group, free_port, run_churn, server_env, store_client

DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
FAST = ("[train]\nsearch_iterations = 1\ncv_folds = 3\nblend = false\n"
        "candidates = [\"logistic\", \"hist_gradient_boosting\"]\n")


def doc_blocks() -> dict[str, str]:
    """The shell blocks of the REST section, by their marker (``<!-- rest:NAME -->``)."""
    text = DOC.read_text()
    return {name: body for name, body in re.findall(r"<!-- rest:(\w+) -->\n```sh\n(.*?)```", text, flags=re.S)}


def test_the_document_has_the_three_blocks():
    blocks = doc_blocks()
    assert set(blocks) == {"start", "ask", "stop"}
    assert "models:/post-breach-churn-service@champion" in blocks["start"] and "-p 5001" in blocks["start"]
    assert "/invocations" in blocks["ask"] and "kill -- -$(cat outputs/serve.pid)" in blocks["stop"]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    from pipeline import simulate

    folder = tmp_path_factory.mktemp("rest")
    (folder / "outputs").mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "fast.toml").write_text(FAST)
    simulate.generate(3000, seed=5, out=folder / "data" / "demo")
    trained = run_churn(["train", "--data", "data/demo", "--config", "fast.toml"], folder, timeout=900)
    assert "REST wrapper post-breach-churn-service registered version 1" in trained.stdout
    run_churn(["score", "--data", "data/demo", "--output", "outputs/all.parquet", "--all", "--no-report"], folder)
    return folder


def _bash(script: str, folder: Path, port: int) -> subprocess.CompletedProcess:
    env = server_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("5001", str(port))], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.slow
def test_the_documented_commands_serve_the_demo_model(demo_folder):
    folder = demo_folder
    blocks = doc_blocks()
    port = free_port()
    started = _bash(blocks["start"], folder, port)
    assert started.returncode == 0, started.stderr
    group = int((folder / "outputs" / "serve.pid").read_text())
    try:
        try:
            _wait(f"http://127.0.0.1:{port}/ping")
        except AssertionError:
            raise AssertionError((folder / "outputs" / "serve.log").read_text()[-3000:]) from None
        asked = _bash(blocks["ask"], folder, port)
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout.strip().splitlines()[-1])["predictions"]  # after `churn features`' line
        assert len(answer) == 1
        row = answer[0]
        assert set(row) >= {"subscriber_id", "churn_probability", "risk_tier", "reason_1", "reason_2", "reason_3",
                            "action", "targeted", "do_not_contact", "model_version"}
        batch = pd.read_parquet(folder / "outputs" / "all.parquet").set_index("subscriber_id").loc[row["subscriber_id"]]
        assert abs(row["churn_probability"] - batch["churn_probability"]) <= 1e-9
        assert row["risk_tier"] == batch["risk_tier"] and row["action"] == batch["action"]
        assert row["targeted"] == bool(batch["targeted"])
        if batch["reason_1"]:
            assert [row[f"reason_{k}"] for k in (1, 2, 3)] == [batch[f"reason_{k}"] for k in (1, 2, 3)]
        assert row["reason_1"]  # every requested row is explained
        # many subscribers at once, as records: each answer equals its list row
        features = pd.read_parquet(folder / "outputs" / "features.parquet").iloc[100:160]
        payload = json.dumps({"dataframe_records": json.loads(features.to_json(orient="records"))}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=payload,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            many = pd.DataFrame(json.loads(response.read())["predictions"]).set_index("subscriber_id")
        every = pd.read_parquet(folder / "outputs" / "all.parquet").set_index("subscriber_id").loc[many.index]
        assert (many["churn_probability"] - every["churn_probability"]).abs().max() <= 1e-9
        assert (many["risk_tier"] == every["risk_tier"]).all() and (many["action"] == every["action"]).all()
    finally:
        stopped = _bash(blocks["stop"], folder, port)
        deadline = time.monotonic() + 20
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = _group_alive(group)
        if alive:
            _signal_group(group, 9)
    assert stopped.returncode == 0, stopped.stderr
    assert not alive, "the documented stop left processes running"


@pytest.mark.slow
def test_the_wrapper_is_registered_once_per_code_and_settings(demo_folder):
    folder = demo_folder
    listing = json.loads(run_churn(["models", "--json"], folder).stdout)
    assert [c["kind"] for c in listing][:1] == ["churn"]  # the service is not a model version of its own
    client = store_client(folder)
    versions = client.search_model_versions("name = 'post-breach-churn-service'")
    assert len(versions) == 1 and client.get_registered_model("post-breach-churn-service").aliases == {"champion": 1}
    assert os.path.exists(folder / "mlflow.db")
