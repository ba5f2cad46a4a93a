"""Candidate model pipelines: raw subscriber rows in, churn probability out.

Every candidate is one scikit-learn ``Pipeline`` whose first step is the learned
``TableTyper``, so the fitted object takes the raw columns and training and scoring share
one code path.  ``search_space`` gives each family's hyperparameters for random search;
they are ordinary estimator parameters, so ``get_params()`` is what the run logs.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier

#: Model families selection can try, in the order they are reported.
FAMILIES = ("logistic", "hist_gradient_boosting", "catboost")

#: Families tried at their defaults only: random search does not pay for their fit time.
DEFAULTS_ONLY = ("catboost",)

#: CatBoost fits of this many rows or more stop early with at most 300 trees (``make_candidate``):
#: their early-stopping split (10%) holds at least 1,000 rows.  Smaller fits keep CatBoost's
#: defaults, where every row counts.  On 20,000-subscriber generated bases (fits of 11,500 to
#: 18,000 rows) stopping early took about 5 times less CPU than 1,000 trees at the same accuracy
#: (``docs/BENCHMARKS.md``, Training speed, item 18).
CATBOOST_LARGE_FIT_ROWS = 10_000

#: CatBoost fits with at least this many categorical columns encode each on its own when
#: ``CatBoostModel.max_ctr_complexity`` is set (one column has no other to be combined with).
CTR_COMBINED_MIN_COLUMNS = 2

#: CatBoost's text for a missing category (it takes no missing values in categorical columns).
MISSING_CATEGORY = "__missing__"



_PREDICT_LIMIT = threading.local()
_FIT_LIMIT = threading.local()
_FIT_DEADLINE = threading.local()


class OutOfTime(Exception):
    """A fit stopped at the deadline ``fit_deadline`` set: it has no usable model."""


@contextmanager
def fit_deadline(deadline: float | None):
    """Stop CatBoost fits made on this thread once ``time.perf_counter()`` passes ``deadline``.

    The fit then raises ``OutOfTime`` (a booster cut short is never kept).  CatBoost is the
    family whose one fit can take a large share of a time budget; scikit-learn's fits cannot be
    stopped from outside and are checked between folds instead (``pipeline.train``).
    ``None`` sets no deadline.
    """
    before = getattr(_FIT_DEADLINE, "at", None)
    _FIT_DEADLINE.at = deadline
    try:
        yield
    finally:
        _FIT_DEADLINE.at = before


class _Deadline:
    """CatBoost callback: stop adding trees once the deadline has passed (and remember it)."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.passed = False

    def after_iteration(self, info) -> bool:
        self.passed = time.perf_counter() > self.deadline
        return not self.passed


#: Families fit on one thread whatever ``n_threads``.  A linear model's solver iterates over
#: a few small matrix products, and waking a second thread for each costs more than it
#: saves: lbfgs logistic regression on 8,000 rows x 91 columns took 8 times less wall and CPU
#: time on one thread than on two (2 cores), and on 200,000 rows still less of both.
SINGLE_THREADED_FAMILIES = frozenset({"logistic"})

#: HistGradientBoosting fits on fewer rows than this run on one (OpenMP) thread.  Its trees
#: grow node by node, each node a few short parallel loops, and on a small fit waking the
#: second thread for each loop costs more than it saves: on 26,700 rows of a generated base
#: (58 columns; a selection fold of a large base) two fits took 2.9-3.3 CPU-s and 2.4-2.8 s on
#: two threads against 1.9-2.6 CPU-s and 1.9-2.6 s on one, the same trees.  From about
#: 90,000 rows two threads pay in time (3.8 s against 4.5-4.9; 8-17% more CPU), and on
#: 300,000 rows they save about 30% of it.  (``/tmp`` scripts, 2 cores, otherwise idle.)
HGB_PARALLEL_MIN_ROWS = 50_000


def fit_threads(family: str, threads: int, rows: int | None = None):
    """The thread pools (BLAS and OpenMP, ``threadpoolctl``) limited for fitting a ``family``
    model on ``rows`` rows (when known), as a context: ``with fit_threads(family, threads,
    rows): ...`` (the limit applies at the call).  One thread for ``SINGLE_THREADED_FAMILIES``
    and for HistGradientBoosting under ``HGB_PARALLEL_MIN_ROWS`` rows."""
    from threadpoolctl import threadpool_limits

    small = family == "hist_gradient_boosting" and rows is not None and rows < HGB_PARALLEL_MIN_ROWS
    return threadpool_limits(limits=1 if family in SINGLE_THREADED_FAMILIES or small else int(threads))


