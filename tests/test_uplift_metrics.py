"""Tests of the uplift section of pipeline.evaluate: Qini, AUUC, deciles, ATE, calibration, plots."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline import evaluate
from pipeline.errors import ModelError

# Ten rows with two groups of tied scores (0.8 twice, 0.5 three times).  Hand computation,
# cut by cut (ties one cut; n = targeted, T/C = offer/control, c = churners):
#   score  n  nT nC cT cC   prevented = cC*nT/nC - cT    uplift*n = (cC/nC - cT/nT)*n
#   0.9    1   1  0  0  0   0 (no control yet)            0 (a group empty)
#   0.8    3   2  1  1  1   1*2/1 - 1 = 1                 (1 - 1/2)*3 = 1.5
#   0.6    4   2  2  1  1   1*2/2 - 1 = 0                 (1/2 - 1/2)*4 = 0
#   0.5    7   4  3  1  2   2*4/3 - 1 = 5/3               (2/3 - 1/4)*7 = 35/12
#   0.3    8   4  4  1  2   2*4/4 - 1 = 1                 (2/4 - 1/4)*8 = 2
#   0.2    9   5  4  2  2   2*5/4 - 2 = 1/2               (2/4 - 2/5)*9 = 0.9
#   0.1   10   5  5  2  2   0                             0
SCORE = [0.9, 0.8, 0.8, 0.6, 0.5, 0.5, 0.5, 0.3, 0.2, 0.1]
TREATMENT = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
CHURNED = [0, 1, 1, 0, 0, 1, 0, 0, 1, 0]
FRACTIONS = [0.0, 0.1, 0.3, 0.4, 0.7, 0.8, 0.9, 1.0]
PREVENTED = [0.0, 0.0, 1.0, 0.0, 5 / 3, 1.0, 0.5, 0.0]
UPLIFT_TIMES_N = [0.0, 0.0, 1.5, 0.0, 35 / 12, 2.0, 0.9, 0.0]
# Trapezoids over FRACTIONS: 0.1 + 0.05 + 0.25 + 2/15 + 0.075 + 0.025 = 19/30; the random
# line ends at 0, so the Qini area is 19/30.  The perfect ranking puts the 3 offer-group
# stayers and 2 control churners first: (0, 0), (0.5, 3), (1, 0), area 1.5.
QINI_AREA = 19 / 30
QINI_COEFFICIENT = QINI_AREA / 1.5
# 0.15 + 0.075 + 0.4375 + 59/240 + 0.145 + 0.045
AUUC = 659 / 600


def _wilson_roots(x, n, z=1.959963984540054):
    """Wilson's limits as the roots of (p - x/n)^2 = z^2 p (1 - p) / n (a second derivation)."""
    a, b, c = 1 + z * z / n, -(2 * x / n + z * z / n), (x / n) ** 2
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _newcombe(cc, nc, co, no):
    pc, po = cc / nc, co / no
    lc, uc = _wilson_roots(cc, nc)
    lo, uo = _wilson_roots(co, no)
    return pc - po - math.hypot(pc - lc, uo - po), pc - po + math.hypot(uc - pc, po - lo)


def test_qini_curve_by_hand_with_ties():
    curve = evaluate.qini_curve(CHURNED, TREATMENT, SCORE)
    assert curve["n_targeted"].tolist() == [0, 1, 3, 4, 7, 8, 9, 10]
    assert curve["fraction_targeted"].tolist() == pytest.approx(FRACTIONS)
    assert curve["threshold"].tolist() == [math.inf, 0.9, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1]
    assert curve["n_offer"].tolist() == [0, 1, 2, 2, 4, 4, 5, 5]
    assert curve["churners_control"].tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    assert curve["prevented_churns"].tolist() == pytest.approx(PREVENTED)
    assert curve["uplift_times_n"].tolist() == pytest.approx(UPLIFT_TIMES_N)


def test_qini_coefficient_and_auuc_by_hand():
    assert evaluate.qini_coefficient(CHURNED, TREATMENT, SCORE, normalize=False) == pytest.approx(QINI_AREA)
    assert evaluate.qini_coefficient(CHURNED, TREATMENT, SCORE) == pytest.approx(QINI_COEFFICIENT)
    assert evaluate.auuc(CHURNED, TREATMENT, SCORE) == pytest.approx(AUUC)


