"""Per-subscriber reasons: which inputs raised each subscriber's churn risk, in plain words.

``contributions(model, X)`` splits every row's log-odds (of the uncalibrated model inside
the calibrated one; calibration is monotone, so the order of reasons is kept) into one
additive contribution per raw input column:

* **Linear models** (the ``logistic`` candidate): exact.  In the encoded space each
  coefficient times the encoded value's distance from its reference,
  ``coef * (x_encoded - reference)``, summed back to the raw column the encoded column came
  from (one-hot levels and missing-value indicators belong to their source column).  Scaled
  columns have a training mean of exactly 0, so their reference is 0; one-hot levels are
  referenced to the training level frequencies when a ``background`` sample is given, and
  otherwise to the unweighted average level (every level weighs ``1 / n_levels``).
  ``baseline + contributions.sum(axis=1)`` equals ``decision_function`` exactly.
* **HistGradientBoosting**: path attribution (Saabas 2014, the "tree interpreter").  Each
  node's value is the count-weighted mean of the leaf values below it; walking a row from
  the root to its leaf, each split credits ``value(child) - value(node)`` to the raw column
  it splits on.  Per tree these telescope to ``leaf - root``, so ``baseline + sum`` equals
  the model's raw prediction (``decision_function``) exactly, with ``baseline`` the model's
  baseline prediction plus the sum of root values.  Rows are routed to leaves by
  scikit-learn's own compiled predictor (so missing values and unseen categories go exactly
  where prediction sends them), and the per-leaf path sums are applied with sparse products:
  the whole costs about two to three times the model's own ``predict_proba``.  The trees are
  read through ``pipeline._sklearn_internals``, the one module that touches scikit-learn's
  private parts.
* **CatBoost**: exact TreeSHAP values of its log-odds, computed by CatBoost itself;
  ``baseline + sum`` equals the raw prediction.
* **A soft-voting blend** of such pipelines: the weighted average of its members'
  contributions.  This is an approximation: soft voting averages probabilities, not
  log-odds, so the contributions add up to the weighted mean of the members' log-odds
  rather than to the logit of the blended probability.  It keeps each member's ranking of
  reasons and is exact for each member.

``top_reasons`` turns contributions into at most ``k`` risk-raising reasons per row, phrased
by the feature catalogue (``pipeline.features.reason_text``) when the column is one of the
record features, and otherwise by a generic phrase from the column name and value
("Contract: Month-to-month", "tenure is low (2)"), so a model trained on any churn table gets
readable reasons.  ``reasons(model, X)`` does both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import _sklearn_internals as internals
from pipeline.errors import DataError, ModelError, caused_by_interrupt
from pipeline.protected import protected_trait

log = logging.getLogger(__name__)

#: Contributions at or below this are not reasons (rounding noise of exact zeros).
MIN_REASON = 1e-9
#: Trees handled per sparse product: bounds memory at ``rows * TREE_BATCH`` index entries.
TREE_BATCH = 40

_SUPPORTED = ("a LogisticRegression, HistGradientBoostingClassifier or CatBoost pipeline, "
              "or a soft VotingClassifier of them")


@dataclass
class _Attribution:
    """Contributions of one estimator, with what the reason phrases need."""

    columns: list[str]
    #: (rows, columns) log-odds contributions.
    values: np.ndarray
    #: (rows, columns) the parts of ``values`` that came from the value being high or low
    #: (above or below the training mean for linear models; on the upper or lower side of
    #: the splits for trees).  Missing-value indicators and categories count in neither.
    high: np.ndarray
    low: np.ndarray
    baseline: float


# --------------------------------------------------------------------------------------
# Contributions
# --------------------------------------------------------------------------------------


def contributions(model, X: pd.DataFrame, *, background: pd.DataFrame | None = None,
                  with_baseline: bool = False, n_threads: int | None = None):
    """Per-row, per-input-column contributions to the model's log-odds of churn.

    Parameters
    ----------
    model
        A fitted model: ``pipeline.model.CalibratedModel`` (its inner estimator is explained), a
        candidate pipeline of ``pipeline.model``, or a soft ``VotingClassifier`` of them.
    X : DataFrame
        Raw rows, as the model takes them.
    background : DataFrame, optional
        A sample of training rows (raw).  For linear models, one-hot levels are then
        measured against their frequencies in it; without it, against the average level.
        Trees do not need it.
    with_baseline : bool
        Also return the baseline (a float) so that ``baseline + result.sum(axis=1)`` is the
        log-odds.
    n_threads : int, optional
        Threads used to route rows through trees (default: all cores).

    Returns
    -------
    DataFrame
        One row per row of ``X`` (same index), one column per model input column (the
        columns the model kept, in its order); or ``(frame, baseline)``.
    """
    attribution = _explain(model, X, background=background, n_threads=n_threads, sides=False)
    frame = pd.DataFrame(attribution.values, index=X.index, columns=attribution.columns)
    return (frame, attribution.baseline) if with_baseline else frame


def _explain(model, X: pd.DataFrame, *, background=None, n_threads=None, sides: bool = True) -> _Attribution:
    from pipeline.model import final_estimator

    if not isinstance(X, pd.DataFrame):
        raise DataError(f"explain: X must be a DataFrame of raw rows, got {type(X).__name__}")
    estimator = final_estimator(model)
    if hasattr(estimator, "estimators_") and hasattr(estimator, "voting"):
        return _explain_blend(estimator, X, background=background, n_threads=n_threads, sides=sides)
    return _explain_pipeline(estimator, X, background=background, n_threads=n_threads, sides=sides)


def _explain_blend(blend, X, *, background, n_threads, sides) -> _Attribution:
    if blend.voting != "soft":
        raise ModelError(f"cannot explain a VotingClassifier with voting={blend.voting!r}; expected soft voting")
    members = blend.estimators_
    weights = _blend_weights(blend)
    parts = [_explain_pipeline(member, X, background=background, n_threads=n_threads, sides=sides)
             for member in members]
    columns: list[str] = []
    for part in parts:
        columns += [c for c in part.columns if c not in columns]
    position = {c: i for i, c in enumerate(columns)}
    values = np.zeros((len(X), len(columns)))
    high = np.zeros_like(values)
    low = np.zeros_like(values)
    for weight, part in zip(weights, parts):
        where = [position[c] for c in part.columns]
        values[:, where] += weight * part.values
        high[:, where] += weight * part.high
        low[:, where] += weight * part.low
    baseline = float(sum(w * p.baseline for w, p in zip(weights, parts)))
    return _Attribution(columns, values, high, low, baseline)


def _blend_weights(blend) -> np.ndarray:
    """The weights of a fitted soft ``VotingClassifier``'s members (``estimators_``), summing to 1.

    ``weights`` lists one weight per entry of ``estimators``, those set to ``"drop"`` included
    (they have no fitted member); no weights: equal weights.
    """
    if blend.weights is None:
        weights = [1.0] * len(blend.estimators_)
    else:
        weights = [w for (_, member), w in zip(blend.estimators, blend.weights) if member != "drop"]
    weights = np.asarray(weights, dtype="float64")
    return weights / float(np.sum(weights))


def _split_pipeline(estimator):
    """(preparation steps as a Pipeline or None, classifier)."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return None, estimator
    return (estimator[:-1] if len(steps) > 1 else None), steps[-1][1]


