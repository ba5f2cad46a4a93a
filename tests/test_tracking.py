"""The registry gate, registry errors, the model content hash and the trusted types (pipeline/tracking.py).

Every test here runs on a real MLflow store: a SQLite file with its artifacts beside it, or
a stub HTTP server on loopback that answers like a tracking server in trouble.
"""

from __future__ import annotations

import http.server
import io
import json
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import tracking
from pipeline.config import Config, with_overrides
from pipeline.dataset import table_dataset
from pipeline.errors import ModelError, TrackingError
from pipeline.train import train

MODEL = "gate-test"
FAST = with_overrides(Config(), train={"search_iterations": 0, "cv_folds": 3, "candidates": ("logistic",),
                                       "blend": False})


def _table(n=600, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    plan = rng.choice(["Month-to-month", "One year", "Two year"], size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 1.2 * x + np.where(plan == "Month-to-month", 0.8, 0.0))))
    return pd.DataFrame({"id": [f"S{i:05d}" for i in range(n)], "x": x.round(3), "plan": plan,
                         "fee": rng.uniform(10, 50, n).round(2), "churn": y.astype(int)})


@pytest.fixture(scope="module")
def trained():
    dataset = table_dataset(_table(), id_column="id", target="churn", value_column="fee")
    return dataset, train(dataset, FAST)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """MLflow pointed at a fresh SQLite store under ``tmp_path`` (global URIs restored afterwards).

    ``tracking.connect`` makes it as a copy of the user's empty store template, so MLflow's
    migrations run once rather than once per test.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    tracking.connect(uri)
    try:
        yield uri
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _log(trained, uri) -> str:
    dataset, result = trained
    return tracking.log_training(result, dataset, FAST, uri=uri, plots={}, extra_artifacts={})


def _snapshot(name=MODEL):
    """Versions and aliases of a registered model (None when it does not exist)."""
    client = _client()
    try:
        model = client.get_registered_model(name)
    except Exception:
        return None
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    return versions, {k: int(v) for k, v in model.aliases.items()}


def _gate(run_id, score, champion_score=lambda version: 0.5, **kwargs):
    return tracking.register_and_gate(run_id, MODEL, metric="roc_auc", challenger_score=score,
                                      champion_score=champion_score, **kwargs)


# --- the gate ----------------------------------------------------------------------------


@pytest.mark.slow  # logs four models to MLflow
def test_gate_registers_first_model_then_promotes_only_a_better_one(trained, store):
    first = _gate(_log(trained, store), 0.7, champion_score=lambda version: pytest.fail("no champion yet"))
    assert (first.version, first.promoted, first.message) == (1, True, "version 1 is the first model: it is champion")
    worse = _gate(_log(trained, store), 0.6, champion_score=lambda version: {1: 0.7}[version])
    assert not worse.promoted and worse.champion_version == 1 and worse.champion_score == 0.7
    assert worse.message == ("version 2 stays challenger: roc_auc 0.6000 does not beat champion version 1's "
                             "0.7000 on the same hold-out")
    better = _gate(_log(trained, store), 0.8, champion_score=lambda version: 0.7)
    assert better.promoted and better.champion_version == 3
    assert better.message == "version 3 is champion: roc_auc 0.8000 beats version 1's 0.7000"
    incomparable = _gate(_log(trained, store), 0.9, champion_score=lambda version: None)
    assert not incomparable.promoted and "promote by hand with `churn promote 4`" in incomparable.message
    assert _snapshot() == ([1, 2, 3, 4], {"champion": 3, "challenger": 4})
    tags = _client().get_model_version(MODEL, "3").tags
    assert tags["replaced_version"] == "1" and "beat version 1" in tags["promotion_reason"]
    run = _client().get_run(better.run_id)
    assert run.data.tags["promoted"] == "true" and run.data.metrics["champion_roc_auc"] == 0.7
    assert run.info.status == "FINISHED"


def test_gate_serves_a_second_registered_model_with_its_own_metric(trained, store):
    _gate(_log(trained, store), 0.7)
    run_id = _log(trained, store)
    response = tracking.register_and_gate(run_id, f"{MODEL}-response", metric="qini", challenger_score=0.12,
                                          champion_score=lambda version: pytest.fail("no champion yet"))
    assert response.promoted and response.version == 1
    assert _snapshot(f"{MODEL}-response") == ([1], {"champion": 1, "challenger": 1})
    assert _snapshot() == ([1], {"champion": 1, "challenger": 1})  # the churn model untouched


@pytest.mark.slow  # logs three models to MLflow
def test_a_champion_that_cannot_be_scored_registers_nothing_and_fails_the_run(trained, store):
    _gate(_log(trained, store), 0.7)
    _gate(_log(trained, store), 0.6, champion_score=lambda version: 0.7)
    before = _snapshot()
    run_id = _log(trained, store)

    def unreadable(version):
        raise OSError(f"champion {version}: model.skops: no such file")

    with pytest.raises(TrackingError, match=r"^nothing was registered: champion version 1 of gate-test could not "
                                            r"be scored on this hold-out: OSError: champion 1"):
        _gate(run_id, 0.9, champion_score=unreadable)
    assert _snapshot() == before == ([1, 2], {"champion": 1, "challenger": 2})
    assert _client().get_run(run_id).info.status == "FAILED"


def _failing_tag(monkeypatch, key):
    """Make setting model-version tag ``key`` fail as a store error would (after registration)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    original = MlflowClient.set_model_version_tag

    def failing(self, name, version, k=None, value=None, **kwargs):
        if k == key:
            raise MlflowException("(sqlite3.OperationalError) disk I/O error", error_code="INTERNAL_ERROR")
        return original(self, name, version, k, value, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", failing)


@pytest.mark.slow  # logs four models to MLflow
def test_a_failure_after_registration_rolls_the_registry_back(trained, store, monkeypatch):
    _gate(_log(trained, store), 0.7)
    _gate(_log(trained, store), 0.6, champion_score=lambda version: 0.7)
    before = _snapshot()
    run_id = _log(trained, store)
    _failing_tag(monkeypatch, "promoted_by")  # promotion: champion alias moved, then the tags fail
    with pytest.raises(TrackingError, match=r"disk I/O error; the registry was rolled back$"):
        _gate(run_id, 0.9, champion_score=lambda version: 0.7)
    assert _snapshot() == before == ([1, 2], {"champion": 1, "challenger": 2})
    assert _client().get_run(run_id).info.status == "FAILED"
    monkeypatch.undo()
    assert _gate(_log(trained, store), 0.9, champion_score=lambda version: 0.7).version == 4  # 3 was deleted


def test_a_first_model_that_fails_after_registration_leaves_no_registered_model(trained, store, monkeypatch):
    run_id = _log(trained, store)
    _failing_tag(monkeypatch, "promotion_reason")
    with pytest.raises(TrackingError, match="rolled back"):
        _gate(run_id, 0.7)
    assert _snapshot() is None
    assert _client().get_run(run_id).info.status == "FAILED"


# --- registry errors are not "none" -------------------------------------------------------


def test_no_model_and_no_alias_mean_none(trained, store):
    assert tracking.champion_version(MODEL) is None  # no registered model
    _client().create_registered_model(MODEL)
    assert tracking.champion_version(MODEL) is None  # a model with no alias
    with pytest.raises(TrackingError, match=r"^model gate-test has no version 7$"):
        tracking.promote(MODEL, 7, reason="test")
    with pytest.raises(TrackingError, match=r"^cannot load model models:/gate-test@champion: gate-test has no "
                                            r"version with the alias champion$"):
        tracking.load_model(tracking.model_uri(MODEL))
    with pytest.raises(TrackingError, match=r"^cannot load model models:/nobody@champion: no registered model"):
        tracking.load_model(tracking.model_uri("nobody"))


@pytest.mark.slow
def test_a_locked_sqlite_store_is_an_error_not_a_missing_champion(trained, store, tmp_path):
    run_id = _log(trained, store)
    lock = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process writing: MLflow waits 20 s, then gives up
    try:
        with pytest.raises(TrackingError, match=r"^the model registry failed while reading registered model "
                                                r"gate-test: .*database is locked"):
            _gate(run_id, 0.7)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert _snapshot() is None  # not registered as "the first model"
    # (the run could not be marked FAILED either: the store was locked for that write too)


class _TroubledServer(http.server.BaseHTTPRequestHandler):
    """A tracking server whose store fails: /health answers, every API call is an internal error."""

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b"OK")
        else:
            self._send(500, json.dumps({"error_code": "INTERNAL_ERROR", "message": "database is locked"}).encode())

    do_POST = do_PATCH = do_DELETE = do_GET

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def troubled_server(monkeypatch):
    """The URL of a troubled tracking server, with a password in it; MLflow pointed at it, no retries."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TroubledServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    url = f"http://user:s3cr3t-pw@127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    try:
        tracking.connect(url)
        yield url
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        server.shutdown()
        server.server_close()


def test_a_server_error_is_an_error_not_a_missing_champion_version_or_alias(troubled_server):
    checks = [
        (lambda: tracking.champion_version(MODEL), "reading registered model gate-test"),
        (lambda: tracking.promote(MODEL, 3, reason="test"), "reading gate-test version 3"),
        (lambda: tracking.load_model(tracking.model_uri(MODEL)), "reading registered model gate-test"),
        (lambda: tracking.load_model(f"models:/{MODEL}/3"), "reading gate-test version 3"),
    ]
    for call, what in checks:
        with pytest.raises(TrackingError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"the model registry failed while {what}: "), message
        assert "\n" not in message and "s3cr3t-pw" not in message
        assert "no version" not in message and "no registered model" not in message


# --- the content hash ------------------------------------------------------------------------


def _model_folder(version: int) -> Path:
    location = _client().get_model_version_download_uri(MODEL, str(version))
    assert location.startswith("file://")
    return Path(location[len("file://"):])


def test_the_content_hash_is_recorded_and_checked_on_load(trained, store):
    registration = _gate(_log(trained, store), 0.7)
    version_tag = _client().get_model_version(MODEL, "1").tags[tracking.MODEL_HASH_TAG]
    run_tag = _client().get_run(registration.run_id).data.tags[tracking.MODEL_HASH_TAG]
    folder = _model_folder(1)
    recorded = json.loads(Path(_client().download_artifacts(registration.run_id, tracking.MODEL_HASH_FILE))
                          .read_text())
    assert recorded["files"] == tracking.file_hashes(folder)
    assert version_tag == run_tag == recorded["digest"] == tracking.model_digest(tracking.file_hashes(folder))
    assert {"MLmodel", "model.skops", "input_example.json", "code/pipeline/tracking.py"} <= set(recorded["files"])
    loaded = tracking.load_model(tracking.model_uri(MODEL))
    assert loaded.version == "1" and loaded.digest == version_tag
    rows = trained[0].frame.head(50)
    np.testing.assert_array_equal(loaded.model.predict_proba(rows[loaded.metadata["input_columns"]]),
                                  trained[1].model.predict_proba(rows[trained[1].input_columns]))


def _rewrite_zip(path: Path, change) -> None:
    """Rewrite a zip file with ``change(name, bytes) -> bytes`` applied to every member: still a valid zip."""
    with zipfile.ZipFile(path) as old:
        members = [(info, old.read(info.filename)) for info in old.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as new:
        for info, data in members:
            new.writestr(info, change(info.filename, data))
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("tamper, named", [
    ("one number in the skops model", "file model.skops was changed after training"),
    ("a field of MLmodel", "file MLmodel was changed after training"),
    ("an added file", "file extra.py was added after training"),
    ("a removed file", "file input_example.json is missing"),
])
def test_a_tampered_model_is_refused_naming_the_uri_and_the_file(trained, store, tamper, named):
    import skops.io

    _gate(_log(trained, store), 0.7)
    folder = _model_folder(1)
    if tamper == "one number in the skops model":
        changed = []

        def change(name, data):
            if name.endswith(".npy") and not changed:  # one array of the fitted model (a coefficient)
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.kind == "f" and array.size:
                    array.flat[0] += 1.0
                    out = io.BytesIO()
                    np.save(out, array, allow_pickle=False)
                    changed.append(name)
                    return out.getvalue()
            return data

        _rewrite_zip(folder / "model.skops", change)
        assert changed
        skops.io.load(folder / "model.skops", trusted=list(tracking.TRUSTED_TYPES))  # still a valid model file
    elif tamper == "a field of MLmodel":
        text = (folder / "MLmodel").read_text()
        assert "base_rate: " in text
        (folder / "MLmodel").write_text(text.replace("base_rate: ", "base_rate: 0.9", 1).replace("0.90.", "0.9", 1))
    elif tamper == "an added file":
        (folder / "extra.py").write_text("print('hello')\n")
    else:
        (folder / "input_example.json").unlink()
    with pytest.raises(ModelError, match=rf"^model models:/gate-test@champion failed its integrity check: {named} "):
        tracking.load_model(tracking.model_uri(MODEL))


def test_a_model_with_no_recorded_hash_is_refused(trained, store):
    registration = _gate(_log(trained, store), 0.7)
    _client().delete_model_version_tag(MODEL, "1", tracking.MODEL_HASH_TAG)
    _client().delete_tag(registration.run_id, tracking.MODEL_HASH_TAG)
    with pytest.raises(ModelError, match=r"^model models:/gate-test/1 has no recorded content hash .*refusing to load "
                                         r"it\. Train it again with `churn train`"):
        tracking.load_model(f"models:/{MODEL}/1")


def test_a_version_tag_that_disagrees_with_its_run_is_refused(trained, store):
    _gate(_log(trained, store), 0.7)
    _client().set_model_version_tag(MODEL, "1", tracking.MODEL_HASH_TAG, "0" * 64)
    with pytest.raises(ModelError, match="content hash recorded on version 1 differs from its run's"):
        tracking.load_model(f"models:/{MODEL}/1")


def test_a_model_requires_exactly_the_installed_packages_without_mlflow_scanning_them(trained, store, monkeypatch):
    from importlib.metadata import version

    import mlflow.pyfunc
    from mlflow.utils import environment

    checked = []
    monkeypatch.setattr(environment, "warn_dependency_requirement_mismatches", checked.append)
    monkeypatch.setattr(mlflow.pyfunc, "warn_dependency_requirement_mismatches", checked.append)
    registration = _gate(_log(trained, store), 0.7)
    folder = _model_folder(1)
    assert (folder / "requirements.txt").read_text().split() == [
        f"mlflow=={version('mlflow')}", *(f"{name}=={v}" for name, v in tracking.package_versions().items()
                                          if name != "mlflow")]
    # MLflow's own check of those pins against the installed packages was left out, and put back.
    assert checked == []
    assert environment.warn_dependency_requirement_mismatches == mlflow.pyfunc.warn_dependency_requirement_mismatches \
        == checked.append
    assert registration.version == 1


def _telemetry_state(code: str, **env: str) -> dict:
    """Run ``code`` (which sets ``state``) in a fresh Python with a bare environment: no CI or
    test variable, which MLflow takes as a reason to stay quiet on its own."""
    import os
    import subprocess
    import sys

    bare = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env}
    done = subprocess.run([sys.executable, "-c", f"import json\n{code}\nprint(json.dumps(state))"],
                          env=bare, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # a fresh Python importing MLflow: about 3 s
def test_mlflow_sends_no_usage_telemetry_from_any_churn_command():
    # The package turns MLflow's telemetry off before MLflow is imported: no client, no thread
    # fetching its configuration from the internet.
    state = _telemetry_state(
        "import pipeline, mlflow, threading\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "state = {'disabled': is_telemetry_disabled(), 'client': get_telemetry_client() is not None,\n"
        "         'threads': sorted(t.name for t in threading.enumerate())}")
    assert state == {"disabled": True, "client": False, "threads": ["MainThread"]}
    # A value the user set is kept (MLflow then decides), and the UI command turns it off too.
    kept = _telemetry_state("import os, pipeline\nstate = os.environ['MLFLOW_DISABLE_TELEMETRY']",
                            MLFLOW_DISABLE_TELEMETRY="false")
    assert kept == "false"
    assert tracking.ui_command("sqlite:////tmp/x/mlflow.db").startswith("MLFLOW_DISABLE_TELEMETRY=true mlflow ui ")


# --- the trusted types ----------------------------------------------------------------------


@pytest.mark.slow  # fits every family and learner, CatBoost included
def test_trusted_types_are_exactly_what_the_model_families_need():
    import skops.io

    from pipeline.model import CalibratedModel, make_candidate
    from pipeline.train import _blend

    frame = _table(300).drop(columns=["churn"])
    y = _table(300)["churn"].to_numpy()

    def fitted(family):
        return make_candidate(family, drop_columns=("id",), n_threads=1).fit(frame, y)

    def calibrated(model):
        return CalibratedModel(model, cv=3).fit_map(np.linspace(0.05, 0.95, len(y)), y).set_fitted(model)

    plain = {family: fitted(family) for family in ("logistic", "hist_gradient_boosting", "catboost")}
    plain["blend"] = _blend({"logistic": make_candidate("logistic", drop_columns=("id",)),
                             "hist_gradient_boosting": make_candidate("hist_gradient_boosting", drop_columns=("id",))},
                            [0.5, 0.5]).fit(frame, y)
    plain["blend with catboost"] = _blend({"catboost": make_candidate("catboost", drop_columns=("id",), n_threads=1),
                                           "logistic": make_candidate("logistic", drop_columns=("id",))},
                                          [0.5, 0.5]).fit(frame, y)
    models = {**plain, **{f"{name}, calibrated": calibrated(model) for name, model in plain.items()}}
    # Response models: every learner on every base family, behind the calibration line.
    from pipeline.response import BASE_FAMILIES, LEARNERS, ResponseModel, make_learner

    treatment = np.arange(len(y)) % 2
    for learner in LEARNERS:
        for family in BASE_FAMILIES:
            fitted_learner = make_learner(learner, family, drop_columns=("id",), seed=0).fit(frame, treatment, y)
            response = ResponseModel(make_learner(learner, family, drop_columns=("id",), seed=0))
            models[f"response {learner}/{family}"] = response.fit_map(
                fitted_learner.predict(frame), treatment, y).set_fitted(fitted_learner)
    used = set()
    for name, model in models.items():
        needed = set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
        assert needed <= set(tracking.TRUSTED_TYPES), (name, needed - set(tracking.TRUSTED_TYPES))
        assert tracking.check_trusted(model) == sorted(needed)
        used |= needed
    assert set(tracking.TRUSTED_TYPES) == used  # no entry that no model needs
    assert len(tracking.TRUSTED_TYPES) == len(set(tracking.TRUSTED_TYPES))


def test_loading_through_mlflow_itself_does_not_break_the_check(trained, store):
    import mlflow

    _gate(_log(trained, store), 0.7)
    mlflow.sklearn.load_model(tracking.model_uri(MODEL))  # MLflow writes registered_model_meta into the store
    assert (_model_folder(1) / "registered_model_meta").exists()
    assert tracking.load_model(tracking.model_uri(MODEL)).version == "1"


# --- a new store is a copy of an empty store made once ------------------------------------------


def _schema_and_rows(db: Path) -> tuple[list, dict]:
    """The store's schema, and the rows of the tables a new store fills (times and paths left out)."""
    with sqlite3.connect(db) as connection:
        # the clauses of a table's definition sorted: MLflow's own migrations order a table's
        # constraints differently from one run to the next
        schema = [(kind, name, table, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                  for kind, name, table, sql in
                  connection.execute("select type, name, tbl_name, sql from sqlite_master order by type, name")]
        rows = {table: connection.execute(f"select * from {table}").fetchall() for table in ("alembic_version", "workspaces")}
        rows["experiments"] = connection.execute("select experiment_id, name, lifecycle_stage from experiments").fetchall()
    return schema, rows


@pytest.mark.slow  # MLflow's migrations run two or three times (5-8 s)
def test_a_new_store_is_the_store_mlflow_makes_copied_from_a_template_made_once(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("CHURN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    MlflowClient(f"sqlite:///{tmp_path / 'by-mlflow.db'}").search_experiments(max_results=1)
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    tracking.connect(f"sqlite:///{first}")
    template = tracking.store_template_path()
    assert template.parent == tmp_path / "cache" and template.is_file()
    made = template.stat().st_mtime_ns
    tracking.connect(f"sqlite:///{second}")
    assert template.stat().st_mtime_ns == made  # copied, not made again
    expected = _schema_and_rows(tmp_path / "by-mlflow.db")
    assert expected[1]["experiments"] == [(0, "Default", "active")]
    assert _schema_and_rows(first) == expected and _schema_and_rows(second) == expected
    # the default experiment's artifacts go where MLflow would put them for this store, not the template's
    for db in (first, second):
        assert MlflowClient(f"sqlite:///{db}").get_experiment("0").artifact_location == str(tmp_path / "mlruns" / "0")
    assert sorted(p.name for p in first.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


@pytest.mark.slow  # MLflow's migrations run two or three times (5-8 s)
def test_a_template_that_holds_anything_is_made_again_and_an_unusable_cache_falls_back(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("CHURN_CACHE_DIR", str(tmp_path / "cache"))
    tracking.connect(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    template = tracking.store_template_path()
    MlflowClient(f"sqlite:///{template}").create_experiment("left-in-the-template")
    tracking.connect(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    assert [e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}").search_experiments()] == ["Default"]
    with sqlite3.connect(template) as connection:  # made again, empty (MLflow's client would read its cached old file)
        assert connection.execute("select count(*) from experiments").fetchone() == (0,)

    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("CHURN_CACHE_DIR", str(tmp_path / "not-a-folder" / "cache"))
    tracking.connect(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}")  # MLflow creates it the usual way
    assert [e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}").search_experiments()] == ["Default"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["mlflow.db", "mlflow.db.lock"]