def test_metrics_do_not_depend_on_row_order_or_tie_breaking():
    rows = pd.DataFrame({"y": CHURNED, "t": TREATMENT, "s": SCORE})
    for seed in range(5):
        shuffled = rows.sample(frac=1.0, random_state=seed)
        assert evaluate.qini_coefficient(shuffled.y, shuffled.t, shuffled.s) == pytest.approx(QINI_COEFFICIENT)
        assert evaluate.auuc(shuffled.y, shuffled.t, shuffled.s) == pytest.approx(AUUC)
        table = evaluate.uplift_by_decile(shuffled.y, shuffled.t, shuffled.s, n_bins=5)
        pd.testing.assert_frame_equal(table, evaluate.uplift_by_decile(CHURNED, TREATMENT, SCORE, n_bins=5))


def test_a_constant_score_is_the_random_line():
    constant = np.full(10, 0.02)
    assert evaluate.qini_coefficient(CHURNED, TREATMENT, constant) == 0.0
    curve = evaluate.qini_curve(CHURNED, TREATMENT, constant)
    assert curve["n_targeted"].tolist() == [0, 10]


def test_perfect_ranking_scores_one():
    perfect = [1, 1, 0, 0, 1, 1, 1, 0, 0, 0]  # offer-group stayers and control churners
    assert evaluate.qini_coefficient(CHURNED, TREATMENT, perfect) == pytest.approx(1.0)
    assert evaluate.qini_coefficient(CHURNED, TREATMENT, [-s for s in perfect]) < 0


def test_uplift_by_decile_counts_rates_and_intervals():
    # Ranks from the top: 1, 2.5, 2.5, 4, 6, 6, 6, 8, 9, 10; bin = floor((rank - 0.5) * 5 / 10).
    table = evaluate.uplift_by_decile(CHURNED, TREATMENT, SCORE, n_bins=5)
    assert table["bin"].tolist() == [1, 2, 3, 4, 5]
    assert table["n"].tolist() == [1, 3, 3, 1, 2]
    assert table["n_offer"].tolist() == [1, 1, 2, 0, 1]
    assert table["n_control"].tolist() == [0, 2, 1, 1, 1]
    assert table["mean_predicted"].tolist() == pytest.approx([0.9, 2.2 / 3, 0.5, 0.3, 0.15])
    assert table["observed_uplift"].iloc[1:3].tolist() == pytest.approx([0.5 - 1.0, 1.0 - 0.0])
    assert np.isnan(table["observed_uplift"].iat[0]) and np.isnan(table["churn_rate_control"].iat[0])
    # Bin 3: control 1 of 1 churned, offer 0 of 2.
    low, high = _newcombe(1, 1, 0, 2)
    assert (table["ci_low"].iat[2], table["ci_high"].iat[2]) == pytest.approx((low, high))
    assert (table["min_score"].iat[1], table["max_score"].iat[1]) == (0.6, 0.8)


def test_uplift_by_decile_equal_bins_without_ties():
    rng = np.random.default_rng(0)
    y, t = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)
    table = evaluate.uplift_by_decile(y, t, rng.random(1000))
    assert table["n"].tolist() == [100] * 10
    assert table["mean_predicted"].is_monotonic_decreasing


def test_average_treatment_effect_matches_newcombe_example_and_hand_computation():
    # Newcombe (1998), example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    effect = evaluate.average_treatment_effect([1] * 56 + [0] * 14 + [1] * 48 + [0] * 32, [0] * 70 + [1] * 80)
    assert effect.estimate == pytest.approx(0.2)
    assert (round(effect.ci_low, 4), round(effect.ci_high, 4)) == (0.0524, 0.3339)
    assert (effect.n_control, effect.n_offer) == (70, 80)
    # Rare events: 9 of 400 controls churned against 3 of 600 offered.
    y = [1] * 9 + [0] * 391 + [1] * 3 + [0] * 597
    t = [0] * 400 + [1] * 600
    effect = evaluate.average_treatment_effect(y, t)
    assert effect.estimate == pytest.approx(9 / 400 - 3 / 600)
    assert (effect.ci_low, effect.ci_high) == pytest.approx(_newcombe(9, 400, 3, 600))
    assert effect.churn_rate_offer == pytest.approx(0.005)