def _explain_pipeline(estimator, X, *, background, n_threads, sides) -> _Attribution:
    prepare, classifier = _split_pipeline(estimator)
    classes = getattr(classifier, "classes_", None)
    if classes is not None and len(classes) != 2:
        raise ModelError(f"cannot explain a model with {len(classes)} classes; expected a binary churn model")
    if internals.is_hist_gradient_boosting(classifier):
        typed = prepare.transform(X) if prepare is not None else X
        return _explain_hist_gradient_boosting(classifier, typed, n_threads=n_threads, sides=sides)
    if hasattr(classifier, "coef_") and hasattr(classifier, "intercept_"):
        return _explain_linear(prepare, classifier, X, background=background)
    if hasattr(classifier, "model_blob_"):
        typed = prepare.transform(X) if prepare is not None else X
        return _explain_catboost(classifier, typed, n_threads=n_threads)
    raise ModelError(f"cannot explain a {type(classifier).__name__}; expected {_SUPPORTED}")


# --- linear models ----------------------------------------------------------------------


def _last_step(transformer):
    steps = getattr(transformer, "steps", None)
    return steps[-1][1] if steps else transformer


def _encoded_layout(prepare, raw_columns: list[str]):
    """For each encoded column: its raw column, its kind (value, indicator or level), how many
    levels its raw column has (levels only), and whether a scaler centred it on the training mean."""
    encoder = None
    for _, step in getattr(prepare, "steps", []):
        if hasattr(step, "transformers_"):
            encoder = step
    if encoder is None:
        names = list(prepare.get_feature_names_out()) if prepare is not None else list(raw_columns)
        return [str(n) for n in names], ["value"] * len(names), [1] * len(names), [False] * len(names)
    sources, kinds, n_levels, scaled = [], [], [], []
    for name, transformer, columns in encoder.transformers_:
        part = encoder.output_indices_.get(name, slice(0, 0))
        width = part.stop - part.start
        if width == 0 or transformer == "drop":
            continue
        if transformer == "passthrough":
            inputs = [str(c) for c in np.asarray(encoder.feature_names_in_)[_column_positions(encoder, columns)]]
            sources += inputs
            kinds += ["value"] * len(inputs)
            n_levels += [1] * len(inputs)
            scaled += [False] * len(inputs)
            continue
        inputs = [str(c) for c in transformer.feature_names_in_]
        last = _last_step(transformer)
        if hasattr(last, "categories_"):
            counts = internals.onehot_output_counts(last)
            for column, count in zip(inputs, counts):
                sources += [column] * int(count)
                kinds += ["level"] * int(count)
                n_levels += [int(count)] * int(count)
                scaled += [False] * int(count)
        else:
            outputs = [str(n) for n in transformer.get_feature_names_out(inputs)]
            is_scaled = bool(getattr(last, "with_mean", False)) and hasattr(last, "mean_")
            for output in outputs:
                if output in inputs:
                    source, kind = output, "value"
                elif output.startswith("missingindicator_") and output[len("missingindicator_"):] in inputs:
                    source, kind = output[len("missingindicator_"):], "indicator"
                else:
                    matches = [c for c in inputs if output.startswith(f"{c}_")]
                    if not matches:
                        raise ModelError(f"cannot tell which input column the encoded column {output!r} comes from")
                    source, kind = max(matches, key=len), "value"
                sources.append(source)
                kinds.append(kind)
                n_levels.append(1)
                scaled.append(is_scaled)
        if len(sources) != part.stop:
            raise ModelError(
                f"encoded columns of {name!r} do not line up with its inputs ({len(sources)} != {part.stop})"
            )
    return sources, kinds, n_levels, scaled


