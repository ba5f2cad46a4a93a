"""Loading, coercion and validation of subscriber records (pipeline.records)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pandas as pd
import pandas.testing as pdt
import pytest

from pipeline.errors import ConfigError, DataError
from pipeline.records import (
    Records,
    drop_personal,
    is_record_source,
    iter_record_chunks,
    load_records,
    validate_records,
    write_records,
    write_records_sql,
)

D = pd.Timestamp
TABLE_NAMES = ("subscribers", "usage_monthly", "contacts", "breach_exposure", "outcomes", "campaigns")


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


def dates(*values):
    return pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601").astype("datetime64[us]")


def tiny_records() -> Records:
    """Three subscribers, valid, with every table, in model dtypes."""
    subscribers = pd.DataFrame(
        {
            "subscriber_id": ["S1", "S2", "S3"],
            "activation_date": dates("2020-01-15", "2022-06-01", "2024-02-10"),
            "plan": ["basic", "premium", "basic"],
            "monthly_fee": [33000.0, 55000.0, 29000.0],
            "contract_type": ["24m", "none", "12m"],
            "contract_start": dates("2023-03-01", None, "2024-02-10"),
            "contract_end": dates("2025-03-01", None, "2025-02-10"),
            "device_instalment_balance": [120000.0, 0.0, 0.0],
            "early_termination_fee": [50000.0, 0.0, 12000.0],
            "family_bundle": [True, False, False],
            "fixed_line_bundle": [False, True, False],
            "age_band": ["30-39", "60+", None],
            "region": ["Seoul", "Busan", None],
            "channel": ["store", "online", "dealer"],
            "name": ["Kim Min-jun", "Lee Seo-yeon", None],
            "phone_number": ["010-1111-2222", "010-3333-4444", None],
            "email": ["kim@example.com", None, None],
        }
    )
    usage = pd.DataFrame(
        {
            "subscriber_id": ["S1", "S1", "S2", "S3"],
            "month": dates("2025-03-01", "2025-04-01", "2025-04-01", "2025-04-01"),
            "voice_minutes": [320.5, 290.0, 100.0, 15.0],
            "data_gb": [12.5, 10.0, 2.0, 0.5],
            "sms_count": [10, 12, 0, 3],
            "bill_amount": [33000.0, 33000.0, 55000.0, 29000.0],
            "payment_delay_days": [0, 3, 0, 0],
        }
    )
    contacts = pd.DataFrame(
        {
            "subscriber_id": ["S2", "S1"],
            "contact_time": dates("2025-04-22 10:15:00", "2025-04-23 18:00:30"),
            "channel": ["call_center", "app"],
            "reason": ["breach_inquiry", "usim_replacement"],
        }
    )
    exposure = pd.DataFrame(
        {
            "subscriber_id": ["S1", "S2"],
            "exposed_phone_number": [True, True],
            "exposed_usim_key": [True, False],
            "exposed_identity_number": [False, False],
            "exposed_payment_data": [False, False],
            "notification_date": dates("2025-04-22", "2025-04-22"),
            "fraud_loss_amount": [0.0, 150000.0],
            "compensation_amount": [16500.0, 27500.0],
            "waiver_eligible": [True, False],
            "waiver_start": dates("2025-07-05", None),
            "waiver_end": dates("2025-07-14", None),
        }
    )
    outcomes = pd.DataFrame({"subscriber_id": ["S1", "S2", "S3"], "defection_date": dates("2025-07-10", None, None)})
    campaigns = pd.DataFrame(
        {
            "subscriber_id": ["S1", "S2", "S3", "S1", "S2"],
            "campaign_id": ["C1", "C1", "C1", "C2", "C2"],
            "contact_date": dates("2025-05-01", "2025-05-01", "2025-05-02", "2025-07-05", "2025-07-05"),
            "group": ["offer", "control", "offer", "offer", "control"],
            "offer_kind": ["bill_credit", None, "bill_credit", "etf_waiver", None],
            "offer_cost": [30000.0, 0.0, 30000.0, 50000.0, 0.0],
            "accepted": pd.array([True, None, False, None, None], dtype="boolean"),
        }
    )
    return Records(
        subscribers=subscribers,
        usage_monthly=usage,
        contacts=contacts,
        breach_exposure=exposure,
        outcomes=outcomes,
        campaigns=campaigns,
        snapshot_date=D("2025-06-30"),
        disclosure_date=D("2025-04-22"),
    )


def with_table(records: Records, name: str, **changes) -> Records:
    """Records whose table ``name`` has the given columns replaced (as lists)."""
    frame = records.table(name).copy()
    for column, values in changes.items():
        frame[column] = pd.Series(values, dtype=object) if isinstance(values, list) else values
    return replace(records, **{name: frame})


def assert_records_equal(actual: Records, expected: Records) -> None:
    for name in TABLE_NAMES:
        if expected.table(name) is None:
            assert actual.table(name) is None, name
        else:
            pdt.assert_frame_equal(actual.table(name), expected.table(name), obj=name)
    assert actual.snapshot_date == expected.snapshot_date
    assert actual.disclosure_date == expected.disclosure_date


@pytest.fixture
def records() -> Records:
    return tiny_records()


# --- validation: every rule, exact text ------------------------------------------------


def test_valid_records_pass_and_keep_their_frames(records):
    checked = validate_records(records)
    for name in TABLE_NAMES:
        assert checked.table(name) is records.table(name), name  # nothing to coerce: no copy


def test_model_dtypes(records):
    checked = validate_records(records)
    dtypes = checked.subscribers.dtypes.astype(str).to_dict()
    assert dtypes["subscriber_id"] == "str"
    assert dtypes["activation_date"] == "datetime64[us]"
    assert dtypes["monthly_fee"] == "float64"
    assert dtypes["family_bundle"] == "bool"
    assert checked.usage_monthly["sms_count"].dtype == "int64"
    assert checked.contacts["contact_time"].dtype == "datetime64[us]"


def test_missing_required_columns_are_all_listed(records):
    broken = replace(records, subscribers=records.subscribers.drop(columns=["plan", "monthly_fee"]))
    with pytest.raises(DataError, match=exactly("subscribers: missing required columns plan, monthly_fee")):
        validate_records(broken)


def test_one_missing_required_column(records):
    broken = replace(records, contacts=records.contacts.drop(columns=["reason"]))
    with pytest.raises(DataError, match=exactly("contacts: missing required column reason")):
        validate_records(broken)


def test_optional_personal_columns_may_be_absent(records):
    checked = validate_records(drop_personal(records))
    assert "name" not in checked.subscribers.columns


def test_type_number(records):
    broken = with_table(records, "subscribers", monthly_fee=[33000, "abc", "x1"])
    with pytest.raises(DataError, match=exactly("subscribers.monthly_fee: rows 1, 2 have 'abc', 'x1' (expected a number)")):
        validate_records(broken)


def test_type_whole_number(records):
    broken = with_table(records, "usage_monthly", sms_count=[10, 2.5, 0, 3])
    with pytest.raises(DataError, match=exactly("usage_monthly.sms_count: row 1 has 2.5 (expected a whole number)")):
        validate_records(broken)


def test_type_whole_number_rejects_infinity(records):
    broken = with_table(records, "usage_monthly", payment_delay_days=[0, "inf", 0, 0])
    with pytest.raises(DataError, match=exactly("usage_monthly.payment_delay_days: row 1 has 'inf' (expected a whole number)")):
        validate_records(broken)


def test_type_bool(records):
    broken = with_table(records, "subscribers", family_bundle=["yes", "maybe", "NO"])
    with pytest.raises(
        DataError, match=exactly("subscribers.family_bundle: row 1 has 'maybe' (expected true/false, 1/0 or yes/no)")
    ):
        validate_records(broken)


def test_type_date(records):
    broken = with_table(records, "subscribers", activation_date=["2020-01-15", "2022-13-01", "01/02/2024"])
    with pytest.raises(
        DataError,
        match=exactly("subscribers.activation_date: rows 1, 2 have '2022-13-01', '01/02/2024' (expected an ISO date like 2025-04-22)"),
    ):
        validate_records(broken)


def test_type_timestamp(records):
    broken = with_table(records, "contacts", contact_time=["2025-04-22 10:15:00", "soon"])
    with pytest.raises(
        DataError, match=exactly("contacts.contact_time: row 1 has 'soon' (expected an ISO timestamp like 2025-04-22 10:15:00)")
    ):
        validate_records(broken)


def test_blank_in_non_nullable_column(records):
    broken = with_table(records, "subscribers", plan=["basic", None, None])
    with pytest.raises(DataError, match=exactly("subscribers.plan: rows 1, 2 are blank (expected text)")):
        validate_records(broken)


def test_blank_id(records):
    broken = with_table(records, "usage_monthly", subscriber_id=["S1", "S1", None, "S3"])
    with pytest.raises(DataError, match=exactly("usage_monthly.subscriber_id: row 2 is blank (expected an id)")):
        validate_records(broken)


def test_blank_bool_is_reported_not_coerced_to_false(records):
    broken = with_table(records, "breach_exposure", waiver_eligible=[True, None])
    with pytest.raises(
        DataError, match=exactly("breach_exposure.waiver_eligible: row 1 is blank (expected true/false, 1/0 or yes/no)")
    ):
        validate_records(broken)


def test_allowed_values(records):
    broken = with_table(records, "subscribers", contract_type=["24m", "monthly", "monthly"])
    with pytest.raises(
        DataError, match=exactly("subscribers.contract_type: rows 1, 2 have 'monthly' (expected one of none, 12m, 24m)")
    ):
        validate_records(broken)


def test_allowed_values_of_nullable_column_allow_blanks_only(records):
    validate_records(with_table(records, "subscribers", channel=[None, "online", "dealer"]))
    broken = with_table(records, "contacts", reason=["billing", "angry"])
    with pytest.raises(DataError, match=exactly("contacts.reason: row 1 has 'angry' (expected one of " + ", ".join(
        ("billing", "technical", "plan_change", "device", "breach_inquiry", "breach_complaint", "usim_replacement",
         "porting_inquiry", "other")) + ")")):
        validate_records(broken)


def test_minimum(records):
    broken = with_table(records, "subscribers", monthly_fee=[33000.0, -5.0, -0.5])
    with pytest.raises(DataError, match=exactly("subscribers.monthly_fee: rows 1, 2 have -5, -0.5 (expected at least 0)")):
        validate_records(broken)


def test_minimum_of_int_column(records):
    broken = with_table(records, "usage_monthly", payment_delay_days=[0, -1, 0, 0])
    with pytest.raises(DataError, match=exactly("usage_monthly.payment_delay_days: row 1 has -1 (expected at least 0)")):
        validate_records(broken)


def test_unique_subscriber_id(records):
    broken = with_table(records, "subscribers", subscriber_id=["S1", "S2", "S1"])
    with pytest.raises(
        DataError, match=exactly("subscribers.subscriber_id: row 2 repeats 'S1' (expected each subscriber_id once)")
    ):
        validate_records(broken)


def test_unique_in_other_tables_that_require_it(records):
    broken = with_table(records, "outcomes", subscriber_id=["S1", "S1", "S1"])
    with pytest.raises(DataError, match=exactly("outcomes.subscriber_id: rows 1, 2 repeat 'S1' (expected each subscriber_id once)")):
        validate_records(broken)


def test_repeated_ids_are_fine_where_not_unique(records):
    validate_records(with_table(records, "contacts", subscriber_id=["S1", "S1"]))


def test_fixed_term_contract_needs_start(records):
    broken = with_table(records, "subscribers", contract_start=dates("2023-03-01", None, None))
    with pytest.raises(
        DataError, match=exactly("subscribers.contract_start: row 2 is blank (expected a date when contract_type is 12m or 24m)")
    ):
        validate_records(broken)


def test_fixed_term_contract_needs_end(records):
    broken = with_table(records, "subscribers", contract_end=dates(None, None, "2025-02-10"))
    with pytest.raises(
        DataError, match=exactly("subscribers.contract_end: row 0 is blank (expected a date when contract_type is 12m or 24m)")
    ):
        validate_records(broken)


def test_no_contract_may_still_carry_dates(records):
    validate_records(with_table(records, "subscribers", contract_start=dates("2023-03-01", "2023-01-01", "2024-02-10")))


def test_dates_in_order_activation_before_contract(records):
    broken = with_table(records, "subscribers", activation_date=dates("2023-03-02", "2022-06-01", "2024-02-10"))
    with pytest.raises(
        DataError,
        match=exactly("subscribers.contract_start: row 0 is before activation_date (expected activation_date <= contract_start)"),
    ):
        validate_records(broken)


def test_dates_in_order_contract_start_before_end(records):
    broken = with_table(records, "subscribers", contract_end=dates("2023-02-28", None, "2024-02-10"))
    with pytest.raises(
        DataError,
        match=exactly("subscribers.contract_end: row 0 is before contract_start (expected contract_start <= contract_end)"),
    ):
        validate_records(broken)


def test_dates_in_order_waiver_window(records):
    broken = with_table(records, "breach_exposure", waiver_end=dates("2025-07-04", None))
    with pytest.raises(
        DataError,
        match=exactly("breach_exposure.waiver_end: row 0 is before waiver_start (expected waiver_start <= waiver_end)"),
    ):
        validate_records(broken)


def test_references_to_subscribers(records):
    broken = with_table(records, "usage_monthly", subscriber_id=["S9", "S1", "S2", "S8"])
    with pytest.raises(
        DataError, match=exactly("usage_monthly.subscriber_id: rows 0, 3 have 'S9', 'S8' (expected an id present in subscribers)")
    ):
        validate_records(broken)


def test_references_are_checked_after_each_table(records):
    broken = with_table(records, "outcomes", subscriber_id=["S1", "S2", "S7"])
    with pytest.raises(DataError, match=exactly("outcomes.subscriber_id: row 2 has 'S7' (expected an id present in subscribers)")):
        validate_records(broken)


def test_campaign_group_is_offer_or_control(records):
    broken = with_table(records, "campaigns", group=["offer", "control", "treated", "offer", "control"])
    with pytest.raises(DataError, match=exactly("campaigns.group: row 2 has 'treated' (expected one of offer, control)")):
        validate_records(broken)
    blank = with_table(records, "campaigns", group=[None, "control", "offer", "offer", "control"])
    with pytest.raises(DataError, match=exactly("campaigns.group: row 0 is blank (expected one of offer, control)")):
        validate_records(blank)


def test_campaign_offer_cost_is_not_negative(records):
    broken = with_table(records, "campaigns", offer_cost=[-100.0, 0.0, 30000.0, 50000.0, 0.0])
    with pytest.raises(DataError, match=exactly("campaigns.offer_cost: row 0 has -100 (expected at least 0)")):
        validate_records(broken)


def test_campaign_subscribers_are_subscribers(records):
    broken = with_table(records, "campaigns", subscriber_id=["S1", "S9", "S3", "S1", "S2"])
    with pytest.raises(DataError, match=exactly("campaigns.subscriber_id: row 1 has 'S9' (expected an id present in subscribers)")):
        validate_records(broken)


def test_a_subscriber_is_in_a_campaign_at_most_once(records):
    broken = with_table(records, "campaigns", subscriber_id=["S1", "S2", "S1", "S1", "S2"])
    with pytest.raises(
        DataError, match=exactly("campaigns.subscriber_id: row 2 repeats 'S1' (expected each subscriber_id once per campaign_id)")
    ):
        validate_records(broken)
    # S1 and S2 are in both campaigns already: once per campaign is fine.
    validate_records(records)


def test_a_control_row_cannot_have_accepted_the_offer(records):
    broken = with_table(records, "campaigns", accepted=pd.array([True, True, False, None, True], dtype="boolean"))
    with pytest.raises(
        DataError,
        match=exactly("campaigns.accepted: rows 1, 4 are true in the control group (expected blank or false when group is control)"),
    ):
        validate_records(broken)
    validate_records(with_table(records, "campaigns", accepted=pd.array([True, False, False, None, False], dtype="boolean")))


def test_a_campaign_of_one_group_is_valid_records(records):
    validate_records(with_table(records, "campaigns", group=["offer", "offer", "offer", "control", "control"]))


def test_campaign_rules_apply_to_text_read_from_files(records):
    text = records.campaigns.astype(object).assign(accepted=["yes", "", "0", None, "TRUE"], offer_cost=["1", "0", "2", "3", "0"])
    text["accepted"] = text["accepted"].replace("", None)
    with pytest.raises(DataError, match=exactly(
            "campaigns.accepted: row 4 is true in the control group (expected blank or false when group is control)")):
        validate_records(replace(records, campaigns=text))


def test_many_offending_rows_are_cut_to_five():
    subscribers = tiny_records().subscribers
    many = pd.concat([subscribers] * 4, ignore_index=True)
    many["subscriber_id"] = [f"S{i}" for i in range(12)]
    many["contract_type"] = "weekly"
    with pytest.raises(
        DataError,
        match=exactly("subscribers.contract_type: rows 0, 1, 2, 3, 4 (and 7 more) have 'weekly' (expected one of none, 12m, 24m)"),
    ):
        validate_records(Records(subscribers=many))


def test_message_starts_with_the_source(records):
    broken = replace(with_table(records, "subscribers", plan=["basic", None, "x"]), source="/data/base")
    with pytest.raises(DataError, match=exactly("/data/base: subscribers.plan: row 1 is blank (expected text)")):
        validate_records(broken)


def test_first_table_is_reported_first(records):
    broken = with_table(with_table(records, "outcomes", subscriber_id=["S1", "S1", "S1"]), "subscribers", plan=[None, "a", "b"])
    with pytest.raises(DataError, match=r"^subscribers\.plan"):
        validate_records(broken)


# --- coercion -----------------------------------------------------------------------------


def test_coercion_from_text(records):
    text = records.subscribers.astype(object).astype(str).replace({"NaT": None, "nan": None, "None": None})
    text["family_bundle"] = ["Yes", "false", "1"]
    text["fixed_line_bundle"] = ["NO", "TRUE", "0"]
    text["activation_date"] = ["2020-01-15", "2022-06-01T13:45:00", "2024-02-10 00:00:00"]
    checked = validate_records(replace(records, subscribers=text)).subscribers
    assert checked["family_bundle"].tolist() == [True, False, True]
    assert checked["fixed_line_bundle"].tolist() == [False, True, False]
    pdt.assert_series_equal(checked["activation_date"], records.subscribers["activation_date"])  # normalised
    pdt.assert_series_equal(checked["monthly_fee"], records.subscribers["monthly_fee"])
    assert text["family_bundle"].tolist() == ["Yes", "false", "1"]  # the input frame is untouched


def test_coercion_of_numeric_ids_bools_and_aware_times(records):
    subscribers = records.subscribers.assign(subscriber_id=[1.0, 2.0, 3.0], family_bundle=[1, 0, 0])
    usage = records.usage_monthly.assign(subscriber_id=[1, 1, 2, 3])
    contacts = records.contacts.assign(
        subscriber_id=[2, 1], contact_time=pd.to_datetime(["2025-04-22 19:15:00", "2025-04-24 03:00:30"]).tz_localize("Asia/Seoul")
    )
    checked = validate_records(Records(subscribers=subscribers, usage_monthly=usage, contacts=contacts))
    assert checked.subscribers["subscriber_id"].tolist() == ["1", "2", "3"]
    assert checked.usage_monthly["subscriber_id"].tolist() == ["1", "1", "2", "3"]
    assert checked.subscribers["family_bundle"].tolist() == [True, False, False]
    assert checked.contacts["contact_time"].tolist() == [D("2025-04-22 10:15:00"), D("2025-04-23 18:00:30")]
    mixed = records.contacts.assign(contact_time=["2025-04-22T19:15:00+09:00", "2025-04-23 18:00:30"])
    checked = validate_records(replace(records, contacts=mixed)).contacts
    assert checked["contact_time"].tolist() == [D("2025-04-22 10:15:00"), D("2025-04-23 18:00:30")]


def test_unknown_columns_are_dropped(records):
    extra = records.subscribers.assign(home_address="secret", nickname="x")
    checked = validate_records(replace(records, subscribers=extra))
    assert list(checked.subscribers.columns) == list(records.subscribers.columns)


def test_nullable_bool_and_int_keep_blanks_with_validate_false(tmp_path, records):
    write_records(records, tmp_path, format="csv")
    usage = pd.read_csv(tmp_path / "usage_monthly.csv")
    usage.loc[1, "sms_count"] = None
    usage.to_csv(tmp_path / "usage_monthly.csv", index=False)
    exposure = pd.read_csv(tmp_path / "breach_exposure.csv", dtype=str)
    exposure.loc[0, "waiver_eligible"] = None
    exposure.to_csv(tmp_path / "breach_exposure.csv", index=False)
    loaded = load_records(tmp_path, validate=False)
    assert loaded.usage_monthly["sms_count"].dtype == "Int64"
    assert loaded.usage_monthly["sms_count"].isna().tolist() == [False, True, False, False]
    assert loaded.breach_exposure["waiver_eligible"].dtype == "boolean"
    assert loaded.breach_exposure["waiver_eligible"].tolist() == [pd.NA, False]


def test_drop_personal(records):
    stripped = drop_personal(records)
    assert not {"name", "phone_number", "email"} & set(stripped.subscribers.columns)
    assert "name" in records.subscribers.columns
    assert stripped.usage_monthly is records.usage_monthly


# --- folders ---------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_folder_round_trip(tmp_path, records, format):
    write_records(records, tmp_path, format=format)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{name}.{format}" for name in TABLE_NAMES]
        + ["manifest.json"]
    )
    loaded = load_records(tmp_path)
    assert_records_equal(loaded, records)
    assert loaded.source == str(tmp_path)


def test_part_directory_round_trip(tmp_path, records):
    first = Records(
        subscribers=records.subscribers.iloc[:2].reset_index(drop=True),
        usage_monthly=records.usage_monthly.iloc[:3].reset_index(drop=True),
        outcomes=records.outcomes.iloc[:2].reset_index(drop=True),
        campaigns=records.campaigns.iloc[[0, 1, 3, 4]].reset_index(drop=True),
        snapshot_date=records.snapshot_date,
        meta={"scenario": "usim", "seed": 7},
    )
    second = Records(
        subscribers=records.subscribers.iloc[2:].reset_index(drop=True),
        usage_monthly=records.usage_monthly.iloc[3:].reset_index(drop=True),
        outcomes=records.outcomes.iloc[2:].reset_index(drop=True),
        campaigns=records.campaigns.iloc[[2]].reset_index(drop=True),
        snapshot_date=records.snapshot_date,
        meta={"scenario": "usim", "seed": 7},
    )
    write_records(first, tmp_path, part=0)
    write_records(second, tmp_path, part=1)
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "subscribers.parquet").write_bytes(b"not read")
    assert sorted(p.name for p in (tmp_path / "usage_monthly").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    loaded = load_records(tmp_path)
    expected = replace(records, contacts=None, breach_exposure=None, disclosure_date=None,
                       campaigns=records.campaigns.iloc[[0, 1, 3, 4, 2]].reset_index(drop=True))
    assert_records_equal(loaded, expected)
    assert loaded.meta == {"scenario": "usim", "seed": 7}


def test_manifest_dates_and_overrides(tmp_path, records):
    write_records(records, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {
        "snapshot_date": "2025-06-30",
        "disclosure_date": "2025-04-22",
    }
    loaded = load_records(tmp_path, snapshot_date="2025-05-31")
    assert loaded.snapshot_date == D("2025-05-31")
    assert loaded.disclosure_date == D("2025-04-22")


def test_only_requested_tables(tmp_path, records):
    write_records(records, tmp_path)
    loaded = load_records(tmp_path, tables=["usage_monthly"])
    assert loaded.usage_monthly is not None and loaded.contacts is None and loaded.outcomes is None
    assert loaded.subscribers is not None


def test_unknown_table_name(tmp_path, records):
    with pytest.raises(ConfigError, match=exactly(
        "unknown record tables usage (expected some of subscribers, usage_monthly, contacts, breach_exposure, outcomes, "
        "campaigns)")):
        load_records(tmp_path, tables=["usage"])


def test_missing_optional_tables_are_none(tmp_path, records):
    write_records(Records(subscribers=records.subscribers), tmp_path)
    loaded = load_records(tmp_path)
    assert loaded.usage_monthly is None and loaded.outcomes is None and loaded.snapshot_date is None


def test_missing_subscribers_table(tmp_path, records):
    write_records(replace(records, subscribers=records.subscribers.iloc[:0]), tmp_path)
    (tmp_path / "subscribers.parquet").unlink()
    with pytest.raises(
        DataError,
        match=exactly(
            f"{tmp_path}: no subscribers table (looked for subscribers/part-*.parquet, subscribers.parquet and subscribers.csv)"
        ),
    ):
        load_records(tmp_path)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match=exactly(
        f"{tmp_path / 'nope'}: does not exist (expected a folder of record tables or a database URL such as sqlite:///base.db)")):
        load_records(tmp_path / "nope")


def test_table_stored_twice(tmp_path, records):
    write_records(Records(subscribers=records.subscribers), tmp_path)
    records.subscribers.to_csv(tmp_path / "subscribers.csv", index=False)
    with pytest.raises(DataError, match=exactly(f"{tmp_path}: subscribers is stored more than once (subscribers.parquet and subscribers.csv); keep one")):
        load_records(tmp_path)


def test_writing_a_second_format_is_refused(tmp_path, records):
    write_records(Records(subscribers=records.subscribers), tmp_path)
    with pytest.raises(DataError, match=exactly(f"{tmp_path}: subscribers is already stored as subscribers.parquet; remove it or write to another folder")):
        write_records(Records(subscribers=records.subscribers), tmp_path, format="csv")


def test_write_options(tmp_path, records):
    with pytest.raises(ConfigError, match=exactly("format must be 'parquet' or 'csv', not 'xlsx'")):
        write_records(records, tmp_path, format="xlsx")
    with pytest.raises(ConfigError, match=r"^part must be a whole number >= 0 and needs format 'parquet'"):
        write_records(records, tmp_path, format="csv", part=1)


def test_corrupt_parquet_names_the_file(tmp_path, records):
    write_records(records, tmp_path)
    (tmp_path / "contacts.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'contacts.parquet'}: cannot read it as Parquet (")):
        load_records(tmp_path)


def test_unreadable_csv_names_the_file(tmp_path, records):
    write_records(records, tmp_path, format="csv")
    (tmp_path / "outcomes.csv").write_bytes(b"subscriber_id,defection_date\n\xff\xfe\x00bad\n")
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'outcomes.csv'}: cannot read it as CSV (")):
        load_records(tmp_path)


def test_bad_manifest(tmp_path, records):
    write_records(Records(subscribers=records.subscribers), tmp_path)
    (tmp_path / "manifest.json").write_text('{"snapshot_date": "someday"}')
    with pytest.raises(DataError, match=exactly(f"{tmp_path / 'manifest.json'}: snapshot_date 'someday' is not a date (expected YYYY-MM-DD)")):
        load_records(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'manifest.json'}: cannot read it as JSON (JSONDecodeError: ")):
        load_records(tmp_path)


def test_csv_type_error_names_source_table_column_and_rows(tmp_path, records):
    write_records(records, tmp_path, format="csv")
    usage = pd.read_csv(tmp_path / "usage_monthly.csv", dtype=str)
    usage.loc[2, "data_gb"] = "lots"
    usage.to_csv(tmp_path / "usage_monthly.csv", index=False)
    with pytest.raises(DataError, match=exactly(f"{tmp_path}: usage_monthly.data_gb: row 2 has 'lots' (expected a number)")):
        load_records(tmp_path, validate=False)


def test_csv_keeps_leading_zeros_in_ids(tmp_path, records):
    zeros = records.subscribers.assign(subscriber_id=["001", "002", "010"])
    write_records(Records(subscribers=zeros), tmp_path, format="csv")
    assert load_records(tmp_path).subscribers["subscriber_id"].tolist() == ["001", "002", "010"]


def test_validation_on_load_can_be_skipped(tmp_path, records):
    write_records(with_table(records, "subscribers", contract_type=["24m", "weekly", "none"]), tmp_path)
    with pytest.raises(DataError, match=exactly(f"{tmp_path}: subscribers.contract_type: row 1 has 'weekly' (expected one of none, 12m, 24m)")):
        load_records(tmp_path)
    assert load_records(tmp_path, validate=False).subscribers["contract_type"].tolist() == ["24m", "weekly", "none"]


def test_is_record_source(tmp_path, records):
    assert is_record_source("sqlite:///anything.db")
    assert not is_record_source(tmp_path)
    assert not is_record_source(tmp_path / "missing")
    write_records(Records(subscribers=records.subscribers), tmp_path, part=0)
    assert is_record_source(tmp_path)
    assert is_record_source(str(tmp_path))


# --- chunks ------------------------------------------------------------------------------------


def write_parts(records: Records, folder, groups) -> None:
    """Write aligned parts: ``groups`` lists the subscriber ids of each part."""
    for part, ids in enumerate(groups):
        tables = {}
        for name in TABLE_NAMES:
            frame = records.table(name)
            if frame is not None:
                tables[name] = frame[frame["subscriber_id"].isin(ids)].reset_index(drop=True)
        write_records(replace(records, **tables), folder, part=part)


def test_part_chunks_merge_small_parts(tmp_path, records):
    write_parts(records, tmp_path, [["S1"], ["S2"], ["S3"]])
    chunks = list(iter_record_chunks(tmp_path, chunk_subscribers=2))
    assert [chunk.subscribers["subscriber_id"].tolist() for chunk in chunks] == [["S1", "S2"], ["S3"]]
    assert [chunk.source for chunk in chunks] == [f"{tmp_path} (part-00000..part-00001)", f"{tmp_path} (part-00002)"]
    assert [chunk.meta["chunk"] for chunk in chunks] == [0, 1]
    assert chunks[0].usage_monthly["subscriber_id"].tolist() == ["S1", "S1", "S2"]
    assert chunks[1].breach_exposure.empty and list(chunks[1].breach_exposure.columns) == list(records.breach_exposure.columns)
    assert chunks[1].breach_exposure.dtypes.equals(records.breach_exposure.dtypes)
    assert all(chunk.snapshot_date == D("2025-06-30") for chunk in chunks)


@pytest.mark.parametrize("layout", ["parts", "csv"])
def test_lazy_chunks_read_when_called_in_any_order_give_the_same_chunks(tmp_path, records, layout):
    if layout == "parts":
        write_parts(records, tmp_path, [["S1"], ["S2"], ["S3"]])
    else:
        write_records(records, tmp_path, format="csv")
    eager = list(iter_record_chunks(tmp_path, chunk_subscribers=1))
    readers = list(iter_record_chunks(tmp_path, chunk_subscribers=1, lazy=True))
    lazy = {number: readers[number]() for number in (2, 0, 1)}  # called out of order
    assert len(readers) == len(eager) == 3
    for number, chunk in enumerate(eager):
        for name in TABLE_NAMES:
            pdt.assert_frame_equal(lazy[number].table(name), chunk.table(name))
        assert (lazy[number].source, lazy[number].meta) == (chunk.source, chunk.meta)


def test_part_bigger_than_the_chunk_is_yielded_whole(tmp_path, records):
    write_parts(records, tmp_path, [["S1", "S2"], ["S3"]])
    chunks = list(iter_record_chunks(tmp_path, chunk_subscribers=1, tables=["outcomes"]))
    assert [chunk.subscribers["subscriber_id"].tolist() for chunk in chunks] == [["S1", "S2"], ["S3"]]
    assert chunks[0].usage_monthly is None and chunks[0].outcomes["subscriber_id"].tolist() == ["S1", "S2"]


def test_part_chunks_validate_within_the_chunk(tmp_path, records):
    write_parts(with_table(records, "subscribers", plan=["a", "b", None]), tmp_path, [["S1", "S2"], ["S3"]])
    chunks = iter_record_chunks(tmp_path, chunk_subscribers=2)
    assert next(chunks).subscribers["subscriber_id"].tolist() == ["S1", "S2"]
    with pytest.raises(DataError, match=exactly(f"{tmp_path} (part-00001): subscribers.plan: row 0 is blank (expected text)")):
        next(chunks)


def test_part_without_matching_subscribers_part(tmp_path, records):
    write_parts(records, tmp_path, [["S1", "S2", "S3"]])
    (tmp_path / "contacts" / "part-00000.parquet").rename(tmp_path / "contacts" / "part-00009.parquet")
    with pytest.raises(DataError, match=exactly(
        f"{tmp_path / 'contacts'}: part-00009.parquet has no matching subscribers/part-00009.parquet (expected aligned parts)")):
        iter_record_chunks(tmp_path, chunk_subscribers=10)


def test_missing_subscribers_is_reported_before_iterating(tmp_path):
    with pytest.raises(DataError, match="no subscribers table"):
        iter_record_chunks(tmp_path, chunk_subscribers=10)


def test_file_chunks_split_by_subscriber(tmp_path, records):
    write_records(records, tmp_path, format="csv")
    chunks = list(iter_record_chunks(tmp_path, chunk_subscribers=2))
    assert [chunk.subscribers["subscriber_id"].tolist() for chunk in chunks] == [["S1", "S2"], ["S3"]]
    assert [chunk.usage_monthly["subscriber_id"].tolist() for chunk in chunks] == [["S1", "S1", "S2"], ["S3"]]
    assert [chunk.contacts["subscriber_id"].tolist() for chunk in chunks] == [["S2", "S1"], []]
    assert chunks[1].source == f"{tmp_path} (subscribers rows 2-2)"
    pdt.assert_frame_equal(pd.concat([c.outcomes for c in chunks], ignore_index=True), records.outcomes)


@pytest.fixture(scope="module")
def generated(generated_base_20k):
    """A generated base in one part of 20,000 subscribers: row groups of 8,192, 8,192 and 3,616.

    ``simulate.generate(20_000, seed=3, chunk_subscribers=20_000)``, shared with tests/test_train.py
    (tests/conftest.py); read only.
    """
    return generated_base_20k


def test_a_big_part_is_split_by_its_aligned_row_groups(generated):
    tables = ["subscribers", "usage_monthly", "contacts", "breach_exposure"]
    chunks = list(iter_record_chunks(generated, chunk_subscribers=9000, tables=tables))
    assert [len(chunk.subscribers) for chunk in chunks] == [8192, 8192, 3616]
    assert chunks[1].source == f"{generated} (part-00000 row groups 1-1)"
    whole = load_records(generated, tables=tables)
    for name in tables:
        pdt.assert_frame_equal(pd.concat([c.table(name) for c in chunks], ignore_index=True), whole.table(name))
    # two row groups fit in 20,000
    assert [len(c.subscribers) for c in iter_record_chunks(generated, chunk_subscribers=17_000, tables=tables)] \
        == [16_384, 3616]


def test_a_part_with_misaligned_row_groups_is_read_whole(generated, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    folder = tmp_path / "base"
    shutil.copytree(generated, folder)
    usage = folder / "usage_monthly" / "part-00000.parquet"
    pq.write_table(pq.read_table(usage), usage, row_group_size=50_000)
    chunks = list(iter_record_chunks(folder, chunk_subscribers=9000, tables=["subscribers", "usage_monthly"]))
    assert [len(chunk.subscribers) for chunk in chunks] == [20_000]


def test_records_for_features_skip_later_rows_and_personal_columns_with_the_same_features(generated):
    from pipeline.dataset import records_dataset

    tables = ["subscribers", "usage_monthly", "contacts", "breach_exposure"]
    full = list(iter_record_chunks(generated, chunk_subscribers=20_000, tables=tables))
    lean = list(iter_record_chunks(generated, chunk_subscribers=9000, tables=tables, for_features=True))
    snapshot = full[0].snapshot_date
    assert (full[0].usage_monthly["month"] >= snapshot).any() and (full[0].contacts["contact_time"] >= snapshot).any()
    assert all((c.usage_monthly["month"] < snapshot).all() and (c.contacts["contact_time"] < snapshot).all()
               for c in lean)
    assert not {"name", "phone_number", "email"} & set(lean[0].subscribers.columns)

    def features(chunks):
        built = [records_dataset(c, snapshot_date=None, horizon_days=90, require_label=False) for c in chunks]
        return pd.concat([b.frame.assign(_id=b.ids.to_numpy()) for b in built], ignore_index=True)

    pdt.assert_frame_equal(features(lean), features(full))


def test_campaigns_travel_with_their_subscribers_in_every_chunked_source(tmp_path, records):
    write_parts(records, tmp_path / "parts", [["S1"], ["S2"], ["S3"]])
    write_records(records, tmp_path / "csv", format="csv")
    url = f"sqlite:///{tmp_path / 'base.db'}"
    write_records_sql(records, url)
    for source in (tmp_path / "parts", tmp_path / "csv", url):
        chunks = list(iter_record_chunks(source, chunk_subscribers=1))
        assert [sorted(c.campaigns["campaign_id"]) for c in chunks] == [["C1", "C2"], ["C1", "C2"], ["C1"]], source
        assert [c.campaigns["group"].tolist()[0] for c in chunks] == ["offer", "control", "offer"], source
        pdt.assert_frame_equal(chunks[0].campaigns.sort_values("campaign_id", ignore_index=True),
                               records.campaigns.iloc[[0, 3]].reset_index(drop=True), obj=str(source))


def test_chunks_for_features_skip_campaign_rows_from_the_snapshot_on(tmp_path, records):
    write_parts(records, tmp_path, [["S1", "S2"], ["S3"]])
    full = list(iter_record_chunks(tmp_path, chunk_subscribers=2))
    assert [c.campaigns["campaign_id"].tolist() for c in full] == [["C1", "C1", "C2", "C2"], ["C1"]]
    lean = list(iter_record_chunks(tmp_path, chunk_subscribers=2, for_features=True))  # snapshot 2025-06-30
    assert [c.campaigns["campaign_id"].tolist() for c in lean] == [["C1", "C1"], ["C1"]]
    on_the_day = iter_record_chunks(tmp_path, chunk_subscribers=3, for_features=True, snapshot_date="2025-07-05")
    assert next(on_the_day).campaigns["campaign_id"].tolist() == ["C1", "C1", "C1"]
    day_after = iter_record_chunks(tmp_path, chunk_subscribers=3, for_features=True, snapshot_date="2025-07-06")
    assert next(day_after).campaigns["campaign_id"].tolist() == ["C1", "C1", "C2", "C2", "C1"]


def test_a_part_split_by_row_groups_keeps_each_subscribers_campaign_rows(tmp_path, records):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("subscribers", "campaigns"):
        frame = records.table(name)
        schema = pa.Schema.from_pandas(frame, preserve_index=False)
        (tmp_path / name).mkdir()
        with pq.ParquetWriter(tmp_path / name / "part-00000.parquet", schema) as writer:
            for subscriber in ("S1", "S2", "S3"):
                rows = frame[frame["subscriber_id"] == subscriber]
                writer.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
    chunks = list(iter_record_chunks(tmp_path, chunk_subscribers=1, snapshot_date="2025-06-30", for_features=True))
    assert [c.source for c in chunks] == [f"{tmp_path} (part-00000 row groups {i}-{i})" for i in range(3)]
    assert [c.campaigns["subscriber_id"].tolist() for c in chunks] == [["S1"], ["S2"], ["S3"]]
    every = list(iter_record_chunks(tmp_path, chunk_subscribers=1))
    assert [c.campaigns["campaign_id"].tolist() for c in every] == [["C1", "C2"], ["C1", "C2"], ["C1"]]


def test_a_base_without_campaigns_reads_none_from_every_source(tmp_path, records):
    from pipeline.features import build_features

    bare = records.without("campaigns")
    write_parts(bare, tmp_path / "parts", [["S1", "S2"], ["S3"]])
    write_records(bare, tmp_path / "parquet")
    write_records(bare, tmp_path / "csv", format="csv")
    url = f"sqlite:///{tmp_path / 'base.db'}"
    write_records_sql(bare, url)
    for source in (tmp_path / "parts", tmp_path / "parquet", tmp_path / "csv", url):
        assert load_records(source).campaigns is None, source
        assert all(c.campaigns is None for c in iter_record_chunks(source, chunk_subscribers=2)), source
    lean = next(iter_record_chunks(tmp_path / "parts", chunk_subscribers=2, for_features=True))
    assert lean.campaigns is None
    assert build_features(lean)["retention_offers_365d"].tolist() == [0, 0]


def test_sqlite_stores_the_reserved_word_group_as_a_column(tmp_path, records):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'base.db'}"
    write_records_sql(Records(subscribers=records.subscribers, campaigns=records.campaigns), url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        columns = [column["name"] for column in sa.inspect(connection).get_columns("campaigns")]
        groups = connection.execute(sa.text('SELECT "group" FROM campaigns ORDER BY rowid')).scalars().all()
    engine.dispose()
    assert columns == list(records.campaigns.columns)
    assert groups == ["offer", "control", "offer", "offer", "control"]
    pdt.assert_frame_equal(load_records(url).campaigns, records.campaigns)


def test_chunk_size_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=exactly("chunk_subscribers must be a whole number >= 1, not 0")):
        iter_record_chunks(tmp_path, chunk_subscribers=0)


# --- databases ---------------------------------------------------------------------------------


def database_round_trip(url: str, records: Records) -> None:
    write_records_sql(records, url)
    loaded = load_records(url, snapshot_date="2025-06-30", disclosure_date="2025-04-22")
    assert_records_equal(loaded, records)
    chunks = list(iter_record_chunks(url, chunk_subscribers=2, snapshot_date="2025-06-30"))
    assert [chunk.subscribers["subscriber_id"].tolist() for chunk in chunks] == [["S1", "S2"], ["S3"]]
    assert [sorted(chunk.usage_monthly["subscriber_id"]) for chunk in chunks] == [["S1", "S1", "S2"], ["S3"]]
    assert [sorted(chunk.campaigns["campaign_id"]) for chunk in chunks] == [["C1", "C1", "C2", "C2"], ["C1"]]
    assert all(chunk.snapshot_date == D("2025-06-30") for chunk in chunks)


def test_sqlite_round_trip(tmp_path, records):
    database_round_trip(f"sqlite:///{tmp_path / 'base.db'}", records)


def test_sqlite_missing_subscribers(tmp_path, records):
    url = f"sqlite:///{tmp_path / 'base.db'}"
    write_records_sql(Records(subscribers=records.subscribers).without(), url)
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE subscribers RENAME TO customers"))
    engine.dispose()
    with pytest.raises(DataError, match=exactly(f"{url}: no subscribers table (looked for a table named subscribers)")):
        load_records(url)


def test_sqlite_chunks_catch_orphans_beyond_the_last_id(tmp_path, records):
    url = f"sqlite:///{tmp_path / 'base.db'}"
    broken = with_table(records, "usage_monthly", subscriber_id=["S1", "S1", "S2", "S4"])
    write_records_sql(broken, url)
    chunks = iter_record_chunks(url, chunk_subscribers=2)
    next(chunks)
    with pytest.raises(DataError, match=exactly(
        f"{url} (subscriber_id after 'S2' to the last): usage_monthly.subscriber_id: row 0 has 'S4' (expected an id present in subscribers)")):
        next(chunks)


def test_sqlite_write_refuses_existing_tables(tmp_path, records):
    url = f"sqlite:///{tmp_path / 'base.db'}"
    write_records_sql(records, url)
    with pytest.raises(DataError, match="^" + re.escape(f"{url}: cannot write the records (ValueError: Table 'subscribers' already exists")):
        write_records_sql(records, url)
    write_records_sql(records, url, if_exists="append")
    with pytest.raises(DataError, match=r"subscribers\.subscriber_id: rows 3, 4, 5 repeat 'S1', 'S2', 'S3'"):
        load_records(url)


def test_database_url_password_is_hidden(records):
    with pytest.raises(DataError, match=r"^postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x: cannot read the database"):
        load_records("postgresql+psycopg://u:secret@127.0.0.1:1/x")


@pytest.mark.slow
def test_postgresql_round_trip(postgres_database, records):
    database_round_trip(postgres_database, records)


@pytest.mark.slow
def test_postgresql_chunks_catch_orphans(postgres_database, records):
    broken = with_table(records, "contacts", subscriber_id=["S2", "S0"])
    write_records_sql(broken, postgres_database)
    with pytest.raises(DataError, match=re.escape(
        "(subscriber_id from the first up to 'S2'): contacts.subscriber_id: row 1 has 'S0' (expected an id present in subscribers)")):
        list(iter_record_chunks(postgres_database, chunk_subscribers=2))
