"""Response (uplift) models: whom a retention call keeps, not who is likely to leave.

Calling the subscribers most likely to leave wastes calls on lost causes and pushes some
out (Ascarza 2018, "Retention futility", JMR 55(1)).  A campaign should call those whose
churn a call reduces most.  With a randomised pilot (``treatment`` 1: offered, 0: control)
the models here estimate, for each subscriber,

    uplift = P(churn | control, x) - P(churn | offer, x)

the churn probability a call removes (negative: the call pushes them out).

Learners (scikit-learn estimators on raw rows, ``fit(X, treatment, y)``, ``predict(X)``):

* :class:`TwoModelUplift` (the T-learner): one churn classifier per group;
* :class:`XLearnerUplift` (Künzel, Sekhon, Bickel and Yu 2019, PNAS 116(10)): outcome models
  per group, imputed individual effects, one effect regressor per group, weighted by the
  share offered;
* :class:`ClassTransformationUplift` (Jaskowski and Jaroszewicz 2012): one classifier of
  ``Z = 1`` when (offered and stayed) or (control and churned), weighted so that it holds for
  unbalanced groups.

Each uses the churn models' preprocessing (``pipeline.model.make_candidate``: ``TableTyper``
first), so a fitted learner takes raw rows like the churn model does.
:func:`train_response` selects a learner and base family by cross-validated Qini
coefficient on rows a hold-out never shares, calibrates the chosen learner's scale by the
best linear predictor of the effect (Chernozhukov, Demirer, Duflo and Fernández-Val 2018),
evaluates it on the hold-out and refits it.  Nothing here reads files or talks to MLflow.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from pipeline.config import ResponseConfig
from pipeline.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)

#: Learners, simplest first (the order the one-standard-error rule prefers), by the modelling
#: steps beyond a plain churn classifier: two of them (one per group); one classifier of a
#: transformed, reweighted label; four models in two stages (outcomes, then imputed effects).
LEARNERS = ("two_model", "class_transformation", "x_learner")

#: Base families, simplest first: linear before boosted trees.
BASE_FAMILIES = ("logistic", "hist_gradient_boosting")

#: The types a fitted response model adds to ``pipeline.tracking.TRUSTED_TYPES`` for skops
#: (this module's estimators: they hold only scikit-learn pipelines, floats and arrays).
#: Everything else they hold is already there (``TableTyper``, the column selector, numpy
#: dtypes, the boosting trees and their ``functools.partial(check_array)``).
TRUSTED_TYPES = (
    "pipeline.response.ClassTransformationUplift",
    "pipeline.response.ResponseModel",
    "pipeline.response.TwoModelUplift",
    "pipeline.response.XLearnerUplift",
)




# --------------------------------------------------------------------------------------
# Base models
# --------------------------------------------------------------------------------------


def _check_family(family: str) -> None:
    if family not in BASE_FAMILIES:
        raise ConfigError(f"unknown base family {family!r} for a response model; expected one of {', '.join(BASE_FAMILIES)}")


def make_classifier(family: str, *, drop_columns: tuple[str, ...] = (), seed: int = 0, params: dict | None = None):
    """An unfitted churn classifier on raw rows: ``pipeline.model.make_candidate``'s pipeline.

    Parameters
    ----------
    family : {"logistic", "hist_gradient_boosting"}
    drop_columns : tuple of str
        Raw columns never used as features (the id).
    seed : int
        Random state of every randomised step.
    params : dict, optional
        Pipeline parameters in ``step__name`` form, e.g. ``{"classifier__C": 0.1}``.
    """
    from pipeline.model import make_candidate

    _check_family(family)
    return make_candidate(family, drop_columns=tuple(drop_columns), seed=seed, **(params or {}))


def make_regressor(family: str, *, drop_columns: tuple[str, ...] = (), seed: int = 0, params: dict | None = None):
    """An unfitted, strongly regularised regressor of small effects on raw rows.

    The classifier's pipeline with its last step replaced: for ``logistic``, the same typing,
    imputation, scaling and one-hot encoding before ridge regression (``alpha`` 1,000: on
    standardised inputs a coefficient is shrunk by about ``n / (n + 1000)``, and individual
    effects are a few points in a noise of plus or minus one); for
    ``hist_gradient_boosting``, the same typing before a boosted regressor of few, small,
    slowly learnt trees (7 leaves of at least 200 rows, learning rate 0.03, L2 10) that stops
    when a 20% validation split stops improving.

    Parameters are those of :func:`make_classifier`, with ``regressor__...`` names in
    ``params``.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    base = make_classifier(family, drop_columns=drop_columns, seed=seed)
    if family == "logistic":
        regressor = Ridge(alpha=1000.0)
    else:
        regressor = HistGradientBoostingRegressor(
            learning_rate=0.03,
            max_iter=300,
            max_leaf_nodes=7,
            min_samples_leaf=200,
            l2_regularization=10.0,
            categorical_features="from_dtype",
            early_stopping=True,
            validation_fraction=0.2,
            n_iter_no_change=20,
            random_state=seed,
        )
    pipeline = Pipeline([*base.steps[:-1], ("regressor", regressor)])
    if params:
        pipeline.set_params(**params)
    return pipeline


# --------------------------------------------------------------------------------------
# Learners
# --------------------------------------------------------------------------------------