def _encoder_inputs(prepare) -> list:
    """The columns the encoding step receives (the typed model columns), or []."""
    for _, step in getattr(prepare, "steps", []):
        if hasattr(step, "transformers_"):
            return list(getattr(step, "feature_names_in_", []))
    return []


def _column_positions(encoder, columns) -> np.ndarray:
    names = np.asarray(encoder.feature_names_in_, dtype=object)
    columns = np.asarray(columns)
    if columns.dtype == bool:
        return np.flatnonzero(columns)
    if columns.dtype.kind in "iu":
        return columns
    return np.asarray([list(names).index(c) for c in columns])


def _explain_linear(prepare, classifier, X, *, background) -> _Attribution:
    coef = np.asarray(classifier.coef_, dtype="float64")
    if coef.shape[0] != 1:
        raise ModelError(f"cannot explain a linear model with {coef.shape[0]} outputs; expected a binary churn model")
    coef = coef[0]
    intercept = float(np.ravel(classifier.intercept_)[0])
    encoded = np.asarray(prepare.transform(X) if prepare is not None else X, dtype="float64")
    sources, kinds, n_levels, scaled = _encoded_layout(prepare, list(map(str, X.columns)))
    if len(sources) != encoded.shape[1] or len(coef) != encoded.shape[1]:
        raise ModelError(f"the linear model has {len(coef)} coefficients for {encoded.shape[1]} encoded columns")
    kinds = np.asarray(kinds)
    if background is not None:
        background_encoded = np.asarray(prepare.transform(background) if prepare is not None else background,
                                        dtype="float64")
        background_mean = np.nanmean(background_encoded, axis=0)
    else:
        background_mean = np.zeros(len(coef))
    # Scaled columns have training mean 0 exactly; levels: background frequency or 1/levels.
    reference = np.where(np.asarray(scaled), 0.0, background_mean)
    if background is None:
        reference = np.where(kinds == "level", 1.0 / np.asarray(n_levels, dtype="float64"), reference)
    centred = encoded - reference
    per_encoded = centred * coef
    columns = list(dict.fromkeys(sources))
    # Report columns in the order the model takes them, not the encoder's grouping.
    model_order = [str(c) for c in _encoder_inputs(prepare)]
    columns = [c for c in model_order if c in columns] + [c for c in columns if c not in model_order]
    position = {c: i for i, c in enumerate(columns)}
    to_raw = np.zeros((len(sources), len(columns)))
    to_raw[np.arange(len(sources)), [position[s] for s in sources]] = 1.0
    values = per_encoded @ to_raw
    high = np.where((kinds == "value") & (centred > 0), per_encoded, 0.0) @ to_raw
    low = np.where((kinds == "value") & (centred < 0), per_encoded, 0.0) @ to_raw
    baseline = intercept + float(coef @ reference)
    return _Attribution(columns, values, high, low, baseline)


