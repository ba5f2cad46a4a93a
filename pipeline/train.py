"""Model selection, calibration and the final fit: a pure function of a dataset and config.

``train(dataset, config)`` splits off a stratified hold-out that selection never sees;
cross-validates each candidate family's default and a budgeted random search on the rest
(stratified folds, fixed seeds); optionally blends the best model of each family when that
pays; chooses sigmoid or isotonic calibration by cross-validated Brier score; fits the
calibrated model on the training rows; and evaluates it on the hold-out.  Nothing here
touches MLflow or files: ``pipeline.tracking`` logs what this returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.dataset import Dataset
from pipeline.errors import DataError, ModelError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What training produced: the model, how it was chosen, and how it did on the hold-out."""

    model: Any
    family: str
    params: dict[str, Any]
    calibration: str
    candidates: pd.DataFrame
    calibration_scores: dict[str, float]
    holdout_index: np.ndarray
    holdout_proba: np.ndarray
    metrics: dict[str, float]
    train_rows: int
    base_rate: float
    columns: pd.DataFrame
    input_columns: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def _folds(config: Config):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=config.train.cv_folds, shuffle=True, random_state=config.train.seed)


def _oof_proba(estimator, X: pd.DataFrame, y: np.ndarray, config: Config) -> np.ndarray:
    """Out-of-fold churn probabilities of an unfitted estimator (stratified, seeded folds)."""
    from sklearn.base import clone

    proba = np.empty(len(y), dtype="float64")
    for train_idx, test_idx in _folds(config).split(X, y):
        fitted = clone(estimator).fit(X.iloc[train_idx], y[train_idx])
        proba[test_idx] = fitted.predict_proba(X.iloc[test_idx])[:, 1]
    return proba


def _scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    clipped = np.clip(proba, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "log_loss": float(log_loss(y, clipped)),
        "brier": float(brier_score_loss(y, proba)),
    }


