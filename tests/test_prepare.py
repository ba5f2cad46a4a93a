"""TableTyper: column typing for any churn table, and scikit-learn's estimator contract."""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.prepare import OTHER, TableTyper, looks_personal


@parametrize_with_checks([TableTyper()])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


def _table():
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(12)],
            "tenure": [1, 5, 12, 24, 36, 2, 3, 60, 8, 9, 10, 11],
            "total": ["10.5", " ", "30", "40", "55.5", "1", "2", "3", "4", "5", "6", "7"],
            "partner": ["Yes", "No"] * 6,
            "contract": ["Month-to-month"] * 6 + ["One year"] * 5 + ["Two year"],
            "constant": ["x"] * 12,
            "empty": [None] * 12,
            "email": [f"user{i}@example.com" for i in range(12)],
            "notes": [f"free text number {i}" for i in range(12)],
        }
    )


def test_types_are_inferred_and_reasons_recorded():
    typer = TableTyper(drop_columns=("customer_id",), min_level_count=2, max_levels=5).fit(_table())
    assert typer.kinds_ == {"tenure": "numeric", "total": "numeric", "partner": "boolean", "contract": "categorical"}
    assert typer.levels_["contract"] == ["Month-to-month", "One year", OTHER]
    assert typer.dropped_ == {
        "customer_id": "excluded by configuration (id, label or value column)",
        "constant": "constant",
        "empty": "empty",
        "email": "personal data (column name)",
        "notes": "identifier or free text (mostly distinct values)",
    }
    report = typer.columns_report()
    assert list(report.columns) == ["column", "use", "reason"] and len(report) == 9


def test_transform_coerces_numbers_blanks_booleans_and_unseen_levels():
    typer = TableTyper(drop_columns=("customer_id",), min_level_count=2).fit(_table())
    new = _table().head(3).assign(contract=["Two year", "Month-to-month", None], total=["7", "", "oops"])
    out = typer.set_output(transform="pandas").transform(new)
    assert list(out.columns) == ["tenure", "total", "partner", "contract"]
    np.testing.assert_array_equal(out["total"].to_numpy(), [7.0, np.nan, np.nan])
    np.testing.assert_array_equal(out["partner"].to_numpy(), [1.0, 0.0, 1.0])
    assert out["contract"].tolist()[:2] == [OTHER, "Month-to-month"] and pd.isna(out["contract"].iloc[2])
    assert list(out["contract"].cat.categories) == ["Month-to-month", "One year", OTHER]


def test_personal_data_is_detected_by_name_and_by_value():
    assert looks_personal("Phone Number", pd.Series(["x"])) == "personal data (column name)"
    assert looks_personal("contact", pd.Series(["010-1234-5678", "010-9876-5432"])) == "personal data (phone numbers)"
    assert looks_personal("c", pd.Series(["a@b.com", "c@d.co.kr"])) == "personal data (email addresses)"
    assert looks_personal("PhoneService", pd.Series(["Yes", "No"])) is None
    assert looks_personal("Voice mail plan", pd.Series(["yes", "no"])) is None


def test_unique_integer_id_is_dropped_but_unique_measurements_are_kept():
    frame = pd.DataFrame({"row_id": np.arange(50), "charge": np.linspace(1, 2, 50), "calls": np.arange(50) % 7})
    typer = TableTyper().fit(frame)
    assert typer.dropped_ == {"row_id": "identifier (unique integer per row)"}
    assert typer.kinds_ == {"charge": "numeric", "calls": "numeric"}


def test_transform_before_fit_is_an_error():
    with pytest.raises(Exception, match="not fitted"):
        TableTyper().transform(_table())