def test_uplift_calibration_recovers_a_known_slope():
    # True uplift 0.02 + 0.10 * (s - 0.5); 30% offered; control churn 0.3.
    rng = np.random.default_rng(1)
    n = 200_000
    s = rng.random(n)
    uplift = 0.02 + 0.10 * (s - 0.5)
    t = (rng.random(n) < 0.3).astype(int)
    y = (rng.random(n) < 0.3 - t * uplift).astype(int)
    blp = evaluate.uplift_calibration(y, t, s)
    assert abs(blp.slope - 0.10) < 3 * blp.slope_se
    assert abs(blp.intercept - 0.02) < 3 * blp.intercept_se
    assert blp.slope_se < 0.02 and blp.slope_p_value < 1e-6
    assert blp.centre == pytest.approx(s.mean())
    # The intercept is the difference of the churn rates (the average effect).
    assert blp.intercept == pytest.approx(evaluate.average_treatment_effect(y, t).estimate)


def test_uplift_calibration_of_a_constant_score_has_no_slope():
    blp = evaluate.uplift_calibration(CHURNED, TREATMENT, np.zeros(10))
    assert math.isnan(blp.slope) and math.isnan(blp.slope_p_value)
    assert blp.intercept == pytest.approx(2 / 5 - 2 / 5)


def test_uplift_metrics_keys_and_risk_comparison():
    metrics = evaluate.uplift_metrics(CHURNED, TREATMENT, SCORE, risk=np.linspace(1, 0, 10), n_bins=5)
    assert metrics["qini_coefficient"] == pytest.approx(QINI_COEFFICIENT)
    assert metrics["auuc"] == pytest.approx(AUUC)
    assert metrics["auuc_random"] == 0.0
    assert {"qini_coefficient_risk", "auuc_risk", "ate_ci_low", "calibration_slope"} <= set(metrics)
    assert all(isinstance(value, float) for value in metrics.values())


@pytest.mark.parametrize(
    "y, t, score, message",
    [
        ([0, 1, 2, 0], [0, 1, 0, 1], [1, 2, 3, 4], r"y: values must be 0/1 \(1 = churned\); got 2 in row 2"),
        ([0, 1, 1, 0], [0, 1, 0, 5], [1, 2, 3, 4], r"treatment: values must be 0/1 \(1 = offer, 0 = control\)"),
        ([0, 1, 1, 0], [1, 1, 1, 1], [1, 2, 3, 4], r"all 4 rows are in the offer group"),
        ([0, 1, 1, 0], [0, 1, 0], [1, 2, 3, 4], r"treatment: has 3 rows but y has 4"),
        ([0, 1, 1, 0], [0, 1, 0, 1], [1, 2, np.nan, 4], r"score: scores must be finite; row 2"),
    ],
)
def test_uplift_inputs_are_checked(y, t, score, message):
    with pytest.raises(ModelError, match=message):
        evaluate.qini_curve(y, t, score)


def test_qini_coefficient_cannot_be_normalised_without_a_better_ranking():
    with pytest.raises(ModelError, match="perfect ranking does no better than a random one"):
        evaluate.qini_coefficient([1, 1, 0, 0], [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])


def test_plots_and_saved_files(tmp_path):
    figure = evaluate.plot_qini(CHURNED, TREATMENT, SCORE, risk=np.linspace(1, 0, 10))
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels[0].startswith("Uplift model (Qini coefficient 0.422)")
    assert labels[1].startswith("Riskiest first") and labels[2] == "Random"
    figure = evaluate.plot_uplift_deciles(CHURNED, TREATMENT, SCORE, n_bins=5)
    assert figure.axes[0].get_xlabel().startswith("Bin of predicted uplift")
    written = evaluate.save_uplift_plots(CHURNED, TREATMENT, SCORE, tmp_path, n_bins=5)
    assert sorted(written) == ["qini", "uplift_deciles"] and all(path.stat().st_size > 0 for path in written.values())
