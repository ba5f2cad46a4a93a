"""Tests of pipeline.evaluate: profit measures, lift and gains, metrics, segments, calibration, plots."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.targeting import clv
from pandas.testing import assert_frame_equal, assert_series_equal

from pipeline import evaluate
from pipeline.config import CampaignConfig
from pipeline.errors import ModelError

# The EMPC reference case of docs/training.md (values reproduced with empulse 0.13.1).
REFERENCE_LABELS = [0, 1, 0, 1, 0, 1, 0, 1]
REFERENCE_SCORES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9]


def _random_case(seed: int, n_rows: int = 60, rounding: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels with about 30% churners and noisy scores; ``rounding`` creates ties."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_rows) < 0.3).astype(int)
    labels[:2] = (0, 1)  # both classes, always
    scores = rng.random(n_rows) * 0.7 + 0.3 * labels
    if rounding is not None:
        scores = np.round(scores, rounding)
    return labels, scores


def _brute_force_profit(labels, scores, clv, incentive_cost, contact_cost, alpha, beta):
    """EMPC and its optimal fraction by numerical integration over the acceptance rate.

    Profit of every cutoff (all distinct scores, and targeting nobody) is computed by
    counting, without any convex hull; the best cutoff is taken at each acceptance rate.
    """
    from scipy import integrate, stats

    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    pi0 = labels.mean()
    cutoffs = np.r_[np.inf, np.unique(scores)[::-1]]
    targeted_churners = np.array([(labels[scores >= t] == 1).sum() for t in cutoffs]) / labels.sum()
    targeted_stayers = np.array([(labels[scores >= t] == 0).sum() for t in cutoffs]) / (labels == 0).sum()
    delta, phi = incentive_cost / clv, contact_cost / clv

    def profits(gamma):
        return clv * (gamma * (1 - delta) - phi) * pi0 * targeted_churners - clv * (delta + phi) * (
            1 - pi0
        ) * targeted_stayers

    density = stats.beta(alpha, beta).pdf
    # Break the integral where the best cutoff changes: found on a fine grid, then solved
    # exactly as the acceptance rate where the two cutoffs' (linear) profits are equal.
    grid = np.linspace(0, 1, 4001)
    best = np.array([np.argmax(profits(g)) for g in grid])
    breaks = []
    for cell in np.flatnonzero(np.diff(best)):
        before, after = best[cell], best[cell + 1]
        low, high = profits(grid[cell]), profits(grid[cell + 1])
        slope_gap = (high[after] - high[before]) - (low[after] - low[before])
        breaks.append(grid[cell] + (low[before] - low[after]) / slope_gap * (grid[cell + 1] - grid[cell]))
    options = {"points": breaks, "limit": 500, "epsabs": 1e-12, "epsrel": 1e-12} if breaks else {"epsabs": 1e-12}
    expected_profit, _ = integrate.quad(lambda g: profits(g).max() * density(g), 0, 1, **options)
    fraction = pi0 * targeted_churners + (1 - pi0) * targeted_stayers
    expected_fraction, _ = integrate.quad(lambda g: fraction[np.argmax(profits(g))] * density(g), 0, 1, **options)
    return expected_profit, expected_fraction


# --------------------------------------------------------------------------------------
# EMPC and MPC
# --------------------------------------------------------------------------------------


def test_empc_reproduces_the_reference_values():
    result = evaluate.empc(REFERENCE_LABELS, REFERENCE_SCORES)
    assert result.score == pytest.approx(23.8756, abs=1e-4)
    assert result.optimal_fraction == pytest.approx(0.8744, abs=1e-4)


def test_mpc_reproduces_the_reference_value():
    result = evaluate.mpc(REFERENCE_LABELS, REFERENCE_SCORES, gamma=0.3)
    assert result.score == pytest.approx(23.875, abs=1e-9)
    # Targeting everyone above the lowest churner (score 0.2): 7 of 8 subscribers.
    assert result.optimal_fraction == pytest.approx(7 / 8)
    assert result.threshold == 0.2


@pytest.mark.parametrize(
    ("seed", "rounding", "campaign"),
    [
        (0, None, {}),
        (1, 1, {}),  # heavy ties: cutoffs group tied scores
        (2, 2, {"clv": 50.0, "incentive_cost": 8.0, "contact_cost": 2.0}),
        (3, None, {"alpha": 2.0, "beta": 2.0}),
        (4, None, {"clv": 1000.0, "incentive_cost": 1.0, "contact_cost": 0.0, "alpha": 1.0, "beta": 9.0}),
    ],
)
def test_empc_equals_brute_force_integration(seed, rounding, campaign):
    labels, scores = _random_case(seed, rounding=rounding)
    settings = {"clv": 200.0, "incentive_cost": 10.0, "contact_cost": 1.0, "alpha": 6.0, "beta": 14.0, **campaign}
    expected_score, expected_fraction = _brute_force_profit(labels, scores, **settings)
    result = evaluate.empc(labels, scores, **settings)
    assert result.score == pytest.approx(expected_score, abs=1e-6)
    assert result.optimal_fraction == pytest.approx(expected_fraction, abs=1e-6)


def test_empc_depends_only_on_the_ranking():
    labels, scores = _random_case(5)
    assert evaluate.empc(labels, np.exp(3 * scores)) == evaluate.empc(labels, scores)


def test_empc_of_constant_scores_is_the_best_of_all_or_nobody():
    # One cutoff: target all 4 (2 churners) or nobody.  Profit of all at gamma: 200 * (0.5 * (0.95 g - 0.005)
    # - 0.055 * 0.5) = 95 g - 6; positive above g = 6/95.
    from scipy.special import betainc

    result = evaluate.empc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    switch = 6 / 95
    share_above = 1 - betainc(6, 14, switch)
    mean_above = 0.3 * (1 - betainc(7, 14, switch))
    assert result.score == pytest.approx(95 * mean_above - 6 * share_above, abs=1e-12)
    assert result.optimal_fraction == pytest.approx(share_above, abs=1e-12)


def test_mpc_equals_the_best_point_of_the_profit_curve():
    labels, scores = _random_case(6)
    curve = evaluate.profit_curve(labels, scores, acceptance_rate=0.3)
    result = evaluate.mpc(labels, scores, 0.3)
    assert result.score == curve["profit_per_customer"].max()
    assert curve["fraction_targeted"].iloc[[0, -1]].tolist() == [0.0, 1.0]


def test_profit_curve_uses_the_campaign_formula():
    # Top 2 of 4 are one churner and one stayer: a = 0.5, b0 = 0.5, lift(0.5) = 1.
    curve = evaluate.profit_curve([1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1], acceptance_rate=0.3)
    half = curve.loc[curve["fraction_targeted"] == 0.5, "profit_per_customer"].item()
    assert half == pytest.approx(0.5 * ((0.3 * 200 + 10 * 0.7) * 0.5 * 1.0 - 10 - 1))


def test_empc_rejects_a_single_class():
    with pytest.raises(ModelError, match="EMPC: y_true holds only non-churners"):
        evaluate.empc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ModelError, match="MPC: y_true holds only churners"):
        evaluate.mpc([1, 1], [0.1, 0.2])


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], r"y_true: labels must be 0/1 \(1 = churned\); got 2 in row 1$"),
        ([], [], "y_true: no rows to evaluate"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "y_score: scores must be finite; row 1"),
        ([0, 1, 1], [0.1, 0.2], "y_score: has 2 rows but y_true has 3"),
    ],
)
def test_empc_rejects_bad_inputs(labels, scores, message):
    with pytest.raises(ModelError, match=message):
        evaluate.empc(labels, scores)


def test_bad_labels_are_named_by_their_index_label():
    labels = pd.Series([0, 1, 5], index=["a", "b", "c"])
    with pytest.raises(ModelError, match="got 5 in row c$"):
        evaluate.empc(labels, [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"clv": 0.0}, "clv must be a positive number"),
        ({"incentive_cost": 250.0}, "incentive_cost 250.0 must be below clv 200.0"),
        ({"contact_cost": -1.0}, "must be non-negative"),
        ({"alpha": 0.0}, "alpha and beta must be positive"),
    ],
)
def test_empc_rejects_bad_campaigns(settings, message):
    with pytest.raises(ModelError, match=message):
        evaluate.empc(REFERENCE_LABELS, REFERENCE_SCORES, **settings)


# --------------------------------------------------------------------------------------
# Lift, gains, value captured
# --------------------------------------------------------------------------------------


def test_lift_and_gains_on_a_hand_case():
    labels = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]  # churn rate 0.2
    scores = [0.8, 0.9, 0.1, 0.7, 0.2, 0.3, 0.0, 0.4, 0.5, 0.6]
    # Ranking: rows 1 (0), 0 (1), 3 (1), 9, 8, ...
    assert evaluate.lift_at(labels, scores, 0.1) == 0.0
    assert evaluate.lift_at(labels, scores, 0.2) == pytest.approx(0.5 / 0.2)
    assert evaluate.lift_at(labels, scores, 0.3) == pytest.approx((2 / 3) / 0.2)
    assert evaluate.top_decile_lift(labels, scores) == 0.0
    assert evaluate.gains_at(labels, scores, 0.2) == 0.5
    assert evaluate.gains_at(labels, scores, 0.3) == 1.0
    assert evaluate.lift_at(labels, scores, 1.0) == pytest.approx(1.0)


def test_top_fraction_rounds_up_and_ties_keep_input_order():
    # All scores tie: the stable order takes rows in input order.
    labels = [0, 1, 1, 0]
    ties = [0.5, 0.5, 0.5, 0.5]
    assert evaluate.gains_at(labels, ties, 0.25) == 0.0  # row 0
    assert evaluate.gains_at(labels, ties, 0.3) == 0.5  # ceil(1.2) = 2 rows: 0 and 1
    assert evaluate.gains_at(labels[::-1], ties, 0.3) == 0.5  # rows 0 and 1 of the reversed labels: 0, 1
    assert evaluate.gains_at([1, 1, 0, 0], ties, 0.5) == 1.0
    assert evaluate.gains_at([0, 0, 1, 1], ties, 0.5) == 0.0


def test_ties_keep_input_order_on_a_larger_base():
    # 200 rows with one-decimal scores (large tie groups, where an unstable sort reorders rows).
    # The only churner of the top tie group is its first row in input order, so the single top
    # row is a churner and the next rows of that group are not.
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 1)
    top_group = np.flatnonzero(scores == scores.max())
    labels = np.zeros(200, dtype=int)
    labels[top_group[0]] = 1
    labels[np.flatnonzero(scores == scores.min())] = 1
    assert top_group.size >= 5
    assert evaluate.gains_at(labels, scores, 1 / 200) == 1 / labels.sum()
    assert evaluate.gains_at(labels, scores, 5 / 200) == 1 / labels.sum()
    assert evaluate.lift_at(labels, scores, 1 / 200) == pytest.approx(200 / labels.sum())


def test_top_fraction_is_not_inflated_by_float_rounding():
    # 0.07 * 100 is 7.000000000000001 in floating point: still 7 rows.
    labels = [1] * 7 + [0] * 93
    scores = np.linspace(1, 0, 100)
    assert evaluate.gains_at(labels, scores, 0.07) == 1.0
    assert evaluate.lift_at(labels, scores, 0.07) == pytest.approx(1 / 0.07)


def test_value_captured_on_a_hand_case():
    labels = [1, 0, 1, 1]
    scores = [0.9, 0.8, 0.7, 0.1]
    value = [100.0, 1000.0, 50.0, 50.0]  # churners hold 200
    assert evaluate.value_captured_at(labels, scores, value, 0.25) == 0.5
    assert evaluate.value_captured_at(labels, scores, value, 0.75) == 0.75
    assert evaluate.value_captured_at(labels, scores, value, 1.0) == 1.0


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, "10%"])
def test_lift_rejects_bad_fractions(fraction):
    with pytest.raises(ModelError, match=r"fraction must be a number in \(0, 1\]"):
        evaluate.lift_at([0, 1], [0.1, 0.2], fraction)


def test_lift_and_gains_need_churners():
    with pytest.raises(ModelError, match="lift: y_true holds no churners"):
        evaluate.lift_at([0, 0], [0.1, 0.2], 0.5)
    with pytest.raises(ModelError, match="gains: y_true holds no churners"):
        evaluate.gains_at([0, 0], [0.1, 0.2], 0.5)


def test_value_captured_rejects_bad_values():
    with pytest.raises(ModelError, match="value: must be non-negative; row 1"):
        evaluate.value_captured_at([1, 1], [0.1, 0.2], [5.0, -1.0], 0.5)
    with pytest.raises(ModelError, match="churners' total value is 0"):
        evaluate.value_captured_at([1, 0], [0.1, 0.2], [0.0, 3.0], 0.5)


# --------------------------------------------------------------------------------------
# The metrics dictionary
# --------------------------------------------------------------------------------------

METRIC_KEYS = {
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "expected_calibration_error",
    "top_decile_lift",
    "lift_5",
    "lift_10",
    "lift_20",
    "gains_5",
    "gains_10",
    "gains_20",
    "empc",
    "empc_optimal_fraction",
    "empc_clv",
    "base_rate",
    "n_rows",
}


def test_classification_metrics_on_a_small_case():
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    labels, scores = _random_case(7, n_rows=40)
    metrics = evaluate.classification_metrics(labels, scores)
    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(value, float) for value in metrics.values())
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", key) for key in metrics)
    assert metrics["roc_auc"] == roc_auc_score(labels, scores)
    assert metrics["pr_auc"] == average_precision_score(labels, scores)
    assert metrics["log_loss"] == log_loss(labels, scores)
    assert metrics["brier"] == brier_score_loss(labels, scores)
    assert metrics["top_decile_lift"] == metrics["lift_10"] == evaluate.lift_at(labels, scores, 0.1)
    assert metrics["lift_20"] == evaluate.lift_at(labels, scores, 0.2)
    assert metrics["gains_5"] == evaluate.gains_at(labels, scores, 0.05)
    default = evaluate.empc(labels, scores)
    assert (metrics["empc"], metrics["empc_optimal_fraction"]) == (default.score, default.optimal_fraction)
    assert metrics["empc_clv"] == 200.0
    assert metrics["base_rate"] == labels.mean()
    assert metrics["n_rows"] == 40.0


def test_classification_metrics_take_clv_from_values_and_costs_from_the_campaign():
    labels, scores = _random_case(8, n_rows=30)
    values = np.linspace(100, 500, 30)
    campaign = CampaignConfig(offer_cost_months=1.0, contact_cost_months=0.1, acceptance_alpha=2.0, acceptance_beta=3.0)
    metrics = evaluate.classification_metrics(labels, scores, value=values, campaign=campaign)
    monthly = 300.0 / float(clv(1.0, campaign))  # CLV is a fixed multiple of the monthly value
    expected = evaluate.empc(
        labels, scores, clv=300.0, incentive_cost=monthly, contact_cost=0.1 * monthly, alpha=2.0, beta=3.0
    )
    assert metrics["empc_clv"] == pytest.approx(300.0)
    assert metrics["empc"] == pytest.approx(expected.score, abs=1e-12)
    assert metrics["value_captured_10"] == evaluate.value_captured_at(labels, scores, values, 0.1)
    assert set(metrics) == METRIC_KEYS | {"value_captured_5", "value_captured_10", "value_captured_20"}


def test_classification_metrics_reject_bad_probabilities_and_one_class():
    with pytest.raises(ModelError, match=r"proba: probabilities must lie in \[0, 1\]; got 1.5 in row 2$"):
        evaluate.classification_metrics([0, 1, 1], [0.1, 0.5, 1.5])
    with pytest.raises(ModelError, match="metrics: y_true holds only non-churners"):
        evaluate.classification_metrics([0, 0], [0.1, 0.5])


# --------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------


def test_segment_metrics_on_a_tiny_case():
    labels = [1, 0, 1, 0, 0, 1]
    proba = [0.9, 0.2, 0.4, 0.6, 0.1, 0.5]
    segments = pd.DataFrame(
        {
            "contract_type": pd.Categorical(
                ["24m", "24m", "none", "none", "12m", "12m"], categories=["none", "12m", "24m", "x"]
            ),
            "region": ["b", "a", "b", None, "a", "a"],
        }
    )
    table = evaluate.segment_metrics(labels, proba, segments)
    expected = pd.DataFrame(
        {
            "segment": ["contract_type"] * 3 + ["region"] * 3,
            "level": ["none", "12m", "24m", "a", "b", "missing"],
            "n": [2, 2, 2, 3, 2, 1],
            "churn_rate": [0.5, 0.5, 0.5, 1 / 3, 1.0, 0.0],
            "mean_predicted": [0.5, 0.3, 0.55, 0.8 / 3, 0.65, 0.6],
            "roc_auc": [0.0, 1.0, 1.0, 1.0, math.nan, math.nan],
            "brier": [
                (0.6**2 + 0.6**2) / 2,
                (0.1**2 + 0.5**2) / 2,
                (0.1**2 + 0.2**2) / 2,
                (0.2**2 + 0.1**2 + 0.5**2) / 3,
                (0.1**2 + 0.6**2) / 2,
                0.6**2,
            ],
        }
    )
    assert_frame_equal(table, expected, check_exact=False, rtol=1e-12)


def test_segment_metrics_reject_misaligned_segments():
    with pytest.raises(ModelError, match="segments has 1 rows but y_true has 2"):
        evaluate.segment_metrics([0, 1], [0.1, 0.2], pd.DataFrame({"a": ["x"]}))


def test_reliability_table_on_a_tiny_case():
    labels = [0, 0, 1, 0, 1, 1]
    proba = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8]
    result = evaluate.reliability_table(labels, proba, n_bins=2, strategy="uniform")
    expected = pd.DataFrame(
        {"bin": [0, 1], "mean_predicted": [0.2, 0.7], "observed_rate": [1 / 3, 2 / 3], "count": [3, 3]}
    )
    assert_frame_equal(result.table, expected, check_exact=False, rtol=1e-12)
    assert result.expected_calibration_error == pytest.approx(0.5 * (2 / 15) + 0.5 * (1 / 30))

    quantile = evaluate.reliability_table(labels, proba, n_bins=3)
    assert quantile.table["count"].tolist() == [2, 2, 2]
    assert quantile.table["observed_rate"].tolist() == [0.0, 0.5, 1.0]


def test_reliability_table_agrees_with_sklearn():
    from sklearn.calibration import calibration_curve

    labels, scores = _random_case(9, n_rows=200)
    for strategy in ("uniform", "quantile"):
        table = evaluate.reliability_table(labels, scores, n_bins=5, strategy=strategy).table
        observed, predicted = calibration_curve(labels, scores, n_bins=5, strategy=strategy)
        np.testing.assert_allclose(table["observed_rate"], observed)
        np.testing.assert_allclose(table["mean_predicted"], predicted)


def test_reliability_table_rejects_unknown_strategy():
    with pytest.raises(ModelError, match="strategy must be 'quantile' or 'uniform', got 'kmeans'"):
        evaluate.reliability_table([0, 1], [0.1, 0.9], strategy="kmeans")


# --------------------------------------------------------------------------------------
# Plots and permutation importance
# --------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # renders every plot (3 s)
def test_save_plots_writes_real_pngs(tmp_path):
    labels, scores = _random_case(10, n_rows=200)
    importances = pd.Series({"months_left_on_contract": 0.08, "fraud_loss": 0.03, "tenure_months": -0.001})
    written = evaluate.save_plots(labels, scores, tmp_path / "plots", importances=importances)
    assert set(written) == {"roc", "precision_recall", "calibration", "gains_lift", "profit", "feature_importance"}
    for name, path in written.items():
        assert path == tmp_path / "plots" / f"{name}.png"
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 10_000, name


@pytest.mark.slow  # renders every plot twice (4 s)
def test_save_plots_is_reproducible_and_skips_importance_when_absent(tmp_path):
    labels, scores = _random_case(11, n_rows=100)
    first = evaluate.save_plots(labels, scores, tmp_path / "a", value=np.full(100, 300.0))
    second = evaluate.save_plots(labels, scores, tmp_path / "b", value=np.full(100, 300.0))
    assert "feature_importance" not in first
    assert all(first[name].read_bytes() == second[name].read_bytes() for name in first)


def test_plot_feature_importance_shows_at_most_top_bars():
    importances = pd.Series(np.arange(30, dtype=float), index=[f"column_{i}" for i in range(30)])
    figure = evaluate.plot_feature_importance(importances, top=20)
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert len(labels) == 20 and labels[-1] == "column_29"  # largest at the top
    with pytest.raises(ModelError, match="importances must be a non-empty Series"):
        evaluate.plot_feature_importance(pd.Series(dtype=float))


def _fitted_pipeline(n_rows: int = 300):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(12)
    frame = pd.DataFrame({"noise": rng.normal(size=n_rows), "signal": rng.normal(size=n_rows)})
    labels = (frame["signal"] + 0.3 * rng.normal(size=n_rows) > 0.8).astype(int)
    return LogisticRegression().fit(frame, labels), frame, labels


def test_permutation_importance_ranks_the_signal_first_and_is_reproducible():
    model, frame, labels = _fitted_pipeline()
    first = evaluate.permutation_importance_table(model, frame, labels, n_repeats=3, seed=0)
    second = evaluate.permutation_importance_table(model, frame, labels, n_repeats=3, seed=0)
    assert first.index.tolist() == ["signal", "noise"]
    assert first["signal"] > 0.2 and abs(first["noise"]) < 0.02
    assert_series_equal(first, second)


def test_permutation_importance_subsamples_above_max_rows():
    model, frame, labels = _fitted_pipeline()
    sampled = evaluate.permutation_importance_table(model, frame, labels, n_repeats=2, seed=1, max_rows=120)
    again = evaluate.permutation_importance_table(model, frame, labels, n_repeats=2, seed=1, max_rows=120)
    full = evaluate.permutation_importance_table(model, frame, labels, n_repeats=2, seed=1)
    assert_series_equal(sampled, again)
    assert sampled["signal"] != full["signal"]


@pytest.mark.parametrize("batch_rows", [1, 250, 10_000])
def test_permutation_importance_equals_scikit_learns_however_the_copies_are_batched(batch_rows):
    """The same shuffles and scores as sklearn.inspection.permutation_importance, on a typed
    pipeline with text categories, missing values and a column it drops; one copy per call
    (batch_rows=1), a few per call, or all of them in one call."""
    from sklearn.inspection import permutation_importance

    from pipeline.model import make_candidate

    rng = np.random.default_rng(5)
    n = 240
    frame = pd.DataFrame({
        "tenure": rng.integers(1, 72, n).astype(float),
        "plan": rng.choice(["basic", "plus", "max"], n),
        "charges": np.where(rng.random(n) < 0.1, np.nan, rng.normal(60, 20, n)),
        "constant": 1.0,
    })
    labels = ((frame["plan"] == "max") & (frame["tenure"] < 30) | (rng.random(n) < 0.15)).astype(int).to_numpy()
    model = make_candidate("hist_gradient_boosting", drop_columns=(), seed=0, n_threads=1).fit(frame, labels)
    ours = evaluate.permutation_importance_table(model, frame, labels, n_repeats=3, seed=4, batch_rows=batch_rows)
    theirs = permutation_importance(model, frame, labels, scoring="roc_auc", n_repeats=3, random_state=4)
    expected = pd.Series(theirs.importances_mean, index=frame.columns)
    assert ours.index.tolist() == expected.sort_values(ascending=False, kind="stable").index.tolist()
    np.testing.assert_allclose(ours[frame.columns].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    assert ours["constant"] == 0.0 and ours["plan"] > 0.05


def test_a_shuffle_leaves_a_row_unchanged_only_when_its_value_is_exactly_the_same():
    unchanged = evaluate._unchanged
    before = pd.Series([0.0, -0.0, np.nan, 1.5, 2.0])
    after = pd.Series([-0.0, -0.0, np.nan, 1.5, 2.5])
    assert unchanged(before, after).tolist() == [False, True, True, True, False]
    assert unchanged(pd.Series([1, 2, 3]), pd.Series([1, 3, 3])).tolist() == [True, False, True]
    mixed = pd.Series([1, 1.0, "1", None, np.nan, pd.NA], dtype=object)
    assert unchanged(mixed, pd.Series([1.0, 1.0, "1", None, 1, pd.NA], dtype=object)).tolist() == \
        [False, True, True, True, False, True]
    text = pd.Series(["a", None, "b", "c"], dtype="string")
    assert unchanged(text, pd.Series(["a", None, "c", None], dtype="string")).tolist() == [True, True, False, False]
    levels = pd.Series(["x", "y", None, "x"], dtype="category")
    assert unchanged(levels, levels.iloc[[3, 0, 2, 1]].set_axis(levels.index)).tolist() == [True, False, True, False]


def test_permutation_importance_scores_only_the_rows_a_shuffle_changed():
    model, frame, labels = _fitted_pipeline()
    frame = frame.assign(flag=(np.arange(len(frame)) % 10 == 0).astype(float), constant=1.0)
    model = type(model)().fit(frame, labels)
    scored = []

    class Counting:
        def predict_proba(self, X):
            scored.append(len(X))
            return model.predict_proba(X)

    ours = evaluate.permutation_importance_table(Counting(), frame, labels, n_repeats=3, seed=0)
    from sklearn.inspection import permutation_importance

    theirs = permutation_importance(model, frame, labels, scoring="roc_auc", n_repeats=3, random_state=0)
    np.testing.assert_allclose(ours[frame.columns].to_numpy(), theirs.importances_mean, rtol=0, atol=1e-12)
    # the unshuffled rows, then fewer than every row of every copy: a flag set on one row in ten
    # moves at most a fifth of the rows, and a constant column none
    assert scored[0] == len(frame) and sum(scored[1:]) < 2 * 3 * len(frame) + 2 * 3 * len(frame) // 5
    assert ours["constant"] == 0.0


def test_permutation_importance_rejects_arrays():
    model, frame, labels = _fitted_pipeline(50)
    with pytest.raises(ModelError, match="X must be a DataFrame of raw input columns, got ndarray"):
        evaluate.permutation_importance_table(model, frame.to_numpy(), labels, seed=0)
