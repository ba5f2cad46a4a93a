"""Tests of pipeline.response: learners, calibration, selection, saving and reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import response
from pipeline.errors import ConfigError, DataError, ModelError
from pipeline.response import (
    ClassTransformationUplift,
    ResponseConfig,
    ResponseModel,
    TwoModelUplift,
    XLearnerUplift,
    make_learner,
    train_response,
)

# A saturated (practically unregularised) base: logistic regression on the one-hot segment.
SATURATED = {"classifier__C": 1e6}


def _table(spec: dict[str, tuple[tuple[int, int], tuple[int, int]]]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows of one categorical feature from ``segment -> ((n_control, churned), (n_offer, churned))``."""
    rows = []
    for segment, ((n_control, churn_control), (n_offer, churn_offer)) in spec.items():
        rows += [(segment, 0, 1)] * churn_control + [(segment, 0, 0)] * (n_control - churn_control)
        rows += [(segment, 1, 1)] * churn_offer + [(segment, 1, 0)] * (n_offer - churn_offer)
    frame = pd.DataFrame(rows, columns=["segment", "t", "y"])
    return frame[["segment"]], frame["t"].to_numpy(), frame["y"].to_numpy()


def _empirical_uplift(spec) -> np.ndarray:
    return np.array([cc / nc - co / no for (nc, cc), (no, co) in spec.values()])


# Groups of different sizes and offer shares (arms unbalanced within and across segments).
UNEVEN = {"a": ((40, 10), (40, 4)), "b": ((50, 5), (30, 9)), "c": ((20, 8), (60, 6))}
# Every segment offered 75% (randomised with e = 0.75): the class transformation's setting.
THREE_QUARTERS = {"a": ((20, 6), (60, 9)), "b": ((20, 2), (60, 12)), "c": ((20, 10), (60, 12))}
SEGMENTS = pd.DataFrame({"segment": ["a", "b", "c"]})


def test_two_model_recovers_each_segments_empirical_uplift():
    X, t, y = _table(UNEVEN)
    model = TwoModelUplift(params=SATURATED).fit(X, t, y)
    np.testing.assert_allclose(model.predict(SEGMENTS), _empirical_uplift(UNEVEN), atol=1e-3)
    p_control, p_offer = model.predict_outcomes(SEGMENTS)
    np.testing.assert_allclose(p_control, [10 / 40, 5 / 50, 8 / 20], atol=1e-3)
    np.testing.assert_allclose(p_offer, [4 / 40, 9 / 30, 6 / 60], atol=1e-3)
    assert model.propensity_ == pytest.approx(130 / 240)


def test_x_learner_recovers_each_segments_empirical_uplift():
    X, t, y = _table(UNEVEN)
    model = XLearnerUplift(params=SATURATED, effect_params={"regressor__alpha": 1e-9}).fit(X, t, y)
    np.testing.assert_allclose(model.predict(SEGMENTS), _empirical_uplift(UNEVEN), atol=1e-3)
    # Both effect models recover it on their own, so any propensity weighting does.
    np.testing.assert_allclose(model.offer_effect_model_.predict(SEGMENTS), _empirical_uplift(UNEVEN), atol=1e-3)
    np.testing.assert_allclose(model.control_effect_model_.predict(SEGMENTS), _empirical_uplift(UNEVEN), atol=1e-3)
    p_control, _ = model.predict_outcomes(SEGMENTS)
    np.testing.assert_allclose(p_control, [10 / 40, 5 / 50, 8 / 20], atol=1e-3)


def test_class_transformation_weights_hold_for_unbalanced_groups():
    X, t, y = _table(THREE_QUARTERS)
    expected = _empirical_uplift(THREE_QUARTERS)
    model = ClassTransformationUplift(params=SATURATED).fit(X, t, y)
    np.testing.assert_allclose(model.predict(SEGMENTS), expected, atol=1e-3)
    # Without the weights, 2 P(Z = 1) - 1 is far off when e = 0.75 (segment a: 2 * 57/80 - 1).
    z = response.transformed_label(t, y)
    unweighted = np.array([2 * z[X["segment"].to_numpy() == s].mean() - 1 for s in "abc"])
    assert np.abs(unweighted - expected).max() > 0.2


