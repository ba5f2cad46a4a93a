"""Model selection, calibration and the final fit: a pure function of a dataset and config.

``train(dataset, config)`` splits off a stratified hold-out that selection never sees;
cross-validates each candidate family's defaults and a budgeted random search on the rest
(stratified folds, fixed seeds); keeps the best by ROC AUC, or a family's defaults when they
are within one standard error of it; optionally blends it with the best model of another
family when that pays; calibrates (sigmoid by default, or not at all when calibration does
not lower the cross-validated Brier score) with a map learned on out-of-fold scores; fits the
model on the training rows and evaluates it on the hold-out; then refits it on every row for
the registered model.  Every thread pool is limited to ``train.n_threads``.  Nothing here
touches MLflow or files: ``pipeline.tracking`` logs what this returns.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
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

    #: The registered model: refit on every row when ``train.refit_all_rows``.
    model: Any
    #: The model the hold-out metrics belong to: fit on the training rows only.
    holdout_model: Any
    family: str
    params: dict[str, Any]
    calibration: str
    candidates: pd.DataFrame
    calibration_scores: dict[str, float]
    holdout_index: np.ndarray
    holdout_proba: np.ndarray
    metrics: dict[str, float]
    train_rows: int
    #: Rows the registered model was fit on.
    fit_rows: int
    base_rate: float
    columns: pd.DataFrame
    input_columns: list[str]
    threads: int
    #: ``"stratified"`` or ``"time"`` (rows from several snapshots).
    folds: str = "stratified"
    timings: dict[str, float] = field(default_factory=dict)
    #: Search draws stopped before their last fold (``race_out``): candidate, folds, their AUC, leader.
    raced_out: list[dict[str, Any]] = field(default_factory=list)
    #: Candidates not tried to stay within ``train.time_budget_seconds``.
    skipped: list[str] = field(default_factory=list)


def _folds(config: Config, n_folds: int | None = None):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=n_folds or config.train.cv_folds, shuffle=True, random_state=config.train.seed)


def selection_fold_count(config: Config, n_rows: int) -> int:
    """Selection's number of folds on ``n_rows`` rows: ``train.cv_folds``, or
    ``train.large_cv_folds`` when fewer and the rows are at least ``train.large_cv_rows``."""
    train = config.train
    if train.large_cv_rows and n_rows >= train.large_cv_rows:
        return min(train.cv_folds, train.large_cv_folds)
    return train.cv_folds


def time_folds(periods: np.ndarray, n_folds: int, *, horizon_days: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Forward-chaining folds by snapshot date: each fold trains on every earlier date.

    The distinct dates are cut into up to ``n_folds + 1`` consecutive groups; fold ``i``
    validates on group ``i`` after training on all groups before it, so no model is ever
    scored on a date earlier than the data it learned from.  Rows of the first group are
    never validated.  With ``horizon_days`` (the label window), a fold trains only on rows
    whose window has closed by its first validated date (``date + horizon <= first date``):
    a label whose window overlaps the validated rows' would tell the model about the very
    period it is validated on (purging).  Folds left with no training row are dropped.
    """
    periods = np.asarray(periods, dtype="datetime64[ns]")
    dates = np.unique(periods)
    groups = np.array_split(dates, min(n_folds + 1, len(dates)))
    gap = np.timedelta64(int(horizon_days), "D")
    folds = [(np.flatnonzero((periods < group[0]) & (periods + gap <= group[0])), np.flatnonzero(np.isin(periods, group)))
             for group in groups[1:]]
    return [(fit, check) for fit, check in folds if len(fit)]


def purge_overlap(periods: np.ndarray, train_idx: np.ndarray, holdout_idx: np.ndarray,
                  horizon_days: int) -> np.ndarray:
    """The training positions whose label window closes by the hold-out's first date.

    A row cut at ``date`` is labelled by what happens in ``[date, date + horizon_days)``; when
    that window reaches past the first hold-out date, its label overlaps the hold-out's
    windows (the same subscribers leaving in the same days), and training on it would leak
    the hold-out's outcomes into the model that is evaluated on them.
    """
    periods = np.asarray(periods, dtype="datetime64[ns]")
    first = periods[holdout_idx].min()
    return train_idx[periods[train_idx] + np.timedelta64(int(horizon_days), "D") <= first]


def selection_folds(X: pd.DataFrame, y: np.ndarray, config: Config, periods: np.ndarray | None):
    """Selection's cross-validation folds, as (fit rows, scored rows) pairs: stratified, or by
    time when ``periods`` (the rows' snapshot dates) are given."""
    n_folds = selection_fold_count(config, len(y))
    if periods is None:
        return list(_folds(config, n_folds).split(X, y))
    folds = time_folds(periods, n_folds, horizon_days=config.data.horizon_days)
    if not folds:
        raise DataError(
            f"no fold by time is left once rows whose label window ({config.data.horizon_days} days, "
            "data.horizon_days) overlaps the validated dates are purged: space the snapshots at least "
            "that far apart, or add earlier ones"
        )
    return folds


#: Seconds of one selection fold of each family relative to logistic regression's on the same
#: fold, used only for a family not fit yet (``SelectionClock``).  Measured with
#: ``benchmarks/family_costs.py`` (the project's own candidates at their defaults, one selection
#: fold's fit, CPU and wall seconds side by side; ``docs/BENCHMARKS.md``): HistGradientBoosting
#: 0.4 to 3.0 times logistic regression (Telco, BigML, generated bases of 20,000 and 100,000
#: subscribers), CatBoost 26 to 41 times below 10,000 fit rows (Telco, BigML; 12 to 17 on
#: 11,534 rows with 1,000 trees, before such fits stopped early).  Each prior is the largest ratio
#: measured, rounded up: an overestimate only skips a candidate, an underestimate breaks the
#: budget.  Narrow tables, where logistic regression costs little more than its fixed overhead,
#: can exceed them (CatBoost 160 times on a 4-column table of 10,700 fit rows with 1,000 trees).
COST_RELATIVE_TO_LOGISTIC: dict[str, float] = {"logistic": 1.0, "hist_gradient_boosting": 4.0, "catboost": 45.0}
#: CatBoost's prior on fits of ``pipeline.model.CATBOOST_LARGE_FIT_ROWS`` (10,000) rows or more,
#: where it stops early with at most 300 trees: 1.9 times logistic regression on a
#: 20,000-subscriber base (11,534 fit rows), 3.1 to 5.6 on the 100,000-subscriber base (32,000
#: fit rows), 7.8 to 9.4 on a 4-column table of 21,000.
CATBOOST_LARGE_FIT_RELATIVE_COST = 10.0


