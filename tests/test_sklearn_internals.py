"""Every function of ``pipeline._sklearn_internals`` against the installed scikit-learn, checked by public APIs.

The adapter is the one place that reads scikit-learn's private internals; when a release
changes them, one of these tests names the function that broke.
"""

from __future__ import annotations

import copy
import numpy as np
import pandas as pd
import pytest
import sklearn

from pipeline import _sklearn_internals as internals
from pipeline.model import make_candidate


def _table(n: int, seed: int):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "tenure": rng.integers(0, 72, n).astype(float),
        "Contract": rng.choice(["Month-to-month", "One year", "Two year"], n),
        "charges": rng.normal(70, 20, n).round(2),
        "Partner": rng.choice(["Yes", "No"], n),
    })
    frame.loc[rng.random(n) < 0.1, "charges"] = np.nan
    frame.loc[rng.random(n) < 0.08, "Contract"] = None
    logit = -1 + 1.5 * (frame["Contract"] == "Month-to-month") - frame["tenure"] / 30
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    return frame, y


@pytest.fixture(scope="module")
def fitted():
    train, y = _table(500, seed=1)
    scored, _ = _table(60, seed=2)
    scored.loc[0, "Contract"] = "Three year"  # unseen category
    scored.loc[1, ["tenure", "charges", "Contract"]] = [np.nan, np.nan, None]
    model = make_candidate("hist_gradient_boosting", classifier__max_iter=15, classifier__early_stopping=False)
    model.fit(train, y)
    typed = model[:-1].transform(scored)
    return model.named_steps["classifier"], typed, y


def test_the_installed_version_is_one_tested():
    assert ".".join(sklearn.__version__.split(".")[:2]) in internals.TESTED_VERSIONS


def test_is_hist_gradient_boosting(fitted):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    classifier, _, _ = fitted
    assert internals.is_hist_gradient_boosting(classifier)
    assert not internals.is_hist_gradient_boosting(HistGradientBoostingClassifier())  # not fitted
    assert not internals.is_hist_gradient_boosting(LogisticRegression())


def test_trees_routed_and_summed_are_the_public_raw_prediction(fitted):
    classifier, typed, _ = fitted
    matrix = internals.hgb_matrix(classifier, typed)
    assert matrix.dtype == np.float64 and matrix.shape == (len(typed), classifier.n_features_in_)
    trees = internals.hgb_trees(classifier)
    assert len(trees) == classifier.n_iter_
    bitsets = internals.hgb_category_bitsets(classifier)
    raw = np.full(len(typed), internals.hgb_baseline(classifier))
    for tree in trees:
        leaves = internals.hgb_leaves(tree, matrix, bitsets, 1)
        assert tree.nodes["is_leaf"][leaves].all()
        raw += tree.nodes["value"][leaves]
    np.testing.assert_allclose(raw, classifier.decision_function(typed), rtol=0, atol=1e-12)
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), classifier.predict_proba(typed)[:, 1], rtol=0, atol=1e-12)


def test_baseline_is_the_log_odds_of_the_training_rate(fitted):
    classifier, _, y = fitted
    rate = y.mean()
    assert internals.hgb_baseline(classifier) == pytest.approx(np.log(rate / (1 - rate)), abs=1e-12)


def test_preprocessor_puts_each_input_column_where_the_trees_read_it(fitted):
    classifier, typed, _ = fitted
    preprocessor = internals.hgb_preprocessor(classifier)
    assert preprocessor is not None  # the typed frame has categories
    matrix = internals.hgb_matrix(classifier, typed)
    names = list(classifier.feature_names_in_)
    order = np.empty(len(names), dtype=np.intp)
    for name, _, columns in preprocessor.transformers_:
        part = preprocessor.output_indices_.get(name, slice(0, 0))
        if part.stop > part.start:
            columns = np.asarray(columns)
            order[part] = np.flatnonzero(columns) if columns.dtype == bool else [
                c if isinstance(c, (int, np.integer)) else names.index(c) for c in columns]
    assert sorted(order) == list(range(len(names)))
    categorical = set(np.asarray(names)[classifier.is_categorical_])
    for position, source in enumerate(order):
        column = names[source]
        if column in categorical:  # coded: blanks (and categories unseen in training) missing, one code a category
            codes = pd.Series(matrix[:, position])
            assert codes[typed[column].isna().to_numpy()].isna().all()
            coded = codes.notna().to_numpy()
            pairs = pd.DataFrame({"category": typed[column].astype(str).to_numpy()[coded], "code": codes[coded]})
            assert (pairs.groupby("category")["code"].nunique() == 1).all()
            assert (pairs.groupby("code")["category"].nunique() == 1).all() and pairs["code"].nunique() >= 2
        else:
            np.testing.assert_array_equal(matrix[:, position], typed[column].to_numpy(dtype="float64"))


def test_the_matrix_is_scikit_learns_own_column_major_and_the_fast_model_predicts_the_same(fitted):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from pipeline.model import HistGradientBoosting

    classifier, typed, _ = fitted
    assert type(classifier) is HistGradientBoosting  # make_candidate's class
    edge = typed.copy()
    edge.loc[edge.index[2], "charges"] = np.inf  # passed through as scikit-learn does
    reference = HistGradientBoostingClassifier._preprocess_X(classifier, edge, reset=False)
    matrix = internals.hgb_matrix(classifier, edge)
    assert matrix.flags.f_contiguous and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, reference)  # NaN where scikit-learn has NaN (unseen, missing)
    assert np.isnan(matrix[0]).any() and np.isnan(matrix[1]).sum() >= 3
    # Frames not of the typed kind (text instead of categories, columns in another order) take
    # scikit-learn's own path.
    for other in (edge.assign(Contract=edge["Contract"].astype(object)), edge[edge.columns[::-1]]):
        np.testing.assert_array_equal(internals.hgb_matrix(classifier, other),
                                      HistGradientBoostingClassifier._preprocess_X(classifier, other, reset=False))
    plain = copy.copy(classifier)
    plain.__class__ = HistGradientBoostingClassifier  # the same fitted trees, scikit-learn's own predict
    for frame in (typed, edge):
        np.testing.assert_array_equal(classifier.predict_proba(frame), plain.predict_proba(frame))


def test_onehot_output_counts_match_the_public_feature_names():
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"a": ["x", "y", "z", "x", "x", "y"], "b": ["p", "q", "p", "p", "p", "p"]})
    for encoder in (OneHotEncoder(), OneHotEncoder(drop="first"), OneHotEncoder(min_frequency=2)):
        encoder.fit(frame)
        counts = internals.onehot_output_counts(encoder)
        names = encoder.get_feature_names_out()
        assert counts == [sum(str(n).startswith(f"{c}_") for n in names) for c in frame.columns]