def test_learners_on_boosted_trees_fit_and_predict_raw_rows():
    X, t, y = _synthetic(1200, seed=4)
    for name in response.LEARNERS:
        model = make_learner(name, "hist_gradient_boosting", drop_columns=("subscriber_id",), seed=1).fit(X, t, y)
        uplift = model.predict(X.head(50))
        assert uplift.shape == (50,) and np.all(np.abs(uplift) <= 1)
        assert "subscriber_id" in model.feature_names_in_


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda X, t, y: TwoModelUplift().fit(X.to_numpy(), t, y), ModelError, "X must be a DataFrame of raw input columns, got ndarray"),
        (lambda X, t, y: TwoModelUplift().fit(X, t[:-1], y), ModelError, r"treatment: has 239 rows but X has 240"),
        (lambda X, t, y: TwoModelUplift().fit(X, t * 2, y), ModelError, r"treatment: values must be 0/1 \(1 = offer, 0 = control\); got 2"),
        (lambda X, t, y: TwoModelUplift().fit(X, t, np.where(t == 1, 0, y)), ModelError, r"the offer group holds only stayers \(130 rows\)"),
        (lambda X, t, y: TwoModelUplift().fit(X, np.zeros_like(t), y), ModelError, "the offer group is empty"),
        (lambda X, t, y: TwoModelUplift(family="catboost").fit(X, t, y), ConfigError, "unknown base family 'catboost'"),
        (lambda X, t, y: make_learner("s_learner", "logistic"), ConfigError, "unknown response learner 's_learner'"),
        (lambda X, t, y: TwoModelUplift().fit(X, t, y).predict(X.rename(columns={"segment": "seg"})), ModelError,
         "X lacks 1 training column.s.: segment"),
    ],
)
def test_learner_errors(call, error, message):
    X, t, y = _table(UNEVEN)
    with pytest.raises(error, match=message):
        call(X, t, y)


# -- calibration -----------------------------------------------------------------------------


def _known_slope_case(n=100_000, seed=1):
    """Raw scores whose best linear predictor of the uplift is 0.04 + 0.8 * (raw - 0.5)."""
    rng = np.random.default_rng(seed)
    raw = rng.random(n)
    uplift = 0.04 + 0.8 * 0.1 * (raw - 0.5) / 0.1 * 0.1  # slope 0.08 per unit of raw
    t = (rng.random(n) < 0.4).astype(int)
    y = (rng.random(n) < 0.3 - t * uplift).astype(int)
    return raw, t, y


def test_response_model_calibration_recovers_a_known_slope():
    raw, t, y = _known_slope_case()
    model = ResponseModel().fit_map(raw, t, y)
    assert abs(model.raw_slope_ - 0.08) < 3 * model.slope_se_
    assert model.heterogeneity_ and model.slope_ == model.raw_slope_
    assert model.intercept_ == pytest.approx(0.04, abs=3 * model.intercept_se_)
    assert model.calibrate([model.centre_])[0] == pytest.approx(model.intercept_)


def test_response_model_clips_the_slope_and_falls_back_to_the_average_effect():
    raw, t, y = _known_slope_case()
    stretched = ResponseModel(max_slope=1.5).fit_map(raw * 0.02, t, y)  # true slope 4
    assert stretched.raw_slope_ > 2 and stretched.slope_ == 1.5
    noise = np.random.default_rng(9).random(raw.size)
    flat = ResponseModel().fit_map(noise, t, y)
    assert not flat.heterogeneity_ and flat.slope_ == 0.0
    assert np.all(flat.calibrate(noise) == flat.intercept_)


def test_response_model_fit_detects_a_strong_effect():
    X, t, y = _synthetic(3000, seed=2)
    model = ResponseModel(make_learner("two_model", "logistic", drop_columns=("subscriber_id",)), cv=3).fit(X, t, y)
    assert model.heterogeneity_
    uplift = model.predict(X)
    in_a = X["segment"].to_numpy() == "a"
    assert uplift[in_a].mean() > uplift[~in_a].mean() + 0.05
    assert np.array_equal(model.predict_raw(X), model.learner_.predict(X))


