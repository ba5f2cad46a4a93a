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


def test_a_category_reads_the_same_from_text_categorical_and_mixed_columns():
    typer = TableTyper(min_level_count=1).set_output(transform="pandas")
    typer.fit(pd.DataFrame({"plan": ["a", "b", "a", "1", "b"], "n": [1, 2, 3, 4, 5]}))
    assert typer.levels_["plan"] == ["1", "a", "b", OTHER]
    text = [" a", "c", None, " ", "1"]
    expected = ["a", OTHER, None, None, "1"]
    for column in (pd.Series(text, dtype=object), pd.Series(text, dtype="string"), pd.Series(text, dtype="category")):
        out = typer.transform(pd.DataFrame({"plan": column, "n": 1}))["plan"]
        assert out.astype(object).where(out.notna(), None).tolist() == expected, column.dtype
    # objects are read as text value by value: 1 is "1", 1.0 is "1.0" (unseen), True is "True"
    mixed = typer.transform(pd.DataFrame({"plan": pd.Series([1, 1.0, True, "b"], dtype=object), "n": 1}))["plan"]
    assert mixed.tolist() == ["1", OTHER, OTHER, "b"]
    assert list(mixed.cat.categories) == ["1", "a", "b", OTHER]


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


# --- personal data by value, whatever the column's name ------------------------------------


def _names(n=300):
    first = ["Olivia", "Liam", "Emma", "Noah", "Ava", "Mason", "Sophia", "Lucas", "Mia", "Ethan", "Grace", "Owen",
             "Chloe", "Jack", "Ella", "Henry", "Zoe", "Leo", "Ruby", "Isaac"]
    last = ["Brennan", "Okafor", "Lindqvist", "Moreau", "Takahashi", "Kowalski", "Haddad", "Fitzgerald", "Novak",
            "Castillo", "O'Neil", "McAllister", "Park", "Nguyen", "Schmidt", "Rossi", "Kim-Lee", "Dubois"]
    return pd.Series([f"{first[i % 20]} {last[(i // 20) % 18]}" for i in range(n)])


