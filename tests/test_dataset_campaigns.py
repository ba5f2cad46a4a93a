"""Modelling tables and randomised campaigns (pipeline.dataset): clean churn labels, the response
table of a record base, treatment columns of single tables.

The record base is the hand-written fixture tests/fixtures/ten_subscribers (snapshot 2025-12-15,
campaigns described in its README); expected values are worked out by hand.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from pipeline.dataset import (
    EXCLUDED_NOT_RANDOMISED,
    EXCLUDED_CAMPAIGN_AFTER_SNAPSHOT,
    EXCLUDED_INACTIVE_AT_CAMPAIGN_START,
    EXCLUDED_NO_EXPERIMENT,
    EXCLUDED_OFFERED_IN_HORIZON,
    EXCLUDED_TREATED,
    campaign_dataset,
    churn_rows,
    records_dataset,
    response_rows,
    table_dataset,
)
from pipeline.errors import DataError
from pipeline.features import ID_COLUMN, build_features
from pipeline.records import load_records

FIXTURE = Path(__file__).parent / "fixtures" / "ten_subscribers"
SPELLINGS = "offer/control, treatment/control, treated/control, 1/0, true/false or yes/no"


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


@pytest.fixture(scope="module")
def records():
    return load_records(FIXTURE, validate=False)  # S09 is a 24-month contract without an end date, on purpose


# -- churn labels stay clean ---------------------------------------------------------------------


def test_training_leaves_out_subscribers_offered_within_the_outcome_window(records):
    # Offers in [2025-12-15, 2026-03-15): S02 on the day, S07 on 12-16, S09 on 12-20 (and S04, not a row).
    dataset = records_dataset(records, horizon_days=90)
    assert dataset.ids.tolist() == ["S01", "S03", "S06", "S08", "S10"]
    assert dataset.excluded == {EXCLUDED_OFFERED_IN_HORIZON: 3}
    assert dataset.label.tolist() == [1, 1, 0, 0, 0]
    assert dataset.frame[ID_COLUMN].tolist() == dataset.ids.tolist()
    assert dataset.monthly_value.tolist() == [50000, 80000, 50000, 80000, 30000]
    assert dataset.extra["etf_waivable"].index.equals(pd.RangeIndex(5)) and dataset.treatment is None
    # Control rows stay (S01 was a control in C3-winter); a shorter window leaves S09 (offered 12-20) in.
    assert records_dataset(records, horizon_days=5).excluded == {EXCLUDED_OFFERED_IN_HORIZON: 2}


def test_scoring_leaves_nobody_out(records):
    dataset = records_dataset(records, horizon_days=90, require_label=False)
    assert dataset.ids.tolist() == ["S01", "S02", "S03", "S06", "S07", "S08", "S09", "S10"]
    assert dataset.excluded == {}
    scoring = records_dataset(records.without("outcomes"), horizon_days=90, require_label=False)
    assert scoring.ids.tolist() == ["S01", "S02", "S03", "S05", "S06", "S07", "S08", "S09", "S10"]  # S05 not known gone
    assert scoring.excluded == {}


def test_without_campaigns_nobody_is_left_out(records):
    dataset = records_dataset(records.without("campaigns"), horizon_days=90)
    assert dataset.n_rows == 8 and dataset.excluded == {}


def test_each_stacked_snapshot_leaves_out_its_own_offered_subscribers(records):
    # At 2025-11-01 (window to 2026-01-30): S01, S03, S07 (C2-breach) and S09 (C3-winter) are left out.
    dataset = records_dataset(records, horizon_days=90, earlier_snapshots=("2025-11-01",))
    assert dataset.ids.tolist() == ["S05", "S06", "S08", "S10", "S01", "S03", "S06", "S08", "S10"]
    assert dataset.period.tolist() == [pd.Timestamp("2025-11-01")] * 4 + [pd.Timestamp("2025-12-15")] * 5
    assert dataset.excluded == {EXCLUDED_OFFERED_IN_HORIZON: 7}
    assert len(dataset.label) == len(dataset.extra["etf_waivable"]) == len(dataset.monthly_value) == 9


# -- the response table of a record base ---------------------------------------------------------


def test_campaign_dataset_rows_labels_treatment_and_period(records):
    dataset = campaign_dataset(records, horizon_days=90)
    # By campaign start, then table order.  C4-newyear starts after the snapshot (2 rows skipped);
    # in C3-winter S04 is not yet active and S05 has left (2 rows left out).
    assert dataset.extra["campaign_id"].tolist() == ["C0-loyalty"] * 3 + ["C1-spring"] * 5 + ["C2-breach"] * 5 \
        + ["C3-winter"] * 3
    assert dataset.ids.tolist() == ["S10", "S06", "S08", "S01", "S03", "S08", "S10", "S05",
                                    "S01", "S03", "S07", "S09", "S02", "S02", "S09", "S01"]
    assert_series_equal(dataset.treatment, pd.Series([1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0],
                                                     dtype="float64", name="treatment"))
    # Left within 90 days of the start: S01 (2026-01-05) and S03 (2025-12-15) after C2-breach's 2025-11-20;
    # S01 after C3-winter's 2025-12-15.  S07 leaves 2026-03-14, 114 days after C2-breach.
    assert dataset.label.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1]
    starts = ["2024-12-14"] * 3 + ["2025-03-10"] * 5 + ["2025-11-20"] * 5 + ["2025-12-15"] * 3
    assert dataset.period.tolist() == [pd.Timestamp(day) for day in starts]
    assert dataset.excluded == {EXCLUDED_CAMPAIGN_AFTER_SNAPSHOT: 2, EXCLUDED_INACTIVE_AT_CAMPAIGN_START: 2}
    assert dataset.extra["offer_cost"].tolist() == [10000, 10000, 0, 30000, 0, 30000, 0, 30000,
                                                    50000, 50000, 50000, 0, 0, 20000, 20000, 0]
    assert dataset.monthly_value.tolist() == dataset.frame["monthly_fee"].tolist()
    assert dataset.mode == "records" and dataset.label_column == "churned"
    assert len(dataset.extra["etf_waivable"]) == dataset.n_rows


def test_campaign_dataset_features_are_cut_at_each_campaign_start(records):
    dataset = campaign_dataset(records, horizon_days=90)
    for start in dataset.period.unique():
        at_start = build_features(records, start).set_index(ID_COLUMN)
        rows = (dataset.period == start).to_numpy()
        expected = at_start.loc[dataset.ids[rows]].reset_index()
        assert_frame_equal(dataset.frame[rows].reset_index(drop=True), expected)
    # The campaign's own offers are not yet history at its start; earlier ones are.
    c2 = dataset.frame[(dataset.extra["campaign_id"] == "C2-breach").to_numpy()]
    assert c2["retention_offers_365d"].tolist() == [1, 0, 0, 0, 0]
    assert c2["days_since_retention_offer"].tolist()[0] == 255  # 2025-03-10 to 2025-11-20


def test_campaign_dataset_snapshot_decides_which_campaigns_are_observed(records):
    dataset = campaign_dataset(records, horizon_days=30, snapshot_date="2025-11-20")
    assert dataset.extra["campaign_id"].unique().tolist() == ["C0-loyalty", "C1-spring", "C2-breach"]
    assert dataset.excluded == {EXCLUDED_CAMPAIGN_AFTER_SNAPSHOT: 7}
    assert dataset.label.sum() == 1  # S03 left 25 days after C2-breach started; S01 46 days after


def test_campaign_dataset_needs_a_campaigns_table(records):
    with pytest.raises(DataError, match=exactly(
            f"{FIXTURE}: no randomised campaign to learn a response from: the records have no campaigns table")):
        campaign_dataset(records.without("campaigns"), horizon_days=90)
    with pytest.raises(DataError, match=exactly(
            f"{FIXTURE}: no randomised campaign to learn a response from: the campaigns table is empty")):
        campaign_dataset(replace(records, campaigns=records.campaigns.iloc[0:0]), horizon_days=90)


def test_campaign_dataset_needs_a_campaign_started_by_the_snapshot(records):
    with pytest.raises(DataError, match=exactly(
            f"{FIXTURE}: no randomised campaign to learn a response from: every campaign starts after the "
            "snapshot 2024-12-01 (the first on 2024-12-14)")):
        campaign_dataset(records, horizon_days=90, snapshot_date="2024-12-01")


def test_campaign_dataset_needs_an_active_subscriber(records):
    gone = records.campaigns[records.campaigns["subscriber_id"].isin(["S04", "S05"])
                             & (records.campaigns["campaign_id"] == "C3-winter")]
    with pytest.raises(DataError, match=exactly(
            f"{FIXTURE}: no randomised campaign to learn a response from: no campaign row is of a subscriber "
            "active at its campaign's start")):
        campaign_dataset(replace(records, campaigns=gone), horizon_days=90)


def test_campaign_dataset_leaves_out_a_campaign_with_one_group(records):
    # An ordinary offer (no control group) says nothing about the response: its rows are
    # left out and counted; with no randomised campaign left, there is nothing to learn.
    campaigns = records.campaigns.copy()
    campaigns.loc[campaigns["campaign_id"] == "C1-spring", "group"] = "offer"
    campaigns["accepted"] = campaigns["accepted"].where(campaigns["group"] == "offer")
    whole = campaign_dataset(records, horizon_days=90)
    part = campaign_dataset(replace(records, campaigns=campaigns), horizon_days=90)
    assert part.excluded[EXCLUDED_NOT_RANDOMISED] == 5
    assert set(part.extra["campaign_id"]) == set(whole.extra["campaign_id"]) - {"C1-spring"}
    only_offers = records.campaigns.assign(group="offer", accepted=records.campaigns["accepted"].fillna(False))
    with pytest.raises(DataError, match=exactly(
            f"{FIXTURE}: no randomised campaign to learn a response from: no campaign started by the snapshot "
            "has both an offer and a control group")):
        campaign_dataset(replace(records, campaigns=only_offers), horizon_days=90)
    # A one-group campaign after the snapshot is skipped, not refused.
    late = records.campaigns.assign(group=records.campaigns["group"].mask(
        records.campaigns["campaign_id"] == "C4-newyear", "control"))
    assert campaign_dataset(replace(records, campaigns=late), horizon_days=90).n_rows == 16


def test_campaign_dataset_needs_outcomes(records):
    with pytest.raises(DataError, match=exactly(
            f"{FIXTURE}: the outcomes table is needed to learn a response (it gives the labels)")):
        campaign_dataset(records.without("outcomes"), horizon_days=90)


# -- single tables: a treatment column -----------------------------------------------------------


def _table(treatment, **extra) -> pd.DataFrame:
    n = len(treatment)
    return pd.DataFrame({"customer": [f"C{i}" for i in range(n)], "tenure": np.arange(n, dtype=float),
                         "churned": [i % 2 for i in range(n)], "group": treatment, **extra})


@pytest.mark.parametrize(
    "treated, control",
    [("offer", "control"), ("treatment", "control"), ("treated", "control"), ("1", "0"), (1, 0), (1.0, 0.0),
     ("true", "false"), (True, False), ("yes", "no"), (" OFFER ", "Control"), ("Treated", "CONTROL"), ("YES", "No")],
)
def test_treatment_spellings(treated, control):
    dataset = table_dataset(_table([treated, control, control, treated]), id_column="customer", target="churned",
                            treatment_column="group")
    assert_series_equal(dataset.treatment, pd.Series([1.0, 0.0, 0.0, 1.0], name="treatment"))


def test_blank_treatment_is_a_row_in_no_experiment():
    dataset = table_dataset(_table(["offer", None, "  ", "control", np.nan]), id_column="customer",
                            target="churned", treatment_column="group")
    assert_series_equal(dataset.treatment, pd.Series([1.0, np.nan, np.nan, 0.0, np.nan], name="treatment"))
    numbers = table_dataset(_table([1.0, np.nan, 0.0]), id_column="customer", target="churned",
                            treatment_column="group")
    assert numbers.treatment.tolist()[::2] == [1.0, 0.0] and np.isnan(numbers.treatment[1])


def test_the_treatment_column_is_not_a_feature():
    dataset = table_dataset(_table(["offer", "control"]), id_column="customer", target="churned",
                            treatment_column="group")
    assert list(dataset.frame.columns) == ["customer", "tenure"]
    assert dataset.dropped == {"group": "treatment group of a randomised campaign (not a feature)"}
    assert table_dataset(_table(["offer", "control"]), id_column="customer", target="churned").treatment is None


def test_unknown_treatment_values_are_named():
    with pytest.raises(DataError, match=exactly(
            f"calls.csv: column group: rows 1, 3 have 'maybe', 'pilot' (expected {SPELLINGS}; "
            "blank for rows in no experiment)")):
        table_dataset(_table(["offer", "maybe", "control", "pilot"]), id_column="customer", target="churned",
                      treatment_column="group", source="calls.csv")
    with pytest.raises(DataError, match=exactly(
            f"calls.csv: column group: row 0 has '2' (expected {SPELLINGS}; blank for rows in no experiment)")):
        table_dataset(_table([2, 1]), id_column="customer", target="churned", treatment_column="group",
                      source="calls.csv")


def test_personal_looking_treatment_values_are_never_shown():
    phones = ["010-1234-5678", "010-2345-6789", "010-3456-7890"]
    with pytest.raises(DataError, match=exactly(
            f"calls.csv: column contact: rows 0, 1, 2 are not a treatment group (expected {SPELLINGS}; "
            "blank for rows in no experiment)")):
        table_dataset(_table(["offer"] * 3, contact=phones), id_column="customer", target="churned",
                      treatment_column="contact", source="calls.csv")


def test_a_missing_treatment_column_is_named():
    with pytest.raises(DataError, match=r"^calls\.csv: missing column\(s\) arm \(columns present: customer, "):
        table_dataset(_table(["offer"]), id_column="customer", target="churned", treatment_column="arm",
                      source="calls.csv")


# -- churn rows and response rows ----------------------------------------------------------------


def _experiment(offer: int, control: int, unknown: int):
    treatment = ["offer"] * offer + ["control"] * control + [""] * unknown
    frame = _table(treatment, fee=np.arange(len(treatment), dtype=float) * 1000)
    dataset = table_dataset(frame, id_column="customer", target="churned", value_column="fee",
                            treatment_column="group", source="calls.csv")
    dataset.extra["cost"] = pd.Series(np.arange(len(treatment), dtype=float))
    return dataset


def test_churn_rows_leave_out_the_treated():
    dataset = churn_rows(_experiment(25, 22, 3))
    assert dataset.n_rows == 25 and dataset.excluded == {EXCLUDED_TREATED: 25}
    assert dataset.ids.tolist() == [f"C{i}" for i in range(25, 50)]
    assert dataset.treatment.isna().sum() == 3 and (dataset.treatment.dropna() == 0).all()
    assert dataset.monthly_value.tolist() == [i * 1000.0 for i in range(25, 50)]
    assert dataset.extra["cost"].tolist() == list(range(25, 50)) and dataset.frame.index.equals(pd.RangeIndex(25))
    assert dataset.label.tolist() == [i % 2 for i in range(25, 50)]
    untreated = _experiment(0, 20, 0)
    assert churn_rows(untreated) is untreated
    no_experiment = table_dataset(_table(["x", "y"]), id_column="customer", target="churned")
    assert churn_rows(no_experiment) is no_experiment


def test_response_rows_keep_rows_with_a_known_treatment():
    dataset = response_rows(_experiment(25, 22, 3))
    assert dataset.n_rows == 47 and dataset.excluded == {EXCLUDED_NO_EXPERIMENT: 3}
    assert dataset.treatment.tolist() == [1.0] * 25 + [0.0] * 22
    assert dataset.extra["cost"].tolist() == list(range(47))
    assert response_rows(_experiment(20, 20, 0)).excluded == {}


@pytest.mark.parametrize(
    "offer, control, unknown, counts",
    [
        (25, 19, 3, "25 in the offer group and 19 in the control group (expected at least 20 in each; "
                    "3 rows are in no experiment)"),
        (0, 30, 0, "0 in the offer group and 30 in the control group (expected at least 20 in each)"),
        (20, 0, 0, "20 in the offer group and 0 in the control group (expected at least 20 in each)"),
    ],
)
def test_response_rows_need_twenty_rows_in_each_group(offer, control, unknown, counts):
    with pytest.raises(DataError, match=exactly(f"calls.csv: too few rows to learn a response: {counts}")):
        response_rows(_experiment(offer, control, unknown))


def test_response_rows_without_a_treatment():
    dataset = table_dataset(_table(["x"] * 4), id_column="customer", target="churned", source="calls.csv")
    with pytest.raises(DataError, match=exactly(
            "calls.csv: too few rows to learn a response: 0 in the offer group and 0 in the control group "
            "(expected at least 20 in each; 4 rows are in no experiment)")):
        response_rows(dataset)


def test_response_rows_count_the_groups_of_a_campaign_dataset(records):
    dataset = campaign_dataset(records, horizon_days=90)
    with pytest.raises(DataError, match="10 in the offer group and 6 in the control group"):
        response_rows(dataset)


def test_content_hash_covers_treatment():
    dataset = _experiment(2, 2, 1)
    flipped = replace(dataset, treatment=dataset.treatment.replace({1.0: 0.0, 0.0: 1.0}))
    without = replace(dataset, treatment=None)
    assert len({dataset.content_hash(), flipped.content_hash(), without.content_hash()}) == 3
    assert dataset.content_hash() == _experiment(2, 2, 1).content_hash()