def _subsample(X: pd.DataFrame, y: np.ndarray, limit: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    if len(y) <= limit:
        return X, y
    from sklearn.model_selection import train_test_split

    X_sel, _, y_sel, _ = train_test_split(X, y, train_size=limit, stratify=y, random_state=seed)
    return X_sel, y_sel


def _candidate_grid(config: Config, drop: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    from sklearn.model_selection import ParameterSampler

    from pipeline.model import search_space

    grid = []
    for family in config.train.candidates:
        grid.append((family, {}))
        sampler = ParameterSampler(
            search_space(family), n_iter=config.train.search_iterations, random_state=config.train.seed
        )
        grid.extend((family, dict(params)) for params in sampler)
    return grid


def _blend(estimators: dict[str, Any], weights: list[float]):
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier(list(estimators.items()), voting="soft", weights=weights)


def _choose_calibration(y: np.ndarray, oof: np.ndarray, config: Config) -> tuple[str, dict[str, float]]:
    """Pick the calibration method whose cross-validated Brier score on out-of-fold scores is lowest."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss

    logit = np.log(np.clip(oof, 1e-6, 1 - 1e-6) / np.clip(1 - oof, 1e-6, 1)).reshape(-1, 1)
    scores = {"uncalibrated": float(brier_score_loss(y, oof))}
    for method in config.train.calibration_methods:
        calibrated = np.empty_like(oof)
        for train_idx, test_idx in _folds(config).split(logit, y):
            if method == "sigmoid":
                fitted = LogisticRegression(C=1e6).fit(logit[train_idx], y[train_idx])
                calibrated[test_idx] = fitted.predict_proba(logit[test_idx])[:, 1]
            elif method == "isotonic":
                fitted = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(oof[train_idx], y[train_idx])
                calibrated[test_idx] = fitted.predict(oof[test_idx])
            else:
                raise ModelError(f"unknown calibration method {method!r}; expected sigmoid or isotonic")
        scores[method] = float(brier_score_loss(y, calibrated))
    best = min(config.train.calibration_methods, key=lambda m: scores[m])
    return best, scores


def train(dataset: Dataset, config: Config, *, progress: Callable[[str], None] | None = None) -> TrainResult:
    """Select, calibrate and fit a churn model on ``dataset``; evaluate it on a hold-out.

    Parameters
    ----------
    dataset : Dataset
        Rows with a label.
    config : Config
        ``config.train`` drives selection; ``config.campaign`` the profit metrics.
    progress : callable, optional
        Called with a short message as each step starts.
    """
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import train_test_split

    from pipeline import evaluate
    from pipeline.model import make_candidate

    say = progress or (lambda message: log.info(message))
    if dataset.label is None:
        raise DataError(f"{dataset.source}: no label column; training needs one")
    y_all = dataset.label.to_numpy().astype(int)
    counts = np.bincount(y_all, minlength=2)
    needed = config.train.cv_folds * 2
    if counts.min() < needed:
        raise DataError(
            f"{dataset.source}: only {counts[1]} churners and {counts[0]} stayers; "
            f"training needs at least {needed} of each"
        )
    seed = config.train.seed
    timings: dict[str, float] = {}
    started = time.perf_counter()
    index = np.arange(len(y_all))
    train_idx, holdout_idx = train_test_split(
        index, test_size=config.train.holdout_fraction, stratify=y_all, random_state=seed
    )
    train_idx.sort()
    holdout_idx.sort()
    X_train = dataset.frame.iloc[train_idx].reset_index(drop=True)
    y_train = y_all[train_idx]
    drop = tuple(c for c in (dataset.id_column,) if c in dataset.frame.columns)

    # Selection: every candidate's out-of-fold probabilities on (at most) selection_max_rows rows.
    X_sel, y_sel = _subsample(X_train, y_train, config.train.selection_max_rows, seed)
    rows, oof_by_key, estimators = [], {}, {}
    grid = _candidate_grid(config, drop)
    budget = config.train.time_budget_seconds
    for number, (family, params) in enumerate(grid, start=1):
        if budget and time.perf_counter() - started > budget and number > len(config.train.candidates):
            say(f"time budget of {budget:.0f}s reached after {number - 1} candidates")
            break
        shown = ", ".join(f"{k.split('__', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('__', 1)[1]}={v}"
                          for k, v in params.items())
        say(f"candidate {number}/{len(grid)}: {family} ({shown or 'defaults'})")
        t0 = time.perf_counter()
        estimator = make_candidate(family, drop_columns=drop, seed=seed, **params)
        try:
            oof = _oof_proba(estimator, X_sel, y_sel, config)
        except (ValueError, TypeError) as err:
            raise ModelError(f"{family} could not be fit on {dataset.source}: {str(err).splitlines()[0]}") from err
        key = f"{family}#{number}"
        oof_by_key[key] = oof
        estimators[key] = estimator
        rows.append(
            {
                "candidate": key,
                "family": family,
                "params": {k.split("__", 1)[1]: (float(v) if isinstance(v, float) else v) for k, v in params.items()},
                **_scores(y_sel, oof),
                "fit_seconds": (time.perf_counter() - t0) / config.train.cv_folds,
            }
        )
    candidates = pd.DataFrame(rows).sort_values("roc_auc", ascending=False, kind="stable").reset_index(drop=True)
    timings["selection_seconds"] = time.perf_counter() - started

    best_key = candidates.loc[0, "candidate"]
    chosen, chosen_oof, family = estimators[best_key], oof_by_key[best_key], candidates.loc[0, "family"]
    params = dict(candidates.loc[0, "params"])
    best_by_family = candidates.drop_duplicates("family")
    if config.train.blend and len(best_by_family) >= 2:
        keys = list(best_by_family["candidate"][:2])
        best_blend = None
        for weight in (0.25, 0.5, 0.75):
            blended = weight * oof_by_key[keys[0]] + (1 - weight) * oof_by_key[keys[1]]
            score = _scores(y_sel, blended)
            if best_blend is None or score["roc_auc"] > best_blend[1]["roc_auc"]:
                best_blend = (weight, score, blended)
        weight, score, blended = best_blend
        blend_row = {"candidate": "blend", "family": "blend", "params": {"weights": [weight, 1 - weight], "members": keys},
                     **score, "fit_seconds": float(best_by_family["fit_seconds"][:2].sum())}
        candidates = pd.concat([candidates, pd.DataFrame([blend_row])], ignore_index=True)
        if score["roc_auc"] >= candidates.loc[0, "roc_auc"] + config.train.blend_min_gain:
            members = {key.split("#")[0]: estimators[key] for key in keys}
            chosen, chosen_oof, family = _blend(members, [weight, 1 - weight]), blended, "blend"
            params = blend_row["params"]
            say(f"blend of {' and '.join(keys)} (weights {weight:.2f}/{1 - weight:.2f}) beats the best single model")
    candidates = candidates.sort_values("roc_auc", ascending=False, kind="stable").reset_index(drop=True)

    method, calibration_scores = _choose_calibration(y_sel, chosen_oof, config)
    say(f"final fit: {family}, {method} calibration, on {len(y_train):,} rows")
    t0 = time.perf_counter()
    model = CalibratedClassifierCV(clone(chosen), method=method, cv=_folds(config), ensemble=False)
    model.fit(X_train, y_train)
    timings["final_fit_seconds"] = time.perf_counter() - t0

    X_holdout = dataset.frame.iloc[holdout_idx].reset_index(drop=True)
    y_holdout = y_all[holdout_idx]
    proba = model.predict_proba(X_holdout)[:, 1]
    value = None
    if dataset.monthly_value is not None:
        from pipeline.targeting import clv

        value = clv(dataset.monthly_value.iloc[holdout_idx].to_numpy(), config.campaign)
    metrics = evaluate.classification_metrics(y_holdout, proba, value=value, campaign=config.campaign)
    timings["total_seconds"] = time.perf_counter() - started
    from pipeline.model import final_estimator

    typer = final_estimator(model)
    typer = typer.named_steps["typer"] if hasattr(typer, "named_steps") else typer.estimators_[0].named_steps["typer"]
    return TrainResult(
        model=model,
        family=family,
        params=params,
        calibration=method,
        candidates=candidates,
        calibration_scores=calibration_scores,
        holdout_index=holdout_idx,
        holdout_proba=proba,
        metrics=metrics,
        train_rows=len(y_train),
        base_rate=float(y_train.mean()),
        columns=typer.columns_report(),
        input_columns=[str(c) for c in dataset.frame.columns],
        timings=timings,
    )
