"""Point-in-time features on ten hand-written subscribers (tests/fixtures/ten_subscribers).

Expected values are worked out by hand from the CSV files; the day counts are calendar
arithmetic (e.g. 2023-12-15 to 2025-12-15 is 731 days), months are days / 30.4375.
"""

from __future__ import annotations

import dataclasses

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from pipeline.errors import ConfigError, DataError
from pipeline.features import (
    CATEGORICAL_FEATURES,
    FEATURE_CATALOGUE,
    FEATURE_COLUMNS,
    ID_COLUMN,
    LABEL_COLUMN,
    build_features,
    build_features_chunked,
    describe_features,
    feature_columns,
    iter_features,
    make_labels,
    reason_text,
)
from pipeline.records import Records

FIXTURE = Path(__file__).parent / "fixtures" / "ten_subscribers"
DOCS = Path(__file__).parents[1] / "docs" / "features.md"
SNAPSHOT = pd.Timestamp("2025-12-15")
DISCLOSURE = pd.Timestamp("2025-09-08")
M = 30.4375  # days per month
NAN = np.nan
ROWS = ["S01", "S02", "S03", "S06", "S07", "S08", "S09", "S10"]

_DATES = {
    "subscribers": ["activation_date", "contract_start", "contract_end"],
    "usage_monthly": ["month"],
    "contacts": ["contact_time"],
    "breach_exposure": ["notification_date", "waiver_start", "waiver_end"],
    "outcomes": ["defection_date"],
    "campaigns": ["contact_date"],
}


def _read(table: str) -> pd.DataFrame:
    frame = pd.read_csv(FIXTURE / f"{table}.csv", dtype={"subscriber_id": "str"}, parse_dates=_DATES[table])
    for column in _DATES[table]:
        frame[column] = frame[column].astype("datetime64[ns]")
    if table == "campaigns":
        frame["accepted"] = frame["accepted"].astype("boolean")  # blank: not known
    return frame


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return {table: _read(table) for table in _DATES}


@pytest.fixture
def records(tables) -> Records:
    return Records(
        **{name: frame.copy() for name, frame in tables.items()},
        snapshot_date=SNAPSHOT,
        disclosure_date=DISCLOSURE,
        source="ten_subscribers",
    )


@pytest.fixture
def features(records) -> pd.DataFrame:
    return build_features(records)


def _expected(columns: dict) -> pd.DataFrame:
    frame = pd.DataFrame({ID_COLUMN: pd.Series(ROWS, dtype="str")})
    for name, values in columns.items():
        dtype = "str" if name in CATEGORICAL_FEATURES else "float64"
        frame[name] = pd.Series(values, dtype=dtype)
    return frame


def _check(features: pd.DataFrame, columns: dict) -> None:
    expected = _expected(columns)
    assert_frame_equal(features[list(expected.columns)], expected, check_exact=False, rtol=1e-9)


# -- rows and labels -------------------------------------------------------------------------


def test_rows_are_subscribers_active_at_the_snapshot_in_table_order(features):
    # S04 joined on the snapshot day; S05 left before it (outcomes say so).
    assert features[ID_COLUMN].tolist() == ROWS
    assert list(features.columns) == [ID_COLUMN, *FEATURE_COLUMNS]
    assert features.index.equals(pd.RangeIndex(len(ROWS)))


def test_labels_count_defections_within_the_horizon(records):
    labels = make_labels(records)
    # S03 leaves on the snapshot day (1); S07 at +89 days (1); S06 at +90 days (0); S08 has no outcome row.
    expected = pd.Series([1, 0, 1, 0, 1, 0, 0, 0], name=LABEL_COLUMN, dtype="int64")
    assert_series_equal(labels, expected)
    assert_series_equal(make_labels(records, horizon_days=91), expected.where(np.array(ROWS) != "S06", 1))
    assert make_labels(records, "2026-01-01", horizon_days=30).tolist() == [1, 0, 0, 0, 0, 0, 0, 0]


def test_labels_align_with_feature_rows(records, features):
    frame = features.assign(**{LABEL_COLUMN: make_labels(records)})
    assert frame.loc[frame[LABEL_COLUMN] == 1, ID_COLUMN].tolist() == ["S01", "S03", "S07"]


def test_labels_need_outcomes(records):
    with pytest.raises(DataError, match="ten_subscribers: no outcomes table"):
        make_labels(records.without("outcomes"))


@pytest.mark.parametrize("horizon", [0, -5, 1.5, True])
def test_labels_need_a_positive_whole_horizon(records, horizon):
    with pytest.raises(ConfigError, match="horizon_days must be a positive whole number of days"):
        make_labels(records, horizon_days=horizon)


# -- exact values, family by family -----------------------------------------------------------