def test_a_flat_response_model_answers_the_average_effect_without_running_its_learner():
    X, t, y = _synthetic(3000, seed=2)
    model = ResponseModel(make_learner("two_model", "logistic", drop_columns=("subscriber_id",)), cv=3).fit(X, t, y)
    raw = model.predict_raw(X)
    noise = np.random.default_rng(9).random(len(X))
    flat = model.fit_map(noise, t, y)  # the same fitted learner behind a flat line
    assert not flat.heterogeneity_
    expected_uplift, expected_se = flat.calibrate(raw), flat.uncertainty(raw)

    def never(_X):
        raise AssertionError("the learner ran")

    flat.learner_.predict = never
    assert np.array_equal(flat.predict(X), expected_uplift)
    assert np.array_equal(flat.predict_se(X), expected_se)
    assert np.all(expected_uplift == flat.intercept_) and np.all(expected_se == flat.intercept_se_)
    with pytest.raises(ModelError, match="lacks 1 training column"):
        flat.predict(X.drop(columns="segment"))


# -- selection and training ------------------------------------------------------------------


def _synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Raw rows where the offer removes 20 points of churn in segment ``a`` and nothing elsewhere."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "subscriber_id": [f"S{i:06d}" for i in range(n)],
        "tenure_months": rng.integers(1, 120, n).astype(float),
        "segment": rng.choice(["a", "b", "c"], n),
        "monthly_fee": rng.choice([25_000.0, 49_000.0, 89_000.0], n),
    })
    t = (rng.random(n) < 0.4).astype(int)
    p_control = 0.25 + 0.1 * (X["tenure_months"].to_numpy() < 12)
    uplift = np.where(X["segment"].to_numpy() == "a", 0.2, 0.0)
    y = (rng.random(n) < p_control - t * uplift).astype(int)
    return X, t, y


SMALL = ResponseConfig(learners=("two_model", "class_transformation"), families=("logistic",), cv_folds=3)


def test_train_response_returns_everything_a_tracking_layer_logs():
    X, t, y = _synthetic(2400, seed=3)
    risk = np.random.default_rng(0).random(len(X))
    messages = []
    result = train_response(X, t, y, config=SMALL, seed=7, n_threads=1, risk=risk, progress=messages.append,
                            drop_columns=("subscriber_id",))
    assert isinstance(result.model, ResponseModel) and result.model is not result.holdout_model
    assert result.candidates["candidate"].tolist() == sorted(result.candidates["candidate"],
                                                            key=lambda k: -result.candidates.set_index("candidate").loc[k, "qini"])
    assert result.candidates["chosen"].sum() == 1
    assert f"{result.learner}/{result.family}" == result.candidates.loc[result.candidates["chosen"], "candidate"].item()
    assert len(result.holdout_index) == 600 and len(result.train_index) == 1800
    assert np.intersect1d(result.holdout_index, result.train_index).size == 0
    # Stratified by treatment and outcome: each stratum's share within a row of the whole's.
    strata = 2 * t + y
    for stratum in range(4):
        assert abs((strata[result.holdout_index] == stratum).sum() - 0.25 * (strata == stratum).sum()) <= 1
    assert {"qini_coefficient", "qini_coefficient_risk", "auuc", "auuc_random", "auuc_risk", "ate", "ate_ci_low",
            "calibration_slope", "blp_slope", "heterogeneity", "cv_qini"} <= set(result.metrics)
    assert all(isinstance(value, float) for value in result.metrics.values())
    assert result.metrics["heterogeneity"] == 1.0 and result.metrics["qini_coefficient"] > 0.02
    assert result.deciles["observed_uplift"].iat[0] > result.deciles["observed_uplift"].iat[-1] + 0.1
    assert result.deciles["n"].sum() == 600 and set(result.plot_data) == {"qini", "qini_raw", "qini_risk", "deciles"}
    assert result.oof_uplift.shape == (1800,) and result.fit_rows == 2400
    np.testing.assert_array_equal(result.holdout_model.predict(X.iloc[result.holdout_index]), result.holdout_uplift)
    assert any("calibration of" in message for message in messages)


