"""Evaluation: ranking, calibration and campaign-profit metrics, segment tables and plots.

Every function is pure: it takes labels, scores and parameters and returns numbers, frames
or figures; only :func:`save_plots` writes files, into the folder it is given.  Churn is
encoded as 1 and a higher score means a subscriber is more likely to leave.

The profit measures follow Verbraken, Verbeke and Baesens (2013, IEEE TKDE 25(5)).  A
retention campaign that targets a share of the base earns, per subscriber of the base,

    profit = CLV * (g * (1 - delta) - phi) * pi0 * F0 - CLV * (delta + phi) * pi1 * F1

(``g`` the share of would-be churners who accept the offer, ``delta = d / CLV`` the incentive
cost, ``phi = c / CLV`` the contact cost, ``pi0``/``pi1`` the churn and stay rates, ``F0``/``F1``
the shares of churners and stayers targeted), which is the same number as Neslin et al.'s
``a * [(g * CLV + d * (1 - g)) * b0 * lift(a) - d - c]``.  The maximum profit (MPC) takes the
best cutoff for one known ``g``; the expected maximum profit (EMPC) averages that best profit
over ``g ~ Beta(alpha, beta)``.

Heavy libraries (scikit-learn, SciPy, matplotlib) are imported inside the functions that
use them, so importing this module from the CLI stays cheap.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from pipeline.config import CampaignConfig
from pipeline.errors import DataError, ModelError, first_rows

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Fractions of the base at which lift and gains are reported (``lift_5`` is the top 5%).
REPORTED_FRACTIONS = (0.05, 0.10, 0.20)

#: Tenure bands used for segment metrics: (label, lower bound in months, upper bound).
TENURE_BANDS = (("0-6m", 0, 6), ("6-12m", 6, 12), ("1-2y", 12, 24), ("2-5y", 24, 60), ("5y+", 60, math.inf))

#: Exposure levels, from least to most affected.
EXPOSURE_LEVELS = ("not_exposed", "exposed", "directly_harmed")

#: Tolerance when turning ``fraction * n`` into a row count, so that 0.07 * 100 is 7, not 8.
_ROW_COUNT_TOLERANCE = 1e-9


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _row_labels(values: Any, positions: np.ndarray) -> list:
    """Row labels for an error message: the index labels of a Series, else positions."""
    if isinstance(values, (pd.Series, pd.DataFrame)):
        return list(values.index[positions])
    return [int(p) for p in positions]


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds, so messages read ``2``, not ``np.int64(2)``."""
    return value.item() if isinstance(value, np.generic) else value


def _labels_array(y_true: Any, what: str = "y_true") -> np.ndarray:
    """``y_true`` as an int8 array of 0/1, or a ModelError naming the first bad rows."""
    raw = np.asarray(y_true)
    if raw.ndim != 1:
        raise ModelError(f"{what}: expected a one-dimensional array of 0/1 labels, got shape {raw.shape}")
    if raw.size == 0:
        raise ModelError(f"{what}: no rows to evaluate")
    if raw.dtype == bool:
        return raw.astype(np.int8)
    try:
        numeric = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):  # pragma: no cover - defensive: to_numeric coerces
        numeric = np.full(raw.shape, np.nan)
    bad = np.flatnonzero(~np.isin(numeric, (0.0, 1.0)))
    if bad.size:
        raise ModelError(
            f"{what}: labels must be 0/1 (1 = churned); got {_plain(raw[bad[0]])!r} in "
            f"{first_rows(_row_labels(y_true, bad))}"
        )
    return numeric.astype(np.int8)


def _scores_array(y_score: Any, n_rows: int, what: str = "y_score", probability: bool = False) -> np.ndarray:
    """``y_score`` as a float array of ``n_rows`` finite values (in [0, 1] for probabilities)."""
    try:
        scores = np.asarray(y_score, dtype=float)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{what}: expected numeric scores ({err})") from err
    if scores.ndim != 1:
        raise ModelError(f"{what}: expected a one-dimensional array of scores, got shape {scores.shape}")
    if scores.shape[0] != n_rows:
        raise ModelError(f"{what}: has {scores.shape[0]} rows but y_true has {n_rows}")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        rows = first_rows(_row_labels(y_score, bad))
        raise ModelError(f"{what}: scores must be finite; {rows} are missing or infinite")
    if probability:
        bad = np.flatnonzero((scores < 0) | (scores > 1))
        if bad.size:
            raise ModelError(
                f"{what}: probabilities must lie in [0, 1]; got {_plain(scores[bad[0]])!r} in "
                f"{first_rows(_row_labels(y_score, bad))}"
            )
    return scores


def _both_classes(labels: np.ndarray, what: str) -> None:
    """Raise when ``labels`` hold only churners or only stayers."""
    churners = int(labels.sum())
    if churners == 0 or churners == labels.size:
        only = "churners" if churners else "non-churners"
        raise ModelError(f"{what}: y_true holds only {only} ({labels.size} rows); both classes are needed")


def _check_fraction(fraction: float) -> float:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ModelError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return float(fraction)


def _top_count(fraction: float, n_rows: int) -> int:
    """Rows in the top ``fraction`` of ``n_rows``: ``ceil(fraction * n)``, at least one."""
    return max(1, math.ceil(fraction * n_rows - _ROW_COUNT_TOLERANCE))


