"""Every use of scikit-learn's private internals, in one place (for ``pipeline.explain``).

Reasons for a histogram gradient boosting model (path attribution, ``pipeline.explain``) need
its trees, and the one-hot layout of a linear model needs the encoder's output count per
column; scikit-learn offers neither publicly.  Each function below (but the public
``is_hist_gradient_boosting``) reads one private attribute or calls one private method, and
nothing else in the project does, so a
scikit-learn release that changes them breaks here, in one module, and
``tests/test_sklearn_internals.py`` says which function: it exercises every function against
the installed scikit-learn and checks its result against a public-API computation (the trees
summed equal ``decision_function``; the layout matches ``get_feature_names_out``...).

Versions: tested with scikit-learn 1.9.1, the only version installed where this was written;
``pyproject.toml`` allows only 1.9.x for that reason.  Widening the range needs that test
file run against each added version.  (Model files also name classes by their private
module paths, such as ``sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor``,
in skops's trusted types, ``pipeline.tracking.TRUSTED_TYPES``: that is persistence, checked
by ``tests/test_tracking.py``, not computation.)
"""

from __future__ import annotations

import numpy as np

#: The scikit-learn releases (major.minor) this module was tested with, by
#: ``tests/test_sklearn_internals.py``: 1.9.1.
TESTED_VERSIONS = ("1.9",)


def is_hist_gradient_boosting(classifier) -> bool:
    """Whether ``classifier`` is a fitted histogram gradient boosting classifier (public: its class)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return isinstance(classifier, HistGradientBoostingClassifier) and hasattr(classifier, "n_iter_")


def hgb_matrix(classifier, typed) -> np.ndarray:
    """The float64 matrix the trees read: ``typed`` with categories coded and columns reordered
    (``_preprocess_X``), column-major.

    The trees read one column per split, so routing rows through them is about twice as fast
    on a column-major matrix as on the row-major one ``_preprocess_X`` returns (same values,
    same leaves).  A frame of the typed kind (categorical columns as pandas categories, every
    other column float64, the fitted column names in order) is coded here without scikit-learn's
    ``ColumnTransformer``: each category maps through its position in the fitted
    ``OrdinalEncoder``'s categories, unknown categories and missing values to NaN, exactly as
    that encoder does.  Anything else goes through ``_preprocess_X`` itself (which also gives
    its errors).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    coded = _coded_frame(classifier, typed)
    if coded is None:
        coded = HistGradientBoostingClassifier._preprocess_X(classifier, typed, reset=False)
    return np.asfortranarray(coded, dtype="float64")


def _coded_frame(classifier, typed) -> np.ndarray | None:
    """``_preprocess_X``'s matrix built column by column (column-major), or None when ``typed``
    is not a frame this can code exactly (then scikit-learn's own path is used)."""
    import pandas as pd

    preprocessor = getattr(classifier, "_preprocessor", None)
    categorical = getattr(classifier, "is_categorical_", None)
    if preprocessor is None or categorical is None or not isinstance(typed, pd.DataFrame):
        return None
    names = getattr(preprocessor, "feature_names_in_", None)
    if names is None or len(names) != typed.shape[1] or list(names) != [str(c) for c in typed.columns]:
        return None
    encoders = [t for name, t, _ in preprocessor.transformers_ if name == "encoder"]
    if len(encoders) != 1 or len(encoders[0].categories_) != int(np.sum(categorical)):
        return None
    encoder = encoders[0]
    order = [j for j in range(typed.shape[1]) if categorical[j]] + [j for j in range(typed.shape[1]) if not categorical[j]]
    out = np.empty((len(typed), len(order)), dtype="float64", order="F")
    levels = iter(encoder.categories_)
    for k, j in enumerate(order):
        column = typed.iloc[:, j]
        if categorical[j]:
            if not isinstance(column.dtype, pd.CategoricalDtype):
                return None
            fitted = next(levels)
            position = pd.Index(fitted).get_indexer(column.cat.categories).astype("float64")
            position[position < 0] = np.nan
            codes = column.cat.codes.to_numpy()
            lookup = np.append(position, np.nan)  # code -1 (missing) reads the NaN at the end
            out[:, k] = lookup[codes]
        else:
            if column.dtype != np.dtype("float64"):
                return None
            out[:, k] = column.to_numpy()
    return out


def hgb_preprocessor(classifier):
    """The fitted ``ColumnTransformer`` that codes categories and reorders columns before the trees
    (``_preprocessor``; categories first), or None when there is none (no categorical column)."""
    return getattr(classifier, "_preprocessor", None)


def hgb_baseline(classifier) -> float:
    """The raw prediction before any tree: the log-odds of the training churn rate (``_baseline_prediction``)."""
    return float(np.ravel(classifier._baseline_prediction)[0])


def hgb_trees(classifier) -> list:
    """The fitted trees of a binary model, one per iteration (``_predictors``; ``TreePredictor`` objects).

    A tree's ``nodes`` is a structured array with ``value``, ``count``, ``feature_idx``,
    ``left``, ``right``, ``is_leaf``, ``is_categorical`` and ``depth`` per node (root first).
    """
    return [predictors[0] for predictors in classifier._predictors]


def hgb_category_bitsets(classifier) -> tuple:
    """``(known_bitsets, f_idx_map)`` of the categories seen in training (``_bin_mapper``), for ``hgb_leaves``."""
    return classifier._bin_mapper.make_known_categories_bitsets()


def hgb_leaves(tree, matrix: np.ndarray, bitsets: tuple, n_threads: int) -> np.ndarray:
    """The leaf (node number) each row of ``matrix`` reaches in ``tree``, as scikit-learn routes it.

    Missing values and unseen categories go exactly where prediction sends them: the routing
    is scikit-learn's own compiled predictor (``TreePredictor``, private), given the node
    numbers as its leaf values.
    """
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    numbered = tree.nodes.copy()
    numbered["value"] = np.arange(len(numbered), dtype="float64")
    router = TreePredictor(numbered, tree.binned_left_cat_bitsets, tree.raw_left_cat_bitsets)
    known_bitsets, f_idx_map = bitsets
    return router.predict(matrix, known_bitsets, f_idx_map, n_threads).astype(np.int64)


def onehot_output_counts(encoder) -> list[int]:
    """Encoded columns per input column of a fitted ``OneHotEncoder`` (``_n_features_outs``: after
    dropped and infrequent levels); the number of categories per column when it is absent."""
    counts = getattr(encoder, "_n_features_outs", None)
    return [int(c) for c in counts] if counts else [len(c) for c in encoder.categories_]


__all__ = [
    "TESTED_VERSIONS",
    "hgb_baseline",
    "hgb_category_bitsets",
    "hgb_leaves",
    "hgb_matrix",
    "hgb_preprocessor",
    "hgb_trees",
    "is_hist_gradient_boosting",
    "onehot_output_counts",
]