def test_one_standard_error_rule_prefers_the_simpler_candidate():
    table = pd.DataFrame({
        "candidate": ["x_learner/hist_gradient_boosting", "two_model/logistic", "class_transformation/logistic"],
        "qini": [0.30, 0.27, 0.20],
        "qini_se": [0.04, 0.05, 0.05],
        "simplicity": [5, 1, 0],
    })
    assert response._select(table) == "two_model/logistic"
    assert response._select(table.assign(qini_se=[0.01, 0.05, 0.05])) == "x_learner/hist_gradient_boosting"
    order = response._candidate_order(ResponseConfig(families=("hist_gradient_boosting", "logistic")))
    assert order[:3] == [("two_model", "logistic"), ("class_transformation", "logistic"), ("x_learner", "logistic")]
    assert order[3:] == [("two_model", "hist_gradient_boosting"), ("class_transformation", "hist_gradient_boosting"),
                         ("x_learner", "hist_gradient_boosting")]


@pytest.mark.parametrize("family", ["logistic", "hist_gradient_boosting"])
def test_the_x_learners_effect_models_reuse_their_groups_fitted_steps_and_predict_as_if_fit_whole(family):
    X, t, y = _synthetic(1500, seed=6)
    model = XLearnerUplift(family=family, drop_columns=("subscriber_id",), random_state=3).fit(X, t, y)
    control, offer = X[t == 0], X[t == 1]
    imputed_offer = model.control_model_.predict_proba(offer)[:, 1] - y[t == 1]
    imputed_control = y[t == 0] - model.offer_model_.predict_proba(control)[:, 1]
    expected_offer = model._regressor().fit(offer, imputed_offer)
    expected_control = model._regressor().fit(control, imputed_control)
    np.testing.assert_array_equal(model.offer_effect_model_.predict(X), expected_offer.predict(X))
    np.testing.assert_array_equal(model.control_effect_model_.predict(X), expected_control.predict(X))
    # Copies of the classifier's steps, not the same objects.
    assert model.offer_effect_model_.steps[0][1] is not model.offer_model_.steps[0][1]
    # A setting of a step before the last: the regressor pipeline is fit whole.
    whole = XLearnerUplift(drop_columns=("subscriber_id",), effect_params={"typer__drop_columns": ("subscriber_id", "segment")})
    whole.fit(X, t, y)
    assert whole.offer_effect_model_.named_steps["typer"].drop_columns == ("subscriber_id", "segment")
    assert "segment" not in whole.offer_effect_model_.named_steps["typer"].transform(X.head(5)).columns


def test_cross_validation_fits_each_group_classifier_once_and_scores_as_without_sharing(monkeypatch):
    X, t, y = _synthetic(1500, seed=8)
    order = [(name, "logistic") for name in response.LEARNERS]
    config = ResponseConfig(cv_folds=3)

    def run():
        built = []
        original = response._ResponseLearner._classifier
        monkeypatch.setattr(response._ResponseLearner, "_classifier", lambda self: built.append(1) or original(self))
        candidates, oof, _ = response._cross_validate(order, X, t, y, config=config, seed=2, threads=1,
                                                      drop_columns=("subscriber_id",), say=lambda _: None)
        monkeypatch.setattr(response._ResponseLearner, "_classifier", original)
        return candidates.drop(columns="fit_seconds"), oof, len(built)

    shared_candidates, shared_oof, shared_fits = run()
    monkeypatch.setattr(response, "_SharedFits", lambda: None)
    plain_candidates, plain_oof, plain_fits = run()
    pd.testing.assert_frame_equal(shared_candidates, plain_candidates)
    assert shared_oof.keys() == plain_oof.keys()
    for key in plain_oof:
        np.testing.assert_array_equal(shared_oof[key], plain_oof[key])
    # Per fold: two-model 2, class transformation 1, X-learner 2 (its own) or 0 (the two-model's).
    assert (shared_fits, plain_fits) == (3 * 3, 5 * 3)