# --- CatBoost ----------------------------------------------------------------------------


def _explain_catboost(classifier, typed: pd.DataFrame, *, n_threads) -> _Attribution:
    """Exact TreeSHAP values of CatBoost's log-odds (CatBoost computes them itself).

    ``baseline + values.sum(axis=1)`` is the raw log-odds.  A numeric column's value counts
    as high or low against its training median; categories and missing values count as neither.
    """
    from catboost import Pool

    columns = [str(c) for c in typed.columns]
    if len(typed) == 0:
        empty = np.zeros((0, len(columns)))
        return _Attribution(columns, empty, empty.copy(), empty.copy(), 0.0)
    frame = classifier.catboost_frame(typed)
    pool = Pool(frame, cat_features=classifier.categorical_columns_)
    shap = classifier.booster().get_feature_importance(pool, type="ShapValues", thread_count=int(n_threads or -1))
    values = np.asarray(shap[:, :-1], dtype="float64")
    baseline = float(shap[0, -1])
    high = np.zeros_like(values)
    low = np.zeros_like(values)
    position = {c: i for i, c in enumerate(columns)}
    for name, centre in zip(classifier.numeric_columns_, classifier.numeric_centre_):
        i = position[name]
        x = typed[name].to_numpy(dtype="float64", na_value=np.nan)
        high[:, i] = np.where(x > centre, values[:, i], 0.0)
        low[:, i] = np.where(x < centre, values[:, i], 0.0)
    return _Attribution(columns, values, high, low, baseline)


# --- histogram gradient boosting ----------------------------------------------------------


def _hgb_feature_names(classifier) -> list[str]:
    """Raw column name of each column of the classifier's preprocessed matrix."""
    names = getattr(classifier, "feature_names_in_", None)
    n = classifier.n_features_in_
    names = [str(c) for c in names] if names is not None else [f"x{i}" for i in range(n)]
    preprocessor = internals.hgb_preprocessor(classifier)
    if preprocessor is None:
        return names
    order = np.empty(n, dtype=np.intp)
    for name, _, columns in preprocessor.transformers_:
        part = preprocessor.output_indices_.get(name, slice(0, 0))
        if part.stop > part.start:
            order[part] = _column_positions(preprocessor, columns)
    return [names[i] for i in order]


def _node_means(nodes) -> np.ndarray:
    """Count-weighted mean of the leaf values below every node (leaves: their value)."""
    means = nodes["value"].astype("float64").copy()
    counts = nodes["count"].astype("float64").copy()
    for node in np.argsort(-nodes["depth"].astype(np.int64), kind="stable"):
        if nodes["is_leaf"][node]:
            continue
        left, right = nodes["left"][node], nodes["right"][node]
        weight = counts[left] + counts[right]
        if weight > 0:
            means[node] = (counts[left] * means[left] + counts[right] * means[right]) / weight
        else:
            means[node] = 0.5 * (means[left] + means[right])
        counts[node] = weight
    return means