def _ranking(scores: np.ndarray) -> np.ndarray:
    """Row positions by score, highest first; ties keep their input order (stable sort)."""
    return np.argsort(-scores, kind="stable")


# --------------------------------------------------------------------------------------
# Campaign profit: MPC and EMPC
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EMPCResult:
    """The expected maximum profit of a churn model and the share of the base it targets.

    ``score`` is the expected profit per subscriber of the base (currency of the CLV);
    ``optimal_fraction`` the expected share of the base targeted at the optimal cutoffs.
    """

    score: float
    optimal_fraction: float


@dataclass(frozen=True)
class MPCResult:
    """The maximum profit at one known acceptance rate, and where it is reached.

    ``score`` is the profit per subscriber of the base at the best cutoff; ``optimal_fraction``
    the share of the base targeted there; ``threshold`` the lowest score targeted (``inf``
    when targeting nobody is best).
    """

    score: float
    optimal_fraction: float
    threshold: float


def _check_campaign(clv: float, incentive_cost: float, contact_cost: float) -> None:
    if not (np.isfinite(clv) and clv > 0):
        raise ModelError(f"campaign: clv must be a positive number, got {clv!r}")
    if incentive_cost < 0 or contact_cost < 0:
        raise ModelError(
            "campaign: incentive_cost and contact_cost must be non-negative, "
            f"got {incentive_cost!r} and {contact_cost!r}"
        )
    if incentive_cost >= clv:
        raise ModelError(
            f"campaign: incentive_cost {incentive_cost!r} must be below clv {clv!r}; "
            "an offer worth more than the subscriber never pays"
        )


def _roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct score (ties grouped), from targeting nobody to everybody.

    Returns ``(F1, F0, counts, thresholds)``: the shares of non-churners and churners
    targeted, the number of rows targeted, and the lowest score targeted (``inf`` first).
    """
    order = _ranking(scores)
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    churners = np.r_[0, np.cumsum(sorted_labels, dtype=np.int64)[last_of_group]]
    targeted = np.r_[0, last_of_group + 1]
    stayers = targeted - churners
    thresholds = np.r_[np.inf, sorted_scores[last_of_group]]
    return stayers / stayers[-1], churners / churners[-1], targeted, thresholds


def _upper_hull(f1: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Indices of the ROC points on the convex hull (the upper-left envelope).

    The points are ordered by ``F1`` and ``F0`` together (both never fall), so a monotone
    chain keeps the hull; points on a straight hull edge are dropped because no acceptance
    rate makes them strictly best.
    """
    hull: list[int] = []
    for index in range(f1.size):
        while len(hull) >= 2:
            first, second = hull[-2], hull[-1]
            cross = (f1[second] - f1[first]) * (f0[index] - f0[first]) - (f0[second] - f0[first]) * (
                f1[index] - f1[first]
            )
            if cross >= 0:  # ``second`` lies on or below the chord: not a hull vertex
                hull.pop()
            else:
                break
        hull.append(index)
    return np.asarray(hull)


def empc(
    y_true: Any,
    y_score: Any,
    *,
    clv: float = 200.0,
    incentive_cost: float = 10.0,
    contact_cost: float = 1.0,
    alpha: float = 6.0,
    beta: float = 14.0,
) -> EMPCResult:
    """Expected maximum profit measure for customer churn (Verbraken et al. 2013).

    The best cutoff for an acceptance rate ``g`` is a vertex of the ROC convex hull.  Between
    two consecutive vertices the profit difference is linear in ``g``, so each vertex is
    optimal on an interval ``[g_(i-1), g_i]`` with
    ``g_i = ((delta + phi) * pi1 * dF1 / (pi0 * dF0) + phi) / (1 - delta)``; the profit of that
    vertex is integrated over its interval against the Beta(alpha, beta) density in closed
    form with the regularised incomplete beta function.

    Parameters
    ----------
    y_true
        0/1 labels, 1 = churned.
    y_score
        Scores, higher = more likely to churn; ties form one cutoff.
    clv
        Customer lifetime value of a retained churner.
    incentive_cost, contact_cost
        Cost of the offer (paid by every targeted subscriber who accepts; would-be stayers
        always accept) and of one contact.
    alpha, beta
        Parameters of the Beta distribution of the acceptance rate.

    Returns
    -------
    EMPCResult
        Expected profit per subscriber of the base, and the expected share targeted.

    Examples
    --------
    >>> result = empc([0, 1, 0, 1, 0, 1, 0, 1], [.1, .2, .3, .4, .5, .7, .8, .9])
    >>> round(result.score, 4), round(result.optimal_fraction, 4)
    (23.8756, 0.8744)
    """
    from scipy.special import betainc

    labels = _labels_array(y_true)
    scores = _scores_array(y_score, labels.size)
    _both_classes(labels, "EMPC")
    _check_campaign(clv, incentive_cost, contact_cost)
    if not (alpha > 0 and beta > 0):
        raise ModelError(f"EMPC: alpha and beta must be positive, got {alpha!r} and {beta!r}")

    f1, f0, _, _ = _roc_points(labels, scores)
    hull = _upper_hull(f1, f0)
    f1, f0 = f1[hull], f0[hull]
    delta, phi = incentive_cost / clv, contact_cost / clv
    pi0 = labels.mean()
    pi1 = 1.0 - pi0

    step_f0, step_f1 = np.diff(f0), np.diff(f1)
    with np.errstate(divide="ignore"):
        # A flat hull edge (dF0 = 0) never pays: its switching rate is +inf.
        switch = ((delta + phi) * pi1 * step_f1 / (pi0 * step_f0) + phi) / (1.0 - delta)
    bounds = np.r_[0.0, np.clip(switch, 0.0, 1.0), 1.0]
    probability = np.diff(betainc(alpha, beta, bounds))
    # E[g; a < g < b] = alpha / (alpha + beta) * (I_b(alpha + 1, beta) - I_a(alpha + 1, beta))
    partial_mean = alpha / (alpha + beta) * np.diff(betainc(alpha + 1.0, beta, bounds))

    churner_gain = (1.0 - delta) * pi0 * f0 * partial_mean
    fixed_costs = (phi * pi0 * f0 + (delta + phi) * pi1 * f1) * probability
    score = clv * float(np.sum(churner_gain - fixed_costs))
    optimal_fraction = float(np.sum(probability * (pi0 * f0 + pi1 * f1)))
    return EMPCResult(score=score, optimal_fraction=optimal_fraction)


