"""Candidate model pipelines: raw subscriber rows in, churn probability out.

Every candidate is one scikit-learn ``Pipeline`` whose first step is the learned
``TableTyper``, so the fitted object takes the raw columns and training and scoring share
one code path.  ``search_space`` gives each family's hyperparameters for random search;
they are ordinary estimator parameters, so ``get_params()`` is what the run logs.
"""

from __future__ import annotations

from typing import Any

#: Model families selection can try, in the order they are reported.
FAMILIES = ("logistic", "hist_gradient_boosting")


def make_candidate(family: str, *, drop_columns: tuple[str, ...] = (), seed: int = 0, **params: Any):
    """Build an unfitted pipeline of the given family.

    Parameters
    ----------
    family : str
        ``"logistic"`` (regularised logistic regression on one-hot, scaled inputs) or
        ``"hist_gradient_boosting"`` (histogram gradient boosting with native categories).
    drop_columns : tuple of str
        Raw columns never used as features (id, label, value).
    seed : int
        Random state of every randomised step.
    **params
        Pipeline parameters in ``step__name`` form, e.g. ``classifier__C=0.5``.
    """
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier
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
        classifier = HistGradientBoostingClassifier(
            categorical_features="from_dtype",
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            max_iter=500,
            random_state=seed,
        )
        steps = [("typer", typer), ("classifier", classifier)]
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
    from pipeline.errors import ConfigError

    raise ConfigError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def final_estimator(model):
    """The fitted (uncalibrated) pipeline inside a calibrated model, or the model itself."""
    calibrated = getattr(model, "calibrated_classifiers_", None)
    if calibrated:
        return calibrated[0].estimator
    return model