def _leaf_paths(nodes, feature_of: np.ndarray):
    """Per leaf, the path contributions summed by raw column.

    Returns the means of all nodes and COO triplets ``(node, column, total, high, low)``
    (only leaves get entries): ``total`` is the sum over the path's splits on that column of
    ``value(child) - value(node)``; ``high`` / ``low`` the parts from going to the upper /
    lower side of numeric splits.
    """
    means = _node_means(nodes)
    entries: list[tuple[int, int, float, float, float]] = []
    paths: dict[int, dict[int, tuple[float, float, float]]] = {0: {}}
    for node in np.argsort(nodes["depth"].astype(np.int64), kind="stable"):
        path = paths.pop(int(node))
        if nodes["is_leaf"][node]:
            entries.extend((int(node), column, *sums) for column, sums in path.items())
            continue
        column = int(feature_of[nodes["feature_idx"][node]])
        numeric = not nodes["is_categorical"][node]
        for child, upper in ((int(nodes["left"][node]), False), (int(nodes["right"][node]), True)):
            delta = means[child] - means[node]
            total, high, low = path.get(column, (0.0, 0.0, 0.0))
            if numeric and upper:
                high += delta
            elif numeric:
                low += delta
            paths[child] = {**path, column: (total + delta, high, low)}
    return means, entries


def _explain_hist_gradient_boosting(classifier, typed, *, n_threads, sides: bool = True) -> _Attribution:
    import os

    from scipy import sparse

    if getattr(classifier, "n_trees_per_iteration_", 1) != 1:
        raise ModelError("cannot explain a multi-class gradient boosting model; expected a binary churn model")
    matrix = internals.hgb_matrix(classifier, typed)
    names = getattr(classifier, "feature_names_in_", None)
    columns = [str(c) for c in names] if names is not None else [f"x{i}" for i in range(classifier.n_features_in_)]
    position = {c: i for i, c in enumerate(columns)}
    feature_of = np.asarray([position[c] for c in _hgb_feature_names(classifier)], dtype=np.intp)
    bitsets = internals.hgb_category_bitsets(classifier)
    threads = int(n_threads or os.cpu_count() or 1)
    n_rows, n_columns = matrix.shape[0], len(columns)
    total = np.zeros((n_rows, n_columns))
    high = np.zeros((n_rows, n_columns))
    baseline = internals.hgb_baseline(classifier)
    trees = internals.hgb_trees(classifier)
    for start in range(0, len(trees), TREE_BATCH):
        batch = trees[start:start + TREE_BATCH]
        leaves = np.empty((n_rows, len(batch)), dtype=np.int64)
        entries: list[tuple[int, int, float, float, float]] = []
        offset = 0
        for t, tree in enumerate(batch):
            nodes = tree.nodes
            means, tree_entries = _leaf_paths(nodes, feature_of)
            baseline += float(means[0])
            entries.extend((node + offset, *rest) for node, *rest in tree_entries)
            leaves[:, t] = internals.hgb_leaves(tree, matrix, bitsets, threads) + offset
            offset += len(nodes)
        routing = sparse.csr_matrix(
            (np.ones(leaves.size), leaves.ravel(), np.arange(0, leaves.size + 1, len(batch))),
            shape=(n_rows, offset),
        )
        # One product for the totals and (for reasons) their high-side parts, side by side.
        table = np.asarray(entries, dtype="float64").reshape(-1, 5)
        nodes_at, columns_at = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
        if sides:
            entries_of = (np.concatenate([table[:, 2], table[:, 3]]),
                          (np.concatenate([nodes_at, nodes_at]), np.concatenate([columns_at, columns_at + n_columns])))
        else:
            entries_of = (table[:, 2], (nodes_at, columns_at))
        path_sums = sparse.csr_matrix(entries_of, shape=(offset, (2 if sides else 1) * n_columns))
        summed = (routing @ path_sums).toarray()
        total += summed[:, :n_columns]
        if sides:
            high += summed[:, n_columns:]
    # Numeric columns split only numerically, so their low-side part is the rest.
    numeric = np.ones(n_columns, dtype=bool)
    if getattr(classifier, "is_categorical_", None) is not None:
        numeric = ~np.asarray(classifier.is_categorical_, dtype=bool)
    low = np.where(numeric, total - high, 0.0) if sides else np.zeros_like(total)
    return _Attribution(columns, total, high, low, baseline)


def raw_log_odds(model, X: pd.DataFrame) -> np.ndarray:
    """The explained quantity: log-odds of churn of the model's inner (uncalibrated) estimator.

    For a blend, the weighted mean of its members' log-odds.  ``contributions(model, X,
    with_baseline=True)`` adds up to this.
    """
    from pipeline.model import final_estimator

    estimator = final_estimator(model)
    if hasattr(estimator, "estimators_") and hasattr(estimator, "voting"):
        return sum(w * raw_log_odds(m, X) for w, m in zip(_blend_weights(estimator), estimator.estimators_))
    prepare, classifier = _split_pipeline(estimator)
    typed = prepare.transform(X) if prepare is not None else X
    return np.ravel(classifier.decision_function(typed))  # HistGradientBoosting's: its raw prediction


