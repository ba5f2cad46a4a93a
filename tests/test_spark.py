"""The Spark engine (``pipeline.spark``) against the pandas engine, on a local Spark with 2 workers.

A generated base of 5,000 subscribers is trained on and scored with the CLI (the pandas
engine); its point-in-time features, written as Parquet and CSV, are scored on Spark
with the registered champion, and the two engines' probabilities must agree row by row.
Spark's JVM starts once for the module.  Without Java the Spark tests are skipped; any
other failure to start Spark fails them.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from pipeline import spark as engine
from pipeline.errors import ConfigError, DataError
from servers import run_churn

MODEL_URI = "models:/post-breach-churn@champion"
RESPONSE_URI = "models:/post-breach-churn-response@champion"
FAST = """
[train]
search_iterations = 1
cv_folds = 3
candidates = ["hist_gradient_boosting"]
blend = false

[response]
cv_folds = 2
learners = ["two_model"]
"""
needs_java = pytest.mark.skipif(not engine.java_available(), reason="Spark needs Java 17+, and no java was found")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A generated base, a champion trained on it, the pandas engine's scores and the features table."""
    folder = tmp_path_factory.mktemp("spark")
    (folder / "fast.toml").write_text(FAST)
    run_churn(["generate", "--subscribers", "5000", "--seed", "7", "--out", "base"], folder)
    run_churn(["train", "--data", "base", "--config", "fast.toml"], folder)
    run_churn(["score", "--data", "base", "--output", "pandas.parquet", "--all"], folder)
    from pipeline.features import build_features, waiver_forgives
    from pipeline.records import load_records

    records = load_records(str(folder / "base"))
    features = build_features(records)
    features["etf_waiver_forgives"] = waiver_forgives(records, features)  # as `churn features` writes it
    features.to_parquet(folder / "features.parquet", index=False)
    features.to_csv(folder / "features.csv", index=False, na_rep="NA")  # "NA": pandas' own blank marker
    return folder