class _Recording(TwoModelUplift):
    """A two-model learner that notes the rows it fits on and predicts for."""

    calls: list = []

    def _fit(self, X, treatment, y, shared):  # what fit and cross-validation both call
        _Recording.calls.append(("fit", frozenset(X["row_id"])))
        return super()._fit(X, treatment, y, shared)

    def predict(self, X):
        _Recording.calls.append(("predict", frozenset(X["row_id"])))
        return super().predict(X)


def test_selection_and_calibration_never_touch_the_holdout(monkeypatch):
    X, t, y = _synthetic(1200, seed=5)
    X = X.assign(row_id=np.arange(len(X)))
    _Recording.calls = []
    monkeypatch.setattr(response, "make_learner",
                        lambda name, family, drop_columns=(), seed=0: _Recording(family=family, drop_columns=drop_columns,
                                                                                 random_state=seed))
    config = ResponseConfig(learners=("two_model",), families=("logistic",), cv_folds=3, refit_all_rows=False)
    result = train_response(X, t, y, config=config, seed=1, n_threads=1, drop_columns=("subscriber_id", "row_id"))
    holdout = frozenset(result.holdout_index)
    fits = [rows for kind, rows in _Recording.calls if kind == "fit"]
    predictions = [rows for kind, rows in _Recording.calls if kind == "predict"]
    assert len(fits) == 3 + 1  # three folds, then the fit on the training rows
    assert all(not rows & holdout for rows in fits)
    assert len(predictions) == 3 + 1 and all(not rows & holdout for rows in predictions[:-1])
    assert predictions[-1] == holdout  # the hold-out model scores the hold-out ...
    assert fits[-1] == frozenset(result.train_index)  # ... after a fit on the training rows only


@pytest.mark.slow  # three trainings
def test_train_response_is_reproducible_by_seed():
    X, t, y = _synthetic(1500, seed=6)
    config = ResponseConfig(learners=("x_learner",), families=("hist_gradient_boosting",), cv_folds=3)
    first = train_response(X, t, y, config=config, seed=11, n_threads=1, drop_columns=("subscriber_id",))
    second = train_response(X, t, y, config=config, seed=11, n_threads=1, drop_columns=("subscriber_id",))
    assert first.metrics == second.metrics
    pd.testing.assert_frame_equal(first.candidates.drop(columns="fit_seconds"), second.candidates.drop(columns="fit_seconds"))
    np.testing.assert_array_equal(first.model.predict(X), second.model.predict(X))
    other = train_response(X, t, y, config=config, seed=12, n_threads=1, drop_columns=("subscriber_id",))
    assert not np.array_equal(other.holdout_index, first.holdout_index)


def test_train_response_needs_every_treatment_and_outcome():
    X, t, y = _synthetic(300, seed=1)
    y = np.where(t == 1, 0, y)
    y[np.flatnonzero(t == 1)[:3]] = 1
    with pytest.raises(DataError, match="at least 10 rows of each treatment and outcome; got 3 offered churners"):
        train_response(X, t, y, config=ResponseConfig(), seed=0, n_threads=1)
    with pytest.raises(ConfigError, match="unknown response learner 'causal_forest' in response.learners"):
        train_response(X, t, y, config=ResponseConfig(learners=("causal_forest",)), seed=0, n_threads=1)


@pytest.mark.parametrize("learner, family", [pytest.param("x_learner", "hist_gradient_boosting", marks=pytest.mark.slow),
                                             ("class_transformation", "logistic"), ("two_model", "logistic")])
def test_skops_round_trip_gives_identical_predictions(learner, family):
    import skops.io

    from pipeline.tracking import TRUSTED_TYPES

    X, t, y = _synthetic(1500, seed=8)
    model = ResponseModel(make_learner(learner, family, drop_columns=("subscriber_id",), seed=3), cv=3).fit(X, t, y)
    data = skops.io.dumps(model)
    untrusted = set(skops.io.get_untrusted_types(data=data))
    allowed = set(TRUSTED_TYPES) | set(response.TRUSTED_TYPES)
    assert untrusted <= allowed, untrusted - allowed
    loaded = skops.io.loads(data, trusted=sorted(untrusted))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_raw(X), model.predict_raw(X))