# --------------------------------------------------------------------------------------
# Reasons in plain words
# --------------------------------------------------------------------------------------


def _is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_number(value):
    """A float for numbers (and numeric text), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(str(value).strip().replace(",", ""))
    except ValueError:
        return None


def format_number(value: float) -> str:
    """A short, readable number: ``2``, ``80.5``, ``0.123``, ``12,345``."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def generic_phrase(feature: str, value, side: str | None = None) -> str:
    """A reason for any column: ``"Contract: Month-to-month"``, ``"tenure is low (2)"``.

    Parameters
    ----------
    feature : str
        The column name, shown as is (the name the data's owner knows).
    value
        The subscriber's raw value.
    side : {"high", "low"} or None
        For numbers: whether the value raised risk by being high or low.  Without it (or for
        text values) the phrase names the value only.
    """
    if _is_missing(value):
        return f"{feature} is missing"
    number = _as_number(value)
    if number is None or isinstance(value, str) and side is None:
        return f"{feature}: {value}"
    if side in ("high", "low"):
        return f"{feature} is {side} ({format_number(number)})"
    return f"{feature}: {format_number(number)}"


def _project_catalogue():
    """The record features' phrase function and catalogue, or None when unavailable."""
    try:
        from pipeline.features import FEATURE_CATALOGUE, reason_text
    except ImportError as err:  # another stage may be absent in a trimmed install
        if caused_by_interrupt(err):
            raise KeyboardInterrupt from err
        log.debug("feature catalogue unavailable (%s); using generic reasons", err)
        return None
    return FEATURE_CATALOGUE, reason_text