@pytest.fixture(scope="module")
def model(base):
    """MLflow pointed at the base's store (restored afterwards); the champion's input columns and model."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from pipeline import tracking

    # ``connect`` sets MLflow's global URIs, which MLflow also exports to the environment.
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    uri = f"sqlite:///{(base / 'mlflow.db').as_posix()}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        tracking.connect(uri)
        try:
            info = mlflow.models.get_model_info(MODEL_URI)
            yield {"columns": list(info.metadata["input_columns"]), "sklearn": mlflow.sklearn.load_model(MODEL_URI)}
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved


@pytest.fixture(scope="module")
def spark():
    if not engine.java_available():
        pytest.skip("Spark needs Java 17+, and no java was found")
    with engine.spark_session("local[2]") as session:
        assert session.sparkContext.defaultParallelism == 2
        yield session


def _score(spark, base, model, data="features.parquet", **kwargs):
    options = {"id_column": "subscriber_id", **kwargs}
    return engine.score_spark(base / data, model_uri=MODEL_URI, input_columns=model["columns"], spark=spark, **options)


@pytest.mark.slow
@needs_java
def test_spark_and_pandas_engines_agree_row_by_row(spark, base, model):
    features = pd.read_parquet(base / "features.parquet")
    scored = _score(spark, base, model, keep_columns=["monthly_fee"])
    assert list(scored.columns) == ["subscriber_id", "churn_probability", "monthly_fee"]
    assert scored["subscriber_id"].tolist() == features["subscriber_id"].tolist()  # input order
    pandas_engine = pd.read_parquet(base / "pandas.parquet").set_index("subscriber_id")
    assert len(pandas_engine) == len(scored) == 5000
    expected = pandas_engine.loc[scored["subscriber_id"], "churn_probability"].to_numpy()
    np.testing.assert_allclose(scored["churn_probability"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert scored["churn_probability"].nunique() > 20  # a real model: the comparison can fail
    np.testing.assert_array_equal(scored["monthly_fee"].to_numpy(), features["monthly_fee"].to_numpy())
    # The same ranking follows: the at-risk order by probability is identical.
    by_spark = scored.sort_values(["churn_probability", "subscriber_id"], ascending=[False, True])["subscriber_id"]
    by_pandas = pandas_engine.reset_index().sort_values(["churn_probability", "subscriber_id"],
                                                        ascending=[False, True])["subscriber_id"]
    assert by_spark.head(500).tolist() == by_pandas.head(500).tolist()


@pytest.mark.slow
@needs_java
def test_spark_gives_the_response_models_uplift_as_the_pandas_engine_does(spark, base, model):
    import mlflow

    columns = list(mlflow.models.get_model_info(RESPONSE_URI).metadata["input_columns"])
    scored = _score(spark, base, model, uplift_model_uri=RESPONSE_URI, uplift_columns=columns)
    assert list(scored.columns) == ["subscriber_id", "churn_probability", "estimated_uplift"]
    pandas_engine = pd.read_parquet(base / "pandas.parquet").set_index("subscriber_id")
    expected = pandas_engine.loc[scored["subscriber_id"], "estimated_uplift"].to_numpy()
    # The list clips an uplift to what a contact can change (p - 1 <= u <= p); the model's own answer is not clipped.
    p = scored["churn_probability"].to_numpy()
    np.testing.assert_allclose(np.clip(scored["estimated_uplift"].to_numpy(), p - 1, p), expected, rtol=0, atol=1e-9)


@pytest.mark.slow
@needs_java
def test_a_second_session_joins_the_running_one_and_leaves_it_running(spark):
    with engine.spark_session("local[1]") as again:
        assert again is spark
    assert spark.range(3).count() == 3  # still running


@pytest.mark.slow
@needs_java
def test_csv_without_ids_in_three_partitions_keeps_input_order(spark, base, model):
    scored = _score(spark, base, model, data="features.csv", id_column=None, partitions=3)
    assert scored["subscriber_id"].tolist() == [str(i) for i in range(1, 5001)]  # row numbers, in order
    rows = pd.read_csv(base / "features.csv")  # the pandas engine's reader
    assert rows[model["columns"]].isna().any().any()  # blanks ("NA") are part of the test
    expected = model["sklearn"].predict_proba(rows[model["columns"]])[:, 1]
    np.testing.assert_allclose(scored["churn_probability"].to_numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.slow
@needs_java
def test_parquet_dataset_output_is_complete_and_replaced_on_rerun(spark, base, model, tmp_path):
    out = tmp_path / "scores"
    for _run in range(2):
        written = engine.score_spark_to_parquet(
            base / "features.parquet", out, model_uri=MODEL_URI, input_columns=model["columns"],
            id_column="subscriber_id", keep_columns=["monthly_fee"], spark=spark, partitions=2,
        )
        assert written == out and (out / "_SUCCESS").exists()
        assert len(list(out.glob("part-*.parquet"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]  # no temporary folder left
    back = pd.read_parquet(out).sort_values("subscriber_id").reset_index(drop=True)
    collected = _score(spark, base, model, keep_columns=["monthly_fee"]).sort_values("subscriber_id")
    pd.testing.assert_frame_equal(back, collected.reset_index(drop=True), check_dtype=False)

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a Spark output")
    with pytest.raises(DataError, match=r"mine: exists and is not an earlier Spark scoring output"):
        engine.score_spark_to_parquet(base / "features.parquet", tmp_path / "mine", model_uri=MODEL_URI,
                                      input_columns=model["columns"], id_column="subscriber_id", spark=spark)
    assert (tmp_path / "mine" / "notes.txt").exists()


@pytest.mark.slow
@needs_java
def test_input_problems_are_named_before_any_scoring(spark, base, model, tmp_path):
    features = pd.read_parquet(base / "features.parquet")
    broken = features.drop(columns=["tenure_months", "contract_type"])
    broken["monthly_fee"] = "about " + broken["monthly_fee"].astype(str)  # text where numbers are expected
    broken.to_parquet(tmp_path / "broken.parquet", index=False)
    with pytest.raises(DataError, match=r"broken.parquet: missing column\(s\) the model needs: tenure_months, "
                                        r"contract_type; mistyped column\(s\): monthly_fee \(text, expected number\)"):
        _score(spark, tmp_path, model, data="broken.parquet")

    repeated = pd.concat([features.head(3), features.head(2)], ignore_index=True)
    repeated.to_parquet(tmp_path / "repeated.parquet", index=False)
    with pytest.raises(DataError, match=r"column subscriber_id: rows 0, 1, 3, 4 repeat an id"):
        _score(spark, tmp_path, model, data="repeated.parquet")
    with pytest.raises(DataError, match=r"ids blank or repeated \('S\d+', 'S\d+'\)"):
        engine.score_spark_to_parquet(tmp_path / "repeated.parquet", tmp_path / "out", model_uri=MODEL_URI,
                                      input_columns=model["columns"], id_column="subscriber_id", spark=spark)
    assert not (tmp_path / "out").exists()

    with pytest.raises(DataError, match=r"nowhere.parquet: file not found"):
        _score(spark, tmp_path, model, data="nowhere.parquet")


# --- no Spark needed ----------------------------------------------------------------------------


def test_local_sessions_stay_on_loopback_and_clusters_keep_their_addresses():
    local = engine.session_conf("local[2]", batch_rows=5000)
    assert local["spark.driver.host"] == local["spark.driver.bindAddress"] == "127.0.0.1"
    assert local["spark.ui.enabled"] == "false"
    assert local["spark.sql.execution.arrow.maxRecordsPerBatch"] == "5000"
    cluster = engine.session_conf("spark://10.0.0.5:7077")
    assert "spark.driver.host" not in cluster and "spark.ui.enabled" not in cluster


def test_without_java_spark_is_refused_with_one_line(monkeypatch):
    pytest.importorskip("pyspark")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ConfigError, match=r"^Spark needs a Java runtime \(17 or newer\): no java on PATH"):
        with engine.spark_session():
            pass


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: engine.session_conf("local[2]", batch_rows=0), ConfigError, "batch_rows must be a positive number"),
        (lambda: engine.input_format("x.xlsx", "excel"), ConfigError, "data_format must be auto, parquet or csv"),
        (lambda: engine.score_spark_to_parquet("x.parquet", "out", model_uri=MODEL_URI, input_columns=["a"],
                                               id_column=None), DataError, "needs the subscriber id column"),
    ],
)
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_input_format_follows_the_suffix():
    assert engine.input_format("base/features.CSV", "auto") == "csv"
    assert engine.input_format("scores.csv.gz", "auto") == "csv"
    assert engine.input_format("base/features", "auto") == "parquet"  # a folder of parts
    assert engine.input_format("s3a://bucket/base.parquet", "auto") == "parquet"
    assert engine.input_format("odd.dat", "csv") == "csv"


def test_pandas_missing_markers_match_pandas():
    from pandas._libs.parsers import STR_NA_VALUES

    assert set(engine.PANDAS_NA_TEXT) == set(STR_NA_VALUES)


@pytest.mark.slow
@needs_java
def test_churn_score_engine_spark_writes_the_same_list_as_pandas(base):
    run_churn(["features", "--data", "base", "--output", "cli_features.parquet"], base)
    pd.testing.assert_frame_equal(pd.read_parquet(base / "cli_features.parquet"),
                                  pd.read_parquet(base / "features.parquet"))
    run_churn(["score", "--engine", "spark", "--data", "cli_features.parquet", "--output", "spark_list.parquet",
               "--all"], base)
    spark_list = pd.read_parquet(base / "spark_list.parquet")
    pandas_list = pd.read_parquet(base / "pandas.parquet")
    assert spark_list["subscriber_id"].tolist() == pandas_list["subscriber_id"].tolist()
    np.testing.assert_allclose(spark_list["churn_probability"], pandas_list["churn_probability"], rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(spark_list.drop(columns=["churn_probability"]),
                                  pandas_list.drop(columns=["churn_probability"]), check_exact=False, rtol=1e-9)