def test_contract_and_profile_features(features):
    _check(
        features,
        {
            "tenure_months": [731 / M, 44 / M, 1376 / M, 928 / M, 365 / M, 2156 / M, 501 / M, 3820 / M],
            "contract_type": ["24m", "none", "12m", "24m", "12m", "12m", "24m", "none"],
            # S06's contract ended before the snapshot; S09 has a contract without an end date.
            "months_left_on_contract": [168 / M, 0, 76 / M, 0, 168 / M, 62 / M, NAN, 0],
            "early_termination_fee": [100000, 0, 40000, 0, 20000, 50000, 90000, 0],
            "etf_to_monthly_fee": [2.0, 0, 0.5, 0, NAN, 0.625, 1.8, 0],  # S07 pays no monthly fee
            "device_instalment_balance": [300000, 0, 0, 0, 120000, 0, 200000, 0],
            "instalment_to_monthly_fee": [6.0, 0, 0, 0, NAN, 0, 4.0, 0],
            "family_bundle": [1, 0, 0, 1, 0, 0, 0, 0],
            "fixed_line_bundle": [0, 0, 1, 1, 0, 0, 0, 1],
            "plan": ["5G Standard", "LTE Basic", "5G Premium", "5G Standard", "Staff", "5G Premium",
                     "5G Standard", "LTE Basic"],
            "monthly_fee": [50000, 30000, 80000, 50000, 0, 80000, 50000, 30000],
            "age_band": ["30-39", NAN, "40-49", "50-59", "30-39", "40-49", "18-29", "60+"],
            "region": ["Seoul", "Busan", "Seoul", "Gwangju", "Seoul", "Daejeon", "Busan", "Ulsan"],
            "channel": ["store", "online", "dealer", "telesales", "store", "dealer", "online", "store"],
        },
    )


def test_usage_features(features):
    # Last complete month is 2025-11 (the snapshot is mid-December): last 3 = Sep-Nov, previous 3 = Jun-Aug.
    _check(
        features,
        {
            # S01 has Dec 2024 - Nov 2025; S07 Jan and Nov; S08 only the snapshot month.
            "usage_history_months": [12, 0, 6, 2, 2, 0, 0, 6],
            "data_gb_mean_3m": [4, NAN, 5, 2, 3, NAN, NAN, 5],
            "data_gb_mean_6m": [7, NAN, 3.5, 5, 3, NAN, NAN, 5],
            "voice_minutes_mean_3m": [200, NAN, 30, 100, 40, NAN, NAN, 300],
            "voice_minutes_mean_6m": [200, NAN, 45, 100, 40, NAN, NAN, 300],
            # S01: 10,10,10,4,4,4 -> -27 / 17.5; S03: 1..6 -> 1; S06: Jul 8, Oct 2 -> -6 / 3.
            "data_gb_slope_6m": [-27 / 17.5, NAN, 1, -2, NAN, NAN, NAN, 0],
            "voice_minutes_slope_6m": [0, NAN, -135 / 17.5, 0, NAN, NAN, NAN, 0],
            "data_gb_last3_to_prev3": [0.4, NAN, 2.5, 0.25, NAN, NAN, NAN, 1],
            "voice_minutes_last3_to_prev3": [1, NAN, 0.5, 1, NAN, NAN, NAN, 1],
        },
    )


def test_billing_features(features):
    _check(
        features,
        {
            "bill_amount_mean_6m": [52500, NAN, 40000, 33000, 0, NAN, NAN, 45000],
            "bill_amount_last": [65000, NAN, 40000, 36000, 0, NAN, NAN, 45000],
            "bill_last_to_mean_6m": [65000 / 52500, NAN, 1, 36000 / 33000, NAN, NAN, NAN, 1],
            "payment_delay_mean_6m": [10 / 6, NAN, 20 / 6, 0, 0, NAN, NAN, 0],
            "payment_delay_max_6m": [10, NAN, 15, 0, 0, NAN, NAN, 0],
            "months_paid_late_6m": [1, 0, 2, 0, 0, 0, 0, 0],
        },
    )


