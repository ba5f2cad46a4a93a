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
    """The float64 matrix the trees read: ``typed`` with categories coded and columns reordered (``_preprocess_X``)."""
    return np.ascontiguousarray(classifier._preprocess_X(typed, reset=False), dtype="float64")


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
