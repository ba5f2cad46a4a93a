"""Per-subscriber contributions and reasons: exactness, additivity and the phrases."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import DataError, ModelError
from pipeline.explain import contributions, format_number, generic_phrase, raw_log_odds, reasons, top_reasons
from pipeline.model import make_candidate

ATOL = 1e-6


def _table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A churn table of any company: numbers (some missing), a category (some missing), yes/no."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "tenure": rng.integers(0, 72, n).astype(float),
            "Contract": rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.5, 0.3, 0.2]),
            "charges": rng.normal(70, 20, n).round(2),
            "Partner": rng.choice(["Yes", "No"], n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "charges"] = np.nan
    frame.loc[rng.random(n) < 0.08, "Contract"] = None
    logit = -1 + 1.5 * (frame["Contract"] == "Month-to-month") - frame["tenure"] / 30 + frame["charges"].fillna(90) / 60
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    return frame, y


@pytest.fixture(scope="module")
def data():
    train, y = _table(600, seed=1)
    scored, _ = _table(40, seed=2)
    # Rows the model never saw: an unknown category, missing values everywhere.
    scored.loc[0, "Contract"] = "Three year"
    scored.loc[1, ["tenure", "charges", "Contract", "Partner"]] = [np.nan, np.nan, None, None]
    return train, y, scored


@pytest.fixture(scope="module")
def logistic(data):
    train, y, _ = data
    return make_candidate("logistic", drop_columns=("customer_id",)).fit(train, y)


@pytest.fixture(scope="module")
def boosted(data):
    train, y, _ = data
    return make_candidate("hist_gradient_boosting", drop_columns=("customer_id",), classifier__max_iter=30,
                          classifier__early_stopping=False).fit(train, y)


# --- linear: exact ---------------------------------------------------------------------------


def _coefficients(model) -> dict[str, float]:
    """Encoded column name -> coefficient of a fitted logistic candidate."""
    names = model.named_steps["encode"].get_feature_names_out()
    return dict(zip(names, model.named_steps["classifier"].coef_[0]))


def test_logistic_contributions_equal_hand_computed_coef_times_centred_value(data, logistic):
    train, _, scored = data
    coef = _coefficients(logistic)

    def standardise(train_values: pd.Series, values: pd.Series) -> pd.Series:
        return (values - train_values.mean()) / train_values.std(ddof=0)

    expected = pd.DataFrame(index=scored.index)
    # tenure: no missing values in training, so no indicator.
    tenure = scored["tenure"].fillna(train["tenure"].median())
    expected["tenure"] = coef["numeric__tenure"] * standardise(train["tenure"], tenure)
    # charges: median-imputed value plus its missing-value indicator, both standardised.
    median = train["charges"].median()
    train_missing = train["charges"].isna().astype(float)
    expected["charges"] = (
        coef["numeric__charges"] * standardise(train["charges"].fillna(median), scored["charges"].fillna(median))
        + coef["numeric__missingindicator_charges"] * standardise(train_missing, scored["charges"].isna().astype(float))
    )
    partner_train = (train["Partner"] == "Yes").astype(float)
    partner = scored["Partner"].map({"Yes": 1.0, "No": 0.0}).fillna(partner_train.median())
    expected["Partner"] = coef["numeric__Partner"] * standardise(partner_train, partner)
    # Contract: one-hot levels against their training frequencies (the background).
    contract = 0.0
    for level, train_share in train["Contract"].value_counts(normalize=True, dropna=False).items():
        name = "categorical__Contract_nan" if pd.isna(level) else f"categorical__Contract_{level}"
        is_level = scored["Contract"].isna() if pd.isna(level) else scored["Contract"].eq(level)
        contract = contract + coef[name] * (is_level.astype(float) - train_share)
    expected["Contract"] = contract

    got = contributions(logistic, scored, background=train)
    pd.testing.assert_frame_equal(got[expected.columns], expected, atol=1e-9, rtol=0, check_names=False)
    assert list(got.columns) == ["tenure", "Contract", "charges", "Partner"]  # the model's column order


@pytest.mark.parametrize("background", [None, "train"])
def test_logistic_contributions_add_up_to_the_decision_function(data, logistic, background):
    train, _, scored = data
    got, baseline = contributions(logistic, scored, background=train if background else None, with_baseline=True)
    np.testing.assert_allclose(baseline + got.sum(axis=1), logistic.decision_function(scored), atol=1e-9, rtol=0)


def test_without_background_levels_are_measured_against_the_average_level(data, logistic):
    _, _, scored = data
    coef = pd.Series(logistic.named_steps["classifier"].coef_[0],
                     index=logistic.named_steps["encode"].get_feature_names_out())
    levels = coef[coef.index.str.startswith("categorical__Contract_")]
    got = contributions(logistic, scored)
    row = scored.index[scored["Contract"].eq("Two year")][0]
    assert got.loc[row, "Contract"] == pytest.approx(levels["categorical__Contract_Two year"] - levels.mean())
    # An unknown category has no level: all zeros, so minus the average.
    assert got.loc[0, "Contract"] == pytest.approx(-levels.mean())


# --- boosted trees: path attribution -----------------------------------------------------------


def test_stump_contribution_is_leaf_minus_count_weighted_mean():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"tenure": rng.integers(0, 60, 300).astype(float), "noise": rng.normal(size=300)})
    y = (frame["tenure"] < 12).to_numpy().astype(int)
    model = make_candidate("hist_gradient_boosting", classifier__max_iter=1, classifier__max_depth=1,
                           classifier__early_stopping=False).fit(frame, y)
    classifier = model.named_steps["classifier"]
    nodes = classifier._predictors[0][0].nodes
    root, left, right = nodes[0], nodes[nodes[0]["left"]], nodes[nodes[0]["right"]]
    assert classifier.feature_names_in_[root["feature_idx"]] == "tenure"
    mean = (left["count"] * left["value"] + right["count"] * right["value"]) / (left["count"] + right["count"])
    leaf = np.where(frame["tenure"] <= root["num_threshold"], left["value"], right["value"])

    got, baseline = contributions(model, frame, with_baseline=True)
    np.testing.assert_allclose(got["tenure"], leaf - mean, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(got["noise"], 0.0)
    assert baseline == pytest.approx(float(classifier._baseline_prediction.ravel()[0]) + mean)


def test_boosted_contributions_add_up_to_the_raw_prediction(data, boosted):
    _, _, scored = data
    got, baseline = contributions(boosted, scored, with_baseline=True)
    classifier = boosted.named_steps["classifier"]
    raw = classifier.decision_function(boosted[:-1].transform(scored))
    np.testing.assert_allclose(baseline + got.sum(axis=1), raw, atol=ATOL, rtol=0)
    assert list(got.columns) == ["tenure", "Contract", "charges", "Partner"]
    assert got.index.equals(scored.index)
    # Every input column is used by some tree, and an unused column gets nothing.
    assert (got.abs().sum() > 0).all()


def test_calibrated_model_explains_its_inner_estimator(data):
    from pipeline.model import CalibratedModel

    train, y, scored = data
    inner = make_candidate("hist_gradient_boosting", drop_columns=("customer_id",), classifier__max_iter=10,
                           classifier__early_stopping=False)
    model = CalibratedModel(inner, method="sigmoid", cv=3).fit(train, y)
    got, baseline = contributions(model, scored, with_baseline=True)
    np.testing.assert_allclose(baseline + got.sum(axis=1), raw_log_odds(model, scored), atol=ATOL, rtol=0)
    pd.testing.assert_frame_equal(got, contributions(model.estimator_, scored))


def test_blend_is_the_weighted_sum_of_its_members(data, logistic, boosted):
    from sklearn.ensemble import VotingClassifier

    train, y, scored = data
    blend = VotingClassifier([("logistic", logistic), ("hist_gradient_boosting", boosted)], voting="soft",
                             weights=[1.0, 3.0]).fit(train, y)
    members = dict(blend.named_estimators_)
    got, baseline = contributions(blend, scored, with_baseline=True)
    expected = 0.25 * contributions(members["logistic"], scored) + 0.75 * contributions(
        members["hist_gradient_boosting"], scored)
    pd.testing.assert_frame_equal(got, expected[got.columns], atol=1e-12, rtol=0)
    np.testing.assert_allclose(baseline + got.sum(axis=1), raw_log_odds(blend, scored), atol=ATOL, rtol=0)


def test_unsupported_models_and_inputs_are_errors(data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    from pipeline.prepare import TableTyper

    train, y, scored = data
    tree = Pipeline([("typer", TableTyper(drop_columns=("customer_id", "Contract"))),
                     ("classifier", DecisionTreeClassifier(max_depth=2))]).fit(train, y)
    with pytest.raises(ModelError, match="cannot explain a DecisionTreeClassifier; expected a LogisticRegression"):
        contributions(tree, scored)
    three = LogisticRegression().fit(np.arange(9.0).reshape(-1, 1), [0, 1, 2] * 3)
    with pytest.raises(ModelError, match="cannot explain a model with 3 classes; expected a binary churn model"):
        contributions(three, pd.DataFrame({"x": [1.0]}))
    with pytest.raises(DataError, match="explain: X must be a DataFrame of raw rows, got ndarray"):
        contributions(three, np.zeros((1, 1)))


# --- reasons ----------------------------------------------------------------------------------


def _tiny():
    X = pd.DataFrame(
        {
            "tenure": [2.0, 50.0, np.nan],
            "Contract": ["Month-to-month", "Two year", "One year"],
            "tenure_months": [3.0, 40.0, 10.0],
            "charges": [80.5, 20.0, 30.0],
        },
        index=["a", "b", "c"],
    )
    contrib = pd.DataFrame(
        {
            "tenure": [0.5, -0.3, 0.4],
            "Contract": [0.8, 0.0, -1.0],
            "tenure_months": [0.2, 0.1, 0.0],
            "charges": [-0.1, 0.0, 0.4],
        },
        index=X.index,
    )
    # The parts due to a high / a low value (what ``reasons`` passes from the model).
    high = pd.DataFrame(0.0, index=X.index, columns=contrib.columns)
    low = high.copy()
    low.loc["a", "tenure"] = 0.5
    high.loc["c", "charges"] = 0.4
    high.loc["c", "tenure"] = 0.4
    return X, contrib, high, low


def test_top_reasons_picks_positive_contributions_in_order():
    from pipeline.features import reason_text

    X, contrib, high, low = _tiny()
    got = top_reasons(contrib, X, k=3, high=high, low=low)
    assert list(got.columns) == ["reason_1", "reason_2", "reason_3",
                                 "reason_1_feature", "reason_2_feature", "reason_3_feature"]
    assert got.loc["a"].tolist() == [
        "Contract: Month-to-month", "tenure is low (2)", reason_text("tenure_months", 3.0, "raises"),
        "Contract", "tenure", "tenure_months",
    ]
    # Only one positive contribution: the rest is blank.
    assert got.loc["b"].tolist() == [reason_text("tenure_months", 40.0, "raises"), "", "", "tenure_months", "", ""]
    # A tie keeps the column order; a missing value is named as missing.
    assert got.loc["c"].tolist() == ["tenure is missing", "charges is high (30)", "", "tenure", "charges", ""]


def test_top_reasons_without_sides_and_with_a_custom_catalogue():
    X, contrib, _, _ = _tiny()
    got = top_reasons(contrib, X, k=2, catalogue={"Contract": "On a {value} contract", "tenure": lambda v: f"T={v}"})
    assert list(got.columns) == ["reason_1", "reason_2", "reason_1_feature", "reason_2_feature"]
    assert got["reason_1"].tolist() == ["On a Month-to-month contract", got.loc["b", "reason_1"], "T=nan"]
    assert got.loc["c", "reason_2"] == "charges: 30"


def test_top_reasons_errors():
    X, contrib, _, _ = _tiny()
    with pytest.raises(DataError, match="reasons: 3 rows of contributions but 2 rows of values"):
        top_reasons(contrib, X.iloc[:2])
    with pytest.raises(DataError, match=r"reasons: column\(s\) charges are not in the rows to explain"):
        top_reasons(contrib, X.drop(columns="charges"))
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        top_reasons(contrib, X, k=0)


@pytest.mark.parametrize(
    ("feature", "value", "side", "text"),
    [
        ("Contract", "Month-to-month", None, "Contract: Month-to-month"),
        ("tenure", 2.0, "low", "tenure is low (2)"),
        ("tenure", "2", "low", "tenure is low (2)"),
        ("charges", 80.55, "high", "charges is high (80.5)"),
        ("charges", 12345.0, None, "charges: 12,345"),
        ("charges", None, "high", "charges is missing"),
        ("Partner", "No", "low", "Partner: No"),
    ],
)
def test_generic_phrases(feature, value, side, text):
    assert generic_phrase(feature, value, side) == text


def test_format_number():
    assert [format_number(v) for v in (2.0, 80.5, 0.1234, 1234.0, -3.0)] == ["2", "80.5", "0.123", "1,234", "-3"]


@pytest.mark.parametrize("family", ["logistic", "boosted"])
def test_reasons_name_the_largest_risk_raising_columns(data, logistic, boosted, family):
    _, _, scored = data
    model = logistic if family == "logistic" else boosted
    got = reasons(model, scored, k=2)
    contrib = contributions(model, scored)
    from pipeline.protected import protected_trait

    allowed = [c for c in contrib.columns if protected_trait(c) is None]  # Partner (marital status) is never a reason
    assert len(allowed) < contrib.shape[1]
    for row in scored.index:
        values = contrib.loc[row, allowed]
        positive = values[values > 1e-9].sort_values(ascending=False, kind="stable")
        assert got.loc[row, "reason_1_feature"] == (positive.index[0] if len(positive) else "")
        assert got.loc[row, "reason_2_feature"] == (positive.index[1] if len(positive) > 1 else "")
    # Every phrase names its column (all generic here: no record features in this table).
    for k in (1, 2):
        named = got[got[f"reason_{k}_feature"] != ""]
        pairs = zip(named[f"reason_{k}"], named[f"reason_{k}_feature"])
        assert all(text.startswith(feature) for text, feature in pairs)
    # Scoring in pieces gives the same reasons as scoring at once.
    pieces = [reasons(model, scored.iloc[:15], k=2), reasons(model, scored.iloc[15:], k=2)]
    pd.testing.assert_frame_equal(pd.concat(pieces), got)


def test_logistic_sides_follow_the_value_against_the_training_mean(data, logistic):
    train, _, scored = data
    got = reasons(logistic, scored, k=4)
    coef = _coefficients(logistic)
    assert coef["numeric__tenure"] < 0  # longer tenure, lower risk
    mean = train["tenure"].mean()
    for k in range(1, 5):
        rows = got[got[f"reason_{k}_feature"] == "tenure"]
        for row, text in rows[f"reason_{k}"].items():
            if not np.isnan(scored.loc[row, "tenure"]):
                assert text == f"tenure is low ({format_number(scored.loc[row, 'tenure'])})"
                assert scored.loc[row, "tenure"] < mean


@pytest.mark.slow
def test_contributions_of_a_200_tree_model_on_100k_rows_take_seconds():
    rng = np.random.default_rng(1)
    n, p = 100_000, 36
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"num_{i}" for i in range(p)])
    for i in range(4):
        X[f"cat_{i}"] = rng.choice([f"L{j}" for j in range(8)], n)
    X.loc[rng.random(n) < 0.05, "num_0"] = np.nan
    logit = X["num_0"].fillna(1) * 0.8 - X["num_1"] + (X["cat_0"] == "L1") + np.sin(2 * X["num_2"]) - 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    model = make_candidate("hist_gradient_boosting", classifier__max_iter=200, classifier__early_stopping=False,
                           classifier__max_leaf_nodes=31).fit(X.iloc[:20_000], y[:20_000])
    started = time.perf_counter()
    model.predict_proba(X)
    predict_seconds = time.perf_counter() - started
    started = time.perf_counter()
    got, baseline = contributions(model, X, with_baseline=True, n_threads=2)
    seconds = time.perf_counter() - started
    np.testing.assert_allclose(baseline + got.sum(axis=1), raw_log_odds(model, X), atol=ATOL, rtol=0)
    # Routing rows costs one prediction; the sparse path sums about as much again.
    assert seconds < max(10.0, 4 * predict_seconds), (seconds, predict_seconds)