def small_fit_openmp(rows: int):
    """One OpenMP thread for a fit of fewer than ``HGB_PARALLEL_MIN_ROWS`` rows (a context), for
    any model: OpenMP is HistGradientBoosting's pool, alone or in a blend (CatBoost keeps its
    own, BLAS is left as it is); no limit from there on."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp") if rows < HGB_PARALLEL_MIN_ROWS else nullcontext()


@contextmanager
def _thread_cap(local: threading.local, limit: int):
    before = getattr(local, "threads", None)
    local.threads = int(limit)
    try:
        yield
    finally:
        local.threads = before


def catboost_fit_threads(limit: int):
    """Cap the threads of CatBoost fits made on this thread, without changing the model's
    ``thread_count`` (its predictions keep it).  Training fits two small CatBoost models at a
    time on one thread each (``pipeline.train``)."""
    return _thread_cap(_FIT_LIMIT, limit)


def predict_threads(limit: int):
    """Cap the threads of CatBoost predictions made on this thread (``threadpoolctl`` covers OpenMP and BLAS)."""
    return _thread_cap(_PREDICT_LIMIT, limit)


class HistGradientBoosting(HistGradientBoostingClassifier):
    """scikit-learn's ``HistGradientBoostingClassifier``, predicting from a column-major matrix.

    Fitting is scikit-learn's own, unchanged.  To predict, the typed frame is coded into the
    float64 matrix the trees read (``pipeline._sklearn_internals.hgb_matrix``: categories
    through the fitted encoder's levels, column by column) in column-major order, where each
    tree's splits read contiguous columns: the same probabilities, about twice as fast as
    scikit-learn's row-major matrix coded by its ``ColumnTransformer``.  Models saved with
    plain ``HistGradientBoostingClassifier`` still load and predict as before.
    """

    def _preprocess_X(self, X, *, reset):
        if reset:
            return super()._preprocess_X(X, reset=True)
        from pipeline._sklearn_internals import hgb_matrix

        return hgb_matrix(self, X)


class CatBoostModel(ClassifierMixin, BaseEstimator):
    """CatBoost's gradient boosting on oblivious trees, with the typed frame's categories declared.

    CatBoost encodes categories with ordered target statistics, which pays on tables with
    many-level categories (region, handset model).  The fitted booster is kept as CatBoost's
    own binary model (``model_blob_``: bytes, not a pickle), so the skops file holds no
    arbitrary objects; the booster is rebuilt from it on first use after loading.

    Parameters
    ----------
    iterations, learning_rate, depth, l2_leaf_reg
        CatBoost's parameters; ``None`` keeps CatBoost's default (1,000 trees, learning rate
        chosen from the data size, depth 6, L2 3).  ``iterations`` is the bound when early
        stopping is on.
    random_seed : int
        Seed of CatBoost's random steps (and of the early-stopping split).
    thread_count : int
        Threads used to fit and predict.
    early_stopping_rounds : int or None
        Stop adding trees when the log-loss on a held-out ``validation_fraction`` of the
        training rows (stratified, seeded) has not improved for this many rounds, and keep
        the best number of trees; ``None`` fits every tree on every row.  As
        HistGradientBoosting's own early stopping, the trees are then fit on the other rows.
        It is skipped when the held-out part would have fewer than 10 rows of a class, and
        on fits of fewer than ``early_stopping_min_rows`` rows, where every row counts (on
        the 3,328-row BigML table, holding out 10% cost 0.004 PR AUC).
    validation_fraction : float
        The share of rows held out for early stopping.
    early_stopping_min_rows : int
        Fits with fewer rows use every tree (``iterations``) on every row; fits with at least
        this many stop early, with at most ``large_fit_iterations`` trees.
    large_fit_iterations : int or None
        The bound on trees of a fit that stops early (``None``: ``iterations``).
    max_ctr_complexity : int or None
        CatBoost's ``max_ctr_complexity`` on a fit that stops early and on a fit with at least
        ``CTR_COMBINED_MIN_COLUMNS`` (2) categorical columns (``None``: CatBoost's default,
        combinations of up to 4 categorical columns and the tree's splits).  1 encodes each
        category on its own.  Combinations of categorical columns are most of a fit's cost
        on a table of many of them: with IBM Telco's 11, the whole ``churn train`` cost about 40%
        less CPU without them, at the same accuracy.  A table with one categorical column has
        none to combine it with, and combining it with the tree's splits costs little: it
        keeps CatBoost's default (``docs/BENCHMARKS.md``, Training speed, item 12).

    Attributes
    ----------
    tree_count_ : int
        Trees in the fitted model (fewer than ``iterations`` when early stopping stopped).
    """

    #: Class-level defaults, so models saved before these parameters existed still load and print.
    early_stopping_rounds = None
    validation_fraction = 0.1
    early_stopping_min_rows = 0
    large_fit_iterations = None
    max_ctr_complexity = None

    def __init__(self, iterations=None, learning_rate=None, depth=None, l2_leaf_reg=None,
                 random_seed=0, thread_count=1, early_stopping_rounds=None, validation_fraction=0.1,
                 early_stopping_min_rows=0, large_fit_iterations=None, max_ctr_complexity=None):
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.depth = depth
        self.l2_leaf_reg = l2_leaf_reg
        self.random_seed = random_seed
        self.thread_count = thread_count
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.early_stopping_min_rows = early_stopping_min_rows
        self.large_fit_iterations = large_fit_iterations
        self.max_ctr_complexity = max_ctr_complexity

    def _as_catboost(self, X):
        categorical = [c for c in self.categorical_columns_ if c in X.columns]
        text = {c: X[c].astype(object).where(X[c].notna(), MISSING_CATEGORY).astype(str) for c in categorical}
        return X.assign(**text) if text else X

    def fit(self, X, y):
        from catboost import CatBoostClassifier

        from pipeline.prepare import categorical_columns

        self.categorical_columns_ = list(categorical_columns(X))
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.unique(np.asarray(y))
        # Where "high" and "low" start for each numeric column, for the reasons' phrasing.
        numeric = [c for c in X.columns if c not in self.categorical_columns_]
        self.numeric_centre_ = np.asarray(
            [float(np.nanmedian(X[c].to_numpy(dtype="float64", na_value=np.nan))) if X[c].notna().any() else 0.0
             for c in numeric], dtype="float64")
        self.numeric_columns_ = [str(c) for c in numeric]
        chosen = {name: value for name, value in (("iterations", self.iterations), ("learning_rate", self.learning_rate),
                                                  ("depth", self.depth), ("l2_leaf_reg", self.l2_leaf_reg))
                  if value is not None}
        frame, target = self._as_catboost(X), np.asarray(y)
        held = self._early_stopping_split(target)
        if held is not None and self.large_fit_iterations is not None:
            chosen["iterations"] = self.large_fit_iterations
        combinable = len(self.categorical_columns_) >= CTR_COMBINED_MIN_COLUMNS
        if self.max_ctr_complexity is not None and (held is not None or combinable):
            chosen["max_ctr_complexity"] = self.max_ctr_complexity
        booster = CatBoostClassifier(random_seed=self.random_seed, thread_count=self._fit_threads(), verbose=0,
                                     allow_writing_files=False, cat_features=self.categorical_columns_, **chosen)
        deadline = getattr(_FIT_DEADLINE, "at", None)
        watch = _Deadline(deadline) if deadline is not None else None
        callbacks = [watch] if watch is not None else None
        if held is None:
            booster.fit(frame, target, callbacks=callbacks)
        else:
            fit_rows, eval_rows = held
            booster.fit(frame.iloc[fit_rows], target[fit_rows], eval_set=(frame.iloc[eval_rows], target[eval_rows]),
                        early_stopping_rounds=int(self.early_stopping_rounds), use_best_model=True,
                        callbacks=callbacks)
        if watch is not None and watch.passed:
            raise OutOfTime(f"CatBoost stopped at the deadline after {booster.tree_count_} trees")
        self.tree_count_ = int(booster.tree_count_)
        self.model_blob_ = bytes(booster._serialize_model())
        self._booster = booster
        return self

    def _early_stopping_split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(fit rows, held-out rows)`` for early stopping, or None when it is off or too few rows."""
        if not self.early_stopping_rounds or len(y) < self.early_stopping_min_rows:
            return None
        counts = np.bincount(y.astype(int), minlength=2)
        if (counts * self.validation_fraction).min() < 10:
            return None
        from sklearn.model_selection import train_test_split

        fit_rows, eval_rows = train_test_split(np.arange(len(y)), test_size=self.validation_fraction, stratify=y,
                                               random_state=self.random_seed)
        return np.sort(fit_rows), np.sort(eval_rows)

    def booster(self):
        """The fitted ``catboost.CatBoostClassifier`` (rebuilt from ``model_blob_`` once after loading)."""
        booster = getattr(self, "_booster", None)
        if booster is None:
            from catboost import CatBoostClassifier

            booster = CatBoostClassifier(thread_count=self.thread_count)
            booster.load_model(blob=self.model_blob_)
            self._booster = booster
        return booster

    def catboost_frame(self, X):
        """``X`` as CatBoost takes it: categorical columns as text, missing as ``MISSING_CATEGORY``."""
        return self._as_catboost(X)

    def _capped_threads(self, local: threading.local) -> int:
        limit = getattr(local, "threads", None)
        return self.thread_count if limit is None else max(1, min(self.thread_count, limit))

    def _fit_threads(self) -> int:
        return self._capped_threads(_FIT_LIMIT)

    def _threads(self) -> int:
        return self._capped_threads(_PREDICT_LIMIT)

    def predict_proba(self, X):
        return self.booster().predict_proba(self._as_catboost(X), thread_count=self._threads())

    def decision_function(self, X):
        """Log-odds of churn (CatBoost's raw formula value)."""
        return self.booster().predict(self._as_catboost(X), prediction_type="RawFormulaVal",
                                      thread_count=self._threads())

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_booster", None)  # rebuilt from model_blob_; only bytes are persisted
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        return tags


def make_candidate(family: str, *, drop_columns: tuple[str, ...] = (), seed: int = 0, n_threads: int = 1,
                   **params: Any):
    """Build an unfitted pipeline of the given family.

    Parameters
    ----------
    family : str
        ``"logistic"`` (regularised logistic regression on one-hot, scaled inputs) or
        ``"hist_gradient_boosting"`` (histogram gradient boosting with native categories) or
        ``"catboost"`` (CatBoost with declared categories; needs the ``catboost`` package).
    drop_columns : tuple of str
        Raw columns never used as features (id, label, value).
    seed : int
        Random state of every randomised step.
    n_threads : int
        Threads for CatBoost, which keeps its own pool (scikit-learn's OpenMP pools are
        limited by the caller with ``threadpoolctl``).
    **params
        Pipeline parameters in ``step__name`` form, e.g. ``classifier__C=0.5``.
    """
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from pipeline.errors import ConfigError
    from pipeline.prepare import TableTyper

    typer = TableTyper(drop_columns=tuple(drop_columns)).set_output(transform="pandas")
    if family == "logistic":
        numeric = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        encode = ColumnTransformer(
            [
                ("numeric", numeric, make_column_selector(dtype_exclude="category")),
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    make_column_selector(dtype_include="category"),
                ),
            ],
            verbose_feature_names_out=True,
        )
        classifier = LogisticRegression(C=1.0, class_weight=None, max_iter=5000, random_state=seed)
        steps = [("typer", typer), ("encode", encode), ("classifier", classifier)]
    elif family == "hist_gradient_boosting":
        classifier = HistGradientBoosting(
            categorical_features="from_dtype",
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            max_iter=500,
            random_state=seed,
        )
        steps = [("typer", typer), ("classifier", classifier)]
    elif family == "catboost":
        # CatBoost's 1,000 trees on every row on small tables, where every row and tree counts;
        # from CATBOOST_LARGE_FIT_ROWS (10,000) fit rows on, at most 300 trees (CatBoost then
        # picks a larger learning rate), stopped 30 rounds after the held-out log-loss last
        # improved.  Categories are encoded one at a time (no combinations) on large fits and
        # wherever two or more categorical columns could be combined.
        catboost = CatBoostModel(random_seed=seed, thread_count=n_threads, early_stopping_rounds=30,
                                 early_stopping_min_rows=CATBOOST_LARGE_FIT_ROWS, large_fit_iterations=300,
                                 max_ctr_complexity=1)
        steps = [("typer", typer), ("classifier", catboost)]
    else:
        raise ConfigError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    pipeline = Pipeline(steps)
    if params:
        pipeline.set_params(**params)
    return pipeline


def search_space(family: str) -> dict[str, Any]:
    """Random-search distributions for a family, as ``step__param -> distribution or list``."""
    from scipy.stats import loguniform

    if family == "logistic":
        return {
            "classifier__C": loguniform(1e-3, 10.0),
            "classifier__class_weight": [None, "balanced"],
        }
    if family == "hist_gradient_boosting":
        return {
            "classifier__learning_rate": loguniform(0.02, 0.2),
            "classifier__max_leaf_nodes": [7, 15, 31, 63],
            "classifier__min_samples_leaf": [20, 50, 100, 200],
            "classifier__l2_regularization": loguniform(1e-3, 10.0),
            "classifier__max_features": [0.5, 0.8, 1.0],
        }
    if family in DEFAULTS_ONLY:
        return {}
    from pipeline.errors import ConfigError

    raise ConfigError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def final_estimator(model):
    """The fitted (uncalibrated) pipeline inside a ``CalibratedModel``, or the model itself."""
    return model.estimator_ if isinstance(model, CalibratedModel) else model


class CalibratedModel(ClassifierMixin, BaseEstimator):
    """A churn model and a monotone map from its scores to calibrated probabilities.

    The map is learned on out-of-fold scores (scores of rows no fitted model saw), so it
    corrects the model's over- or under-confidence without the optimism of in-sample scores;
    the model itself is fit once on all rows.  This is scikit-learn's
    ``CalibratedClassifierCV(ensemble=False)``, with the map also reusable: ``train`` learns
    it from the out-of-fold scores selection already computed, and keeps it when it refits
    the model on more rows.

    Parameters
    ----------
    estimator
        The (unfitted) model; ``fit`` fits a clone.
    method : {"sigmoid", "isotonic"}
        Platt scaling of the log-odds (keeps the ranking) or isotonic regression of the
        probability (a step function: can tie scores).
    cv : int
        Stratified folds for the out-of-fold scores in ``fit``.
    random_state : int
        Seed of the folds.
    """

    def __init__(self, estimator=None, method="sigmoid", cv=5, random_state=0):
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.base import clone
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        y = np.asarray(y)
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        oof = cross_val_predict(clone(self.estimator), X, y, cv=folds, method="predict_proba")[:, 1]
        self.fit_map(oof, y)
        return self.set_fitted(clone(self.estimator).fit(X, y))

    def fit_map(self, scores, y):
        """Learn the score-to-probability map from out-of-fold churn probabilities ``scores``."""
        from pipeline.errors import ConfigError

        scores, y = np.asarray(scores, dtype="float64"), np.asarray(y).astype(int)
        if self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            fitted = LogisticRegression(C=1e6).fit(_logit(scores).reshape(-1, 1), y)
            self.slope_, self.intercept_ = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, y)
        else:
            raise ConfigError(f"unknown calibration method {self.method!r}; expected sigmoid or isotonic")
        return self

    def set_fitted(self, fitted_estimator):
        """Use ``fitted_estimator`` (already fit) as the model behind the learned map."""
        self.estimator_ = fitted_estimator
        self.classes_ = np.asarray(fitted_estimator.classes_)
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(fitted_estimator, name):
                setattr(self, name, getattr(fitted_estimator, name))
        return self

    def calibrate(self, scores):
        """Map uncalibrated churn probabilities to calibrated ones."""
        scores = np.asarray(scores, dtype="float64")
        if self.method == "isotonic":
            return np.clip(self.isotonic_.predict(scores), 0.0, 1.0)
        z = self.slope_ * _logit(scores) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def predict_proba(self, X):
        churn = self.calibrate(self.estimator_.predict_proba(X)[:, 1])
        return np.column_stack([1.0 - churn, churn])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def _logit(p):
    p = np.clip(np.asarray(p, dtype="float64"), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
