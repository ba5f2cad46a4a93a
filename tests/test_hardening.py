"""Issue 12's correctness items as tiny exact tests: features that do not depend on chunking,
purged and point-in-time stacked snapshots, no silent fallbacks, one number parser, protected
traits, file permissions and the leftovers of killed runs."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Config, with_overrides
from pipeline.errors import DataError, ModelError, TrackingError

FAST = with_overrides(Config(), train={"search_iterations": 0, "cv_folds": 3, "candidates": ("logistic",),
                                       "blend": False})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from pipeline.simulate import generate

    folder = tmp_path_factory.mktemp("base") / "base"
    generate(1500, seed=7, out=folder)
    return folder


# --- features do not depend on the chunking, whatever the source ----------------------------


@pytest.mark.slow  # builds the features of a database three ways (3.5 s)
def test_database_features_are_the_same_whole_or_in_chunks(base, tmp_path):
    from pipeline.features import _earliest_notification, build_features
    from pipeline.records import iter_record_chunks, load_records, write_records_sql

    from dataclasses import replace

    records = load_records(base)
    snapshot = records.snapshot_date.date().isoformat()
    # one subscriber, late in the id order, was notified twelve days before everyone else
    exposure = records.breach_exposure.copy()
    last = exposure["notification_date"].notna()[::-1].idxmax()
    exposure.loc[last, "notification_date"] = exposure["notification_date"].min() - pd.Timedelta(days=12)
    records = replace(records, breach_exposure=exposure)
    url = f"sqlite:///{tmp_path / 'base.db'}"
    write_records_sql(records, url)  # a database has no manifest: the disclosure day is inferred
    whole = build_features(load_records(url, snapshot_date=snapshot))
    chunks = list(iter_record_chunks(url, chunk_subscribers=100, snapshot_date=snapshot))
    # each chunk on its own would infer another day: the test means something
    own = {_earliest_notification(chunk, pd.Timestamp(snapshot)) for chunk in chunks}
    assert len(own) > 1
    assert {chunk.disclosure_date for chunk in chunks} == {min(d for d in own if d is not None)}
    pieces = pd.concat([build_features(chunk) for chunk in chunks], ignore_index=True)
    order = whole["subscriber_id"].sort_values().index
    pd.testing.assert_frame_equal(pieces.sort_values("subscriber_id").reset_index(drop=True),
                                  whole.loc[order].reset_index(drop=True))


def test_a_folder_without_a_disclosure_date_infers_it_once(base, tmp_path):
    import json
    import shutil

    from pipeline.features import build_features
    from pipeline.records import iter_record_chunks, load_records

    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.pop("disclosure_date", None)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    whole = build_features(load_records(copy))
    parts = pd.concat([build_features(c) for c in iter_record_chunks(copy, chunk_subscribers=70)], ignore_index=True)
    pd.testing.assert_frame_equal(parts.sort_values("subscriber_id").reset_index(drop=True),
                                  whole.sort_values("subscriber_id").reset_index(drop=True))


# --- stacked snapshots: purged and point in time ---------------------------------------------------


def test_time_folds_and_hold_out_purge_overlapping_label_windows():
    from pipeline.train import purge_overlap, time_folds

    periods = np.repeat(np.array(["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"], dtype="datetime64[ns]"),
                        [3, 2, 2, 3])
    # a 40-day window: February's labels reach into March, so March is validated on January only
    folds = time_folds(periods, 2, horizon_days=40)
    assert [(a.tolist(), b.tolist()) for a, b in folds] == [([0, 1, 2], [5, 6]), ([0, 1, 2, 3, 4], [7, 8, 9])]
    assert time_folds(periods, 2, horizon_days=100) == []
    train = np.arange(7)
    assert purge_overlap(periods, train, np.arange(7, 10), 40).tolist() == [0, 1, 2, 3, 4]
    assert purge_overlap(periods, train, np.arange(7, 10), 31).tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_training_purges_rows_whose_label_overlaps_the_hold_out():
    from pipeline.dataset import table_dataset
    from pipeline.train import train

    rng = np.random.default_rng(0)
    frames = []
    for month in ("2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01"):
        x = rng.normal(size=400)
        frames.append(pd.DataFrame({"id": [f"s{i}" for i in range(400)], "x": x, "when": month,
                                    "churn": (rng.random(400) < 1 / (1 + np.exp(-(x - 1)))).astype(int)}))
    dataset = table_dataset(pd.concat(frames, ignore_index=True), id_column="id", target="churn", time_column="when")
    messages = []
    config = with_overrides(FAST, data={"horizon_days": 45})
    result = train(dataset, config, progress=messages.append)
    assert "left out 400 training rows of snapshots whose label window (45 days) overlaps the hold-out from " \
           "2025-05-01 (purged)" in messages
    assert result.train_rows == 1200  # January to March; April's labels reach into May
    with pytest.raises(DataError, match=r"every training snapshot's label window \(200 days, data.horizon_days\) "
                                        r"overlaps the hold-out from 2025-05-01"):
        train(dataset, with_overrides(FAST, data={"horizon_days": 200}))


def test_earlier_snapshots_take_point_in_time_values_only(base):
    from pipeline.dataset import UNDATED_FEATURES, UNDATED_REASON, records_dataset
    from pipeline.features import build_features
    from pipeline.records import load_records

    records = load_records(base)
    early = "2025-01-15"
    dataset = records_dataset(records, earlier_snapshots=(early,))
    for column in UNDATED_FEATURES:
        assert column not in dataset.frame.columns and dataset.dropped[column] == UNDATED_REASON
    rows = dataset.period == pd.Timestamp(early)
    cut = dataset.frame[rows.to_numpy()].reset_index(drop=True)
    starts = records.subscribers.set_index("subscriber_id")["contract_start"]
    later = (starts.reindex(cut["subscriber_id"]).to_numpy() >= np.datetime64(early)).astype(bool)
    assert later.any() and not later.all()
    assert cut.loc[later, "months_left_on_contract"].isna().all() and cut.loc[later, "contract_type"].isna().all()
    plain = build_features(records, early).set_index("subscriber_id")
    known = cut[~later].set_index("subscriber_id")
    pd.testing.assert_series_equal(known["months_left_on_contract"],
                                   plain.loc[known.index, "months_left_on_contract"])


# --- no silent fallbacks ----------------------------------------------------------------------------


def test_a_model_without_a_base_rate_is_refused():
    from pipeline.jobs import scoring_model
    from pipeline.tracking import LoadedModel

    loaded = LoadedModel(model=object(), uri="models:/m/3", version="3", metadata={"input_columns": ["x"]},
                         signature_columns=[("x", "double")])
    with pytest.raises(ModelError, match=r"^model models:/m/3 records no training churn rate \(metadata base_rate: "
                                         r"None\), which the risk tiers are set from"):
        scoring_model(loaded)


def test_dataset_sources_keep_their_kind():
    from pipeline.tracking import _dataset_source

    assert _dataset_source("/tmp/table.csv")._get_source_type() == "local"
    database = _dataset_source("postgresql+psycopg://me:secret@db/base")
    assert database._get_source_type() == "database" and database.to_dict() == {"url": "postgresql+psycopg://me:***@db/base"}
    with pytest.raises(TrackingError, match="cannot record the data source nosuch://x in MLflow"):
        _dataset_source("nosuch://x")


def test_a_database_input_is_hashed_by_its_rows(tmp_path):
    import sqlalchemy as sa

    from pipeline.inputs import input_hash

    url = f"sqlite:///{tmp_path / 'b.db'}"
    engine = sa.create_engine(url)
    frame = pd.DataFrame({"subscriber_id": ["a", "b", "c"], "monthly_fee": [1.0, 2.0, 3.0]})
    frame.to_sql("subscribers", engine, index=False)
    first = input_hash(url)
    frame.iloc[::-1].to_sql("subscribers", engine, index=False, if_exists="replace")
    assert input_hash(url) == first  # the rows' order in the database does not matter
    frame.assign(monthly_fee=[1.0, 2.0, 3.5]).to_sql("subscribers", engine, index=False, if_exists="replace")
    assert input_hash(url) != first
    engine.dispose()


# --- one parser of numbers -------------------------------------------------------------------------


def test_thousands_separators_are_numbers_everywhere():
    from pipeline.dataset import parse_value
    from pipeline.drift import DriftCounter, profile
    from pipeline.prepare import TableTyper, to_numbers
    from pipeline.records import _coerce_number
    from pipeline.schema import Column
    from pipeline.inputs import column_kinds

    text = pd.Series(["1,234.5", "12", " 2,000 ", None, "3,000,000"] * 20, name="charges")
    expected = [1234.5, 12.0, 2000.0, np.nan, 3_000_000.0] * 20
    np.testing.assert_array_equal(to_numbers(text), expected)
    typer = TableTyper().fit(pd.DataFrame({"charges": text}))
    assert typer.kinds_ == {"charges": "numeric"}
    np.testing.assert_array_equal(typer.transform(pd.DataFrame({"charges": text}))["charges"], expected)
    assert column_kinds(pd.DataFrame({"charges": text})) == {"charges": "number"}
    assert parse_value(text.fillna("0"), where="t").iloc[0] == 1234.5
    counter = DriftCounter(profile(pd.DataFrame({"charges": text})))
    counter.add(pd.DataFrame({"charges": text}))
    assert counter.psi()["charges"] == pytest.approx(0.0)
    numbers, bad = _coerce_number(text.astype("str"), Column("monthly_fee", "float"))
    assert bad is None and numbers.iloc[0] == 1234.5
    assert to_numbers(pd.Series(["1,2", "abc"])).isna().all()


def test_a_column_of_repeated_texts_parses_as_each_text_alone():
    """``to_numbers`` parses each distinct text once when texts repeat: the same numbers as
    parsing each value on its own, for texts, blanks, booleans and numbers in one column."""
    from pipeline.prepare import to_numbers

    pool = ["1", " 2 ", "1,234.5", "1,2", "abc", "", "  ", None, np.nan, "-0", "1e3", "inf", "12345678901234567890",
            3, True, 2.5]
    values = pd.Series([pool[i] for i in np.random.default_rng(3).integers(0, len(pool), 400)], dtype=object)
    alone = [to_numbers(pd.Series([value], dtype=object)).iloc[0] for value in values]
    np.testing.assert_array_equal(to_numbers(values).to_numpy(), alone)
    np.testing.assert_array_equal(to_numbers(values.astype("string")).to_numpy(), alone)
    assert to_numbers(values).index.equals(values.index)


def test_infinities_are_refused_in_tables_and_records_without_warnings(recwarn):
    from pipeline.dataset import refuse_infinite
    from pipeline.records import Records, validate_records

    with pytest.raises(DataError, match=r"^t.csv: column x: rows 1, 3 are infinite \(expected a finite number or a blank\)$"):
        refuse_infinite(pd.DataFrame({"x": ["1", "inf", "2", "-Infinity"]}), "t.csv")
    subscribers = pd.DataFrame({
        "subscriber_id": ["S1", "S2"], "activation_date": ["2024-01-01"] * 2, "plan": ["a"] * 2,
        "monthly_fee": [1.0, np.inf], "contract_type": ["none"] * 2, "contract_start": [None] * 2,
        "contract_end": [None] * 2, "device_instalment_balance": [0.0] * 2, "early_termination_fee": [0.0] * 2,
        "family_bundle": [False] * 2, "fixed_line_bundle": [False] * 2, "age_band": ["18-29"] * 2,
        "region": ["x"] * 2, "channel": ["store"] * 2})
    with pytest.raises(DataError, match=r"^subscribers.monthly_fee: row 1 is infinite \(expected a finite number\)$"):
        validate_records(Records(subscribers=subscribers))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# --- protected traits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, trait", [
    ("gender", "gender"), ("Sex", "gender"), ("SeniorCitizen", "age"), ("age_band", "age"), ("customer_age", "age"),
    ("BirthYear", "age"), ("date_of_birth", "age"), ("Marital Status", "marital status"), ("Partner", "marital status"),
    ("religion", "religion"), ("ethnic_group", "ethnicity"), ("Race", "ethnicity"), ("nationality", "nationality"),
    ("disability_flag", "disability"), ("account_age", None), ("usage_gb", None), ("tenure", None),
    ("Contract", None), ("PaymentMethod", None), ("page_age", None),
])
def test_protected_traits_by_name(name, trait):
    from pipeline.protected import protected_trait

    if name == "page_age":
        trait = "age"  # by name only: an unknown "<thing>_age" is taken as a person's age (use_protected opts in)
    assert protected_trait(name) == trait


def _telco(n=900, seed=4):
    rng = np.random.default_rng(seed)
    gender = rng.choice(["Female", "Male"], n)
    senior = rng.integers(0, 2, n)
    x = rng.normal(size=n)
    # churn depends on gender and age too: a model free to use them would quote them
    churn = rng.random(n) < 1 / (1 + np.exp(-(x - 1 + 1.5 * (gender == "Female") + 1.5 * senior)))
    return pd.DataFrame({"customerID": [f"c{i}" for i in range(n)], "gender": gender, "SeniorCitizen": senior,
                         "x": x, "tenure": rng.integers(0, 70, n), "Churn": np.where(churn, "Yes", "No")})


def test_protected_traits_are_left_out_unless_opted_in_and_never_reasons():
    from pipeline.dataset import table_dataset
    from pipeline.explain import reasons
    from pipeline.train import train

    dataset = table_dataset(_telco(), id_column="customerID", target="Churn", positive="Yes")
    result = train(dataset, FAST)
    assert "gender" not in result.input_columns and "SeniorCitizen" not in result.input_columns
    report = result.columns.set_index("column")["reason"]
    assert report["gender"] == "protected trait (gender): not a feature unless data.use_protected names it"
    assert report["SeniorCitizen"] == "protected trait (age): not a feature unless data.use_protected names it"

    opted = train(dataset, with_overrides(FAST, data={"use_protected": ("SeniorCitizen",), "exclude_columns": ("tenure",)}))
    assert "SeniorCitizen" in opted.input_columns and "gender" not in opted.input_columns
    assert "tenure" not in opted.input_columns
    assert opted.columns.set_index("column")["reason"]["tenure"].startswith("excluded by configuration")
    X = dataset.frame[opted.input_columns].head(300)
    found = reasons(opted.model, X)
    named = set(found[[f"reason_{k}_feature" for k in (1, 2, 3)]].to_numpy().ravel()) - {""}
    assert named and "SeniorCitizen" not in named


def test_top_reasons_never_quote_a_protected_column():
    from pipeline.explain import top_reasons

    contrib = pd.DataFrame({"gender": [3.0, 2.0], "age_band": [2.5, 0.0], "x": [1.0, -1.0]})
    X = pd.DataFrame({"gender": ["Female", "Male"], "age_band": ["18-29", "60+"], "x": [4.0, 1.0]})
    out = top_reasons(contrib, X, k=3)
    assert out["reason_1_feature"].tolist() == ["x", ""] and out["reason_1"].tolist() == ["x: 4", ""]
    assert not out.isin(["gender: Female", "Age 18-29"]).any().any()


def test_fairness_table_per_protected_segment():
    from pipeline.protected import fairness_table

    frame = pd.DataFrame({"gender": ["F"] * 20 + ["M"] * 20, "x": range(40)})
    y = np.array([1] * 4 + [0] * 16 + [1] * 2 + [0] * 18)
    proba = np.r_[np.linspace(0.9, 0.1, 20), np.linspace(0.5, 0.05, 20)]
    listed = proba >= 0.4
    table = fairness_table(frame, y, proba, listed).set_index("segment")
    assert list(table.index) == ["F", "M"] and (table["column"] == "gender").all()
    assert table.loc["F", "rows"] == 20 and table.loc["F", "observed_churn"] == pytest.approx(0.2)
    assert table.loc["F", "share_of_at_risk_list"] == pytest.approx(listed[:20].sum() / listed.sum())
    assert table.loc["F", "mean_predicted"] == pytest.approx(0.5)
    assert table.loc["F", "calibration_ratio"] == pytest.approx(2.5)
    assert table.loc["F", "top_decile_lift"] == pytest.approx(5.0)  # both top-decile F rows churned: 1 / 0.2
    assert not table["used_as_feature"].any()
    assert fairness_table(frame[["x"]], y, proba, listed).empty


# --- files: permissions and leftovers -----------------------------------------------------------------


@pytest.mark.parametrize("mode, umask, expected", [(0o640, 0o022, 0o640), (0o600, 0o000, 0o600),
                                                    (0, 0o022, 0o644), (0, 0o077, 0o600)])
def test_lists_get_the_configured_permissions(tmp_path, mode, umask, expected):
    from pipeline.output import ListWriter

    old = os.umask(umask)
    try:
        with ListWriter(tmp_path / "list.csv", mode=mode) as writer:
            writer.write(pd.DataFrame({"rank": [1], "subscriber_id": ["a"]}))
    finally:
        os.umask(old)
    assert (tmp_path / "list.csv").stat().st_mode & 0o777 == expected
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]


def test_leftovers_of_dead_runs_are_swept_and_live_ones_kept(tmp_path):
    import subprocess

    from pipeline.files import STALE_SECONDS, owner_tag, sweep_leftovers, temp_file, temp_folder

    out = tmp_path / "list.csv"
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = owner_tag().rsplit("-", 1)[0]
    (tmp_path / f".list.csv.{host}-{dead.pid}.abc123.tmp").write_text("partial")
    (tmp_path / f".list.csv.runs.{host}-{dead.pid}.xyz").mkdir()
    (tmp_path / f".list.csv.runs.{host}-{dead.pid}.xyz" / "run-00000.parquet").write_text("run")
    mine = temp_file(out)  # this live process's
    my_runs = temp_folder(out)
    old = tmp_path / ".list.csv.k2j4h5.tmp"  # an older version's name: no process in it
    old.write_text("old")
    fresh = tmp_path / ".list.csv.q9w8e7.tmp"
    fresh.write_text("fresh")
    os.utime(old, (time.time() - STALE_SECONDS - 5,) * 2)
    other = tmp_path / ".other.csv.host-1.abc.tmp"
    other.write_text("another list's")
    removed = sorted(p.name for p in sweep_leftovers(out))
    assert removed == sorted([f".list.csv.{host}-{dead.pid}.abc123.tmp", f".list.csv.runs.{host}-{dead.pid}.xyz",
                              ".list.csv.k2j4h5.tmp"])
    assert mine.exists() and my_runs.exists() and fresh.exists() and other.exists()


def test_output_paths_that_are_the_input_are_refused(tmp_path):
    from pipeline.files import check_output_path

    (tmp_path / "t.csv").write_text("a\n1\n")
    (tmp_path / "base").mkdir()
    os.symlink(tmp_path / "t.csv", tmp_path / "link.csv")
    for output in ("t.csv", "link.csv", "base/../t.csv"):
        with pytest.raises(DataError, match="is the input --data"):
            check_output_path(tmp_path / output, str(tmp_path / "t.csv"))
    with pytest.raises(DataError, match="is inside the input record folder"):
        check_output_path(tmp_path / "base" / "x.csv", str(tmp_path / "base"))
    assert check_output_path(tmp_path / "out.csv", str(tmp_path / "t.csv")) == tmp_path / "out.csv"


# --- through the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_telco_like_table_trains_without_gender_or_age_and_logs_fairness(tmp_path):
    from servers import run_churn

    _telco(1200).to_csv(tmp_path / "telco.csv", index=False)
    (tmp_path / "fast.toml").write_text('[train]\nsearch_iterations = 0\ncv_folds = 3\ncandidates = ["logistic"]\n'
                                        'blend = false\n[scoring]\nfile_mode = 0o600\n')
    trained = run_churn(["train", "--data", "telco.csv", "--id", "customerID", "--target", "Churn", "--positive", "Yes",
                         "--exclude", "tenure", "--config", "fast.toml"], tmp_path)
    unused = next(line for line in trained.stdout.splitlines() if line.startswith("columns not used: "))
    assert "gender (protected trait (gender): not a feature unless data.use_protected names it)" in unused
    assert "SeniorCitizen (protected trait (age): not a feature unless data.use_protected names it)" in unused
    assert "tenure (excluded by configuration (data.exclude_columns / --exclude))" in unused
    fairness = pd.read_csv(next(tmp_path.glob("mlruns/**/artifacts/evaluation/fairness.csv")))
    assert set(zip(fairness["column"], fairness["segment"].astype(str))) == {
        ("gender", "Female"), ("gender", "Male"), ("SeniorCitizen", "0"), ("SeniorCitizen", "1")}
    assert not fairness["used_as_feature"].any()
    assert fairness.groupby("column")["share_of_at_risk_list"].sum().round(6).eq(1).all()
    run_churn(["score", "--data", "telco.csv", "--output", "list.csv", "--all", "--config", "fast.toml"], tmp_path)
    listed = pd.read_csv(tmp_path / "list.csv")
    assert not listed[["reason_1", "reason_2", "reason_3"]].fillna("").apply(
        lambda c: c.str.contains("gender|Senior|Female|Male")).any().any()
    assert (tmp_path / "list.csv").stat().st_mode & 0o777 == 0o600