def cost_relative_to_logistic(family: str, fit_rows: int) -> float | None:
    """The prior cost of one fold of ``family`` on ``fit_rows`` rows relative to logistic
    regression's (``COST_RELATIVE_TO_LOGISTIC``), or None for a family it does not know."""
    from pipeline.model import CATBOOST_LARGE_FIT_ROWS

    if family == "catboost" and fit_rows >= CATBOOST_LARGE_FIT_ROWS:
        return CATBOOST_LARGE_FIT_RELATIVE_COST
    return COST_RELATIVE_TO_LOGISTIC.get(family)


@dataclass
class SelectionClock:
    """Keeps selection within ``train.time_budget_seconds``: before each candidate it estimates
    what the candidate and the fits after selection will take, from the fits seen so far.

    A candidate's cost is its family's mean seconds per fold so far times the folds.  A family
    not fit yet is estimated through the priors ``COST_RELATIVE_TO_LOGISTIC`` (each family's
    cost relative to logistic regression's on the same fold, on ``fold_rows`` rows): each
    family seen gives ``its mean per fold / its prior x the new family's prior``, and the
    largest of these is taken (a family without a prior: ``UNSEEN_FACTOR`` times the costliest
    family seen).  The fits after selection (the fit on the training part and the refit on
    every row) are reserved for the two costliest families (a blend fits both), scaled from a
    fold's rows to the rows they take and, where a family's settings change with rows
    (CatBoost), by the ratio of its priors there and on a fold; the same estimates serve a
    family not fit yet.  The first candidate always runs: a model is needed whatever the budget.
    """

    budget: float
    started: float
    folds: int
    #: Rows of one selection fold's fit, and of the fits after selection.
    fold_rows: int
    train_rows: int
    all_rows: int
    per_fold: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    #: A family without a prior in ``COST_RELATIVE_TO_LOGISTIC``: this many times the costliest seen.
    UNSEEN_FACTOR = 3.0

    def record(self, family: str, seconds_per_fold: float) -> None:
        self.per_fold.setdefault(family, []).append(seconds_per_fold)

    def _family_cost(self, family: str) -> float:
        """Expected seconds of one selection fold of ``family``: its mean so far, or the priors' estimate."""
        if family in self.per_fold:
            return float(np.mean(self.per_fold[family]))
        seen = {f: float(np.mean(v)) for f, v in self.per_fold.items()}
        prior = cost_relative_to_logistic(family, self.fold_rows)
        # Logistic regression's cost per fold as each family seen (with a prior) implies it.
        logistic = [cost / ratio for f, cost in seen.items()
                    if (ratio := cost_relative_to_logistic(f, self.fold_rows))]
        if prior is None or not logistic:
            return self.UNSEEN_FACTOR * max(seen.values(), default=0.0)
        return max(logistic) * prior

    def _fit_cost(self, family: str, rows: int) -> float:
        """Expected seconds of one fit of ``family`` on ``rows`` rows: a fold's cost scaled to the
        rows (fit time grows about linearly with rows), and by the change of its prior when its
        settings differ there (CatBoost from ``CATBOOST_LARGE_FIT_ROWS`` rows on)."""
        if not rows:
            return 0.0
        cost = self._family_cost(family) * rows / max(self.fold_rows, 1)
        there, here = cost_relative_to_logistic(family, rows), cost_relative_to_logistic(family, self.fold_rows)
        return cost * there / here if there and here else cost

    def reserve(self, extra: str | None = None) -> float:
        """Seconds the fits after selection are expected to take (with family ``extra`` tried too)."""
        families = set(self.per_fold) | ({extra} if extra else set())
        costs = sorted((self._fit_cost(f, self.train_rows) + self._fit_cost(f, self.all_rows) for f in families),
                       reverse=True)
        return sum(costs[:2])

    def allows(self, family: str) -> bool:
        """Whether a candidate of ``family`` and the fits after selection still fit in the budget."""
        if not self.budget or not self.per_fold:
            return True
        elapsed = time.perf_counter() - self.started
        return elapsed + self.folds * self._family_cost(family) + self.reserve(family) <= self.budget

    def deadline(self) -> float | None:
        """The ``time.perf_counter()`` by which a running candidate must be stopped to leave the
        fits after selection of the candidates already finished their time; ``None`` without a
        budget, and for the first candidate (a model is needed whatever the budget)."""
        if not self.budget or not self.per_fold:
            return None
        return self.started + self.budget - self.reserve()

    def finishes(self, family: str, seconds_per_fold: float, folds_left: int) -> bool:
        """Whether a running candidate, at the seconds per fold it has taken so far, can still
        finish its other folds and the fits after selection within the budget."""
        if not self.budget or not self.per_fold:
            return True
        seen = replace(self, per_fold={**self.per_fold, family: [seconds_per_fold]})
        elapsed = time.perf_counter() - self.started
        return elapsed + folds_left * seconds_per_fold + seen.reserve() <= self.budget


class OutOfBudget(Exception):
    """A candidate stopped before its last fold: the time budget would not let it finish."""

    def __init__(self, folds_done: int):
        super().__init__(f"stopped after {folds_done} folds")
        self.folds_done = folds_done


class RacedOut(Exception):
    """A candidate stopped before its last fold: it can no longer win (``race_out``)."""

    def __init__(self, folds_done: int, fold_auc: np.ndarray):
        super().__init__(f"stopped after {folds_done} folds")
        self.folds_done = folds_done
        self.fold_auc = fold_auc


#: Racing: a tuned draw stops once it trails the leader by more than this much ROC AUC on the
#: folds both have seen (and by more than twice the standard error of the paired difference).
RACE_MARGIN = 0.005
#: Racing starts after this many folds.
RACE_MIN_FOLDS = 2