def profit_curve(
    y_true: Any,
    y_score: Any,
    *,
    acceptance_rate: float = 0.3,
    clv: float = 200.0,
    incentive_cost: float = 10.0,
    contact_cost: float = 1.0,
) -> pd.DataFrame:
    """Campaign profit per subscriber at every cutoff, for one known acceptance rate.

    Uses ``a * [(g * CLV + d * (1 - g)) * b0 * lift(a) - d - c]`` (Neslin et al. 2006) with
    no fixed cost; ``a * b0 * lift(a)`` is the share of the base that is a targeted churner.

    Returns
    -------
    pandas.DataFrame
        One row per distinct cutoff, from targeting nobody to targeting everybody, with
        columns ``fraction_targeted``, ``threshold`` (lowest score targeted) and
        ``profit_per_customer``.
    """
    labels = _labels_array(y_true)
    scores = _scores_array(y_score, labels.size)
    _check_campaign(clv, incentive_cost, contact_cost)
    if not 0 <= acceptance_rate <= 1:
        raise ModelError(f"acceptance_rate must lie in [0, 1], got {acceptance_rate!r}")
    order = _ranking(scores)
    sorted_scores = scores[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    churners = np.r_[0, np.cumsum(labels[order], dtype=np.int64)[last_of_group]]
    targeted = np.r_[0, last_of_group + 1]
    n_rows = labels.size
    value_per_churner = acceptance_rate * clv + incentive_cost * (1.0 - acceptance_rate)
    profit = (value_per_churner * churners - (incentive_cost + contact_cost) * targeted) / n_rows
    return pd.DataFrame(
        {
            "fraction_targeted": targeted / n_rows,
            "threshold": np.r_[np.inf, sorted_scores[last_of_group]],
            "profit_per_customer": profit,
        }
    )


def mpc(
    y_true: Any,
    y_score: Any,
    gamma: float = 0.3,
    *,
    clv: float = 200.0,
    incentive_cost: float = 10.0,
    contact_cost: float = 1.0,
) -> MPCResult:
    """Maximum profit per subscriber at a fixed acceptance rate ``gamma`` (deterministic MPC).

    The best of all cutoffs (ties grouped, including targeting nobody); when several
    cutoffs tie, the smallest campaign wins.

    Examples
    --------
    >>> round(mpc([0, 1, 0, 1, 0, 1, 0, 1], [.1, .2, .3, .4, .5, .7, .8, .9]).score, 4)
    23.875
    """
    labels = _labels_array(y_true)
    _both_classes(labels, "MPC")
    curve = profit_curve(
        labels, y_score, acceptance_rate=gamma, clv=clv, incentive_cost=incentive_cost, contact_cost=contact_cost
    )
    best = int(np.argmax(curve["profit_per_customer"].to_numpy()))
    return MPCResult(
        score=float(curve["profit_per_customer"].iat[best]),
        optimal_fraction=float(curve["fraction_targeted"].iat[best]),
        threshold=float(curve["threshold"].iat[best]),
    )


# --------------------------------------------------------------------------------------
# Lift, gains and value captured
# --------------------------------------------------------------------------------------


def _top_rows(y_true: Any, y_score: Any, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the positions of the top ``ceil(fraction * n)`` rows by score."""
    fraction = _check_fraction(fraction)
    labels = _labels_array(y_true)
    scores = _scores_array(y_score, labels.size)
    top = _ranking(scores)[: _top_count(fraction, labels.size)]
    return labels, top


def lift_at(y_true: Any, y_score: Any, fraction: float) -> float:
    """Churn rate in the top ``fraction`` of the base, divided by the overall churn rate.

    The top fraction is the first ``ceil(fraction * n)`` rows by score, highest first;
    tied scores keep their input order.

    Examples
    --------
    >>> lift_at([1, 0, 0, 0], [0.9, 0.8, 0.1, 0.2], 0.25)
    4.0
    """
    labels, top = _top_rows(y_true, y_score, fraction)
    base_rate = labels.mean()
    if base_rate == 0:
        raise ModelError(f"lift: y_true holds no churners ({labels.size} rows); lift is undefined")
    return float(labels[top].mean() / base_rate)


def gains_at(y_true: Any, y_score: Any, fraction: float) -> float:
    """Share of all churners found in the top ``fraction`` of the base (cumulative gains).

    Examples
    --------
    >>> gains_at([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2], 0.5)
    0.5
    """
    labels, top = _top_rows(y_true, y_score, fraction)
    churners = labels.sum()
    if churners == 0:
        raise ModelError(f"gains: y_true holds no churners ({labels.size} rows); gains are undefined")
    return float(labels[top].sum() / churners)


def top_decile_lift(y_true: Any, y_score: Any) -> float:
    """Lift in the top 10% of the base (Neslin et al. 2006's headline measure)."""
    return lift_at(y_true, y_score, 0.1)


def value_captured_at(y_true: Any, y_score: Any, value: Any, fraction: float) -> float:
    """Share of the churners' total value found in the top ``fraction`` of the base.

    ``value`` is a non-negative value per row (e.g. CLV); only churners' values count.
    """
    labels, top = _top_rows(y_true, y_score, fraction)
    values = _scores_array(value, labels.size, what="value")
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise ModelError(f"value: must be non-negative; {first_rows(_row_labels(value, negative))} are negative")
    churner_values = values * labels
    total = churner_values.sum()
    if total <= 0:
        raise ModelError("value captured: the churners' total value is 0; the share is undefined")
    return float(churner_values[top].sum() / total)


# --------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------


class Reliability(NamedTuple):
    """A reliability table and the expected calibration error it implies."""

    table: pd.DataFrame
    expected_calibration_error: float


def reliability_table(y_true: Any, proba: Any, n_bins: int = 10, strategy: str = "quantile") -> Reliability:
    """Observed churn rate against mean predicted probability, bin by bin.

    Bins follow :func:`sklearn.calibration.calibration_curve`: ``quantile`` bins hold about
    equal numbers of rows, ``uniform`` bins split [0, 1] evenly; a value on an edge falls in
    the lower bin; empty bins are left out.

    Returns
    -------
    Reliability
        ``table`` with columns ``bin`` (0-based), ``mean_predicted``, ``observed_rate`` and
        ``count``; ``expected_calibration_error`` = sum over bins of
        ``count / n * |observed_rate - mean_predicted|``.
    """
    labels = _labels_array(y_true)
    probabilities = _scores_array(proba, labels.size, what="proba", probability=True)
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ModelError(f"reliability: n_bins must be a positive integer, got {n_bins!r}")
    if strategy == "quantile":
        edges = np.quantile(probabilities, np.linspace(0.0, 1.0, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ModelError(f"reliability: strategy must be 'quantile' or 'uniform', got {strategy!r}")
    bins = np.searchsorted(edges[1:-1], probabilities)
    count = np.bincount(bins, minlength=n_bins)
    predicted_sum = np.bincount(bins, weights=probabilities, minlength=n_bins)
    churner_sum = np.bincount(bins, weights=labels, minlength=n_bins)
    used = np.flatnonzero(count)
    table = pd.DataFrame(
        {
            "bin": used.astype(np.int64),
            "mean_predicted": predicted_sum[used] / count[used],
            "observed_rate": churner_sum[used] / count[used],
            "count": count[used].astype(np.int64),
        }
    )
    gap = np.abs(table["observed_rate"] - table["mean_predicted"]).to_numpy()
    ece = float(np.sum(gap * table["count"].to_numpy()) / labels.size)
    return Reliability(table=table, expected_calibration_error=ece)


# --------------------------------------------------------------------------------------
# The metrics dictionary and segment tables
# --------------------------------------------------------------------------------------


def _percent(fraction: float) -> int:
    return round(fraction * 100)


def campaign_costs(campaign: CampaignConfig, values: np.ndarray | None) -> tuple[float, float, float]:
    """The (CLV, incentive cost, contact cost) a campaign evaluation uses.

    With per-row lifetime values: their mean, and the incentive and contact costs as
    ``offer_cost_months`` and ``contact_cost_months`` months of the matching mean monthly value
    (CLV is a fixed multiple of the monthly value).  Without: ``default_clv``, ``offer_cost``
    and ``contact_cost``, the EMPC paper's defaults.
    """
    if values is None:
        return float(campaign.default_clv), float(campaign.offer_cost), float(campaign.contact_cost)
    from pipeline.targeting import clv as clv_of

    clv = float(np.mean(values))
    monthly = clv / float(clv_of(1.0, campaign))
    return clv, campaign.offer_cost_months * monthly, campaign.contact_cost_months * monthly


def classification_metrics(
    y_true: Any,
    proba: Any,
    *,
    value: Any = None,
    campaign: CampaignConfig | None = None,
) -> dict[str, float]:
    """Every hold-out metric the project reports, as MLflow-safe names and floats.

    Parameters
    ----------
    y_true
        0/1 labels, 1 = churned; both classes must occur.
    proba
        Predicted churn probabilities in [0, 1].
    value
        Optional customer lifetime value per row.  When given, EMPC uses their mean as the
        CLV, the incentive and contact costs are ``campaign.offer_cost_months`` and
        ``contact_cost_months`` months of the matching mean monthly value, and
        ``value_captured_5/10/20`` are added; otherwise EMPC uses ``campaign.default_clv``,
        ``offer_cost`` and ``contact_cost``.
    campaign
        Offer and contact costs and the acceptance distribution (defaults when ``None``).

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc`` (average precision), ``log_loss``, ``brier``,
        ``expected_calibration_error``, ``top_decile_lift``, ``lift_5``/``10``/``20``,
        ``gains_5``/``10``/``20``, ``empc``, ``empc_optimal_fraction``, ``empc_clv`` (the CLV
        EMPC used), ``base_rate``, ``n_rows`` (and ``value_captured_*`` with ``value``).
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    campaign = campaign if campaign is not None else CampaignConfig()
    labels = _labels_array(y_true)
    probabilities = _scores_array(proba, labels.size, what="proba", probability=True)
    _both_classes(labels, "metrics")
    values = None
    if value is not None:
        values = _scores_array(value, labels.size, what="value")
    clv, incentive_cost, contact_cost = campaign_costs(campaign, values)

    metrics: dict[str, float] = {
        "roc_auc": float(roc_auc_score(labels, probabilities)),
        "pr_auc": float(average_precision_score(labels, probabilities)),
        "log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probabilities)),
        "expected_calibration_error": reliability_table(labels, probabilities).expected_calibration_error,
        "top_decile_lift": top_decile_lift(labels, probabilities),
    }
    for fraction in REPORTED_FRACTIONS:
        metrics[f"lift_{_percent(fraction)}"] = lift_at(labels, probabilities, fraction)
    for fraction in REPORTED_FRACTIONS:
        metrics[f"gains_{_percent(fraction)}"] = gains_at(labels, probabilities, fraction)
    if values is not None:
        for fraction in REPORTED_FRACTIONS:
            metrics[f"value_captured_{_percent(fraction)}"] = value_captured_at(labels, probabilities, values, fraction)
    profit = empc(
        labels,
        probabilities,
        clv=clv,
        incentive_cost=incentive_cost,
        contact_cost=contact_cost,
        alpha=campaign.acceptance_alpha,
        beta=campaign.acceptance_beta,
    )
    metrics["empc"] = profit.score
    metrics["empc_optimal_fraction"] = profit.optimal_fraction
    metrics["empc_clv"] = clv
    metrics["base_rate"] = float(labels.mean())
    metrics["n_rows"] = float(labels.size)
    return metrics


def tenure_band(tenure_months: Any) -> pd.Series:
    """Tenure in months as ordered bands ``0-6m``, ``6-12m``, ``1-2y``, ``2-5y``, ``5y+``.

    Lower bounds are inclusive (12 months is ``1-2y``); blanks stay blank.

    Examples
    --------
    >>> tenure_band([0, 5.9, 6, 12, 59, 60]).tolist()
    ['0-6m', '0-6m', '6-12m', '1-2y', '2-5y', '5y+']
    """
    months = pd.Series(tenure_months) if not isinstance(tenure_months, pd.Series) else tenure_months
    numeric = pd.to_numeric(months, errors="coerce")
    bad = np.flatnonzero((numeric.isna() & months.notna()).to_numpy() | (numeric < 0).to_numpy())
    if bad.size:
        raise DataError(
            f"tenure_band: tenure in months must be a non-negative number; got {_plain(months.iloc[bad[0]])!r} "
            f"in {first_rows(months.index[bad])}"
        )
    labels = [label for label, _, _ in TENURE_BANDS]
    edges = [low for _, low, _ in TENURE_BANDS] + [math.inf]
    bands = pd.cut(numeric, bins=edges, right=False, labels=labels, ordered=True)
    return bands.rename("tenure_band")


def exposure_level(exposure: pd.Series, fraud_loss: pd.Series | None = None) -> pd.Series:
    """How hard the breach hit each subscriber: ``not_exposed``, ``exposed`` or ``directly_harmed``.

    Parameters
    ----------
    exposure
        Either a boolean ``is_exposed`` flag or a numeric ``exposure_severity`` (exposed when
        above 0); blanks count as not exposed.
    fraud_loss
        Optional fraud loss per subscriber (same index); a loss above 0 makes the subscriber
        ``directly_harmed`` whatever their exposure.
    """
    flags = pd.to_numeric(exposure.astype("float64") if exposure.dtype == bool else exposure, errors="coerce")
    bad = np.flatnonzero((flags.isna() & exposure.notna()).to_numpy())
    if bad.size:
        raise DataError(
            "exposure_level: exposure must be a boolean flag or a numeric severity; "
            f"got {_plain(exposure.iloc[bad[0]])!r} in {first_rows(exposure.index[bad])}"
        )
    level = np.where(flags.fillna(0).to_numpy() > 0, "exposed", "not_exposed").astype(object)
    if fraud_loss is not None:
        if len(fraud_loss) != len(exposure):
            raise DataError(f"exposure_level: fraud_loss has {len(fraud_loss)} rows but exposure has {len(exposure)}")
        harmed = pd.to_numeric(fraud_loss, errors="coerce").fillna(0).to_numpy() > 0
        level[harmed] = "directly_harmed"
    return pd.Series(
        pd.Categorical(level, categories=EXPOSURE_LEVELS, ordered=True), index=exposure.index, name="exposure_level"
    )


def segment_metrics(y_true: Any, proba: Any, segments: pd.DataFrame) -> pd.DataFrame:
    """Metrics within each level of each segment column.

    Parameters
    ----------
    y_true, proba
        Labels and predicted probabilities, aligned by position with ``segments``.
    segments
        One column per segmentation (e.g. ``contract_type``, ``tenure_band``,
        ``exposure_level``).  Levels appear in category order for categorical columns,
        else sorted; blanks form a level called ``missing``.

    Returns
    -------
    pandas.DataFrame
        Columns ``segment``, ``level``, ``n``, ``churn_rate``, ``mean_predicted``,
        ``roc_auc`` (NaN when a level holds one class) and ``brier``.
    """
    labels = _labels_array(y_true)
    probabilities = _scores_array(proba, labels.size, what="proba", probability=True)
    if not isinstance(segments, pd.DataFrame):
        raise ModelError(f"segment_metrics: segments must be a DataFrame, got {type(segments).__name__}")
    if len(segments) != labels.size:
        raise ModelError(f"segment_metrics: segments has {len(segments)} rows but y_true has {labels.size}")
    from sklearn.metrics import roc_auc_score

    rows = []
    for column in segments.columns:
        values = segments[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            present = set(values.dropna().unique())
            levels = [level for level in values.cat.categories if level in present]
        else:
            observed = values.dropna().unique().tolist()
            try:
                levels = sorted(observed)
            except TypeError:  # mixed types (e.g. numbers and text): order by their text
                levels = sorted(observed, key=str)
        masks = [(level, (values == level).to_numpy(dtype=bool, na_value=False)) for level in levels]
        missing = values.isna().to_numpy()
        if missing.any():
            masks.append(("missing", missing))
        for level, mask in masks:
            level_labels, level_proba = labels[mask], probabilities[mask]
            one_class = level_labels.min() == level_labels.max()
            rows.append(
                {
                    "segment": str(column),
                    "level": str(level),
                    "n": int(mask.sum()),
                    "churn_rate": float(level_labels.mean()),
                    "mean_predicted": float(level_proba.mean()),
                    "roc_auc": math.nan if one_class else float(roc_auc_score(level_labels, level_proba)),
                    "brier": float(np.mean((level_proba - level_labels) ** 2)),
                }
            )
    columns = ["segment", "level", "n", "churn_rate", "mean_predicted", "roc_auc", "brier"]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"n": "int64"} | {name: "float64" for name in columns[3:]})


# --------------------------------------------------------------------------------------
# Permutation importance
# --------------------------------------------------------------------------------------


def permutation_importance_table(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    n_repeats: int = 5,
    seed: int,
    scoring: str = "roc_auc",
    max_rows: int = 20_000,
) -> pd.Series:
    """Drop in ``scoring`` when each raw input column is shuffled, largest first.

    Parameters
    ----------
    model
        A fitted estimator or pipeline that takes ``X``'s raw columns.
    X, y
        Hold-out rows and labels.  Above ``max_rows`` rows, a sample of ``max_rows`` drawn
        with ``seed`` (kept in input order) is used.
    n_repeats, seed, scoring
        Passed to :func:`sklearn.inspection.permutation_importance` (single-threaded).

    Returns
    -------
    pandas.Series
        Mean importance per column, named ``importance``, sorted descending (ties by column
        order).
    """
    from sklearn.inspection import permutation_importance

    if not isinstance(X, pd.DataFrame):
        raise ModelError(f"permutation importance: X must be a DataFrame of raw input columns, got {type(X).__name__}")
    labels = _labels_array(y, what="y")
    if labels.size != len(X):
        raise ModelError(f"permutation importance: y has {labels.size} rows but X has {len(X)}")
    if max_rows < 1:
        raise ModelError(f"permutation importance: max_rows must be positive, got {max_rows!r}")
    rows = X
    if len(X) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(X), size=max_rows, replace=False))
        rows, labels = X.iloc[keep], labels[keep]
        logger.info("permutation importance on %d of %d rows (seed %d)", max_rows, len(X), seed)
    _both_classes(labels, "permutation importance")
    result = permutation_importance(
        model, rows, labels, scoring=scoring, n_repeats=n_repeats, random_state=seed, n_jobs=1
    )
    importances = pd.Series(result.importances_mean, index=pd.Index(X.columns, name="feature"), name="importance")
    return importances.sort_values(ascending=False, kind="stable")


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------

_MODEL_COLOUR = "#1f77b4"
_REFERENCE_COLOUR = "#7f7f7f"
_HIGHLIGHT_COLOUR = "#d62728"


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A matplotlib Figure on the Agg canvas, outside pyplot's global state (nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_roc(y_true: Any, proba: Any) -> Figure:
    """ROC curve with its AUC, the chance diagonal and the convex hull EMPC optimises over."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = _labels_array(y_true)
    scores = _scores_array(proba, labels.size, what="proba")
    _both_classes(labels, "ROC plot")
    false_positive, true_positive, _ = roc_curve(labels, scores)
    hull_f1, hull_f0, _, _ = _roc_points(labels, scores)
    hull = _upper_hull(hull_f1, hull_f0)
    auc = roc_auc_score(labels, scores)

    figure = _figure(5.6, 5.2)
    axes = figure.add_subplot()
    axes.plot(false_positive, true_positive, color=_MODEL_COLOUR, lw=2, label=f"Model (AUC = {auc:.3f})")
    axes.plot(hull_f1[hull], hull_f0[hull], color=_HIGHLIGHT_COLOUR, lw=1, ls="--", label="Convex hull")
    axes.plot([0, 1], [0, 1], color=_REFERENCE_COLOUR, lw=1, ls=":", label="Random (AUC = 0.5)")
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False positive rate (share of stayers targeted)",
        ylabel="True positive rate (share of churners caught)",
        title="ROC curve (hold-out)",
    )
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def plot_precision_recall(y_true: Any, proba: Any) -> Figure:
    """Precision-recall curve with average precision and the churn rate as the no-skill line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels = _labels_array(y_true)
    scores = _scores_array(proba, labels.size, what="proba")
    _both_classes(labels, "precision-recall plot")
    precision, recall, _ = precision_recall_curve(labels, scores)
    average_precision = average_precision_score(labels, scores)
    base_rate = labels.mean()

    figure = _figure(5.6, 5.2)
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", color=_MODEL_COLOUR, lw=2, label=f"Model (AP = {average_precision:.3f})")
    axes.axhline(base_rate, color=_REFERENCE_COLOUR, lw=1, ls=":", label=f"Random (churn rate {base_rate:.1%})")
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="Recall (share of churners caught)",
        ylabel="Precision (share of targeted who churn)",
        title="Precision-recall curve (hold-out)",
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return figure


def plot_calibration(y_true: Any, proba: Any, n_bins: int = 10, strategy: str = "quantile") -> Figure:
    """Reliability curve (observed vs predicted churn rate per bin) over a histogram of predictions."""
    labels = _labels_array(y_true)
    probabilities = _scores_array(proba, labels.size, what="proba", probability=True)
    reliability = reliability_table(labels, probabilities, n_bins=n_bins, strategy=strategy)
    table = reliability.table
    upper = max(float(table["mean_predicted"].max()), float(table["observed_rate"].max()), 0.05)
    upper = min(1.0, upper * 1.1)

    figure = _figure(6.0, 6.4)
    curve_axes, histogram_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    curve_axes.plot([0, upper], [0, upper], color=_REFERENCE_COLOUR, lw=1, ls=":", label="Perfectly calibrated")
    curve_axes.plot(
        table["mean_predicted"],
        table["observed_rate"],
        marker="o",
        color=_MODEL_COLOUR,
        lw=2,
        label=f"Model (ECE = {reliability.expected_calibration_error:.4f})",
    )
    curve_axes.set(
        xlim=(0, upper),
        ylim=(0, upper),
        ylabel="Observed churn rate",
        title=f"Calibration (hold-out, {len(table)} {strategy} bins)",
    )
    curve_axes.grid(alpha=0.3)
    curve_axes.legend(loc="upper left")
    histogram_axes.hist(probabilities, bins=50, range=(0, upper), color=_MODEL_COLOUR, alpha=0.7)
    histogram_axes.set(xlabel="Predicted churn probability", ylabel="Subscribers")
    histogram_axes.grid(alpha=0.3)
    return figure


def _gains_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of the base targeted (0..1) and share of churners caught, row by row."""
    caught = np.r_[0, np.cumsum(labels[_ranking(scores)], dtype=np.int64)]
    return np.arange(labels.size + 1) / labels.size, caught / caught[-1]


def plot_gains_lift(y_true: Any, proba: Any) -> Figure:
    """Cumulative gains (left) and lift (right) against the share of the base targeted."""
    labels = _labels_array(y_true)
    scores = _scores_array(proba, labels.size, what="proba")
    _both_classes(labels, "gains plot")
    targeted, caught = _gains_curve(labels, scores)
    base_rate = labels.mean()
    decile_lift = top_decile_lift(labels, scores)

    figure = _figure(11.0, 4.8)
    gains_axes, lift_axes = figure.subplots(1, 2)
    gains_axes.plot(targeted, caught, color=_MODEL_COLOUR, lw=2, label="Model")
    gains_axes.plot([0, base_rate, 1], [0, 1, 1], color=_HIGHLIGHT_COLOUR, lw=1, ls="--", label="Perfect")
    gains_axes.plot([0, 1], [0, 1], color=_REFERENCE_COLOUR, lw=1, ls=":", label="Random")
    gains_axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="Share of base targeted (highest risk first)",
        ylabel="Share of churners caught",
        title="Cumulative gains",
    )
    gains_axes.grid(alpha=0.3)
    gains_axes.legend(loc="lower right")

    lift = caught[1:] / targeted[1:]  # gains / share targeted; targeted[1:] > 0
    lift_axes.plot(targeted[1:], lift, color=_MODEL_COLOUR, lw=2, label="Model")
    lift_axes.axhline(1.0, color=_REFERENCE_COLOUR, lw=1, ls=":", label="Random (lift 1)")
    lift_axes.axvline(0.1, color=_HIGHLIGHT_COLOUR, lw=1, ls="--", label=f"Top decile: lift {decile_lift:.2f}")
    lift_axes.set(
        xlim=(0, 1),
        ylim=(0, max(1.5, min(float(np.nanmax(lift)), 1.0 / base_rate) * 1.05)),
        xlabel="Share of base targeted (highest risk first)",
        ylabel="Lift (churn rate in target / overall)",
        title="Lift",
    )
    lift_axes.grid(alpha=0.3)
    lift_axes.legend(loc="upper right")
    figure.suptitle("Who the model finds first (hold-out)")
    return figure


def plot_profit(y_true: Any, proba: Any, *, value: Any = None, campaign: CampaignConfig | None = None) -> Figure:
    """Campaign profit per subscriber vs share targeted, at the mean acceptance rate.

    The EMPC optimal share (expected over the acceptance distribution) is marked, as is the
    best cutoff at the mean acceptance rate.
    """
    campaign = campaign if campaign is not None else CampaignConfig()
    labels = _labels_array(y_true)
    scores = _scores_array(proba, labels.size, what="proba")
    _both_classes(labels, "profit plot")
    values = _scores_array(value, labels.size, what="value") if value is not None else None
    clv, incentive_cost, contact_cost = campaign_costs(campaign, values)
    mean_acceptance = campaign.acceptance_alpha / (campaign.acceptance_alpha + campaign.acceptance_beta)
    costs = {"clv": clv, "incentive_cost": incentive_cost, "contact_cost": contact_cost}
    curve = profit_curve(labels, scores, acceptance_rate=mean_acceptance, **costs)
    best = mpc(labels, scores, mean_acceptance, **costs)
    expected = empc(labels, scores, alpha=campaign.acceptance_alpha, beta=campaign.acceptance_beta, **costs)

    figure = _figure(7.2, 4.8)
    axes = figure.add_subplot()
    axes.plot(
        curve["fraction_targeted"],
        curve["profit_per_customer"],
        color=_MODEL_COLOUR,
        lw=2,
        label=f"Profit at mean acceptance {mean_acceptance:.0%}",
    )
    axes.axhline(0.0, color=_REFERENCE_COLOUR, lw=1, ls=":")
    axes.axvline(
        expected.optimal_fraction,
        color=_HIGHLIGHT_COLOUR,
        lw=1.5,
        ls="--",
        label=f"EMPC optimal share {expected.optimal_fraction:.1%} (EMPC {expected.score:,.2f})",
    )
    axes.plot(
        [best.optimal_fraction],
        [best.score],
        marker="o",
        color=_HIGHLIGHT_COLOUR,
        ls="none",
        label=f"Best at mean acceptance: {best.optimal_fraction:.1%}, {best.score:,.2f}",
    )
    axes.set(
        xlim=(0, 1),
        xlabel="Share of base targeted (highest risk first)",
        ylabel="Profit per subscriber of the base",
        title=f"Retention campaign profit\n(mean CLV {clv:,.0f}, offer {incentive_cost:,.0f}, "
        f"contact {contact_cost:,.0f})",
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return figure


def plot_feature_importance(importances: pd.Series, top: int = 20, *, scoring: str = "ROC AUC") -> Figure:
    """Horizontal bars of the ``top`` largest permutation importances, largest at the top."""
    if not isinstance(importances, pd.Series) or importances.empty:
        raise ModelError("feature importance plot: importances must be a non-empty Series indexed by column")
    shown = importances.sort_values(ascending=False, kind="stable").head(top).iloc[::-1]
    names = [str(name) for name in shown.index]

    figure = _figure(7.2, max(2.5, 0.32 * len(shown) + 1.2))
    axes = figure.add_subplot()
    colours = [_MODEL_COLOUR if value >= 0 else _REFERENCE_COLOUR for value in shown.to_numpy()]
    axes.barh(names, shown.to_numpy(), color=colours)
    axes.axvline(0.0, color=_REFERENCE_COLOUR, lw=1)
    axes.set(
        xlabel=f"Drop in {scoring} when the column is shuffled",
        title=f"Permutation importance\n(hold-out, top {len(shown)} of {len(importances)} columns)",
    )
    axes.grid(axis="x", alpha=0.3)
    return figure


def save_plots(
    y_true: Any,
    proba: Any,
    out_dir: str | Path,
    *,
    value: Any = None,
    campaign: CampaignConfig | None = None,
    importances: pd.Series | None = None,
) -> dict[str, Path]:
    """Write the evaluation plots as PNG files into ``out_dir`` (created when missing).

    Returns
    -------
    dict
        Plot name to path: ``roc``, ``precision_recall``, ``calibration``, ``gains_lift``,
        ``profit`` and, when ``importances`` is given, ``feature_importance``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builders: dict[str, Any] = {
        "roc": lambda: plot_roc(y_true, proba),
        "precision_recall": lambda: plot_precision_recall(y_true, proba),
        "calibration": lambda: plot_calibration(y_true, proba),
        "gains_lift": lambda: plot_gains_lift(y_true, proba),
        "profit": lambda: plot_profit(y_true, proba, value=value, campaign=campaign),
    }
    if importances is not None:
        builders["feature_importance"] = lambda: plot_feature_importance(importances)
    written: dict[str, Path] = {}
    for name, build in builders.items():
        figure = build()
        path = out_dir / f"{name}.png"
        # Fixed metadata keeps the bytes identical from run to run.
        figure.savefig(path, dpi=110, metadata={"Software": None})
        figure.clear()
        written[name] = path
        logger.debug("wrote %s", path)
    return written


__all__ = [
    "EMPCResult",
    "MPCResult",
    "Reliability",
    "classification_metrics",
    "empc",
    "exposure_level",
    "gains_at",
    "lift_at",
    "mpc",
    "permutation_importance_table",
    "plot_calibration",
    "plot_feature_importance",
    "plot_gains_lift",
    "plot_precision_recall",
    "plot_profit",
    "plot_roc",
    "profit_curve",
    "reliability_table",
    "save_plots",
    "segment_metrics",
    "tenure_band",
    "top_decile_lift",
    "value_captured_at",
]
