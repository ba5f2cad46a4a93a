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
from pipeline.errors import ModelError, first_rows

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Fractions of the base at which lift and gains are reported (``lift_5`` is the top 5%).
REPORTED_FRACTIONS = (0.05, 0.10, 0.20)

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
    return binary_array(y_true, what, "1 = churned", noun="labels")


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
    max_rows: int = 20_000,
    batch_rows: int = 100_000,
) -> pd.Series:
    """Drop in ROC AUC when each raw input column is shuffled, largest first.

    The same shuffles, scores and means as :func:`sklearn.inspection.permutation_importance`
    with ``random_state=seed`` and ``scoring="roc_auc"`` on the churn probability, but the
    shuffled copies are stacked and scored together, about ``batch_rows`` rows per call of
    ``model.predict_proba``: scikit-learn scores each copy on its own, and the model's fixed
    cost per call (typing the frame, checking it, building CatBoost's pool) was most of the
    time on a hold-out of a few thousand rows.  Only the rows whose value the shuffle changed
    are scored again; the others keep their unshuffled probability (a column of a few
    levels leaves many rows as they were).  The model must score each row on its own,
    whatever rows it is scored with (every model of this package does).

    Parameters
    ----------
    model
        A fitted estimator or pipeline that takes ``X``'s raw columns.
    X, y
        Hold-out rows and labels.  Above ``max_rows`` rows, a sample of ``max_rows`` drawn
        with ``seed`` (kept in input order) is used.
    n_repeats, seed
        Shuffles per column, and the seed they are drawn from.
    batch_rows
        Rows scored per call of the model, at least one shuffled copy.

    Returns
    -------
    pandas.Series
        Mean importance per column, named ``importance``, sorted descending (ties by column
        order).
    """
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
    rows = rows.reset_index(drop=True)
    roc_auc = _roc_auc_of(labels)
    unshuffled = model.predict_proba(rows)[:, 1]
    baseline = roc_auc(unshuffled)
    scores = np.empty((rows.shape[1], n_repeats), dtype="float64")
    copies = []  # (column position, repeat, shuffled rows, positions of the rows it changed)

    def score_copies() -> None:
        moved = [copy.iloc[changed] for _, _, copy, changed in copies]
        proba = model.predict_proba(pd.concat(moved, ignore_index=True))[:, 1]
        start = 0
        for j, repeat, _, changed in copies:
            shuffled = unshuffled.copy()
            shuffled[changed] = proba[start:start + changed.size]
            start += changed.size
            scores[j, repeat] = roc_auc(shuffled)
        copies.clear()

    pending = 0
    for j, repeat, copy in _shuffled_copies(rows, n_repeats, seed):
        changed = np.flatnonzero(~_unchanged(rows.iloc[:, j], copy.iloc[:, j]))
        if changed.size == 0:  # the shuffle moved no value (a constant column): nothing to score
            scores[j, repeat] = baseline
            continue
        copies.append((j, repeat, copy, changed))
        pending += changed.size
        if pending >= batch_rows:
            score_copies()
            pending = 0
    if copies:
        score_copies()
    importances = pd.Series((baseline - scores).mean(axis=1), index=pd.Index(X.columns, name="feature"), name="importance")
    return importances.sort_values(ascending=False, kind="stable")


def _roc_auc_of(labels: np.ndarray):
    """ROC AUC of scores against fixed 0/1 ``labels`` (both classes present), as a function.

    The Mann-Whitney form, with tied scores at their average rank: the area scikit-learn's
    ``roc_auc_score`` computes (to rounding, about 1e-16), without its checks and curve on
    every call; permutation importance scores the same labels some 200 times.
    """
    from scipy.stats import rankdata

    positive = np.asarray(labels) == 1
    n_positive = int(positive.sum())
    pairs = float(n_positive) * float(positive.size - n_positive)
    offset = n_positive * (n_positive + 1) / 2.0

    def roc_auc(scores: np.ndarray) -> float:
        return float((rankdata(scores)[positive].sum() - offset) / pairs)

    return roc_auc


def _unchanged(before: pd.Series, after: pd.Series) -> np.ndarray:
    """Rows where ``after`` holds exactly ``before``'s value: equal and of the same type (floats
    bit for bit, so ``-0.0`` differs from ``0.0``), or the same missing value.  A row it cannot
    tell is counted as changed, which only costs a prediction."""
    if isinstance(before.dtype, pd.CategoricalDtype) and before.dtype == after.dtype:
        return before.cat.codes.to_numpy() == after.cat.codes.to_numpy()
    left, right = before.to_numpy(), after.to_numpy()
    if left.dtype == right.dtype and left.dtype.kind in "biu":
        return left == right
    if left.dtype == right.dtype and left.dtype.kind == "f":
        bits = f"u{left.dtype.itemsize}"
        return left.view(bits) == right.view(bits)
    return np.fromiter((_same_value(x, y) for x, y in zip(left, right)), dtype=bool, count=len(left))