def test_contact_features(features):
    # 90-day window: 2025-09-16 to the snapshot; before disclosure: 2025-06-10 to 2025-09-08.
    _check(
        features,
        {
            "contacts_90d": [2, 0, 2, 0, 1, 0, 0, 0],
            "breach_contacts_90d": [2, 0, 2, 0, 0, 0, 0, 0],
            "complaint_contacts_90d": [0, 0, 1, 0, 0, 0, 0, 0],
            "porting_inquiries_90d": [1, 0, 0, 0, 0, 0, 0, 0],
            "other_contacts_90d": [0, 0, 0, 0, 1, 0, 0, 0],
            "contacts_90d_before_disclosure": [1, 0, 0, 0, 0, 1, 0, 0],
            "breach_contacts_90d_before_disclosure": [0] * 8,
            "complaint_contacts_90d_before_disclosure": [0] * 8,
            "porting_inquiries_90d_before_disclosure": [0] * 8,
            "other_contacts_90d_before_disclosure": [1, 0, 0, 0, 0, 1, 0, 0],
            "contacts_since_disclosure": [2, 0, 3, 0, 2, 1, 0, 0],
            "breach_contacts_since_disclosure": [2, 0, 3, 0, 0, 1, 0, 0],
            "complaint_contacts_since_disclosure": [0, 0, 2, 0, 0, 0, 0, 0],
            "porting_inquiries_since_disclosure": [1, 0, 0, 0, 0, 0, 0, 0],
            "other_contacts_since_disclosure": [0, 0, 0, 0, 2, 0, 0, 0],
            "days_since_last_contact": [24.5, NAN, 1 / 24, NAN, 90, 98, NAN, NAN],
        },
    )


def test_breach_features(features):
    # S06 was notified only after the snapshot, so it looks unexposed.
    _check(
        features,
        {
            "exposed": [1, 0, 1, 0, 1, 1, 1, 0],
            "phone_number_exposed": [1, 0, 1, 0, 0, 0, 1, 0],
            "usim_key_exposed": [1, 0, 1, 0, 1, 0, 0, 0],
            "identity_number_exposed": [0, 0, 1, 0, 0, 0, 0, 0],
            "payment_data_exposed": [0, 0, 1, 0, 0, 1, 0, 0],
            "exposure_severity": [3, 0, 9, 0, 2, 3, 1, 0],
            "fraud_loss_amount": [0, 0, 120000, 0, 0, 0, 5000, 0],
            "directly_harmed": [0, 0, 1, 0, 0, 0, 1, 0],
            "notification_lag_days": [4, NAN, 2, NAN, 23, 2, 83, NAN],
            "days_since_notification": [94, NAN, 96, NAN, 75, 96, 15, NAN],
            "compensation_amount": [25000, 0, 0, 0, 25000, 40000, 0, 0],
            "compensation_to_monthly_fee": [0.5, 0, 0, 0, NAN, 0.5, 0, 0],
        },
    )


def test_a_waiver_forgives_the_fee_of_subscribers_notified_after_the_snapshot(records):
    # S06 is notified on 2025-12-20, after the snapshot, and eligible for the waiver of
    # 12-31..01-13.  Give it a termination fee: the features (what S06 had been told) know
    # nothing of the waiver, but the value of a save counts the fee the waiver forgives.
    from pipeline.dataset import records_dataset
    from pipeline.features import waiver_forgives

    subscribers = records.subscribers.copy()
    subscribers.loc[subscribers[ID_COLUMN] == "S06", "early_termination_fee"] = 55_000.0
    changed = dataclasses.replace(records, subscribers=subscribers)
    frame = build_features(changed)
    s06 = frame.index[frame[ID_COLUMN] == "S06"][0]
    assert frame.loc[s06, "etf_waivable_amount"] == 0 and frame.loc[s06, "waiver_eligible"] == 0
    forgiven = waiver_forgives(changed, frame)
    expected = frame["etf_waivable_amount"].to_numpy().copy()
    expected[s06] = 55_000.0
    np.testing.assert_array_equal(forgiven, expected)
    np.testing.assert_array_equal(records_dataset(changed, require_label=False).extra["etf_waivable"], expected)


def test_waiver_features(features):
    # S01: window 12-31..01-13 ahead; S03: 12-01..12-20 open; S08: over on 11-14; S09: eligible, dates unknown.
    _check(
        features,
        {
            "waiver_eligible": [1, 0, 1, 0, 0, 1, 1, 0],
            "waiver_window_open": [0, 0, 1, 0, 0, 0, 0, 0],
            "days_until_waiver_start": [16, NAN, 0, NAN, NAN, NAN, NAN, NAN],
            "days_left_in_waiver_window": [14, 0, 6, 0, 0, 0, NAN, 0],
            "waiver_relieves_etf": [1, 0, 1, 0, 0, 0, 1, 0],
            "etf_waivable_amount": [100000, 0, 40000, 0, 0, 0, 90000, 0],
        },
    )


def test_campaign_features(features):
    # 365 days back is 2024-12-15.  S01: offers 2025-03-10 (taken) and 2025-11-20 (unknown), a control row
    # on the snapshot day; S02 and S09 only control rows before it and offers on or after it; S06's offer is
    # exactly 365 days back, S10's 366 (out of the window, still the last offer); S07's offer of 2025-12-16
    # is the future.
    _check(
        features,
        {
            "retention_offers_365d": [2, 0, 1, 1, 1, 1, 0, 0],
            "retention_offers_accepted_365d": [1, 0, 0, 0, 1, 0, 0, 0],
            "days_since_retention_offer": [25, NAN, 25, 365, 24, 278, NAN, 366],
        },
    )