def _hangul_names(n=300):
    surnames = list("김이박최정강조윤장임한오서신권황안송류홍")
    given = ["민준", "서연", "도윤", "지우", "하준", "서윤", "시우", "지민", "주원", "하은", "예준", "수아", "지호",
             "지유", "준서", "채원", "유준", "윤서", "건우", "다은"]
    return pd.Series([surnames[i % 20] + given[(i // 20) % 20] for i in range(n)])


@pytest.mark.parametrize("values, reason", [
    (_names(), "personal data (person names)"),
    (_hangul_names(), "personal data (person names)"),
    (pd.Series([f"010-{1000 + i}-{5000 + i}" for i in range(100)]), "personal data (phone numbers)"),
    (pd.Series([f"010{1000 + i}{5000 + i}" for i in range(100)]), "personal data (phone numbers)"),
    (pd.Series([f"+82 10 {1000 + i} {5000 + i}" for i in range(100)]), "personal data (phone numbers)"),
    (pd.Series([f"(212) 555-{1000 + i}" for i in range(100)]), "personal data (phone numbers)"),
    (pd.Series(1012340000 + np.arange(100) * 7919, dtype="int64"), "personal data (phone or identity numbers stored as numbers)"),
    (pd.Series(821012340000 + np.arange(100) * 7919, dtype="int64"), "personal data (phone or identity numbers stored as numbers)"),
    (pd.Series(1012340000.0 + np.arange(100) * 7919), "personal data (phone or identity numbers stored as numbers)"),
    (pd.Series([f"9{i % 10}0{1 + i % 9}1{i % 10}-{1 + i % 4}{234560 + i}" for i in range(100)]), "personal data (identity numbers)"),
    (pd.Series([f"{100 + i}-{10 + i % 90}-{1000 + i}" for i in range(100)]), "personal data (identity numbers)"),
    (pd.Series([f"first.last{i}@mail.example.org" for i in range(100)]), "personal data (email addresses)"),
    (pd.Series([f"called on day {i}, asked about the bill" for i in range(100)]), "identifier or free text (mostly distinct values)"),
])
def test_personal_columns_are_found_by_their_values_under_any_name(values, reason):
    for name in ("contact", "col7", "ref", "note"):
        assert looks_personal(name, values) == reason, name
    assert looks_personal("col7", values.reindex(range(len(values) + 20))) == reason  # blanks too


def _telco(n=400, seed=0):
    """Columns as in the IBM Telco and BigML churn tables (values in their own spelling)."""
    rng = np.random.default_rng(seed)
    pick = lambda *levels: rng.choice(levels, size=n)  # noqa: E731
    return pd.DataFrame({
        "gender": pick("Female", "Male"), "SeniorCitizen": rng.integers(0, 2, n), "Partner": pick("Yes", "No"),
        "tenure": rng.integers(0, 72, n), "PhoneService": pick("Yes", "No"),
        "MultipleLines": pick("No phone service", "No", "Yes"), "InternetService": pick("DSL", "Fiber optic", "No"),
        "OnlineSecurity": pick("No internet service", "No", "Yes"),
        "Contract": pick("Month-to-month", "One year", "Two year"),
        "PaperlessBilling": pick("Yes", "No"),
        "PaymentMethod": pick("Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"),
        "PaymentMethodTitle": pick("Electronic Check", "Mailed Check", "Bank Transfer", "Credit Card"),
        "MonthlyCharges": rng.uniform(18, 119, n).round(2),
        "TotalCharges": [f"{v:.2f}" for v in rng.uniform(18, 8000, n)],
        "State": pick(*["KS", "OH", "NJ", "OK", "AL", "MA", "MO", "LA", "WV", "IN", "RI", "IA", "MT", "NY", "ID", "VT"]),
        "Account length": rng.integers(1, 240, n), "Area code": pick(415, 408, 510),
        "International plan": pick("yes", "no"), "Voice mail plan": pick("yes", "no"),
        "Number vmail messages": rng.integers(0, 50, n), "Total day minutes": rng.uniform(0, 350, n).round(1),
        "Total day charge": rng.uniform(0, 60, n).round(2), "Customer service calls": rng.integers(0, 9, n),
        "City": pick("Los Angeles", "San Diego", "San Jose", "San Francisco", "Fresno", "Sacramento"),
        "region": pick("서울", "경기", "부산", "인천", "대구"), "data_bytes": rng.integers(10**6, 10**8, n),
    })


def test_ordinary_telco_and_bigml_columns_are_not_personal():
    table = _telco()
    assert {c: looks_personal(c, table[c]) for c in table.columns if looks_personal(c, table[c])} == {}
    typer = TableTyper().fit(table)
    assert set(typer.kinds_) == set(table.columns)


def test_the_typer_drops_personal_columns_with_innocuous_names():
    table = _telco(300).assign(contact=_names(300), col7=1012340000 + np.arange(300) * 7919,
                               ref=[f"{100 + i}-{10 + i % 90}-{1000 + i}" for i in range(300)])
    typer = TableTyper().fit(table)
    assert typer.dropped_ == {"contact": "personal data (person names)",
                              "col7": "personal data (phone or identity numbers stored as numbers)",
                              "ref": "personal data (identity numbers)"}


def test_one_numeric_share_rule_at_its_boundary():
    from pipeline.prepare import NUMERIC_SHARE, holds_numbers, text_numbers

    assert NUMERIC_SHARE == 0.95
    assert holds_numbers(19, 20) and not holds_numbers(18, 19) and not holds_numbers(0, 0)
    # 19 numbers and 1 word among 20 filled-in values, blanks not counted: numbers
    nineteen = pd.Series([*(str(i) for i in range(18)), "1,234.5", "word", None, "", "  "])
    numbers = text_numbers(nineteen)
    assert numbers is not None and list(numbers.index) == list(nineteen.index)
    assert numbers.iloc[18] == 1234.5 and numbers.iloc[19:].isna().all()
    # 18 numbers and 1 word: text
    assert text_numbers(pd.Series([*(str(i) for i in range(18)), "word"])) is None
    assert text_numbers(pd.Series([None, " "], dtype="object")) is None


def test_a_text_verdict_is_remembered_by_the_values_looked_at_not_by_the_column():
    from pipeline import prepare

    prepare._TEXT_VERDICTS.clear()
    phones = pd.Series([f"010-{i:04d}-{i * 7 % 10_000:04d}" for i in range(3_000)])
    plans = pd.Series(["Month-to-month", "One year", "Two year"] * 1_000)
    assert looks_personal("a", phones) == "personal data (phone numbers)"
    assert looks_personal("b", plans) is None
    assert len(prepare._TEXT_VERDICTS) == 2
    # the same values under another name, index or as categories: the same verdicts, one more entry (the dtype)
    assert looks_personal("c", phones.set_axis(range(10, 3_010))) == "personal data (phone numbers)"
    assert looks_personal("d", plans.astype("category")) is None
    assert len(prepare._TEXT_VERDICTS) == 3
    # other values among the first 4,000 non-blank ones: a new entry, judged on its own values
    longer = pd.concat([phones, pd.Series([None] * 10 + ["x"] * 5_000)], ignore_index=True)
    assert looks_personal("e", longer) == "personal data (phone numbers)" and len(prepare._TEXT_VERDICTS) == 4
    # ... but values after them change nothing: the same entry
    assert looks_personal("f", pd.concat([longer, pd.Series(["y"] * 10)], ignore_index=True)) == looks_personal("e", longer)
    assert len(prepare._TEXT_VERDICTS) == 4