def race_out(fold_auc: np.ndarray, leader_auc: np.ndarray | None) -> bool:
    """Whether a candidate with these fold AUCs so far can stop: it trails the leader's AUC on
    the same folds by more than ``RACE_MARGIN`` and by more than twice the standard error of
    the paired differences.  A tuned draw is kept only when it beats the family's defaults by a
    standard error (``_select``), so one this far behind after ``RACE_MIN_FOLDS`` folds is not
    worth its remaining fits."""
    k = len(fold_auc)
    if leader_auc is None or k < RACE_MIN_FOLDS or len(leader_auc) < k:
        return False
    diff = np.asarray(fold_auc) - np.asarray(leader_auc)[:k]
    se = float(diff.std(ddof=1) / np.sqrt(k))
    return float(diff.mean()) < -max(RACE_MARGIN, 2 * se)


def _oof_proba(estimator, X: pd.DataFrame, y: np.ndarray, config: Config,
               periods: np.ndarray | None = None, *,
               stop: Callable[[np.ndarray], bool] | None = None,
               in_time: Callable[[float, int], bool] | None = None,
               deadline: float | None = None,
               fitted_steps: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold churn probabilities of an unfitted estimator, and its ROC AUC on each fold.

    Stratified folds, or folds by time when ``periods`` (each row's snapshot date) is given;
    then rows of the earliest dates are never validated and their probabilities are NaN.
    ``stop`` is asked after each fold with the fold AUCs so far; when it says so, ``RacedOut``
    is raised and the remaining folds are not fit.  ``in_time`` is asked after each fold with
    the seconds per fold so far and the folds left, and a fit still running at ``deadline``
    (a ``time.perf_counter()`` value) is stopped (``model.fit_deadline``); either raises
    ``OutOfBudget``.  ``fitted_steps``, shared by the candidates of one selection, keeps each
    fold's output of the pipeline steps before the model (``_fold_proba``).  Without any of
    the three (no racing, no time budget), CatBoost's folds are fit two at a time on one thread
    each (``_fits_at_once``): the same probabilities for less time.
    """
    from sklearn.metrics import roc_auc_score

    from pipeline.model import OutOfTime, fit_deadline

    proba = np.full(len(y), np.nan, dtype="float64")
    fold_auc = []
    splits = selection_folds(X, y, config, periods)
    started = time.perf_counter()
    at_once = (_fits_at_once(estimator, max(len(fit) for fit, _ in splits))
               if stop is None and in_time is None and deadline is None else 1)
    if at_once > 1:
        for (_, test_idx), fold in _concurrent_folds(estimator, X, y, splits, at_once, fitted_steps):
            proba[test_idx] = fold
            if len(np.unique(y[test_idx])) == 2:
                fold_auc.append(roc_auc_score(y[test_idx], proba[test_idx]))
        return proba, np.asarray(fold_auc)
    for number, (train_idx, test_idx) in enumerate(splits, start=1):
        try:
            with fit_deadline(deadline):
                proba[test_idx] = _fold_proba(estimator, X, y, train_idx, test_idx, number, fitted_steps)
        except OutOfTime:
            raise OutOfBudget(number - 1) from None
        if len(np.unique(y[test_idx])) == 2:
            fold_auc.append(roc_auc_score(y[test_idx], proba[test_idx]))
        if number == len(splits):
            break
        if stop is not None and stop(np.asarray(fold_auc)):
            raise RacedOut(number, np.asarray(fold_auc))
        if in_time is not None and not in_time((time.perf_counter() - started) / number, len(splits) - number):
            raise OutOfBudget(number)
    return proba, np.asarray(fold_auc)


def _fits_at_once(estimator, rows: int) -> int:
    """How many fits of ``estimator`` on ``rows`` rows may run side by side, each on one thread:
    the thread count of the CatBoost model it holds (alone, in a pipeline or in a blend) when
    that is a small fit (under ``model.CATBOOST_LARGE_FIT_ROWS`` rows), else 1.

    CatBoost's own thread pool keeps two cores busy poorly on a small fit: on IBM Telco four
    folds took 53.4 CPU-s (28.1 s) one after the other on two threads each, and 38.8 CPU-s
    (19.9 s) two at a time on one thread each, with identical probabilities (CatBoost splits
    its work into a fixed number of blocks whatever its threads).  Each fit then runs on one
    thread, in a thread of its own (CatBoost releases the GIL while it fits).  On large fits
    (early stopping) its pool is used well: two at a time took the same time on a
    100,000-subscriber base, with 9% more memory.  Selection fits that many folds at once
    (``_concurrent_folds``); the fit on the training part and the refit on every row run side
    by side when it is 2 or more (``_train``).
    """
    from pipeline.model import CATBOOST_LARGE_FIT_ROWS, CatBoostModel

    members = [estimator, *estimator.get_params(deep=True).values()]
    threads = [m.thread_count for m in members if isinstance(m, CatBoostModel)]
    return max(1, *threads) if threads and rows < CATBOOST_LARGE_FIT_ROWS else 1


def _concurrent_folds(estimator, X: pd.DataFrame, y: np.ndarray, splits: list, at_once: int,
                      fitted_steps: dict | None):
    """``((fit rows, scored rows), probabilities)`` of each fold in order, ``at_once`` folds fit
    at a time, each on one thread (``_fits_at_once``)."""
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="fold") as pool:
        futures = [pool.submit(_on_one_thread, _fold_proba, estimator, X, y, fit_rows, scored_rows, number,
                               fitted_steps)
                   for number, (fit_rows, scored_rows) in enumerate(splits, start=1)]
        try:
            for split, future in zip(splits, futures):
                yield split, future.result()
        finally:
            for future in futures:
                future.cancel()


def _on_one_thread(work: Callable, *args):
    """``work(*args)`` with CatBoost's fits (``model.catboost_fit_threads``) and this thread's
    OpenMP pool (HistGradientBoosting in a blend) on one thread: fits run side by side this way
    stay within ``train.n_threads`` together."""
    from threadpoolctl import threadpool_limits

    from pipeline.model import catboost_fit_threads

    with catboost_fit_threads(1), threadpool_limits(limits=1, user_api="openmp"):
        return work(*args)


def _fold_proba(estimator, X: pd.DataFrame, y: np.ndarray, fit_rows: np.ndarray, scored_rows: np.ndarray,
                fold: int, fitted_steps: dict | None) -> np.ndarray:
    """A clone of ``estimator`` fit on ``fit_rows``; its churn probabilities of ``scored_rows``.

    With ``fitted_steps`` (a dict shared by one selection's candidates) and a ``Pipeline``,
    each step before the model is fit once per fold and configuration: the typing step every
    candidate starts with, and logistic regression's encoding, are the same for every
    candidate of a family, and were a tenth of selection's time.  The dict keeps, under
    ``(fold, digest of each unfitted step so far)``, both parts' output of those steps; only
    the model is fit per candidate.  The probabilities are those of the whole pipeline fit
    on the fold, since the steps are fit on the same rows with the same parameters.
    """
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    model = clone(estimator)
    if fitted_steps is None or not isinstance(model, Pipeline) or len(model.steps) < 2:
        return model.fit(X.iloc[fit_rows], y[fit_rows]).predict_proba(X.iloc[scored_rows])[:, 1]
    import joblib

    key: tuple = (fold,)
    fit_part, scored_part = X.iloc[fit_rows], X.iloc[scored_rows]
    for _, step in model.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        key += (joblib.hash(step),)
        if key not in fitted_steps:
            fitted_steps[key] = (step.fit_transform(fit_part, y[fit_rows]), step.transform(scored_part))
        fit_part, scored_part = fitted_steps[key]
    final = model.steps[-1][1].fit(fit_part, y[fit_rows])
    return final.predict_proba(scored_part)[:, 1]


def time_holdout(periods: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the hold-out rows by time: the latest snapshot dates, enough of them to
    hold at least ``fraction`` of the rows, never the earliest date."""
    periods = np.asarray(periods, dtype="datetime64[ns]")
    dates, counts = np.unique(periods, return_counts=True)
    chosen, share = [], 0.0
    for date, count in zip(dates[::-1][:-1], counts[::-1][:-1]):
        chosen.append(date)
        share += count / len(periods)
        if share >= fraction:
            break
    return np.flatnonzero(np.isin(periods, chosen))


def _scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    validated = ~np.isnan(proba)  # folds by time leave the earliest rows unscored
    y, proba = y[validated], proba[validated]
    clipped = np.clip(proba, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "log_loss": float(log_loss(y, clipped)),
        "brier": float(brier_score_loss(y, proba)),
    }


def _subsample(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ``limit`` rows, stratified by label (all rows when fewer)."""
    if len(y) <= limit:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    kept, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=seed)
    return np.sort(kept)


def selection_rows(X_train: pd.DataFrame, y_train: np.ndarray, periods_train: np.ndarray | None,
                   config: Config) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """The rows selection cross-validates on: the training part, subsampled (stratified) to at most
    ``train.selection_max_rows``, with their snapshot dates when folds go by time."""
    kept = _subsample(y_train, config.train.selection_max_rows, config.train.seed)
    return (X_train.iloc[kept].reset_index(drop=True), y_train[kept],
            None if periods_train is None else periods_train[kept])


def _families(config: Config, train_rows: int, say: Callable[[str], None]) -> list[str]:
    """The candidate families this run tries: CatBoost only up to ``catboost_max_rows`` rows."""
    from pipeline.model import FAMILIES

    kept = []
    for family in config.train.candidates:
        if family not in FAMILIES:
            raise ModelError(f"unknown model family {family!r} in train.candidates; expected one of {', '.join(FAMILIES)}")
        limit = config.train.catboost_max_rows
        if family == "catboost" and limit and train_rows > limit:
            say(f"skipping catboost: {train_rows:,} training rows is more than train.catboost_max_rows ({limit:,})")
            continue
        kept.append(family)
    if not kept:
        raise ModelError("no candidate family left to try; add logistic or hist_gradient_boosting to train.candidates")
    return kept


def _candidate_grid(config: Config, families: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each family's defaults first, in order, then its random-search draws."""
    from sklearn.model_selection import ParameterSampler

    from pipeline.model import search_space

    grid = [(family, {}) for family in families]
    for family in families:
        space = search_space(family)
        if space and config.train.search_iterations:
            sampler = ParameterSampler(space, n_iter=config.train.search_iterations, random_state=config.train.seed)
            grid.extend((family, dict(params)) for params in sampler)
    return grid


def _blend(estimators: dict[str, Any], weights: list[float]):
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier(list(estimators.items()), voting="soft", weights=weights)


def _choose_calibration(y: np.ndarray, oof: np.ndarray, config: Config) -> tuple[str, dict[str, float]]:
    """The calibration whose cross-validated Brier score on out-of-fold scores is lowest.

    ``"none"`` when no method beats the uncalibrated scores: calibrating an already
    calibrated model only adds noise.
    """
    from sklearn.metrics import brier_score_loss

    from pipeline.model import CalibratedModel

    scores = {"none": float(brier_score_loss(y, oof))}
    for method in config.train.calibration_methods:
        calibrated = np.empty_like(oof)
        for train_idx, test_idx in _folds(config).split(oof.reshape(-1, 1), y):
            mapping = CalibratedModel(method=method).fit_map(oof[train_idx], y[train_idx])
            calibrated[test_idx] = mapping.calibrate(oof[test_idx])
        scores[method] = float(brier_score_loss(y, calibrated))
    best = min(scores, key=lambda m: (scores[m], m != "none"))
    return best, scores


def _select(candidates: pd.DataFrame, say: Callable[[str], None]) -> str:
    """The candidate to keep: the best by cross-validated ROC AUC, or a family's defaults when
    they are within one standard error of it (a tuned draw that wins by less is noise)."""
    best = candidates.iloc[0]
    defaults = candidates[~candidates["tuned"].astype(bool)]
    if best["tuned"] and len(defaults):
        fallback = defaults.iloc[0]
        if fallback["roc_auc"] >= best["roc_auc"] - best["roc_auc_se"]:
            say(f"{fallback['candidate']} (defaults) is within one standard error of {best['candidate']}: keeping defaults")
            return str(fallback["candidate"])
    return str(best["candidate"])


@dataclass(frozen=True)
class ColumnScreen:
    """Which raw columns a model takes: those the typing step keeps, plus the id column.

    ``dropped`` maps every other column to the reason (identifier, personal data, constant,
    empty, free text).
    """

    input_columns: tuple[str, ...]
    dropped: dict[str, str]


def screen_columns(frame: pd.DataFrame, *, drop_columns: tuple[str, ...] = ()) -> ColumnScreen:
    """The model's input columns: a ``TableTyper`` fit on ``frame`` decides which columns are used.

    The id (in ``drop_columns``) stays an input, since scoring reads it from the same rows,
    but the model never uses it.  Every column the typer drops is left out altogether.
    """
    from pipeline.prepare import TableTyper

    typer = TableTyper(drop_columns=tuple(drop_columns)).fit(frame)
    keep = set(typer.kinds_) | set(drop_columns)
    columns = tuple(str(c) for c in frame.columns if str(c) in keep)
    dropped = {c: r for c, r in typer.dropped_.items() if c not in drop_columns}
    if not set(typer.kinds_):
        raise DataError(f"no usable feature column: every column was dropped "
                        f"({'; '.join(f'{c} ({r})' for c, r in list(dropped.items())[:10])})")
    return ColumnScreen(input_columns=columns, dropped=dropped)


def excluded_columns(dataset: Dataset, config: Config) -> dict[str, str]:
    """Columns left out before the typing step, and why: ``data.exclude_columns`` (and
    ``churn train --exclude``), and protected traits (``pipeline.protected``) that
    ``data.use_protected`` does not name.

    Raises
    ------
    DataError
        When ``exclude_columns`` or ``use_protected`` names a column the data does not have.
    """
    from pipeline.protected import protected_columns

    columns = [str(c) for c in dataset.frame.columns]
    known = set(columns) | set(dataset.dropped)
    for key, names in (("data.exclude_columns / --exclude", config.data.exclude_columns),
                       ("data.use_protected", config.data.use_protected)):
        unknown = [name for name in names if name not in known]
        if unknown:
            shown = ", ".join(columns[:30]) + (f" (and {len(columns) - 30} more)" if len(columns) > 30 else "")
            raise DataError(f"{dataset.source}: {key} names {', '.join(unknown)}, which the data does not have "
                            f"(columns: {shown})")
    out = {name: "excluded by configuration (data.exclude_columns / --exclude)"
           for name in config.data.exclude_columns if name in columns}
    for name, trait in protected_columns(columns).items():
        if name not in out and name != dataset.id_column and name not in config.data.use_protected:
            out[name] = f"protected trait ({trait}): not a feature unless data.use_protected names it"
    return out


def _columns_report(typer, screen: ColumnScreen) -> pd.DataFrame:
    """The fitted model's column report, plus the columns screened out before any model saw them."""
    report = typer.columns_report()
    screened = pd.DataFrame([{"column": c, "use": "dropped", "reason": r} for c, r in screen.dropped.items()
                             if c not in set(report["column"])], columns=["column", "use", "reason"])
    return pd.concat([report, screened], ignore_index=True) if len(screened) else report


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
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so the limit below applies to it)
    from threadpoolctl import threadpool_limits

    threads = config.train.n_threads
    with threadpool_limits(limits=threads):
        return _train(dataset, config, threads, progress or (lambda message: log.info(message)))


@dataclass
class TrainingSplit:
    """The rows ``train`` learns from: labels, the training part and the hold-out, the screened columns."""

    y_all: np.ndarray
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    #: Columns never given to the model (the id).
    drop: tuple[str, ...]
    screen: object
    #: Every row, the screened input columns only.
    frame: pd.DataFrame
    X_train: pd.DataFrame
    y_train: np.ndarray
    #: Snapshot dates of the training part when selection folds go by time, else None.
    periods_train: np.ndarray | None
    #: Whether the hold-out was split off by time (the rows come from several snapshots).
    by_time: bool


def training_split(dataset: Dataset, config: Config, say: Callable[[str], None] = lambda message: None
                   ) -> TrainingSplit:
    """Split off the hold-out (by time when the rows come from several snapshots, else stratified)
    and screen the columns on the training part, as ``train`` does before selection."""
    y_all = _checked_labels(dataset, config)
    periods = None if dataset.period is None else dataset.period.to_numpy(dtype="datetime64[ns]")
    by_time = periods is not None and len(np.unique(periods)) >= 2
    if by_time:
        train_idx, holdout_idx = _time_split(dataset, y_all, periods, config, say)
    else:
        train_idx, holdout_idx = _stratified_split(y_all, config)
    drop = tuple(c for c in (dataset.id_column,) if c in dataset.frame.columns)
    screen = _screen(dataset, config, train_idx, drop)
    frame = dataset.frame[list(screen.input_columns)]
    periods_train = periods[train_idx] if by_time and len(np.unique(periods[train_idx])) >= 2 else None
    if by_time and periods_train is None:
        say("only one snapshot date left for selection: its folds are stratified, not by time")
    return TrainingSplit(y_all=y_all, train_idx=train_idx, holdout_idx=holdout_idx, drop=drop, screen=screen,
                         frame=frame, X_train=frame.iloc[train_idx].reset_index(drop=True), y_train=y_all[train_idx],
                         periods_train=periods_train, by_time=by_time)


def _train(dataset: Dataset, config: Config, threads: int, say: Callable[[str], None]) -> TrainResult:
    """``train``'s stages, within its thread limit: split off the hold-out, screen the columns,
    select a candidate (or a blend), calibrate it and fit it on the training part, evaluate
    it on the hold-out, and refit it on every row for the registered model."""
    from sklearn.base import clone

    from pipeline.model import small_fit_openmp

    timings: dict[str, float] = {}
    started = time.perf_counter()
    split = training_split(dataset, config, say)
    y_all, holdout_idx, drop, screen, by_time = split.y_all, split.holdout_idx, split.drop, split.screen, split.by_time
    frame, X_train, y_train, periods_train = split.frame, split.X_train, split.y_train, split.periods_train

    selection = _run_selection(X_train, y_train, periods_train, all_rows=len(y_all), source=dataset.source,
                               drop=drop, config=config, threads=threads, started=started, say=say)
    timings["selection_seconds"] = time.perf_counter() - started
    choice = _choose_model(selection, config, say)

    t0 = time.perf_counter()
    calibration = _chosen_calibration(choice, selection.y, config)
    method = calibration.method
    refit = _refits_all_rows(config, len(y_train))
    # The registered model: the same choice, refit on every row (the hold-out included), with
    # the calibration map learned from selection.  The hold-out metrics stay those of ``holdout_model``.
    # A small CatBoost model's refit runs beside the fit on the training part (``_fits_at_once``).
    at_once = _fits_at_once(choice.estimator, len(y_all)) if refit and not config.train.time_budget_seconds else 1
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refit") as pool:
        beside = pool.submit(_on_one_thread, _timed_fit, clone(choice.estimator), frame, y_all) if at_once > 1 else None
        say(f"final fit: {choice.family}, {'no' if method == 'none' else method} calibration, on {len(y_train):,} rows"
            + (f", and its refit on all {len(y_all):,} rows beside it" if beside else ""))
        if beside:
            fitted = _on_one_thread(clone(choice.estimator).fit, X_train, y_train)
        else:
            with small_fit_openmp(len(y_train)):
                fitted = clone(choice.estimator).fit(X_train, y_train)
        model = calibration.apply(fitted, choice.estimator, config)
        timings["final_fit_seconds"] = time.perf_counter() - t0
        proba, metrics = _evaluate_holdout(model, dataset, frame, y_all, holdout_idx, config)

        holdout_model = model
        if config.train.refit_all_rows and not refit:
            say(f"no refit on all rows: {len(y_train):,} training rows is more than train.refit_max_rows "
                f"({config.train.refit_max_rows:,}); the registered model is the one evaluated on the hold-out")
        if refit:
            if beside is None:
                say(f"refit on all {len(y_all):,} rows")
                with small_fit_openmp(len(y_all)):
                    fitted, timings["refit_seconds"] = _timed_fit(clone(choice.estimator), frame, y_all)
            else:
                fitted, timings["refit_seconds"] = beside.result()
            model = calibration.apply(fitted, choice.estimator, config)
    timings["total_seconds"] = time.perf_counter() - started

    return TrainResult(
        model=model,
        holdout_model=holdout_model,
        family=choice.family,
        params=choice.params,
        calibration=method,
        candidates=choice.candidates,
        calibration_scores=calibration.scores,
        holdout_index=holdout_idx,
        holdout_proba=proba,
        metrics=metrics,
        train_rows=len(y_train),
        fit_rows=len(y_all) if refit else len(y_train),
        base_rate=float(y_train.mean()),
        columns=_columns_report(_typer(model), screen),
        input_columns=list(screen.input_columns),
        threads=threads,
        folds="time" if by_time else "stratified",
        timings=timings,
        raced_out=selection.raced,
        skipped=list(selection.skipped),
    )


def _timed_fit(estimator, X: pd.DataFrame, y: np.ndarray):
    """``(estimator fit on X and y, seconds the fit took)``."""
    t0 = time.perf_counter()
    return estimator.fit(X, y), time.perf_counter() - t0


def _checked_labels(dataset: Dataset, config: Config) -> np.ndarray:
    """Every row's label as 0 or 1, once it is known that both classes have enough rows.

    Each class needs two rows per selection fold.  Raises ``DataError`` when the dataset has
    no label or too few churners or stayers.
    """
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
    return y_all


def _time_split(dataset: Dataset, y_all: np.ndarray, periods: np.ndarray, config: Config,
                say: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training part and of the hold-out when the rows come from several snapshots.

    The latest dates are the hold-out (``time_holdout``), and the folds go forward in time.
    Training rows whose label window overlaps the hold-out are purged (``purge_overlap``);
    a ``DataError`` is raised when none is left, or when either part holds only one class.
    """
    holdout_idx = time_holdout(periods, config.train.holdout_fraction)
    train_idx = np.setdiff1d(np.arange(len(y_all)), holdout_idx)
    kept_idx = purge_overlap(periods, train_idx, holdout_idx, config.data.horizon_days)
    if len(kept_idx) < len(train_idx):
        first = str(periods[holdout_idx].min())[:10]
        if not len(kept_idx):
            raise DataError(
                f"{dataset.source}: every training snapshot's label window ({config.data.horizon_days} days, "
                f"data.horizon_days) overlaps the hold-out from {first}; add snapshots at least that long "
                "before it"
            )
        say(f"left out {len(train_idx) - len(kept_idx):,} training rows of snapshots whose label window "
            f"({config.data.horizon_days} days) overlaps the hold-out from {first} (purged)")
        train_idx = kept_idx
    for name, part in (("hold-out", holdout_idx), ("training part", train_idx)):
        if len(np.unique(y_all[part])) < 2:
            raise DataError(f"{dataset.source}: the {name} of the snapshots by time has only one class")
    dates = np.unique(periods[holdout_idx])
    say(f"folds by time: hold-out is the latest {len(dates)} snapshot(s) from {str(dates[0])[:10]}; "
        f"{len(np.unique(periods[train_idx]))} earlier snapshot(s) for selection")
    return train_idx, holdout_idx


def _stratified_split(y_all: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of the training part and of a hold-out stratified by label (seeded)."""
    from sklearn.model_selection import train_test_split

    train_idx, holdout_idx = train_test_split(
        np.arange(len(y_all)), test_size=config.train.holdout_fraction, stratify=y_all, random_state=config.train.seed
    )
    train_idx.sort()
    holdout_idx.sort()
    return train_idx, holdout_idx


def _screen(dataset: Dataset, config: Config, train_idx: np.ndarray, drop: tuple[str, ...]) -> ColumnScreen:
    """The model's input columns, decided once on the training rows, and why the others are left out.

    Columns the typing step drops (identifiers, personal data, constants, free text) are
    never model inputs, so that no fitted model, its signature, its drift profile or its
    input example ever holds them.  Columns excluded by the configuration and protected
    traits not opted in never reach the typing step.
    """
    excluded = excluded_columns(dataset, config)
    candidates = dataset.frame.drop(columns=[c for c in excluded if c in dataset.frame.columns])
    screen = screen_columns(candidates.iloc[train_idx], drop_columns=drop)
    return ColumnScreen(input_columns=screen.input_columns, dropped={**excluded, **screen.dropped})


def _refits_all_rows(config: Config, train_rows: int) -> bool:
    """Whether the registered model is refit on every row: ``train.refit_all_rows``, and no more
    training rows than ``train.refit_max_rows`` (when set)."""
    return config.train.refit_all_rows and (not config.train.refit_max_rows
                                            or train_rows <= config.train.refit_max_rows)


@dataclass
class _Selection:
    """What selection left: each finished candidate's scores (``candidates``, best ROC AUC
    first), out-of-fold probabilities and unfitted estimator by key, the labels of the rows
    it cross-validated on, and the candidates it raced out or skipped."""

    candidates: pd.DataFrame
    oof: dict[str, np.ndarray]
    estimators: dict[str, Any]
    y: np.ndarray
    raced: list[dict[str, Any]]
    skipped: list[str]


def _run_selection(X_train: pd.DataFrame, y_train: np.ndarray, periods_train: np.ndarray | None, *,
                   all_rows: int, source: str, drop: tuple[str, ...], config: Config, threads: int,
                   started: float, say: Callable[[str], None]) -> _Selection:
    """Every candidate's out-of-fold probabilities on (at most) ``selection_max_rows`` training rows.

    Candidates run in ``_candidate_grid``'s order, each only when the ``SelectionClock`` says
    it fits in the time budget; a search draw stops early when it trails the leader
    (``train.racing``).  A candidate that cannot be fit is a ``ModelError``.
    """
    from pipeline.model import fit_threads, make_candidate

    seed = config.train.seed
    X_sel, y_sel, periods_sel = selection_rows(X_train, y_train, periods_train, config)
    families = _families(config, len(y_train), say)
    rows, oof_by_key, estimators, fold_aucs, raced, fitted_steps = [], {}, {}, {}, [], {}
    grid = _candidate_grid(config, families)
    folds = len(selection_folds(X_sel, y_sel, config, periods_sel))
    clock = SelectionClock(
        budget=config.train.time_budget_seconds, started=started, folds=folds,
        fold_rows=int(len(y_sel) * (folds - 1) / folds), train_rows=len(y_train),
        all_rows=all_rows if _refits_all_rows(config, len(y_train)) else 0)
    for number, (family, params) in enumerate(grid, start=1):
        shown = _shown_params(params)
        if not clock.allows(family):
            clock.skipped.append(f"{family} ({shown or 'defaults'})")
            continue
        say(f"candidate {number}/{len(grid)}: {family} ({shown or 'defaults'})")
        t0 = time.perf_counter()
        estimator = make_candidate(family, drop_columns=drop, seed=seed, n_threads=threads, **params)
        leader = max(rows, key=lambda row: row["roc_auc"])["candidate"] if rows else None
        stop = ((lambda aucs, leader=leader: race_out(aucs, fold_aucs[leader]))
                if params and leader is not None and config.train.racing else None)
        try:
            with fit_threads(family, threads, rows=clock.fold_rows):
                oof, fold_auc = _oof_proba(
                    estimator, X_sel, y_sel, config, periods_sel, stop=stop,
                    in_time=((lambda seconds, left, family=family: clock.finishes(family, seconds, left))
                             if clock.budget else None),
                    deadline=clock.deadline(), fitted_steps=fitted_steps)
        except OutOfBudget as out:
            clock.record(family, (time.perf_counter() - t0) / max(out.folds_done, 1))
            clock.skipped.append(f"{family} ({shown or 'defaults'}, stopped after {out.folds_done} of {folds} folds)")
            continue
        except RacedOut as out:
            clock.record(family, (time.perf_counter() - t0) / out.folds_done)
            raced.append({"candidate": f"{family}#{number}", "family": family, "folds": out.folds_done,
                          "mean_fold_auc": float(out.fold_auc.mean()), "leader": leader})
            say(f"  stopped after {out.folds_done} folds: {float(out.fold_auc.mean()):.4f} ROC AUC on them, "
                f"{float(fold_aucs[leader][:len(out.fold_auc)].mean()):.4f} for {leader}")
            continue
        except (ValueError, TypeError) as err:
            raise ModelError(f"{family} could not be fit on {source}: {str(err).splitlines()[0]}") from err
        key = f"{family}#{number}"
        oof_by_key[key] = oof
        estimators[key] = estimator
        fold_aucs[key] = fold_auc
        clock.record(family, (time.perf_counter() - t0) / folds)
        rows.append(_candidate_row(key, family, params, y_sel, oof, fold_auc, t0))
    _say_unfinished(clock, raced, say)
    candidates = pd.DataFrame(rows).sort_values("roc_auc", ascending=False, kind="stable").reset_index(drop=True)
    return _Selection(candidates=candidates, oof=oof_by_key, estimators=estimators, y=y_sel, raced=raced,
                      skipped=clock.skipped)


def _shown_params(params: dict[str, Any]) -> str:
    """A candidate's parameters as progress shows them (``name=value``, floats to three figures)."""
    return ", ".join(f"{k.split('__', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('__', 1)[1]}={v}"
                     for k, v in params.items())


def _candidate_row(key: str, family: str, params: dict[str, Any], y_sel: np.ndarray, oof: np.ndarray,
                   fold_auc: np.ndarray, t0: float) -> dict[str, Any]:
    """A finished candidate's row of the candidates table: its scores on the out-of-fold
    probabilities, the standard error of its fold AUCs, and its seconds per fold since ``t0``."""
    return {
        "candidate": key,
        "family": family,
        "params": {k.split("__", 1)[1]: (float(v) if isinstance(v, float) else v) for k, v in params.items()},
        **_scores(y_sel, oof),
        "roc_auc_se": float(fold_auc.std(ddof=1) / np.sqrt(len(fold_auc))) if len(fold_auc) > 1 else float("nan"),
        "tuned": bool(params),
        "fit_seconds": (time.perf_counter() - t0) / max(len(fold_auc), 1),
    }


def _say_unfinished(clock: SelectionClock, raced: list[dict[str, Any]], say: Callable[[str], None]) -> None:
    """Tell which candidates the time budget skipped and how many search draws were raced out."""
    if clock.skipped:
        say(f"time budget of {clock.budget:g}s (train.time_budget_seconds): skipped {len(clock.skipped)} "
            f"candidate(s) whose fits would not fit in it: {'; '.join(clock.skipped)}")
    if raced:
        say(f"{len(raced)} search draw(s) stopped early, behind {raced[0]['leader']} on the folds they ran "
            "(train.racing)")


@dataclass
class _Choice:
    """The model selection keeps (unfitted: a candidate, or a blend of two), its family,
    parameters and out-of-fold probabilities, and the candidates table (with the blend's row
    when one was tried), best ROC AUC first."""

    estimator: Any
    oof: np.ndarray
    family: str
    params: dict[str, Any]
    candidates: pd.DataFrame


def _choose_model(selection: _Selection, config: Config, say: Callable[[str], None]) -> _Choice:
    """The candidate ``_select`` keeps, or its blend with the next-best family's best model
    when ``train.blend`` is on and the blend beats it by ``train.blend_min_gain`` ROC AUC."""
    candidates = selection.candidates
    best_key = _select(candidates, say)
    best = candidates.set_index("candidate").loc[best_key]
    choice = _Choice(estimator=selection.estimators[best_key], oof=selection.oof[best_key],
                     family=str(best["family"]), params=dict(best["params"]), candidates=candidates)
    best_by_family = candidates.drop_duplicates("family")
    if config.train.blend and len(best_by_family) >= 2:
        # Blend the kept candidate with the best model of the next-best family.
        other = best_by_family[best_by_family["family"] != choice.family]["candidate"].iloc[0]
        choice = _try_blend(choice, [best_key, other], float(best["roc_auc"]), selection, config, say)
    return replace(choice, candidates=choice.candidates.sort_values("roc_auc", ascending=False, kind="stable")
                   .reset_index(drop=True))


def _try_blend(choice: _Choice, keys: list[str], best_auc: float, selection: _Selection, config: Config,
               say: Callable[[str], None]) -> _Choice:
    """The blend of the two candidates ``keys`` at its best weight, when it beats the kept
    candidate's ROC AUC (``best_auc``) by ``train.blend_min_gain``; else ``choice``.  Either
    way the blend's row joins the candidates table."""
    best_blend = None
    for weight in (0.25, 0.5, 0.75):
        blended = weight * selection.oof[keys[0]] + (1 - weight) * selection.oof[keys[1]]
        score = _scores(selection.y, blended)
        if best_blend is None or score["roc_auc"] > best_blend[1]["roc_auc"]:
            best_blend = (weight, score, blended)
    weight, score, blended = best_blend
    blend_row = {"candidate": "blend", "family": "blend", "params": {"weights": [weight, 1 - weight], "members": keys},
                 **score, "roc_auc_se": float("nan"), "tuned": False,
                 "fit_seconds": float(selection.candidates.set_index("candidate").loc[keys, "fit_seconds"].sum())}
    candidates = pd.concat([choice.candidates, pd.DataFrame([blend_row])], ignore_index=True)
    if score["roc_auc"] >= best_auc + config.train.blend_min_gain:
        members = {key.split("#")[0]: selection.estimators[key] for key in keys}
        blend = _Choice(estimator=_blend(members, [weight, 1 - weight]), oof=blended, family="blend",
                        params=blend_row["params"], candidates=candidates)
        say(f"blend of {' and '.join(keys)} (weights {weight:.2f}/{1 - weight:.2f}) beats the best single model")
        return blend
    return replace(choice, candidates=candidates)


@dataclass
class _Calibration:
    """The calibration chosen for the kept model, its cross-validated Brier score per method,
    and the out-of-fold scores and labels its map is learned on."""

    method: str
    scores: dict[str, float]
    oof: np.ndarray
    y: np.ndarray

    def apply(self, fitted, chosen, config: Config):
        """``fitted`` behind the chosen calibration map (learned on the out-of-fold scores)."""
        from sklearn.base import clone

        from pipeline.model import CalibratedModel

        if self.method == "none":
            return fitted
        mapping = CalibratedModel(clone(chosen), method=self.method, cv=config.train.cv_folds,
                                  random_state=config.train.seed)
        return mapping.fit_map(self.oof, self.y).set_fitted(fitted)


def _chosen_calibration(choice: _Choice, y_sel: np.ndarray, config: Config) -> _Calibration:
    """The calibration of the kept model, chosen on selection's out-of-fold scores.

    Those are of at most ``selection_max_rows`` rows: a two-parameter map needs no more, and
    recomputing them on every training row cost five more fits of the chosen model on large
    bases.  By time, the earliest dates are never validated and are left out.
    """
    validated = ~np.isnan(choice.oof)
    oof, y_cal = choice.oof[validated], y_sel[validated]
    method, scores = _choose_calibration(y_cal, oof, config)
    return _Calibration(method=method, scores=scores, oof=oof, y=y_cal)


def _evaluate_holdout(model, dataset: Dataset, frame: pd.DataFrame, y_all: np.ndarray, holdout_idx: np.ndarray,
                      config: Config) -> tuple[np.ndarray, dict[str, float]]:
    """The model's churn probabilities for the hold-out rows, and its metrics on them (with
    the profit metrics on each subscriber's lifetime value when the data has a monthly value)."""
    from pipeline import evaluate

    X_holdout = frame.iloc[holdout_idx].reset_index(drop=True)
    y_holdout = y_all[holdout_idx]
    proba = model.predict_proba(X_holdout)[:, 1]
    value = None
    if dataset.monthly_value is not None:
        from pipeline.targeting import clv

        value = clv(dataset.monthly_value.iloc[holdout_idx].to_numpy(), config.campaign)
    metrics = evaluate.classification_metrics(y_holdout, proba, value=value, campaign=config.campaign)
    return proba, metrics


def _typer(model):
    """The fitted typing step of a model (of a blend's first member)."""
    from pipeline.model import final_estimator

    inner = final_estimator(model)
    return inner.named_steps["typer"] if hasattr(inner, "named_steps") else inner.estimators_[0].named_steps["typer"]
