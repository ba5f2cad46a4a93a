"""Segments, one definition: the exact boundaries of tenure bands and exposure levels."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import DataError
from pipeline.segments import EXPOSURE_LEVELS, exposure_level, segment_columns, tenure_band


def test_tenure_bands_include_their_lower_bound_exactly():
    months = [0, 5.999, 6, 11.999, 12, 23.999, 24, 59.999, 60, 200]
    assert tenure_band(pd.Series(months)).tolist() == [
        "0-6m", "0-6m", "6-12m", "6-12m", "1-2y", "1-2y", "2-5y", "2-5y", "5y+", "5y+"
    ]


def test_tenure_band_keeps_blanks_and_orders_bands():
    bands = tenure_band(pd.Series([3, None]))
    assert pd.isna(bands.iloc[1])
    assert bands.cat.ordered and list(bands.cat.categories) == ["0-6m", "6-12m", "1-2y", "2-5y", "5y+"]


def test_tenure_band_rejects_negative_tenure():
    with pytest.raises(DataError, match="tenure in months must be a non-negative number; got -3 in row 1$"):
        tenure_band(pd.Series([4, -3]))


def test_exposure_levels_at_their_boundaries_and_fraud():
    severity = pd.Series([0.0, 0.5, 2.999, 3.0, 9.0, None, -1.0, 1.0], index=range(10, 18))
    fraud = pd.Series([0.0, 0, 0, 0, 0, 0, 0, 5000.0], index=range(10, 18))
    levels = exposure_level(severity, fraud)
    assert levels.tolist() == ["not_exposed", "low", "low", "high", "high", "not_exposed", "not_exposed",
                               "directly_harmed"]
    assert list(levels.index) == list(range(10, 18))
    assert list(levels.cat.categories) == list(EXPOSURE_LEVELS)


def test_exposure_level_rejects_text_and_flags():
    with pytest.raises(DataError, match="numeric severity score \\(0-9\\); got 'high' in row 1$"):
        exposure_level(pd.Series(["1", "high"]))
    with pytest.raises(DataError, match="not a yes/no flag"):
        exposure_level(pd.Series([True, False]))


def test_segment_columns_use_the_same_boundaries_and_never_fail():
    frame = pd.DataFrame({
        "Contract": ["Month-to-month", None, "Two year", "One year", "One year"],
        "tenure": ["6", "12", "-1", "abc", "1,200"],
        "exposure_severity": [3, 2, "x", None, 0],
        "fraud_loss_amount": [0, 10, 0, 0, 0],
    })
    columns = segment_columns(frame)
    assert columns.to_dict("list") == {
        "contract_type": ["Month-to-month", "unknown", "Two year", "One year", "One year"],
        "tenure_band": ["6-12m", "1-2y", "unknown", "unknown", "5y+"],
        "exposure_level": ["high", "directly_harmed", "not_exposed", "not_exposed", "not_exposed"],
    }
    assert columns["tenure_band"].tolist() == tenure_band(pd.Series([6, 12])).astype(str).tolist() + [
        "unknown", "unknown", "5y+"]