def test_control_rows_are_never_offers(records, features):
    campaigns = records.campaigns.assign(group="control", accepted=pd.array([None] * len(records.campaigns), "boolean"))
    frame = build_features(replace(records, campaigns=campaigns))
    assert (frame["retention_offers_365d"] == 0).all() and (frame["retention_offers_accepted_365d"] == 0).all()
    assert frame["days_since_retention_offer"].isna().all()
    everyone_offered = build_features(replace(records, campaigns=records.campaigns.assign(group="offer")))
    # S03's and S10's control rows of 2025-03-10 now count; S08's of 2024-12-14 is 366 days back.
    assert everyone_offered["retention_offers_365d"].tolist() == [2, 1, 2, 1, 1, 1, 1, 1]


def test_every_column_has_an_exact_test():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    untested = [name for name in FEATURE_COLUMNS if f'"{name}":' not in source]
    assert untested == []


# -- dates --------------------------------------------------------------------------------------


def test_disclosure_defaults_to_the_earliest_notification_before_the_snapshot(records, features):
    inferred = build_features(replace(records, disclosure_date=None))  # S03 and S08 notified 2025-09-10
    assert inferred["notification_lag_days"].tolist()[:3] == [2, pytest.approx(NAN, nan_ok=True), 0]
    # S08's breach inquiry at 2025-09-08 now falls before the disclosure, its billing call at
    # 2025-06-10 out of the 90 days before it (which start 2025-06-12).
    assert inferred["breach_contacts_90d_before_disclosure"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert inferred["other_contacts_90d_before_disclosure"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    explicit = build_features(replace(records, disclosure_date=None), disclosure_date="2025-09-08")
    assert_frame_equal(explicit, features)


def test_a_disclosure_on_or_after_the_snapshot_has_not_happened_yet(records):
    frame = build_features(records, disclosure_date=SNAPSHOT)
    assert frame["notification_lag_days"].isna().all()
    assert (frame.filter(like="_disclosure") == 0).all().all()


def test_snapshot_argument_overrides_the_records(records):
    earlier = build_features(records, "2025-10-01")
    # At 2025-10-01 S02 had not joined; S05 was still a subscriber.
    assert earlier[ID_COLUMN].tolist() == ["S01", "S03", "S05", "S06", "S07", "S08", "S09", "S10"]
    # Complete months before October: S01 Dec 2024 - Sep 2025, S03 and S10 Jun - Sep.
    assert earlier["usage_history_months"].tolist() == [10, 4, 0, 1, 1, 0, 0, 4]


def test_no_snapshot_is_an_error(records):
    with pytest.raises(DataError, match="ten_subscribers: no snapshot date; pass snapshot_date"):
        build_features(replace(records, snapshot_date=None))


def test_a_snapshot_that_is_not_a_date_is_an_error(records):
    with pytest.raises(ConfigError, match="snapshot_date 'soon' is not a date; expected YYYY-MM-DD"):
        build_features(records, "soon")


# -- point-in-time correctness ----------------------------------------------------------------


def _future_usage(usage: pd.DataFrame) -> pd.DataFrame:
    usage = usage.copy()
    snapshot_month = usage["month"] >= SNAPSHOT.replace(day=1)
    usage.loc[snapshot_month, ["voice_minutes", "data_gb", "bill_amount"]] = 12345.0
    usage.loc[snapshot_month, "payment_delay_days"] = 99
    added = pd.DataFrame(
        {
            "subscriber_id": ["S01", "S02", "S03", "S09", "S07"],
            "month": pd.to_datetime(["2026-01-01", "2025-12-01", "2025-12-01", "2026-03-01", "2025-12-01"]),
            "voice_minutes": 1.0,
            "data_gb": 100.0,
            "sms_count": 1,
            "bill_amount": 1e6,
            "payment_delay_days": 60,
        }
    ).astype({"month": "datetime64[ns]"})
    return pd.concat([usage, added], ignore_index=True)


def _future_contacts(contacts: pd.DataFrame) -> pd.DataFrame:
    contacts = contacts.copy()
    after = contacts["contact_time"] >= SNAPSHOT
    contacts.loc[after, "reason"] = "porting_inquiry"
    added = pd.DataFrame(
        {
            "subscriber_id": ROWS,
            "contact_time": pd.to_datetime(["2025-12-15 00:00:00"] * 4 + ["2026-01-02 10:00:00"] * 4),
            "channel": "call_center",
            "reason": ["breach_complaint", "porting_inquiry", "billing", "usim_replacement"] * 2,
        }
    ).astype({"contact_time": "datetime64[ns]"})
    return pd.concat([contacts, added], ignore_index=True)


def _future_exposure(exposure: pd.DataFrame) -> pd.DataFrame:
    exposure = exposure.copy()
    late = exposure["notification_date"] >= SNAPSHOT
    exposure.loc[late, ["exposed_identity_number", "exposed_payment_data"]] = True
    exposure.loc[late, ["fraud_loss_amount", "compensation_amount"]] = 777.0
    added = pd.DataFrame(
        {
            "subscriber_id": ["S02", "S10"],
            "exposed_phone_number": True,
            "exposed_usim_key": True,
            "exposed_identity_number": True,
            "exposed_payment_data": False,
            "notification_date": pd.to_datetime(["2025-12-15", "2026-01-10"]),
            "fraud_loss_amount": 50000.0,
            "compensation_amount": 10000.0,
            "waiver_eligible": True,
            "waiver_start": pd.to_datetime(["2025-12-16", "2026-01-01"]),
            "waiver_end": pd.to_datetime(["2025-12-30", "2026-01-20"]),
        }
    ).astype({c: "datetime64[ns]" for c in ("notification_date", "waiver_start", "waiver_end")})
    return pd.concat([exposure, added], ignore_index=True)


def _future_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    outcomes = outcomes.copy()
    still_here = outcomes["defection_date"].isna() | (outcomes["defection_date"] >= SNAPSHOT)
    outcomes.loc[still_here, "defection_date"] = SNAPSHOT  # everyone who had not left leaves on the day
    added = pd.DataFrame({"subscriber_id": ["S08"], "defection_date": pd.to_datetime(["2025-12-15"])})
    return pd.concat([outcomes, added.astype({"defection_date": "datetime64[ns]"})], ignore_index=True)


def _future_campaigns(campaigns: pd.DataFrame) -> pd.DataFrame:
    campaigns = campaigns.copy()
    late = campaigns["contact_date"] >= SNAPSHOT
    campaigns.loc[late, "group"] = "offer"
    campaigns.loc[late, "accepted"] = True
    added = pd.DataFrame(
        {
            "subscriber_id": ROWS,
            "campaign_id": ["C9-late"] * 8,
            "contact_date": pd.to_datetime(["2025-12-15"] * 4 + ["2026-02-01"] * 4),
            "group": "offer",
            "offer_kind": "bill_credit",
            "offer_cost": 20000.0,
            "accepted": True,
        }
    ).astype({"contact_date": "datetime64[ns]", "accepted": "boolean"})
    return pd.concat([campaigns, added], ignore_index=True)


def _future_subscribers(subscribers: pd.DataFrame) -> pd.DataFrame:
    late = subscribers[subscribers["subscriber_id"] == "S04"].assign(
        subscriber_id="S11", activation_date=pd.Timestamp("2026-01-05")
    )
    return pd.concat([subscribers, late], ignore_index=True)


FUTURE_CHANGES = {
    "usage_monthly": _future_usage,
    "contacts": _future_contacts,
    "breach_exposure": _future_exposure,
    "outcomes": _future_outcomes,
    "campaigns": _future_campaigns,
    "subscribers": _future_subscribers,
}


@pytest.mark.parametrize("table", [*FUTURE_CHANGES, "all"])
def test_records_at_or_after_the_snapshot_change_no_feature(records, features, table):
    changed = {
        name: change(records.table(name))
        for name, change in FUTURE_CHANGES.items()
        if table in (name, "all")
    }
    future = replace(records, **changed)
    assert_frame_equal(build_features(future), features)
    # The inferred disclosure date ignores late notifications too.
    assert_frame_equal(
        build_features(replace(future, disclosure_date=None)),
        build_features(replace(records, disclosure_date=None)),
    )


def _moved_before_snapshot(records: Records, table: str, column: str, who, when) -> pd.DataFrame:
    frame = records.table(table)
    return build_features(replace(records, **{table: frame.assign(**{column: frame[column].mask(who(frame), when)})}))


def test_the_same_records_just_before_the_snapshot_do_count(records, features):
    # The counterpart of the leakage test: it fails if late records are ignored for the wrong reason.
    second_before = SNAPSHOT - pd.Timedelta(seconds=1)
    contacts = _moved_before_snapshot(records, "contacts", "contact_time", lambda t: t["contact_time"] == SNAPSHOT,
                                      second_before)
    assert contacts["porting_inquiries_90d"].tolist()[0] == 2
    usage = _moved_before_snapshot(records, "usage_monthly", "month", lambda t: t["subscriber_id"] == "S08",
                                   pd.Timestamp("2025-11-01"))
    assert usage["usage_history_months"].tolist()[5] == 1
    exposure = _moved_before_snapshot(records, "breach_exposure", "notification_date",
                                      lambda t: t["subscriber_id"] == "S06", SNAPSHOT - pd.Timedelta(days=1))
    assert exposure["exposed"].tolist()[3] == 1
    outcomes = _moved_before_snapshot(records, "outcomes", "defection_date", lambda t: t["subscriber_id"] == "S03",
                                      SNAPSHOT - pd.Timedelta(days=1))
    assert "S03" not in outcomes[ID_COLUMN].tolist()
    campaigns = _moved_before_snapshot(records, "campaigns", "contact_date",
                                       lambda t: t["contact_date"] >= SNAPSHOT, SNAPSHOT - pd.Timedelta(days=1))
    # S02's and S09's offers now count (S04's subscriber has no row; the moved control rows still do not count).
    assert campaigns["retention_offers_365d"].tolist() == [2, 1, 1, 1, 2, 1, 1, 0]
    assert campaigns["retention_offers_accepted_365d"].tolist() == [1, 1, 0, 0, 1, 0, 0, 0]
    assert campaigns["days_since_retention_offer"].tolist() == [25, 1, 25, 365, 1, 278, 1, 366]


# -- absent tables, personal fields, inputs -----------------------------------------------------


def test_absent_optional_tables_read_as_empty_ones(records, tables):
    bare = records.without("usage_monthly", "contacts", "breach_exposure", "outcomes", "campaigns")
    absent = build_features(bare)
    empty = build_features(replace(bare, **{name: tables[name].iloc[0:0] for name in
                                            ("usage_monthly", "contacts", "breach_exposure", "campaigns")}))
    assert_frame_equal(absent, empty)
    # Without outcomes nobody is known to have left, so S05 is a row.
    assert absent[ID_COLUMN].tolist() == ["S01", "S02", "S03", "S05", "S06", "S07", "S08", "S09", "S10"]
    assert (absent["usage_history_months"] == 0).all() and absent["data_gb_mean_6m"].isna().all()
    assert (absent.filter(regex="^(contacts|breach_contacts|porting)") == 0).all().all()
    assert absent["days_since_last_contact"].isna().all()
    assert (absent[["exposed", "exposure_severity", "waiver_eligible", "etf_waivable_amount"]] == 0).all().all()
    assert absent["notification_lag_days"].isna().all()
    assert (absent[["retention_offers_365d", "retention_offers_accepted_365d"]] == 0).all().all()
    assert absent["days_since_retention_offer"].isna().all()
    # Subscriber features do not depend on the other tables.
    assert_frame_equal(absent.drop(index=3).reset_index(drop=True)[["tenure_months", "plan"]],
                       build_features(records)[["tenure_months", "plan"]])


def test_personal_fields_never_reach_features(records, features):
    personal = ["name", "phone_number", "email"]
    assert not set(personal) & set(features.columns)
    values = set(records.subscribers[personal].stack())
    assert not values & set(features.select_dtypes(exclude="number").stack())
    scrambled = records.subscribers.assign(name="x", phone_number=None, email=1.5)
    assert_frame_equal(build_features(replace(records, subscribers=scrambled)), features)
    without = records.subscribers.drop(columns=personal)
    assert_frame_equal(build_features(replace(records, subscribers=without)), features)


def test_feature_names_pass_the_personal_data_filter(features):
    from pipeline.prepare import looks_personal

    flagged = {c: looks_personal(c, features[c]) for c in feature_columns(features)}
    assert {c: why for c, why in flagged.items() if why} == {}


def test_dtypes_are_ready_for_scikit_learn_and_mlflow(features):
    assert features[ID_COLUMN].dtype == "str"
    for column in CATEGORICAL_FEATURES:
        assert features[column].dtype == "str", column
    numeric = [c for c in FEATURE_COLUMNS if c not in CATEGORICAL_FEATURES]
    assert (features[numeric].dtypes == "float64").all()
    assert not any(isinstance(dtype, pd.CategoricalDtype) for dtype in features.dtypes)


def test_inputs_typed_as_categories_or_objects_give_the_same_features(records, features):
    subscribers = records.subscribers.astype(
        {"subscriber_id": "category", "plan": "category", "contract_type": "category", "region": object}
    )
    contacts = records.contacts.astype({"subscriber_id": "category", "reason": "category"})
    usage = records.usage_monthly.astype({"subscriber_id": object}).assign(
        month=records.usage_monthly["month"].astype("datetime64[s]")
    )
    exposure = records.breach_exposure.astype({"subscriber_id": "category"})
    same = replace(records, subscribers=subscribers, contacts=contacts, usage_monthly=usage, breach_exposure=exposure)
    assert_frame_equal(build_features(same), features)


def test_input_frames_are_not_modified(records, tables):
    build_features(records)
    make_labels(records)
    for name, frame in tables.items():
        assert_frame_equal(records.table(name), frame)


def test_a_snapshot_before_every_activation_gives_an_empty_table(records, features):
    empty = build_features(records, "2010-01-01")
    assert len(empty) == 0
    assert_frame_equal(empty, features.iloc[0:0], check_index_type=False)
    assert make_labels(records, "2010-01-01").empty


def test_labels_name_a_missing_outcome_column(records):
    outcomes = records.outcomes.rename(columns={"defection_date": "left_on"})
    with pytest.raises(DataError, match="table outcomes lacks column.s. defection_date"):
        make_labels(replace(records, outcomes=outcomes))


def test_a_missing_column_is_named(records):
    usage = records.usage_monthly.drop(columns="data_gb")
    with pytest.raises(DataError, match="ten_subscribers: table usage_monthly lacks column.s. data_gb"):
        build_features(replace(records, usage_monthly=usage))


def test_repeated_subscriber_ids_are_named(records):
    subscribers = pd.concat([records.subscribers, records.subscribers.iloc[[2]]], ignore_index=True)
    with pytest.raises(DataError, match="table subscribers, column subscriber_id: ids must be unique; row S03 repeat"):
        build_features(replace(records, subscribers=subscribers))


def test_repeated_exposure_rows_are_named(records):
    exposure = pd.concat([records.breach_exposure, records.breach_exposure.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataError, match="table breach_exposure, column subscriber_id: one row per subscriber"
                                        " expected; subscriber.s. S01 repeat"):
        build_features(replace(records, breach_exposure=exposure))


# -- chunks ---------------------------------------------------------------------------------------


def _chunks(records: Records, groups: list[list[str]]):
    for ids in groups:
        yield replace(
            records,
            **{
                name: frame[frame["subscriber_id"].isin(ids)].reset_index(drop=True)
                for name in ("subscribers", "usage_monthly", "contacts", "breach_exposure", "outcomes", "campaigns")
                if (frame := records.table(name)) is not None
            },
        )


def test_chunked_features_equal_whole_base_features(records, features):
    groups = [["S01", "S02", "S03", "S04"], ["S05", "S06", "S07"], ["S08"], ["S09", "S10"]]
    assert_frame_equal(build_features_chunked(_chunks(records, groups)), features)
    parts = list(iter_features(_chunks(records, groups)))
    assert [len(part) for part in parts] == [3, 2, 1, 2]


def test_chunks_without_a_disclosure_date_are_refused(records):
    undisclosed = replace(records, disclosure_date=None)
    with pytest.raises(DataError, match="chunk 1 has no disclosure date; pass disclosure_date"):
        build_features_chunked(_chunks(undisclosed, [["S01"], ["S02"]]))
    given = build_features_chunked(_chunks(undisclosed, [["S01", "S02", "S03"], ROWS[3:]]), disclosure_date=DISCLOSURE)
    assert_frame_equal(given, build_features(records))


def test_chunks_must_share_a_snapshot(records):
    chunks = list(_chunks(records, [["S01"], ["S02"]]))
    chunks[1] = replace(chunks[1], snapshot_date=pd.Timestamp("2025-12-01"))
    with pytest.raises(DataError, match="chunk 2 has snapshot 2025-12-01, expected 2025-12-15"):
        build_features_chunked(chunks)


def test_no_chunks_is_an_error():
    with pytest.raises(DataError, match="no chunks of records"):
        build_features_chunked([])


# -- catalogue and reasons -----------------------------------------------------------------------


def test_the_catalogue_describes_every_column(features):
    assert feature_columns(features) == list(FEATURE_CATALOGUE)
    for feature in FEATURE_CATALOGUE.values():
        assert feature.meaning and feature.unit and feature.raises and feature.lowers and feature.computed
        assert feature.kind in ("number", "flag", "category")
    assert describe_features()["name"].tolist() == list(FEATURE_COLUMNS)


def test_the_documentation_lists_every_column():
    text = DOCS.read_text(encoding="utf-8")
    assert [name for name in FEATURE_COLUMNS if f"`{name}`" not in text] == []


@pytest.mark.parametrize(
    "feature, value, direction, text",
    [
        ("data_gb_last3_to_prev3", 0.4, "raises", "Data use fell 60% in the last 3 months"),
        ("data_gb_last3_to_prev3", 1.25, "lowers", "Data use rose 25% in the last 3 months"),
        ("months_left_on_contract", 62 / M, "raises", "Contract ends in 2 months"),
        ("months_left_on_contract", 168 / M, -0.3, "6 months left on contract"),
        ("months_left_on_contract", 0.0, "raises", "Out of contract: free to leave"),
        ("porting_inquiries_90d", 1.0, 0.2, "1 question about porting their number in the last 90 days"),
        ("complaint_contacts_since_disclosure", 2.0, "raises", "2 complaints since the breach"),
        ("breach_contacts_90d", 0.0, "lowers", "No breach-related contacts in the last 90 days"),
        ("early_termination_fee", 100000.0, "lowers", "Would pay KRW 100,000 to leave now"),
        ("early_termination_fee", 0.0, "raises", "No fee to leave now"),
        ("days_left_in_waiver_window", 6.0, "raises", "6 days left to leave without a fee"),
        ("days_left_in_waiver_window", 1.0, "raises", "1 day left to leave without a fee"),
        ("days_since_last_contact", 1 / 24, "raises", "Contacted us less than a day ago"),
        ("data_gb_slope_6m", -1.5, "raises", "Data use fell by 1.5 GB a month"),
        ("voice_minutes_slope_6m", 0.0, "lowers", "Calling steady over the last 6 months"),
        ("bill_last_to_mean_6m", 1.0, "raises", "Last bill held steady against the 6-month average"),
        ("bill_last_to_mean_6m", 65000 / 52500, "raises", "Last bill rose 24% against the 6-month average"),
        ("exposure_severity", 9.0, "raises", "Sensitive data exposed (severity 9 of 9)"),
        ("etf_to_monthly_fee", 0.625, "raises", "Fee to leave is only 0.6x the monthly fee"),
        ("fraud_loss_amount", 120000.0, "lowers", "Lost KRW 120,000 to fraud after the breach"),
        # Yes/no features follow the value, whatever the direction.
        ("family_bundle", 0.0, "raises", "No family bundle"),
        ("family_bundle", 1.0, "raises", "Part of a family bundle"),
        ("directly_harmed", 1.0, "lowers", "Directly harmed by breach fraud"),
        ("exposed", 0.0, "raises", "Not affected by the breach"),
        ("contract_type", "none", "raises", "On no contract"),
        ("contract_type", "24m", "lowers", "On a 24-month contract"),
        ("plan", "5G Premium", "raises", "On the 5G Premium plan"),
        ("channel", "dealer", "raises", "Joined through a dealer"),
        ("tenure_months", 3820 / M, "lowers", "Customer for 10 years"),
        ("tenure_months", 44 / M, "raises", "Customer for only 1 month"),
        ("days_since_last_contact", NAN, "lowers", "No service contact on record"),
        ("age_band", None, "raises", "Age unknown"),
        ("TotalCharges", 42.5, "raises", "TotalCharges: 42.5"),
    ],
)
def test_reason_text(feature, value, direction, text):
    assert reason_text(feature, value, direction) == text


def test_reason_text_needs_a_direction():
    with pytest.raises(ValueError, match="direction must be 'raises', 'lowers' or a signed number, got 'up'"):
        reason_text("tenure_months", 3.0, "up")


def test_every_feature_has_a_reason_in_both_directions(features):
    for name in FEATURE_COLUMNS:
        for value in features[name].dropna().unique():
            for direction in ("raises", "lowers"):
                text = reason_text(name, value, direction)
                assert text and "{" not in text and "nan" not in text, (name, value, text)


# -- on a generated base (integration with pipeline.simulate and pipeline.records) ---------------


@pytest.fixture(scope="module")
def generated() -> Records:
    simulate = pytest.importorskip("pipeline.simulate")
    from pipeline.records import validate_records

    frames = simulate.simulate(3000, seed=7)
    manifest = frames["manifest"]
    names = ("subscribers", "usage_monthly", "contacts", "breach_exposure", "outcomes", "campaigns")
    tables = {name: frames[name] for name in names if name in frames}
    return validate_records(Records(**tables, snapshot_date=pd.Timestamp(manifest["snapshot_date"]),
                                    disclosure_date=pd.Timestamp(manifest["disclosure_date"]), source="generated"))


def test_generated_records_cut_at_the_snapshot_give_the_same_features(generated):
    snapshot = generated.snapshot_date
    usage, contacts = generated.usage_monthly, generated.contacts
    exposure, outcomes = generated.breach_exposure, generated.outcomes
    cut = replace(
        generated,
        usage_monthly=usage[usage["month"] < snapshot.replace(day=1)],
        contacts=contacts[contacts["contact_time"] < snapshot],
        breach_exposure=exposure[exposure["notification_date"] < snapshot],
        outcomes=outcomes.assign(defection_date=outcomes["defection_date"].where(outcomes["defection_date"] < snapshot)),
    )
    if generated.campaigns is not None:
        cut = replace(cut, campaigns=generated.campaigns[generated.campaigns["contact_date"] < snapshot])
    assert len(cut.usage_monthly) < len(usage) and len(cut.contacts) < len(contacts)  # the base has a future
    features = build_features(generated)
    assert_frame_equal(build_features(cut), features)
    assert len(features) > 2900 and features[ID_COLUMN].is_unique
    assert 0 < make_labels(generated).mean() < 0.5


def test_generated_base_in_chunks_equals_the_whole(generated):
    ids = generated.subscribers[ID_COLUMN].tolist()
    groups = [ids[:1000], ids[1000:1001], ids[1001:]]
    assert_frame_equal(build_features_chunked(_chunks(generated, groups)), build_features(generated))