class _Phraser:
    """Phrases for (feature, value, side), cached: many subscribers share values."""

    def __init__(self, catalogue: Mapping[str, str | Callable] | None):
        self.custom = dict(catalogue) if catalogue is not None else None
        self.project = _project_catalogue()
        self.cache: dict = {}
        self.raw: dict[str, np.ndarray] = {}
        self.warned: set[str] = set()

    def __call__(self, feature: str, value, side: str | None) -> str:
        key = (feature, None if _is_missing(value) else value, side)
        try:
            return self.cache[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: phrase it without caching
            return self._phrase(feature, value, side)
        text = self.cache[key] = self._phrase(feature, value, side)
        return text

    def is_generic(self, feature: str) -> bool:
        """Whether ``feature`` gets the generic phrase (no custom or catalogue phrase)."""
        custom = self.custom is not None and feature in self.custom
        return not custom and not (self.project is not None and feature in self.project[0])

    def many(self, feature: str, column: pd.Series, rows: np.ndarray, sides) -> list[str]:
        """Phrases for many rows of one column; numbers without a catalogue phrase take a fast path."""
        if self.is_generic(feature) and column.dtype.kind in "iuf":
            numbers = column.to_numpy(dtype="float64", na_value=np.nan)[rows].tolist()
            return [
                f"{feature} is missing" if number != number
                else f"{feature} is {side} ({format_number(number)})" if side
                else f"{feature}: {format_number(number)}"
                for number, side in zip(numbers, sides)
            ]
        if feature not in self.raw:
            self.raw[feature] = column.to_numpy(dtype=object)
        return [self(feature, value, side) for value, side in zip(self.raw[feature][rows], sides)]

    def _phrase(self, feature: str, value, side: str | None) -> str:
        if self.custom is not None and feature in self.custom:
            entry = self.custom[feature]
            if callable(entry):
                return str(entry(value))
            shown = "missing" if _is_missing(value) else (
                format_number(_as_number(value)) if _as_number(value) is not None else str(value))
            return str(entry).format(value=shown)
        if self.project is not None and feature in self.project[0]:
            try:
                return self.project[1](feature, None if _is_missing(value) else value, "raises")
            except (ValueError, TypeError, KeyError) as err:
                if feature not in self.warned:
                    self.warned.add(feature)
                    log.warning("catalogue phrase for %s failed (%s); using a generic phrase", feature, err)
        return generic_phrase(feature, value, side)


def top_reasons(contrib: pd.DataFrame, X: pd.DataFrame, k: int = 3,
                catalogue: Mapping[str, str | Callable] | None = None, *,
                high: pd.DataFrame | np.ndarray | None = None,
                low: pd.DataFrame | np.ndarray | None = None) -> pd.DataFrame:
    """The ``k`` largest risk-raising contributions of each row, in plain words.

    Only positive contributions are reasons; a row with fewer than ``k`` leaves the rest
    blank (empty strings).  Ties keep the column order.  Protected traits (gender, age, age
    band, senior citizen, marital status...: ``pipeline.protected``) are never reasons.

    Parameters
    ----------
    contrib : DataFrame
        ``contributions(model, X)``.
    X : DataFrame
        The raw rows (same length and order), whose values the phrases quote.
    k : int
        Reasons per row.
    catalogue : mapping, optional
        ``column -> phrase``: a template with ``{value}`` or a function of the value; it
        comes first.  Other columns are phrased by the record features' catalogue
        (``pipeline.features.reason_text``) when they are record features, and otherwise by
        a generic phrase ("Contract: Month-to-month", "tenure is low (2)").
    high, low : DataFrame or array, optional
        The parts of each contribution due to a high or a low value (``reasons`` passes
        them), which let a number read "tenure is low (2)" rather than "tenure: 2"; a number
        is "high" or "low" only when that part itself raised the risk.

    Returns
    -------
    DataFrame
        ``reason_1 .. reason_k`` (phrases) then ``reason_1_feature .. reason_k_feature``
        (column names), indexed like ``contrib``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(X) != len(contrib):
        raise DataError(f"reasons: {len(contrib)} rows of contributions but {len(X)} rows of values")
    features = np.asarray([str(c) for c in contrib.columns], dtype=object)
    missing = [c for c in features if c not in X.columns]
    if missing:
        raise DataError(f"reasons: column(s) {', '.join(missing)} are not in the rows to explain")
    values = contrib.to_numpy(dtype="float64")
    upper = None if high is None else np.asarray(high, dtype="float64")
    lower = None if low is None else np.asarray(low, dtype="float64")
    risky = np.where(values > MIN_REASON, values, -np.inf)
    # A protected trait (gender, age, marital status...) is never a reason to call someone,
    # even when a model was allowed to use it as a feature (``pipeline.protected``).
    protected = [j for j, name in enumerate(features) if protected_trait(name) is not None]
    if protected:
        risky[:, protected] = -np.inf
    order = np.argsort(-risky, axis=1, kind="stable")[:, :k]
    phrase = _Phraser(catalogue)
    n = len(contrib)
    out: dict[str, np.ndarray] = {}
    chosen: dict[str, np.ndarray] = {}
    for rank in range(k):
        texts = np.full(n, "", dtype=object)
        names = np.full(n, "", dtype=object)
        if rank < values.shape[1]:
            column = order[:, rank]
            valid = np.isfinite(risky[np.arange(n), column])
            for j in np.unique(column[valid]):
                rows = np.flatnonzero(valid & (column == j))
                feature = str(features[j])
                if upper is not None and lower is not None:
                    up, down = upper[rows, j], lower[rows, j]
                    sides = np.where((up > MIN_REASON) & (up >= down), "high",
                                     np.where(down > MIN_REASON, "low", None)).tolist()
                else:
                    sides = [None] * len(rows)
                texts[rows] = phrase.many(feature, X[feature], rows, sides)
                names[rows] = feature
        out[f"reason_{rank + 1}"] = texts
        chosen[f"reason_{rank + 1}_feature"] = names
    return pd.DataFrame({**out, **chosen}, index=contrib.index)


def reasons(model, X: pd.DataFrame, k: int = 3, *, catalogue: Mapping[str, str | Callable] | None = None,
            background: pd.DataFrame | None = None, n_threads: int | None = None) -> pd.DataFrame:
    """Top ``k`` reasons for each row of ``X`` (see ``top_reasons``), straight from the model."""
    attribution = _explain(model, X, background=background, n_threads=n_threads)
    contrib = pd.DataFrame(attribution.values, index=X.index, columns=attribution.columns)
    return top_reasons(contrib, X, k=k, catalogue=catalogue, high=attribution.high, low=attribution.low)