def _same_value(x: Any, y: Any) -> bool:
    """``x`` and ``y`` are the same value of the same type (see ``_unchanged``)."""
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    if isinstance(x, float):
        return np.float64(x).view("u8") == np.float64(y).view("u8")
    try:
        return bool(x == y)
    except (TypeError, ValueError):  # a comparison that answers a missing value or an array
        return False


def _shuffled_copies(rows: pd.DataFrame, n_repeats: int, seed: int):
    """``(column position, repeat, rows with that column shuffled)``, drawn as scikit-learn's
    ``permutation_importance`` draws them: one seed from ``seed`` for every column, and each
    repeat shuffles the previous repeat's column again."""
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    for j in range(rows.shape[1]):
        state = np.random.RandomState(column_seed)
        order = np.arange(len(rows))
        column = rows.iloc[:, j]
        for repeat in range(n_repeats):
            state.shuffle(order)
            column = column.iloc[order].set_axis(rows.index)
            copy = rows.copy(deep=False)
            copy.isetitem(j, column)
            yield j, repeat, copy


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------

#: The plots' colours (``pipeline.report`` draws with them too): the model's line, the
#: reference it is compared with (chance, a baseline), and a highlighted choice.
MODEL_COLOUR = "#1f77b4"
REFERENCE_COLOUR = "#7f7f7f"
HIGHLIGHT_COLOUR = "#d62728"


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A matplotlib Figure on the Agg canvas, outside pyplot's global state (nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_inputs(y_true: Any, proba: Any, plot: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(labels, scores)`` for a plot of the model's ranking; both classes must be present."""
    labels = _labels_array(y_true)
    scores = _scores_array(proba, labels.size, what="proba")
    _both_classes(labels, plot)
    return labels, scores


def plot_roc(y_true: Any, proba: Any) -> Figure:
    """ROC curve with its AUC, the chance diagonal and the convex hull EMPC optimises over."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, scores = _plot_inputs(y_true, proba, "ROC plot")
    false_positive, true_positive, _ = roc_curve(labels, scores)
    hull_f1, hull_f0, _, _ = _roc_points(labels, scores)
    hull = _upper_hull(hull_f1, hull_f0)
    auc = roc_auc_score(labels, scores)

    figure = new_figure(5.6, 5.2)
    axes = figure.add_subplot()
    axes.plot(false_positive, true_positive, color=MODEL_COLOUR, lw=2, label=f"Model (AUC = {auc:.3f})")
    axes.plot(hull_f1[hull], hull_f0[hull], color=HIGHLIGHT_COLOUR, lw=1, ls="--", label="Convex hull")
    axes.plot([0, 1], [0, 1], color=REFERENCE_COLOUR, lw=1, ls=":", label="Random (AUC = 0.5)")
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

    labels, scores = _plot_inputs(y_true, proba, "precision-recall plot")
    precision, recall, _ = precision_recall_curve(labels, scores)
    average_precision = average_precision_score(labels, scores)
    base_rate = labels.mean()

    figure = new_figure(5.6, 5.2)
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", color=MODEL_COLOUR, lw=2, label=f"Model (AP = {average_precision:.3f})")
    axes.axhline(base_rate, color=REFERENCE_COLOUR, lw=1, ls=":", label=f"Random (churn rate {base_rate:.1%})")
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

    figure = new_figure(6.0, 6.4)
    curve_axes, histogram_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    curve_axes.plot([0, upper], [0, upper], color=REFERENCE_COLOUR, lw=1, ls=":", label="Perfectly calibrated")
    curve_axes.plot(
        table["mean_predicted"],
        table["observed_rate"],
        marker="o",
        color=MODEL_COLOUR,
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
    histogram_axes.hist(probabilities, bins=50, range=(0, upper), color=MODEL_COLOUR, alpha=0.7)
    histogram_axes.set(xlabel="Predicted churn probability", ylabel="Subscribers")
    histogram_axes.grid(alpha=0.3)
    return figure


def _gains_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of the base targeted (0..1) and share of churners caught, row by row."""
    caught = np.r_[0, np.cumsum(labels[_ranking(scores)], dtype=np.int64)]
    return np.arange(labels.size + 1) / labels.size, caught / caught[-1]


def plot_gains_lift(y_true: Any, proba: Any) -> Figure:
    """Cumulative gains (left) and lift (right) against the share of the base targeted."""
    labels, scores = _plot_inputs(y_true, proba, "gains plot")
    targeted, caught = _gains_curve(labels, scores)
    base_rate = labels.mean()
    decile_lift = top_decile_lift(labels, scores)

    figure = new_figure(11.0, 4.8)
    gains_axes, lift_axes = figure.subplots(1, 2)
    gains_axes.plot(targeted, caught, color=MODEL_COLOUR, lw=2, label="Model")
    gains_axes.plot([0, base_rate, 1], [0, 1, 1], color=HIGHLIGHT_COLOUR, lw=1, ls="--", label="Perfect")
    gains_axes.plot([0, 1], [0, 1], color=REFERENCE_COLOUR, lw=1, ls=":", label="Random")
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
    lift_axes.plot(targeted[1:], lift, color=MODEL_COLOUR, lw=2, label="Model")
    lift_axes.axhline(1.0, color=REFERENCE_COLOUR, lw=1, ls=":", label="Random (lift 1)")
    lift_axes.axvline(0.1, color=HIGHLIGHT_COLOUR, lw=1, ls="--", label=f"Top decile: lift {decile_lift:.2f}")
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
    labels, scores = _plot_inputs(y_true, proba, "profit plot")
    values = _scores_array(value, labels.size, what="value") if value is not None else None
    clv, incentive_cost, contact_cost = campaign_costs(campaign, values)
    mean_acceptance = campaign.acceptance_alpha / (campaign.acceptance_alpha + campaign.acceptance_beta)
    costs = {"clv": clv, "incentive_cost": incentive_cost, "contact_cost": contact_cost}
    curve = profit_curve(labels, scores, acceptance_rate=mean_acceptance, **costs)
    best = mpc(labels, scores, mean_acceptance, **costs)
    expected = empc(labels, scores, alpha=campaign.acceptance_alpha, beta=campaign.acceptance_beta, **costs)

    figure = new_figure(7.2, 4.8)
    axes = figure.add_subplot()
    axes.plot(
        curve["fraction_targeted"],
        curve["profit_per_customer"],
        color=MODEL_COLOUR,
        lw=2,
        label=f"Profit at mean acceptance {mean_acceptance:.0%}",
    )
    axes.axhline(0.0, color=REFERENCE_COLOUR, lw=1, ls=":")
    axes.axvline(
        expected.optimal_fraction,
        color=HIGHLIGHT_COLOUR,
        lw=1.5,
        ls="--",
        label=f"EMPC optimal share {expected.optimal_fraction:.1%} (EMPC {expected.score:,.2f})",
    )
    axes.plot(
        [best.optimal_fraction],
        [best.score],
        marker="o",
        color=HIGHLIGHT_COLOUR,
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

    figure = new_figure(7.2, max(2.5, 0.32 * len(shown) + 1.2))
    axes = figure.add_subplot()
    colours = [MODEL_COLOUR if value >= 0 else REFERENCE_COLOUR for value in shown.to_numpy()]
    axes.barh(names, shown.to_numpy(), color=colours)
    axes.axvline(0.0, color=REFERENCE_COLOUR, lw=1)
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
    return _write_figures(builders, out_dir, log_each=True)


def _write_figures(builders: dict[str, Any], out_dir: Path, *, log_each: bool = False) -> dict[str, Path]:
    """Build each figure and write it as ``<name>.png`` into ``out_dir``, one at a time; return name to path.

    ``log_each``: a debug line per file written.
    """
    written: dict[str, Path] = {}
    for name, build in builders.items():
        figure = build()
        path = out_dir / f"{name}.png"
        # Fixed metadata keeps the bytes identical from run to run.
        figure.savefig(path, dpi=110, metadata={"Software": None})
        figure.clear()
        written[name] = path
        if log_each:
            logger.debug("wrote %s", path)
    return written


def plot_offer_sweep(sweep: pd.DataFrame, *, chosen_months: float, measured: bool) -> Figure:
    """Net value of contacting everyone worth it, against the offer's size (``targeting.offer_sweep``).

    The chosen offer is marked.  ``measured`` says whether the expected saves come from a
    response model (else they are assumed), for the subtitle.
    """
    figure = new_figure(6.4, 4.6)
    axes = figure.add_subplot()
    months = sweep["offer_months"].to_numpy(dtype="float64")
    value = sweep["expected_net_value"].to_numpy(dtype="float64")
    axes.plot(months, value, marker="o", color=MODEL_COLOUR, lw=2, label="expected net value of the best list")
    at = float(np.interp(chosen_months, months, value))
    axes.axvline(chosen_months, color=HIGHLIGHT_COLOUR, ls="--", lw=1)
    axes.plot([chosen_months], [at], marker="o", color=HIGHLIGHT_COLOUR,
              label=f"the offer made: {chosen_months:g} months ({at:,.0f})")
    for x, y, n in zip(months, value, sweep["worth_contacting"]):
        axes.annotate(f"{int(n):,}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    from matplotlib.ticker import FuncFormatter

    basis = "estimated response" if measured else "assumed response (no response model)"
    axes.set_title(f"Offer size against campaign value\n{basis}, held as at the offer made;\n"
                   "labels: subscribers worth a contact", fontsize=9)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axes.set_xlabel("incentive, in months of the subscriber's monthly value")
    axes.set_ylabel("expected net value")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


__all__ = [
    "HIGHLIGHT_COLOUR",
    "MODEL_COLOUR",
    "REFERENCE_COLOUR",
    "EMPCResult",
    "MPCResult",
    "Reliability",
    "classification_metrics",
    "empc",
    "gains_at",
    "lift_at",
    "mpc",
    "permutation_importance_table",
    "new_figure",
    "plot_calibration",
    "plot_offer_sweep",
    "plot_feature_importance",
    "plot_gains_lift",
    "plot_precision_recall",
    "plot_profit",
    "plot_roc",
    "profit_curve",
    "reliability_table",
    "save_plots",
    "segment_metrics",
    "top_decile_lift",
    "value_captured_at",
]


# ======================================================================================
# Uplift (response) evaluation: from here to the end of the module
# ======================================================================================
#
# Conventions.  ``y`` is 1 when the subscriber churned within the horizon; ``treatment`` is 1
# for the offer group (contacted) and 0 for the randomised control group; a score is a
# predicted uplift, ``P(churn | control) - P(churn | offer)``: the churn probability a call
# removes, so the highest score is called first.
#
# Ties.  Every curve is evaluated only where the score changes: a group of tied scores is one
# cut, targeted all or nothing, and the curve is a straight line between cuts (as in
# scikit-learn's ``roc_curve``).  Areas are trapezoids over those points, so no metric here
# depends on the input order of the rows or on how ties would be broken; a constant score
# gives the straight line of a random ranking.  Decile bins keep tied rows together (their
# average rank decides the bin).


class TreatmentEffect(NamedTuple):
    """The average effect of the offer on churn, with its confidence interval.

    ``estimate`` is ``churn_rate_control - churn_rate_offer`` (positive: the offer keeps
    subscribers); ``ci_low`` and ``ci_high`` are Newcombe's hybrid score interval.
    """

    estimate: float
    ci_low: float
    ci_high: float
    churn_rate_control: float
    churn_rate_offer: float
    n_control: int
    n_offer: int


class UpliftCalibration(NamedTuple):
    """The best linear predictor of the uplift from a score (Chernozhukov et al. 2018).

    ``intercept + slope * (score - centre)`` is the least-squares fit of the transformed
    outcome, whose conditional mean is the uplift; ``slope`` 1 means the score's scale is
    right, 0 that it carries no information about the uplift.  Standard errors are
    heteroskedasticity-robust (HC1); ``slope_p_value`` is one-sided (H0: slope <= 0).
    """

    intercept: float
    slope: float
    intercept_se: float
    slope_se: float
    slope_p_value: float
    centre: float
    n: int


def binary_array(values: Any, what: str, meaning: str, *, noun: str = "values") -> np.ndarray:
    """``values`` as an int8 array of 0/1, or a ModelError naming the first bad rows."""
    raw = np.asarray(values)
    if raw.ndim != 1:
        shape_of = "0/1 labels" if noun == "labels" else f"0/1 ({meaning})"
        raise ModelError(f"{what}: expected a one-dimensional array of {shape_of}, got shape {raw.shape}")
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
            f"{what}: {noun} must be 0/1 ({meaning}); got {_plain(raw[bad[0]])!r} in "
            f"{first_rows(_row_labels(values, bad))}"
        )
    return numeric.astype(np.int8)


def _uplift_arrays(y: Any, treatment: Any, score: Any = None, what: str = "score"):
    """Checked ``(labels, treated, scores)``; both groups must be present."""
    labels = binary_array(y, "y", "1 = churned")
    treated = binary_array(treatment, "treatment", "1 = offer, 0 = control")
    if treated.size != labels.size:
        raise ModelError(f"treatment: has {treated.size} rows but y has {labels.size}")
    offered = int(treated.sum())
    if offered == 0 or offered == treated.size:
        only = "offer" if offered else "control"
        raise ModelError(f"treatment: all {treated.size} rows are in the {only} group; both groups are needed")
    scores = None if score is None else _scores_array(score, labels.size, what=what)
    return labels, treated, scores


def _wilson(successes: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes / n`` (NaN where ``n`` is 0)."""
    successes, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (successes + z * z / 2) / (n + z * z)
        half = z / (n + z * z) * np.sqrt(successes * (n - successes) / n + z * z / 4)
    low, high = centre - half, centre + half
    empty = n == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _difference_interval(churn_control, n_control, churn_offer, n_offer, confidence: float):
    """Rate difference (control - offer) and Newcombe's hybrid score interval (his method 10)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    churn_control, n_control = np.asarray(churn_control, dtype=float), np.asarray(n_control, dtype=float)
    churn_offer, n_offer = np.asarray(churn_offer, dtype=float), np.asarray(n_offer, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_control = np.where(n_control > 0, churn_control / n_control, np.nan)
        rate_offer = np.where(n_offer > 0, churn_offer / n_offer, np.nan)
    low_c, high_c = _wilson(churn_control, n_control, z)
    low_o, high_o = _wilson(churn_offer, n_offer, z)
    difference = rate_control - rate_offer
    low = difference - np.sqrt((rate_control - low_c) ** 2 + (high_o - rate_offer) ** 2)
    high = difference + np.sqrt((high_c - rate_control) ** 2 + (rate_offer - low_o) ** 2)
    return difference, low, high, rate_control, rate_offer


def average_treatment_effect(y: Any, treatment: Any, *, confidence: float = 0.95) -> TreatmentEffect:
    """Churn rate of the control group minus that of the offer group, with a confidence interval.

    The interval is Newcombe's hybrid score interval for a difference of independent
    proportions (Newcombe 1998, Statistics in Medicine 17, method 10): the Wilson score
    intervals ``[l, u]`` of each rate combine as
    ``d - sqrt((p_c - l_c)^2 + (u_o - p_o)^2)`` to ``d + sqrt((u_c - p_c)^2 + (p_o - l_o)^2)``.
    Unlike the Wald interval it stays inside [-1, 1] and keeps its coverage for rare events
    and small groups.

    Examples
    --------
    Newcombe's example (a): 56/70 against 48/80.

    >>> effect = average_treatment_effect([1] * 56 + [0] * 14 + [1] * 48 + [0] * 32, [0] * 70 + [1] * 80)
    >>> round(effect.estimate, 4), round(effect.ci_low, 4), round(effect.ci_high, 4)
    (0.2, 0.0524, 0.3339)
    """
    labels, treated, _ = _uplift_arrays(y, treatment)
    if not 0 < confidence < 1:
        raise ModelError(f"average treatment effect: confidence must lie in (0, 1), got {confidence!r}")
    n_offer = int(treated.sum())
    n_control = labels.size - n_offer
    churn_offer = int((labels * treated).sum())
    churn_control = int(labels.sum()) - churn_offer
    difference, low, high, rate_control, rate_offer = _difference_interval(
        churn_control, n_control, churn_offer, n_offer, confidence
    )
    return TreatmentEffect(
        estimate=float(difference),
        ci_low=float(low),
        ci_high=float(high),
        churn_rate_control=float(rate_control),
        churn_rate_offer=float(rate_offer),
        n_control=n_control,
        n_offer=n_offer,
    )


def _uplift_cuts(labels: np.ndarray, treated: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Cumulative counts at every cut (ties grouped), from targeting nobody to everybody."""
    order = _ranking(scores)
    sorted_scores = scores[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]

    def cumulative(values: np.ndarray) -> np.ndarray:
        return np.r_[0, np.cumsum(values[order], dtype=np.int64)[last_of_group]]

    targeted = np.r_[0, last_of_group + 1].astype(np.int64)
    n_offer = cumulative(treated)
    churn_offer = cumulative(labels * treated)
    return {
        "n_targeted": targeted,
        "threshold": np.r_[np.inf, sorted_scores[last_of_group]],
        "n_offer": n_offer,
        "n_control": targeted - n_offer,
        "churners_offer": churn_offer,
        "churners_control": cumulative(labels) - churn_offer,
    }


def qini_curve(y: Any, treatment: Any, score: Any) -> pd.DataFrame:
    """Churns a campaign prevents, by share of the base targeted (Radcliffe 2007).

    Rows are ranked by ``score``, highest first.  At each cut the prevented churns, scaled to
    the offer group targeted so far, are
    ``churners_control * n_offer / n_control - churners_offer`` (0 for the control term while
    no control row is targeted yet).  The uplift curve beside it counts the saves if everyone
    targeted were called: ``(churners_control / n_control - churners_offer / n_offer) *
    n_targeted`` (0 while either group is empty).  Ties are one cut (see the section notes).

    Returns
    -------
    pandas.DataFrame
        One row per cut, from targeting nobody to everybody: ``n_targeted``,
        ``fraction_targeted``, ``threshold`` (lowest score targeted; ``inf`` first),
        ``n_offer``, ``n_control``, ``churners_offer``, ``churners_control``,
        ``prevented_churns`` (the Qini curve) and ``uplift_times_n`` (the uplift curve).

    Examples
    --------
    >>> curve = qini_curve([0, 1, 1, 0], [1, 0, 1, 0], [0.4, 0.3, 0.2, 0.1])
    >>> curve["prevented_churns"].tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0]
    >>> curve["uplift_times_n"].tolist()
    [0.0, 0.0, 2.0, 1.5, 0.0]
    """
    labels, treated, scores = _uplift_arrays(y, treatment, score)
    cuts = _uplift_cuts(labels, treated, scores)
    n_offer, n_control = cuts["n_offer"].astype(float), cuts["n_control"].astype(float)
    churn_offer, churn_control = cuts["churners_offer"].astype(float), cuts["churners_control"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled_control = np.where(n_control > 0, churn_control * n_offer / n_control, 0.0)
        rate_gap = np.where(
            (n_control > 0) & (n_offer > 0), churn_control / n_control - churn_offer / n_offer, 0.0
        )
    frame = pd.DataFrame(cuts)
    frame.insert(1, "fraction_targeted", cuts["n_targeted"] / labels.size)
    frame["prevented_churns"] = scaled_control - churn_offer
    frame["uplift_times_n"] = rate_gap * cuts["n_targeted"]
    return frame


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under the points ``(x, y)``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _perfect_score(labels: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """1 for offer-group stayers and control-group churners (the rows a call could have
    saved), 0 for the rest: the ranking that the Qini coefficient is normalised by."""
    return (treated * (1 - labels) + (1 - treated) * labels).astype(float)


def qini_coefficient(y: Any, treatment: Any, score: Any, *, normalize: bool = True) -> float:
    """Area between the Qini curve and the random line, over the share of the base targeted.

    The random line runs straight from nothing to the whole base's prevented churns.  With
    ``normalize`` (the default) the area is divided by that of the perfect ranking: offer-group
    stayers and control-group churners first (in any order, one tied group), then the rest.
    On that ranking every targeted offer-group stayer counts as a prevented churn, so the
    coefficient is about 1 for a perfect model and 0 for a random one (it can exceed 1 only
    on a handful of rows).  Without ``normalize`` the area is in prevented churns (times the
    share of the base).

    Examples
    --------
    >>> qini_coefficient([0, 1, 1, 0], [1, 0, 1, 0], [0.4, 0.3, 0.2, 0.1])
    1.0
    """
    labels, treated, scores = _uplift_arrays(y, treatment, score)
    curve = qini_curve(labels, treated, scores)
    final = float(curve["prevented_churns"].iat[-1])
    area = _area(curve["fraction_targeted"], curve["prevented_churns"]) - final / 2.0
    if not normalize:
        return area
    perfect = qini_curve(labels, treated, _perfect_score(labels, treated))
    perfect_area = _area(perfect["fraction_targeted"], perfect["prevented_churns"]) - final / 2.0
    if perfect_area <= 0:
        raise ModelError(
            "qini coefficient: the perfect ranking does no better than a random one (no offer-group "
            "row stayed, or every offer-group row stayed and every control row churned); the "
            "coefficient cannot be normalised (use normalize=False)"
        )
    return area / perfect_area


def auuc(y: Any, treatment: Any, score: Any) -> float:
    """Area under the uplift curve (uplift among the targeted times their number).

    The x axis is the share of the base targeted (0 to 1), so the area is in prevented
    churns; a random ranking's expected area is about half the whole base's
    ``uplift * n`` (see :func:`uplift_metrics`).

    Examples
    --------
    >>> auuc([0, 1, 1, 0], [1, 0, 1, 0], [0.4, 0.3, 0.2, 0.1])
    0.875
    """
    curve = qini_curve(y, treatment, score)
    return _area(curve["fraction_targeted"], curve["uplift_times_n"])


def uplift_by_decile(y: Any, treatment: Any, score: Any, n_bins: int = 10, *, confidence: float = 0.95) -> pd.DataFrame:
    """Observed against predicted uplift in bins of equal size by score, highest first.

    A row's bin is ``floor((rank - 0.5) * n_bins / n)``, ``rank`` its rank by score from the
    highest (tied rows share their average rank, hence a bin); empty bins are left out.

    Returns
    -------
    pandas.DataFrame
        ``bin`` (1 = highest scores), ``n``, ``n_offer``, ``n_control``,
        ``churn_rate_offer``, ``churn_rate_control``, ``observed_uplift`` (control minus
        offer rate), ``ci_low`` and ``ci_high`` (Newcombe's interval, see
        :func:`average_treatment_effect`), ``mean_predicted``, ``min_score`` and
        ``max_score``.  Rates are NaN in a bin without one of the groups.
    """
    from scipy.stats import rankdata

    labels, treated, scores = _uplift_arrays(y, treatment, score)
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ModelError(f"uplift by decile: n_bins must be a positive integer, got {n_bins!r}")
    rank = rankdata(-scores, method="average")
    bins = np.floor((rank - 0.5) * n_bins / labels.size).astype(np.int64)

    def per_bin(values: np.ndarray) -> np.ndarray:
        return np.bincount(bins, weights=values, minlength=n_bins)

    n = np.bincount(bins, minlength=n_bins)
    n_offer = per_bin(treated.astype(float))
    churn_offer = per_bin((labels * treated).astype(float))
    churn_control = per_bin(labels.astype(float)) - churn_offer
    used = np.flatnonzero(n)
    difference, low, high, rate_control, rate_offer = _difference_interval(
        churn_control[used], n[used] - n_offer[used], churn_offer[used], n_offer[used], confidence
    )
    minimum = pd.Series(scores).groupby(bins).min().reindex(used).to_numpy()
    maximum = pd.Series(scores).groupby(bins).max().reindex(used).to_numpy()
    return pd.DataFrame(
        {
            "bin": used + 1,
            "n": n[used].astype(np.int64),
            "n_offer": n_offer[used].astype(np.int64),
            "n_control": (n[used] - n_offer[used]).astype(np.int64),
            "churn_rate_offer": rate_offer,
            "churn_rate_control": rate_control,
            "observed_uplift": difference,
            "ci_low": low,
            "ci_high": high,
            "mean_predicted": per_bin(scores)[used] / n[used],
            "min_score": minimum,
            "max_score": maximum,
        }
    )


def uplift_calibration(y: Any, treatment: Any, score: Any, *, propensity: float | None = None) -> UpliftCalibration:
    """Best linear predictor of the uplift from ``score`` (Chernozhukov, Demirer, Duflo and
    Fernández-Val 2018).

    The transformed outcome ``Y* = y * (1 - t) / (1 - e) - y * t / e`` (``e`` the share
    offered, a constant under complete randomisation) has conditional mean
    ``P(churn | control, x) - P(churn | offer, x)``, the uplift; ordinary least squares of
    ``Y*`` on ``1`` and ``score - mean(score)`` gives the intercept (the inverse-probability-
    weighted average effect, which with ``e = mean(t)`` is the difference of the two churn
    rates) and the slope.  Scores must come from a model that did not see these rows.

    Parameters
    ----------
    propensity : float, optional
        The share of rows offered by design; ``mean(treatment)`` when not given.
    """
    from statistics import NormalDist

    labels, treated, scores = _uplift_arrays(y, treatment, score)
    e = float(treated.mean()) if propensity is None else float(propensity)
    if not 0 < e < 1:
        raise ModelError(f"uplift calibration: propensity must lie in (0, 1), got {propensity!r}")
    transformed = labels * (1 - treated) / (1 - e) - labels * treated / e
    n = labels.size
    centre = float(scores.mean())
    deviation = scores - centre
    spread = float(np.sum(deviation**2))
    intercept = float(transformed.mean())
    if n < 3 or spread <= 0 or not np.isfinite(spread):
        # A constant score: the slope is not identified.
        residual = transformed - intercept
        intercept_se = float(np.sqrt(np.sum(residual**2) / (n * max(n - 1, 1))))
        return UpliftCalibration(intercept, math.nan, intercept_se, math.nan, math.nan, centre, n)
    slope = float(np.sum(deviation * transformed) / spread)
    residual = transformed - intercept - slope * deviation
    correction = n / (n - 2)  # HC1
    slope_se = float(np.sqrt(correction * np.sum(deviation**2 * residual**2)) / spread)
    intercept_se = float(np.sqrt(correction * np.sum(residual**2)) / n)
    p_value = float(NormalDist().cdf(-slope / slope_se)) if slope_se > 0 else (0.0 if slope > 0 else 1.0)
    return UpliftCalibration(intercept, slope, intercept_se, slope_se, p_value, centre, n)


def uplift_metrics(
    y: Any, treatment: Any, score: Any, *, risk: Any = None, n_bins: int = 10
) -> dict[str, float]:
    """Every hold-out uplift metric, as MLflow-safe names and floats.

    Returns
    -------
    dict
        ``qini_coefficient`` (normalised), ``qini_area`` (not normalised, prevented churns),
        ``auuc``, ``auuc_random`` (a random ranking's expected AUUC: half the whole base's
        ``uplift * n``), ``auuc_perfect`` (the ranking the Qini coefficient is normalised
        by), ``top_decile_uplift`` (observed uplift in the top bin), ``ate``,
        ``ate_ci_low``, ``ate_ci_high``, ``churn_rate_offer``, ``churn_rate_control``,
        ``n_offer``, ``n_control``, ``calibration_intercept``, ``calibration_slope`` and
        ``calibration_slope_se`` (:func:`uplift_calibration` of the scores: slope 1 when
        their scale is right); with ``risk`` (churn probabilities of the same rows) also
        ``qini_coefficient_risk`` and ``auuc_risk``: the same measures when the riskiest are
        called first.
    """
    labels, treated, scores = _uplift_arrays(y, treatment, score)
    curve = qini_curve(labels, treated, scores)
    effect = average_treatment_effect(labels, treated)
    calibration = uplift_calibration(labels, treated, scores)
    deciles = uplift_by_decile(labels, treated, scores, n_bins=n_bins)
    metrics = {
        "qini_coefficient": qini_coefficient(labels, treated, scores),
        "qini_area": qini_coefficient(labels, treated, scores, normalize=False),
        "auuc": _area(curve["fraction_targeted"], curve["uplift_times_n"]),
        "auuc_random": float(curve["uplift_times_n"].iat[-1]) / 2.0,
        "auuc_perfect": auuc(labels, treated, _perfect_score(labels, treated)),
        "top_decile_uplift": float(deciles["observed_uplift"].iat[0]),
        "ate": effect.estimate,
        "ate_ci_low": effect.ci_low,
        "ate_ci_high": effect.ci_high,
        "churn_rate_offer": effect.churn_rate_offer,
        "churn_rate_control": effect.churn_rate_control,
        "n_offer": float(effect.n_offer),
        "n_control": float(effect.n_control),
        "calibration_intercept": calibration.intercept,
        "calibration_slope": calibration.slope,
        "calibration_slope_se": calibration.slope_se,
    }
    if risk is not None:
        risks = _scores_array(risk, labels.size, what="risk")
        metrics["qini_coefficient_risk"] = qini_coefficient(labels, treated, risks)
        metrics["auuc_risk"] = auuc(labels, treated, risks)
    return metrics


def plot_qini(y: Any, treatment: Any, score: Any, *, risk: Any = None) -> Figure:
    """Qini curve of the uplift model against a random ranking and, with ``risk``, against
    calling the riskiest first (risk used as if it were uplift)."""
    labels, treated, scores = _uplift_arrays(y, treatment, score)
    curve = qini_curve(labels, treated, scores)
    coefficient = qini_coefficient(labels, treated, scores)
    final = float(curve["prevented_churns"].iat[-1])

    figure = new_figure(7.2, 4.8)
    axes = figure.add_subplot()
    axes.plot(curve["fraction_targeted"], curve["prevented_churns"], color=MODEL_COLOUR, lw=2,
              label=f"Uplift model (Qini coefficient {coefficient:.3f})")
    if risk is not None:
        risks = _scores_array(risk, labels.size, what="risk")
        by_risk = qini_curve(labels, treated, risks)
        axes.plot(by_risk["fraction_targeted"], by_risk["prevented_churns"], color=HIGHLIGHT_COLOUR, lw=1.5,
                  ls="--", label=f"Riskiest first (Qini coefficient {qini_coefficient(labels, treated, risks):.3f})")
    axes.plot([0, 1], [0, final], color=REFERENCE_COLOUR, lw=1, ls=":", label="Random")
    axes.axhline(0.0, color=REFERENCE_COLOUR, lw=0.5)
    axes.set(
        xlim=(0, 1),
        xlabel="Share of the base called (highest score first)",
        ylabel="Churns prevented (scaled to the offer group)",
        title=f"Qini curve (hold-out: {int(treated.sum()):,} offered, {int((1 - treated).sum()):,} control)",
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return figure


def plot_uplift_deciles(y: Any, treatment: Any, score: Any, n_bins: int = 10) -> Figure:
    """Observed uplift per bin of predicted uplift (95% intervals) beside the mean prediction."""
    labels, treated, scores = _uplift_arrays(y, treatment, score)
    table = uplift_by_decile(labels, treated, scores, n_bins=n_bins)
    effect = average_treatment_effect(labels, treated)
    observed = table["observed_uplift"].to_numpy()
    errors = np.vstack([observed - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - observed])

    figure = new_figure(7.2, 4.8)
    axes = figure.add_subplot()
    axes.errorbar(table["bin"], observed, yerr=errors, fmt="o", color=MODEL_COLOUR, capsize=3,
                  label="Observed uplift (95% interval)")
    axes.plot(table["bin"], table["mean_predicted"], marker="s", ls="-", color=HIGHLIGHT_COLOUR,
              label="Mean predicted uplift")
    axes.axhline(effect.estimate, color=REFERENCE_COLOUR, lw=1, ls=":",
                 label=f"Average effect {effect.estimate:+.2%}")
    axes.axhline(0.0, color=REFERENCE_COLOUR, lw=0.5)
    axes.set(
        xticks=table["bin"].tolist(),
        xlabel=f"Bin of predicted uplift (1 = highest, {n_bins} bins)",
        ylabel="Churn rate, control minus offer",
        title="Predicted against observed uplift (hold-out)",
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return figure


def save_uplift_plots(y: Any, treatment: Any, score: Any, out_dir: str | Path, *, risk: Any = None,
                      n_bins: int = 10) -> dict[str, Path]:
    """Write ``qini.png`` and ``uplift_deciles.png`` into ``out_dir``; return name to path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builders = {
        "qini": lambda: plot_qini(y, treatment, score, risk=risk),
        "uplift_deciles": lambda: plot_uplift_deciles(y, treatment, score, n_bins=n_bins),
    }
    return _write_figures(builders, out_dir)


__all__ += [
    "TreatmentEffect",
    "UpliftCalibration",
    "auuc",
    "average_treatment_effect",
    "binary_array",
    "plot_qini",
    "plot_uplift_deciles",
    "qini_coefficient",
    "qini_curve",
    "save_uplift_plots",
    "uplift_by_decile",
    "uplift_calibration",
    "uplift_metrics",
]