def _check_rows(X, treatment, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Checked ``(treatment, y)`` as int8 arrays aligned with the frame ``X``."""
    from pipeline.evaluate import binary_array

    if not isinstance(X, pd.DataFrame):
        raise ModelError(f"response model: X must be a DataFrame of raw input columns, got {type(X).__name__}")
    t = binary_array(treatment, "treatment", "1 = offer, 0 = control")
    if t.size != len(X):
        raise ModelError(f"treatment: has {t.size} rows but X has {len(X)}")
    labels = None
    if y is not None:
        labels = binary_array(y, "y", "1 = churned")
        if labels.size != len(X):
            raise ModelError(f"y: has {labels.size} rows but X has {len(X)}")
    return t, labels


def _check_group(labels: np.ndarray, what: str) -> None:
    """A group's labels must hold churners and stayers for its classifier."""
    if labels.size == 0:
        raise ModelError(f"response model: the {what} group is empty; both offer and control rows are needed")
    churners = int(labels.sum())
    if churners == 0 or churners == labels.size:
        only = "churners" if churners else "stayers"
        raise ModelError(f"response model: the {what} group holds only {only} ({labels.size} rows); both are needed")


class _ResponseLearner(BaseEstimator):
    """What every learner shares: the base family, input checks and the training columns."""

    def __init__(self, family="logistic", params=None, drop_columns=(), random_state=0):
        self.family = family
        self.params = params
        self.drop_columns = drop_columns
        self.random_state = random_state

    def _start_fit(self, X, treatment, y) -> tuple[np.ndarray, np.ndarray]:
        _check_family(self.family)
        t, labels = _check_rows(X, treatment, y)
        _check_group(labels[t == 1], "offer")
        _check_group(labels[t == 0], "control")
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.propensity_ = float(t.mean())
        return t, labels

    def _check_X(self, X) -> pd.DataFrame:
        check_is_fitted(self, "propensity_")
        if not isinstance(X, pd.DataFrame):
            raise ModelError(f"response model: X must be a DataFrame of raw input columns, got {type(X).__name__}")
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            raise ModelError(f"response model: X lacks {len(missing)} training column(s): {shown}")
        return X[list(self.feature_names_in_)]

    def _classifier(self):
        return make_classifier(self.family, drop_columns=self.drop_columns, seed=self.random_state,
                               params=self.params)

    def _fit_classifier(self, X, labels, shared: _SharedFits | None):
        """``_classifier()`` fit on one group's rows, or the same fit made before (``shared``)."""
        if shared is None:
            return self._classifier().fit(X, labels)
        return shared.classifier(self, X, labels)


class _SharedFits:
    """Group classifiers fit during one cross-validation, for the learners that fit the same one.

    The two-model learner and the X-learner's first stage fit the same classifier (family,
    parameters, seed) on the same group of the same fold's rows.  Keyed by the classifier's
    settings, the rows (their labels in the cross-validated frame, whose index must be unique)
    and their outcomes, each such fit is made once: the second learner gets the same fitted
    classifier, so the same scores, for half the fits.
    """

    def __init__(self) -> None:
        self._fitted: dict[tuple, object] = {}

    def classifier(self, learner: _ResponseLearner, X: pd.DataFrame, labels: np.ndarray):
        settings = (learner.family, tuple(sorted((k, repr(v)) for k, v in (learner.params or {}).items())),
                    tuple(learner.drop_columns), learner.random_state)
        rows = (tuple(map(str, X.columns)), X.index.to_numpy().tobytes(), np.asarray(labels, dtype=np.int8).tobytes())
        key = (settings, rows)
        if key not in self._fitted:
            self._fitted[key] = learner._classifier().fit(X, labels)
        return self._fitted[key]


class TwoModelUplift(_ResponseLearner):
    """The two-model (T-) learner: one churn classifier per group; uplift is their difference.

    Parameters
    ----------
    family : {"logistic", "hist_gradient_boosting"}
        Base family of both classifiers (``pipeline.model.make_candidate``'s pipelines).
    params : dict, optional
        Classifier parameters in ``step__name`` form, e.g. ``{"classifier__C": 1e6}``.
    drop_columns : tuple of str
        Raw columns never used as features (the id).
    random_state : int
        Seed of every randomised step.

    Attributes
    ----------
    control_model_, offer_model_ : Pipeline
        The classifiers fit on the control and on the offer group.
    propensity_ : float
        Share of the training rows offered.
    """

    def fit(self, X, treatment, y):
        """Fit one classifier on the control rows and one on the offer rows."""
        return self._fit(X, treatment, y, None)

    def _fit(self, X, treatment, y, shared):
        t, labels = self._start_fit(X, treatment, y)
        self.control_model_ = self._fit_classifier(X[t == 0], labels[t == 0], shared)
        self.offer_model_ = self._fit_classifier(X[t == 1], labels[t == 1], shared)
        return self

    def predict_outcomes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Churn probabilities ``(p_control, p_offer)`` of each row without and with a call."""
        X = self._check_X(X)
        return self.control_model_.predict_proba(X)[:, 1], self.offer_model_.predict_proba(X)[:, 1]

    def predict(self, X) -> np.ndarray:
        """Uplift: ``p_control - p_offer``."""
        p_control, p_offer = self.predict_outcomes(X)
        return p_control - p_offer


class XLearnerUplift(_ResponseLearner):
    """The X-learner (Künzel et al. 2019): outcome models, imputed effects, effect models.

    1. Churn classifiers ``mu_c`` on the control rows and ``mu_o`` on the offer rows.
    2. Imputed effects (in uplift's orientation, control minus offer): for an offered row
       ``mu_c(x) - y``, for a control row ``y - mu_o(x)``.
    3. Regressors ``tau_o`` of the offered rows' and ``tau_c`` of the control rows' imputed
       effects (strongly regularised: :func:`make_regressor`).
    4. ``uplift(x) = e * tau_c(x) + (1 - e) * tau_o(x)`` with ``e`` the share offered, the
       propensity (a constant under complete randomisation): the larger group's effect
       model, whose imputations use the smaller group's outcome model, gets the larger weight
       as Künzel et al. recommend.

    Parameters
    ----------
    family, params, drop_columns, random_state
        As for :class:`TwoModelUplift` (``params`` for the outcome classifiers).
    effect_params : dict, optional
        Effect regressor parameters in ``step__name`` form, e.g. ``{"regressor__alpha": 10}``.

    Attributes
    ----------
    control_model_, offer_model_ : Pipeline
        The outcome classifiers.
    control_effect_model_, offer_effect_model_ : Pipeline
        The effect regressors fit on the control and on the offer rows.
    propensity_ : float
        Share of the training rows offered.
    """

    def __init__(self, family="logistic", params=None, effect_params=None, drop_columns=(), random_state=0):
        self.family = family
        self.params = params
        self.effect_params = effect_params
        self.drop_columns = drop_columns
        self.random_state = random_state

    def _regressor(self):
        return make_regressor(self.family, drop_columns=self.drop_columns, seed=self.random_state,
                              params=self.effect_params)

    def fit(self, X, treatment, y):
        """Fit the outcome models, impute each row's effect, fit the effect models."""
        return self._fit(X, treatment, y, None)

    def _fit(self, X, treatment, y, shared):
        t, labels = self._start_fit(X, treatment, y)
        control, offer = X[t == 0], X[t == 1]
        self.control_model_ = self._fit_classifier(control, labels[t == 0], shared)
        self.offer_model_ = self._fit_classifier(offer, labels[t == 1], shared)
        imputed_offer = self.control_model_.predict_proba(offer)[:, 1] - labels[t == 1]
        imputed_control = labels[t == 0] - self.offer_model_.predict_proba(control)[:, 1]
        self.offer_effect_model_ = self._effect_model(self.offer_model_, offer, imputed_offer)
        self.control_effect_model_ = self._effect_model(self.control_model_, control, imputed_control)
        return self

    def _effect_model(self, classifier, X, imputed):
        """The effect regressor of one group, fit on ``X`` and its imputed effects.

        When the regressor's preprocessing is the group's classifier's (neither ``params`` nor
        ``effect_params`` sets a step before the last), the classifier's, already fit on the
        same rows, is copied and only the regressor itself is fit on its output: the same
        fitted steps as fitting the whole regressor pipeline, without fitting them twice.
        """
        from sklearn.pipeline import Pipeline

        regressor = self._regressor()
        last_step_only = (all(key.startswith("classifier__") for key in self.params or {})
                          and all(key.startswith("regressor__") for key in self.effect_params or {}))
        if not last_step_only:
            return regressor.fit(X, imputed)
        steps = copy.deepcopy(classifier.steps[:-1])
        name, final = regressor.steps[-1]
        final.fit(Pipeline(steps).transform(X), imputed)
        return Pipeline([*steps, (name, final)])

    def predict_outcomes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Churn probabilities ``(p_control, p_offer)`` from the outcome models (step 1)."""
        X = self._check_X(X)
        return self.control_model_.predict_proba(X)[:, 1], self.offer_model_.predict_proba(X)[:, 1]

    def predict(self, X) -> np.ndarray:
        """Uplift: ``e * tau_c(x) + (1 - e) * tau_o(x)``."""
        X = self._check_X(X)
        e = self.propensity_
        return e * self.control_effect_model_.predict(X) + (1.0 - e) * self.offer_effect_model_.predict(X)


class ClassTransformationUplift(_ResponseLearner):
    """One classifier of a transformed label (Jaskowski and Jaroszewicz 2012).

    ``Z = 1`` when a row was offered and stayed or was in the control group and churned.
    With offered rows weighted ``0.5 / e`` and control rows ``0.5 / (1 - e)`` (``e`` the share
    offered), each group weighs half, so ``P_w(Z = 1 | x) = (1 - p_offer(x)) / 2 +
    p_control(x) / 2`` and ``uplift = 2 P_w(Z = 1 | x) - 1`` for any ``e``; the weights sum
    to the number of rows.  There are no per-group outcome probabilities.

    Parameters
    ----------
    family, params, drop_columns, random_state
        As for :class:`TwoModelUplift`.

    Attributes
    ----------
    model_ : Pipeline
        The classifier of ``Z``.
    propensity_ : float
        Share of the training rows offered.
    """

    def fit(self, X, treatment, y):
        """Fit the weighted classifier of ``Z``."""
        return self._fit(X, treatment, y, None)

    def _fit(self, X, treatment, y, shared):
        t, labels = self._start_fit(X, treatment, y)
        z = transformed_label(t, labels)
        weights = np.where(t == 1, 0.5 / self.propensity_, 0.5 / (1.0 - self.propensity_))
        self.model_ = self._classifier().fit(X, z, classifier__sample_weight=weights)
        return self

    def predict(self, X) -> np.ndarray:
        """Uplift: ``2 P(Z = 1 | x) - 1``."""
        X = self._check_X(X)
        return 2.0 * self.model_.predict_proba(X)[:, 1] - 1.0


def transformed_label(treatment, y) -> np.ndarray:
    """``Z``: 1 for (offered and stayed) or (control and churned), else 0.

    Examples
    --------
    >>> transformed_label([1, 1, 0, 0], [0, 1, 0, 1]).tolist()
    [1, 0, 0, 1]
    """
    t, labels = np.asarray(treatment).astype(int), np.asarray(y).astype(int)
    return (t * (1 - labels) + (1 - t) * labels).astype(np.int8)


_LEARNER_CLASSES = {
    "class_transformation": ClassTransformationUplift,
    "two_model": TwoModelUplift,
    "x_learner": XLearnerUplift,
}


def make_learner(learner: str, family: str, *, drop_columns: tuple[str, ...] = (), seed: int = 0):
    """An unfitted learner by name (``LEARNERS``) on a base family (``BASE_FAMILIES``), at its defaults."""
    if learner not in _LEARNER_CLASSES:
        raise ConfigError(f"unknown response learner {learner!r}; expected one of {', '.join(LEARNERS)}")
    _check_family(family)
    return _LEARNER_CLASSES[learner](family=family, drop_columns=tuple(drop_columns), random_state=seed)


# --------------------------------------------------------------------------------------
# Calibration: the best linear predictor of the effect
# --------------------------------------------------------------------------------------


class ResponseModel(BaseEstimator):
    """A response learner and the calibration of its scale: what a campaign uses.

    ``predict(X) = intercept_ + slope_ * (raw(X) - centre_)``, with ``raw`` the learner's
    uplift.  The line is the best linear predictor of the uplift from out-of-fold raw scores
    (:func:`pipeline.evaluate.uplift_calibration`): the intercept is the average effect,
    the slope (clipped to ``[0, max_slope]``) shrinks a noisy score towards it.  When the slope
    is not significantly positive, the score carries no detectable information about who
    responds (``heterogeneity_`` is False) and the model predicts the average effect for
    everyone.

    ``fit`` computes the out-of-fold scores itself; :func:`train_response` reuses selection's
    with :meth:`fit_map` and :meth:`set_fitted`.

    Parameters
    ----------
    learner
        An unfitted response learner; ``fit`` fits clones.
    cv : int
        Folds (stratified by treatment and outcome) of the out-of-fold scores in ``fit``.
    max_slope : float
        Largest slope kept.
    significance : float
        One-sided level of the test that the slope is positive.
    random_state : int
        Seed of the folds.

    Attributes
    ----------
    learner_
        The fitted learner.
    intercept_, slope_, centre_ : float
        The calibration line (``slope_`` after clipping, 0 without detected heterogeneity).
    raw_slope_, slope_se_, slope_p_value_, intercept_se_ : float
        The fitted slope before clipping, its robust standard error and one-sided p-value,
        and the intercept's standard error.
    heterogeneity_ : bool
        Whether the slope was significantly positive.
    propensity_ : float
        Share of the calibration rows offered.
    """

    def __init__(self, learner=None, cv=5, max_slope=1.5, significance=0.01, random_state=0):
        self.learner = learner
        self.cv = cv
        self.max_slope = max_slope
        self.significance = significance
        self.random_state = random_state

    def fit(self, X, treatment, y):
        """Learn the calibration from out-of-fold scores, then fit the learner on every row."""
        t, labels = _check_rows(X, treatment, y)
        folds = response_folds(t, labels, self.cv, self.random_state)
        raw = np.empty(len(X), dtype="float64")
        for train_idx, test_idx in folds:
            fitted = clone(self.learner).fit(X.iloc[train_idx], t[train_idx], labels[train_idx])
            raw[test_idx] = fitted.predict(X.iloc[test_idx])
        self.fit_map(raw, t, labels)
        return self.set_fitted(clone(self.learner).fit(X, t, labels))

    def fit_map(self, raw, treatment, y):
        """Learn the calibration line from out-of-fold raw uplift scores ``raw``."""
        from pipeline.evaluate import uplift_calibration

        blp = uplift_calibration(y, treatment, raw)
        self.centre_ = blp.centre
        self.intercept_ = blp.intercept
        self.intercept_se_ = blp.intercept_se
        self.raw_slope_ = blp.slope
        self.slope_se_ = blp.slope_se
        self.slope_p_value_ = blp.slope_p_value
        self.heterogeneity_ = bool(np.isfinite(blp.slope_p_value) and blp.slope > 0
                                   and blp.slope_p_value < self.significance)
        self.slope_ = float(np.clip(blp.slope, 0.0, self.max_slope)) if self.heterogeneity_ else 0.0
        self.propensity_ = float(np.mean(np.asarray(treatment, dtype=float)))
        return self

    def set_fitted(self, fitted_learner):
        """Use ``fitted_learner`` (already fit) behind the learned line."""
        self.learner_ = fitted_learner
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(fitted_learner, name):
                setattr(self, name, getattr(fitted_learner, name))
        return self

    def predict_raw(self, X) -> np.ndarray:
        """The learner's uncalibrated uplift (keeps its ranking when the model predicts a constant)."""
        check_is_fitted(self, ["learner_", "slope_"])
        return self.learner_.predict(X)

    def line_input(self, X) -> np.ndarray:
        """What the calibration line reads for each row of ``X``: the learner's raw scores.

        Without detected heterogeneity the line is flat (every finite score maps to
        ``intercept_``, with the standard error ``intercept_se_``), so the learner is not run: the
        rows are checked and each gets ``centre_``.  The calibrated uplifts and standard errors
        are the same, and scoring a base costs nothing for the response model.
        """
        check_is_fitted(self, ["learner_", "slope_"])
        if self.heterogeneity_:
            return self.predict_raw(X)
        return np.full(len(self.learner_._check_X(X)), self.centre_, dtype="float64")

    def predict(self, X) -> np.ndarray:
        """Calibrated uplift: the churn probability a call removes, per row."""
        return self.calibrate(self.line_input(X))

    def calibrate(self, raw) -> np.ndarray:
        """Map raw uplift scores to calibrated ones."""
        check_is_fitted(self, "slope_")
        return self.intercept_ + self.slope_ * (np.asarray(raw, dtype="float64") - self.centre_)

    def predict_se(self, X) -> np.ndarray:
        """Standard error of each row's calibrated uplift, from the calibration line's.

        ``sqrt(se(intercept)^2 + (raw - centre)^2 se(slope)^2)`` (the two estimates are
        uncorrelated: the scores are centred); without detected heterogeneity, the average
        effect's standard error for every row.
        """
        return self.uncertainty(self.line_input(X))

    def uncertainty_of(self, uplift) -> np.ndarray:
        """``predict_se`` from calibrated uplifts (the calibration line inverted), e.g. from a served model."""
        check_is_fitted(self, "slope_")
        uplift = np.asarray(uplift, dtype="float64")
        raw = self.centre_ + (uplift - self.intercept_) / self.slope_ if self.slope_ > 0 else np.full(uplift.shape,
                                                                                                        self.centre_)
        return self.uncertainty(raw)

    def uncertainty(self, raw) -> np.ndarray:
        """``predict_se`` from raw scores."""
        check_is_fitted(self, "slope_")
        raw = np.asarray(raw, dtype="float64")
        slope_se = self.slope_se_ if self.heterogeneity_ and np.isfinite(self.slope_se_) else 0.0
        return np.sqrt(self.intercept_se_ ** 2 + (raw - self.centre_) ** 2 * slope_se ** 2)


# --------------------------------------------------------------------------------------
# Selection and training
# --------------------------------------------------------------------------------------


def response_folds(treatment, y, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded folds stratified by treatment and outcome (four strata)."""
    from sklearn.model_selection import StratifiedKFold

    strata = 2 * np.asarray(treatment).astype(int) + np.asarray(y).astype(int)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros((strata.size, 1)), strata))


@dataclass
class ResponseResult:
    """What :func:`train_response` produced: the model, how it was chosen, how it did."""

    #: The model to use: refit on every row when ``refit_all_rows``.
    model: ResponseModel
    #: The model the hold-out metrics belong to: fit on the training rows only.
    holdout_model: ResponseModel
    learner: str
    family: str
    #: One row per candidate, best cross-validated Qini coefficient first.
    candidates: pd.DataFrame
    #: Positions (in the input rows) of the training part and of the hold-out.
    train_index: np.ndarray
    holdout_index: np.ndarray
    #: Calibrated and raw uplift predicted for the hold-out rows.
    holdout_uplift: np.ndarray
    holdout_raw_uplift: np.ndarray
    #: Hold-out and calibration metrics (floats, MLflow-safe names).
    metrics: dict[str, float]
    #: Observed against predicted uplift per bin of the hold-out.
    deciles: pd.DataFrame
    #: Curves for plots: ``qini`` (model), ``qini_raw``, ``qini_risk`` (with ``risk``).
    plot_data: dict[str, pd.DataFrame]
    #: Out-of-fold raw uplift of the chosen candidate on the training rows (calibration's input).
    oof_uplift: np.ndarray
    #: The churn model's probabilities for the hold-out rows (``risk``), when given.
    holdout_risk: np.ndarray | None
    #: The raw input columns the model takes (``X``'s columns).
    input_columns: list[str]
    train_rows: int
    fit_rows: int
    seed: int
    threads: int
    config: ResponseConfig
    timings: dict[str, float] = field(default_factory=dict)


def _candidate_order(config: ResponseConfig) -> list[tuple[str, str]]:
    """The candidates, simplest first: logistic before boosting, then in ``LEARNERS``' order."""
    for name in config.learners:
        if name not in LEARNERS:
            raise ConfigError(f"unknown response learner {name!r} in response.learners; expected one of {', '.join(LEARNERS)}")
    for name in config.families:
        _check_family(name)
    if not config.learners or not config.families:
        raise ConfigError("response.learners and response.families must each name at least one")
    return [(learner, family) for family in BASE_FAMILIES if family in config.families
            for learner in LEARNERS if learner in config.learners]


def _select(candidates: pd.DataFrame) -> str:
    """The simplest candidate whose mean Qini coefficient is within one standard error of the best."""
    best = candidates.loc[candidates["qini"].idxmax()]
    se = best["qini_se"] if np.isfinite(best["qini_se"]) else 0.0
    close = candidates[candidates["qini"] >= best["qini"] - se]
    return str(close.sort_values("simplicity", kind="stable")["candidate"].iloc[0])


def train_response(
    X: pd.DataFrame,
    treatment,
    y,
    *,
    config: ResponseConfig,
    seed: int,
    n_threads: int,
    risk=None,
    progress: Callable[[str], None] | None = None,
    drop_columns: tuple[str, ...] = (),
) -> ResponseResult:
    """Select, calibrate and fit a response model on a randomised pilot; evaluate it on a hold-out.

    1. A hold-out of ``holdout_fraction`` of the rows, stratified by treatment and outcome,
       is set aside; selection and calibration never see it.
    2. Every learner x base family of ``config`` is cross-validated on the rest (folds
       stratified by treatment and outcome, seeded): the Qini coefficient on each fold.  The
       simplest candidate within one standard error of the best mean is kept; simpler is
       logistic before boosting, then two-model, class transformation, X-learner.
    3. Its out-of-fold raw scores give the calibration line (:class:`ResponseModel`; the slope
       must be positive at ``significance`` divided by the number of candidates); it is
       fit on the training rows and evaluated on the hold-out; then (``refit_all_rows``) fit
       again on every row, with the same line.

    Parameters
    ----------
    X : pandas.DataFrame
        Raw rows (the churn model's input columns).
    treatment, y : array-like
        1 offered / 0 control; 1 churned / 0 stayed.  Aligned with ``X`` by position.
    config : ResponseConfig
    seed : int
        Seed of the hold-out, the folds and every model.
    n_threads : int
        Threads every OpenMP and BLAS pool may use (``threadpoolctl``).
    risk : array-like, optional
        The churn model's probabilities for the same rows: the hold-out then also reports
        how calling the riskiest first would have done.
    progress : callable, optional
        Called with a short message as each step starts.
    drop_columns : tuple of str
        Raw columns never used as features (the id column).
    """
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so the limit below applies to it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        return _train_response(X, treatment, y, config, seed, n_threads, risk,
                               progress or (lambda message: log.info(message)), tuple(drop_columns))


def _train_response(X, treatment, y, config, seed, threads, risk, say, drop_columns) -> ResponseResult:
    """``train_response``'s stages, within its thread limit: split off the hold-out,
    cross-validate the candidates and keep one, calibrate it and fit it on the training
    part, evaluate it on the hold-out, and refit it on every row.  Fits of a family that runs
    faster on one thread (``pipeline.model.fit_threads``) use one."""
    from pipeline.model import fit_threads

    order = _candidate_order(config)
    t_all, y_all, risk_all = _checked_pilot(X, treatment, y, risk, config)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    train_idx, holdout_idx = _pilot_split(t_all, y_all, config, seed)
    X_train = X.iloc[train_idx].reset_index(drop=True)
    t_train, y_train = t_all[train_idx], y_all[train_idx]

    candidates, oof_by_key, learners = _cross_validate(order, X_train, t_train, y_train, config=config, seed=seed,
                                                       threads=threads, drop_columns=drop_columns, say=say)
    timings["selection_seconds"] = time.perf_counter() - started
    chosen_key = _mark_chosen(candidates, say)
    chosen = learners[chosen_key]
    oof = oof_by_key[chosen_key]
    learner_name, family = chosen_key.split("/")

    # Calibration on the out-of-fold scores of the training rows, then the fit without the hold-out.
    t0 = time.perf_counter()
    significance = config.significance / len(order)
    calibrated = _calibration_line(chosen, chosen_key, oof, t_train, y_train, significance=significance,
                                   config=config, seed=seed, say=say)
    say(f"fit of {chosen_key} on {len(train_idx):,} rows")
    with fit_threads(family, threads, rows=len(X_train)):
        holdout_model = calibrated.set_fitted(clone(chosen).fit(X_train, t_train, y_train))
    timings["final_fit_seconds"] = time.perf_counter() - t0

    holdout = _evaluate_holdout(holdout_model, X, t_all, y_all, risk_all, holdout_idx, config)
    metrics = holdout.metrics
    metrics.update(_selection_metrics(candidates.set_index("candidate").loc[chosen_key], calibrated, significance,
                                      t_train, train_rows=len(train_idx), holdout_rows=len(holdout_idx)))

    model = holdout_model
    if config.refit_all_rows:
        say(f"refit of {chosen_key} on all {len(X):,} rows")
        t0 = time.perf_counter()
        with fit_threads(family, threads, rows=len(X)):
            refit = clone(chosen).fit(X, t_all, y_all)
        model = clone(calibrated).fit_map(oof, t_train, y_train).set_fitted(refit)
        timings["refit_seconds"] = time.perf_counter() - t0
    timings["total_seconds"] = time.perf_counter() - started
    return ResponseResult(
        model=model,
        holdout_model=holdout_model,
        learner=learner_name,
        family=family,
        candidates=candidates,
        train_index=train_idx,
        holdout_index=holdout_idx,
        holdout_uplift=holdout.uplift,
        holdout_raw_uplift=holdout.raw,
        metrics=metrics,
        deciles=holdout.deciles,
        plot_data=holdout.plot_data,
        oof_uplift=oof,
        holdout_risk=holdout.risk,
        input_columns=[str(c) for c in X.columns],
        train_rows=len(train_idx),
        fit_rows=len(X) if config.refit_all_rows else len(train_idx),
        seed=seed,
        threads=threads,
        config=config,
        timings=timings,
    )


def _checked_pilot(X, treatment, y, risk, config: ResponseConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The pilot's treatment and outcome as checked arrays, and ``risk`` as floats (or None).

    Each treatment and outcome (four strata) needs two rows per fold.  Raises ``ModelError``
    when ``risk`` does not hold one probability per row, ``DataError`` when a stratum is too small.
    """
    t_all, y_all = _check_rows(X, treatment, y)
    risk_all = None
    if risk is not None:
        risk_all = np.asarray(risk, dtype="float64")
        if risk_all.shape != (len(X),):
            raise ModelError(f"risk: expected {len(X)} churn probabilities, got shape {risk_all.shape}")
    counts = np.bincount(2 * t_all + y_all, minlength=4)
    needed = 2 * config.cv_folds
    if counts.min() < needed:
        raise DataError(
            f"response training needs at least {needed} rows of each treatment and outcome; got "
            f"{counts[3]} offered churners, {counts[2]} offered stayers, {counts[1]} control churners, "
            f"{counts[0]} control stayers"
        )
    return t_all, y_all, risk_all


def _pilot_split(t_all: np.ndarray, y_all: np.ndarray, config: ResponseConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of the training part and of a hold-out stratified by treatment and outcome (seeded)."""
    from sklearn.model_selection import train_test_split

    train_idx, holdout_idx = train_test_split(np.arange(len(t_all)), test_size=config.holdout_fraction,
                                              stratify=2 * t_all + y_all, random_state=seed)
    train_idx.sort()
    holdout_idx.sort()
    return train_idx, holdout_idx


def _cross_validate(
    order: list[tuple[str, str]], X_train: pd.DataFrame, t_train: np.ndarray, y_train: np.ndarray, *,
    config: ResponseConfig, seed: int, threads: int, drop_columns: tuple[str, ...], say: Callable[[str], None],
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, BaseEstimator]]:
    """Every candidate of ``order`` cross-validated on the training rows, on the same seeded folds.

    Returns the candidates table (best mean Qini coefficient first; ``simplicity`` is the
    position in ``order``), and each candidate's out-of-fold raw uplift and unfitted learner
    by key (``learner/family``).
    """
    from pipeline import evaluate
    from pipeline.model import fit_threads

    folds = response_folds(t_train, y_train, config.cv_folds, seed)
    shared = _SharedFits() if X_train.index.is_unique else None
    rows, oof_by_key, learners = [], {}, {}
    for number, (learner_name, family) in enumerate(order, start=1):
        key = f"{learner_name}/{family}"
        say(f"candidate {number}/{len(order)}: {key}")
        t0 = time.perf_counter()
        learner = make_learner(learner_name, family, drop_columns=drop_columns, seed=seed)
        with fit_threads(family, threads, rows=len(X_train)):
            oof, fold_qini = _out_of_fold_uplift(learner, key, X_train, t_train, y_train, folds, shared)
        oof_by_key[key], learners[key] = oof, learner
        rows.append({
            "candidate": key,
            "learner": learner_name,
            "family": family,
            "qini": float(fold_qini.mean()),
            "qini_se": float(fold_qini.std(ddof=1) / np.sqrt(fold_qini.size)) if fold_qini.size > 1 else float("nan"),
            "qini_oof": evaluate.qini_coefficient(y_train, t_train, oof),
            "auuc_oof": evaluate.auuc(y_train, t_train, oof),
            "simplicity": number - 1,
            "fit_seconds": (time.perf_counter() - t0) / len(folds),
        })
    candidates = pd.DataFrame(rows).sort_values("qini", ascending=False, kind="stable").reset_index(drop=True)
    return candidates, oof_by_key, learners


def _out_of_fold_uplift(learner, key: str, X_train: pd.DataFrame, t_train: np.ndarray, y_train: np.ndarray,
                        folds: list[tuple[np.ndarray, np.ndarray]],
                        shared: _SharedFits | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A candidate's out-of-fold raw uplift on the training rows, and its Qini coefficient on
    each fold.  Group classifiers already fit on a fold's rows by another learner are taken
    from ``shared``.  A fit that fails is a ``ModelError`` naming the candidate ``key``."""
    from pipeline import evaluate

    oof = np.empty(len(y_train), dtype="float64")
    fold_qini = []
    for fold_train, fold_test in folds:
        try:
            fitted = clone(learner)._fit(X_train.iloc[fold_train], t_train[fold_train], y_train[fold_train], shared)
        except (ValueError, TypeError) as err:
            raise ModelError(f"{key} could not be fit: {str(err).splitlines()[0]}") from err
        oof[fold_test] = fitted.predict(X_train.iloc[fold_test])
        fold_qini.append(evaluate.qini_coefficient(y_train[fold_test], t_train[fold_test], oof[fold_test]))
    return oof, np.asarray(fold_qini)


def _mark_chosen(candidates: pd.DataFrame, say: Callable[[str], None]) -> str:
    """The candidate to keep (``_select``), marked in the table's ``chosen`` column; says so
    when it is kept over a better one (within one standard error of it)."""
    chosen_key = _select(candidates)
    candidates["chosen"] = candidates["candidate"] == chosen_key
    best_key = str(candidates["candidate"].iloc[0])
    if chosen_key != best_key:
        say(f"{chosen_key} is within one standard error of {best_key}: keeping the simpler one")
    return chosen_key


def _calibration_line(chosen, chosen_key: str, oof: np.ndarray, t_train: np.ndarray, y_train: np.ndarray, *,
                      significance: float, config: ResponseConfig, seed: int,
                      say: Callable[[str], None]) -> ResponseModel:
    """The chosen learner behind its calibration line, learned on its out-of-fold raw uplift
    of the training rows (the learner itself not fitted yet)."""
    calibrated = ResponseModel(chosen, cv=config.cv_folds, max_slope=config.max_slope,
                               significance=significance, random_state=seed)
    calibrated.fit_map(oof, t_train, y_train)
    say(f"calibration of {chosen_key}: slope {calibrated.raw_slope_:.3f} (se {calibrated.slope_se_:.3f}), "
        + ("heterogeneity detected" if calibrated.heterogeneity_ else "no heterogeneity detected: the average effect for all"))
    return calibrated


@dataclass
class _HoldoutEvaluation:
    """The hold-out's raw and calibrated uplift, the churn model's risk for it (when given),
    its uplift metrics, observed against predicted uplift per bin, and the curves for plots."""

    raw: np.ndarray
    uplift: np.ndarray
    risk: np.ndarray | None
    metrics: dict[str, float]
    deciles: pd.DataFrame
    plot_data: dict[str, pd.DataFrame]


def _evaluate_holdout(holdout_model: ResponseModel, X: pd.DataFrame, t_all: np.ndarray, y_all: np.ndarray,
                      risk_all: np.ndarray | None, holdout_idx: np.ndarray,
                      config: ResponseConfig) -> _HoldoutEvaluation:
    """How the model fit on the training rows does on the hold-out: calibrated and raw, and
    against calling the riskiest first when the churn model's ``risk`` is given."""
    from pipeline import evaluate

    X_holdout = X.iloc[holdout_idx].reset_index(drop=True)
    t_holdout, y_holdout = t_all[holdout_idx], y_all[holdout_idx]
    raw_holdout = holdout_model.predict_raw(X_holdout)
    uplift_holdout = holdout_model.calibrate(raw_holdout)
    risk_holdout = None if risk_all is None else risk_all[holdout_idx]
    metrics = evaluate.uplift_metrics(y_holdout, t_holdout, uplift_holdout, risk=risk_holdout, n_bins=config.n_bins)
    metrics["qini_coefficient_raw"] = evaluate.qini_coefficient(y_holdout, t_holdout, raw_holdout)
    metrics["auuc_raw"] = evaluate.auuc(y_holdout, t_holdout, raw_holdout)
    # Does the raw score's link to the effect replicate on rows selection never saw?
    replication = evaluate.uplift_calibration(y_holdout, t_holdout, raw_holdout)
    metrics["holdout_raw_slope"] = replication.slope
    metrics["holdout_raw_slope_p_value"] = replication.slope_p_value
    deciles = evaluate.uplift_by_decile(y_holdout, t_holdout, uplift_holdout, n_bins=config.n_bins)
    plot_data = {"qini": evaluate.qini_curve(y_holdout, t_holdout, uplift_holdout),
                 "qini_raw": evaluate.qini_curve(y_holdout, t_holdout, raw_holdout),
                 "deciles": deciles}
    if risk_holdout is not None:
        plot_data["qini_risk"] = evaluate.qini_curve(y_holdout, t_holdout, risk_holdout)
    return _HoldoutEvaluation(raw=raw_holdout, uplift=uplift_holdout, risk=risk_holdout, metrics=metrics,
                              deciles=deciles, plot_data=plot_data)


def _selection_metrics(chosen_row: pd.Series, calibrated: ResponseModel, significance: float, t_train: np.ndarray, *,
                       train_rows: int, holdout_rows: int) -> dict[str, float]:
    """The metrics of how the model was chosen and calibrated: its cross-validated Qini
    coefficient, its calibration line (best linear predictor), the share offered, the rows."""
    return {
        "cv_qini": float(chosen_row["qini"]),
        "cv_qini_se": float(chosen_row["qini_se"]),
        "blp_intercept": float(calibrated.intercept_),
        "blp_raw_slope": float(calibrated.raw_slope_),
        "blp_slope": float(calibrated.slope_),
        "blp_slope_se": float(calibrated.slope_se_),
        "blp_slope_p_value": float(calibrated.slope_p_value_),
        "blp_significance": float(significance),
        "heterogeneity": float(calibrated.heterogeneity_),
        "propensity": float(t_train.mean()),
        "train_rows": float(train_rows),
        "holdout_rows": float(holdout_rows),
    }
